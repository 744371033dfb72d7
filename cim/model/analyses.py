"""What the analyzers found, as the rest of the system reads it (``analyses`` rows).

The analyzers (``cim/analyze/``) write these rows; tiles, the API, the viewer and the health
check read them here rather than recompute. Each row carries the fingerprint of its inputs;
whether it is still current is the analyzer's to say (`cim status`, `cim analyze`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cim.store import Store


def stored(store: Store, analyzer: str) -> dict[str, dict[str, Any]]:
    """Every stored row of an analyzer, by subject."""
    rows = store.con.execute(
        "SELECT subject, building_id, source_id, fingerprint, rules, summary, result, "
        "job_id, computed_at FROM analyses WHERE analyzer = ?",
        [analyzer],
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        out[r[0]] = {
            "subject": r[0],
            "building_id": r[1],
            "source_id": r[2],
            "fingerprint": r[3],
            "rules": r[4],
            "summary": json.loads(r[5]) if r[5] else {},
            "result": json.loads(r[6]),
            "job_id": r[7],
            "computed_at": r[8].isoformat(timespec="seconds") if r[8] else None,
        }
    return out


def building_analyses(store: Store, building_ids: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The results of every analyzer for any of these building rows (a building and the rows
    linked to it), by analyzer, each with whether it is stale."""
    rows = store.con.execute(
        "SELECT analyzer, building_id, summary, result, computed_at, rules FROM analyses "
        "WHERE building_id IN (SELECT unnest(?::BIGINT[])) ORDER BY analyzer, building_id",
        [list(building_ids)],
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for analyzer, bid, summary, result, at, rules in rows:
        out.setdefault(
            analyzer,
            {
                "building_id": bid,
                "summary": json.loads(summary) if summary else {},
                "result": json.loads(result),
                "computed_at": at.isoformat(timespec="seconds") if at else None,
                "rules": rules,
            },
        )
    return out


def summaries(store: Store, analyzer: str) -> dict[int, dict[str, Any]]:
    """building id -> the summary of an analyzer's result for it (what tiles carry)."""
    rows = store.con.execute(
        "SELECT building_id, summary FROM analyses WHERE analyzer = ? AND building_id IS NOT NULL",
        [analyzer],
    ).fetchall()
    return {int(b): json.loads(s) if s else {} for b, s in rows}


def result_counts(store: Store) -> dict[str, int]:
    """analyzer -> how many results it has stored (the page asks before it reads any)."""
    rows = store.con.execute(
        "SELECT analyzer, count(*) FROM analyses GROUP BY analyzer ORDER BY analyzer"
    ).fetchall()
    return {str(a): int(n) for a, n in rows}
