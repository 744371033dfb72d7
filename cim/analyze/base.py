"""What every analyzer shares: its results in the store, fingerprints, and what is stale.

An analyzer lists its subjects (each building it can say something of, with the fingerprint
of what it would read: the sources' sha256, the rules files' versions, a declaration), and
computes one subject at a time. An analyzer with heavy work per subject (meshes voxelised,
rays cast) also ``plan``s it: what it reads from the store (here, in the one process that holds
the store) becomes a ``Work`` item, a module-level function and its picklable arguments that
an executor runs in its workers, and the item's result comes back to ``Work.finish`` here.
``run_analyzer`` recomputes only the subjects whose stored fingerprint differs (all of them
with ``everything=True``), forgets the rows of subjects that are gone, then writes the city
roll-up, all in one transaction: a failure leaves the results as they were. Re-ingesting a
source deletes its rows with the rest of it (``source_id``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cim.errors import CimError
from cim.model.analyses import stored

if TYPE_CHECKING:
    from cim.executor import Executor
    from cim.store import Store

Progress = Callable[[float | None, str | None], None]
log = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """A short stable digest of JSON-able inputs."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Subject:
    key: str  # 'building:<id>'
    building_id: int | None
    source_id: int | None
    fingerprint: str
    label: str = ""  # for progress and reports
    inputs: dict[str, Any] = field(default_factory=dict)  # what compute needs, read once


@dataclass
class Outcome:
    summary: dict[str, Any]
    result: dict[str, Any]


@dataclass
class Work:
    """A subject's heavy part, for an executor's worker: ``fn(item)`` (``fn`` at module level,
    ``item`` picklable, nothing of the store in it), then ``finish`` of its result back in the
    process that holds the store."""

    fn: Callable[[Any], Any]
    item: Any
    finish: Callable[[Any], Outcome]

    def inline(self) -> Outcome:
        return self.finish(self.fn(self.item))


def computed_inline(planned: Outcome | Work) -> Outcome:
    """``compute`` of an analyzer that plans: the same work, in this process."""
    return planned if isinstance(planned, Outcome) else planned.inline()


class Analyzer(Protocol):
    name: str

    def rules_label(self) -> str: ...

    def subjects(self, store: Store, building: int | None = None) -> list[Subject]: ...

    def compute(self, store: Store, subject: Subject) -> Outcome: ...

    def rollup(self, store: Store, rows: list[dict[str, Any]]) -> Outcome | None: ...


def run_analyzer(
    store: Store,
    analyzer: Analyzer,
    *,
    building: int | None = None,
    everything: bool = False,
    job_id: int | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Recompute what is stale (or everything) and the roll-up; returns what was done with
    every subject's summary. With an ``executor`` (of more than one worker), an analyzer that
    ``plan``s its subjects runs their heavy part there."""
    step = progress or (lambda f, m: None)
    subjects = analyzer.subjects(store, building)
    before = stored(store, analyzer.name)
    todo = [
        s
        for s in subjects
        if everything or before.get(s.key, {}).get("fingerprint") != s.fingerprint
    ]
    keep = {s.key for s in subjects}
    gone = [k for k in before if k != "city" and k not in keep] if building is None else []
    computed: dict[str, Outcome] = {}
    failed: list[dict[str, Any]] = []
    outcomes = (
        _fanned_out(store, analyzer, todo, executor)
        if executor is not None and executor.workers > 1 and len(todo) > 1
        and hasattr(analyzer, "plan")
        else _inline(store, analyzer, todo)
    )  # fmt: skip
    for i, (s, out) in enumerate(outcomes):
        step((i + 1) / max(len(todo), 1) * 0.9, f"{analyzer.name}: {s.label or s.key}")
        if isinstance(out, Outcome):
            computed[s.key] = out
        else:
            failed.append({"subject": s.key, "building_id": s.building_id, "error": out})
    todo = [s for s in todo if s.key in computed]
    step(0.9, f"{analyzer.name}: writing")
    rules = analyzer.rules_label()
    with store.transaction() as con:
        for k in gone:
            con.execute(
                "DELETE FROM analyses WHERE analyzer = ? AND subject = ?", [analyzer.name, k]
            )
        for s in todo:
            out = computed[s.key]
            con.execute(
                "INSERT OR REPLACE INTO analyses (analyzer, subject, building_id, source_id, "
                "fingerprint, rules, summary, result, job_id, computed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                [
                    analyzer.name,
                    s.key,
                    s.building_id,
                    s.source_id,
                    s.fingerprint,
                    rules,
                    json.dumps(out.summary, ensure_ascii=False),
                    json.dumps(out.result, ensure_ascii=False, default=str),
                    job_id,
                ],
            )
        after = stored(store, analyzer.name)
        city_rows = [r for k, r in after.items() if k != "city"]
        city = analyzer.rollup(store, city_rows)
        if city is not None:
            con.execute(
                "INSERT OR REPLACE INTO analyses (analyzer, subject, building_id, source_id, "
                "fingerprint, rules, summary, result, job_id, computed_at) "
                "VALUES (?, 'city', NULL, NULL, ?, ?, ?, ?, ?, current_timestamp)",
                [
                    analyzer.name,
                    fingerprint(sorted(r["fingerprint"] for r in city_rows)),
                    rules,
                    json.dumps(city.summary, ensure_ascii=False),
                    json.dumps(city.result, ensure_ascii=False, default=str),
                    job_id,
                ],
            )
    step(1.0, f"{analyzer.name}: done")
    rows = stored(store, analyzer.name)
    return {
        "analyzer": analyzer.name,
        "rules": rules,
        "subjects": len(subjects),
        "computed": len(todo),
        "unchanged": len(subjects) - len(todo) - len(failed),
        "failed": failed,
        "removed": len(gone),
        "results": [
            {"subject": s.key, "building_id": s.building_id, **rows[s.key]["summary"]}
            for s in subjects
            if s.key in rows
        ],
        "city": rows["city"]["result"] if "city" in rows else None,
    }


Done = tuple[Subject, Outcome | str]  # a subject's outcome, or why it failed


def _failure(analyzer: Analyzer, s: Subject, exc: BaseException) -> str:
    """A building the analyzer cannot handle fails alone: it keeps no result (it stays stale,
    so a fixed version computes it) and the others go on. A CimError is the user's to mend (a
    bad rules file, a weather file) and stops the run at once."""
    if isinstance(exc, CimError) or not isinstance(exc, Exception):
        raise exc
    log.warning("%s: %s failed", analyzer.name, s.key, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _inline(store: Store, analyzer: Analyzer, todo: list[Subject]) -> Iterator[Done]:
    for s in todo:
        try:
            yield s, analyzer.compute(store, s)
        except Exception as exc:
            yield s, _failure(analyzer, s, exc)


def _guarded(task: tuple[Callable[[Any], Any], Any] | None) -> tuple[str, Any]:
    """A worker's side of ``_fanned_out``: the item's result, or its exception (a CimError
    as it is, anything else as text: it may not pickle), never raised across the pool."""
    if task is None:
        return "ok", None
    fn, item = task
    try:
        return "ok", fn(item)
    except CimError as exc:
        return "cim", exc
    except Exception as exc:
        return "error", (f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _fanned_out(
    store: Store, analyzer: Analyzer, todo: list[Subject], executor: Executor
) -> Iterator[Done]:
    """Plan each subject here (its store reads), run the heavy part on the executor, finish
    here, in the subjects' order. The executor pulls plans as its window frees, so at most a
    window's items are in memory. Should the pool break (a worker killed, a crash in native
    code), what is left is computed in this process."""
    plan: Callable[[Store, Subject], Outcome | Work] = analyzer.plan  # type: ignore[attr-defined]
    pending: deque[tuple[Subject, Outcome | Work | str]] = deque()

    def tasks() -> Iterator[tuple[Callable[[Any], Any], Any] | None]:
        for s in todo:
            try:
                p: Outcome | Work | str = plan(store, s)
            except Exception as exc:
                p = _failure(analyzer, s, exc)
            pending.append((s, p))
            yield (p.fn, p.item) if isinstance(p, Work) else None

    done = 0
    try:
        for status, value in executor.map(_guarded, tasks()):
            s, p = pending.popleft()
            done += 1
            if not isinstance(p, Work):
                yield s, p
            elif status == "cim":
                raise value
            elif status == "error":
                log.warning("%s: %s failed in a worker:\n%s", analyzer.name, s.key, value[1])
                yield s, value[0]
            else:
                try:
                    yield s, p.finish(value)
                except Exception as exc:
                    yield s, _failure(analyzer, s, exc)
    except BrokenProcessPool:
        log.warning("%s: the worker pool broke; the rest runs in this process", analyzer.name)
        yield from _inline(store, analyzer, todo[done:])


def stale_counts(store: Store, analyzers: Sequence[Analyzer]) -> dict[str, dict[str, int]]:
    """For `cim status`: per analyzer, subjects with a current result, stale and missing."""
    out: dict[str, dict[str, int]] = {}
    for a in analyzers:
        before = stored(store, a.name)
        current = stale = missing = 0
        for s in a.subjects(store):
            have = before.get(s.key)
            if have is None:
                missing += 1
            elif have["fingerprint"] == s.fingerprint:
                current += 1
            else:
                stale += 1
        out[a.name] = {"current": current, "stale": stale, "missing": missing}
    return out
