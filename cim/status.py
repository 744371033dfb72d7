"""What `cim status` reports: one document (``schemas/status.schema.json``), printed as JSON or
as console tables by the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

from cim.jobs import JobJson, list_jobs
from cim.store import Store
from cim.tilefiles import TilesetState, tileset_states

#: tables whose row counts the status reports, when the schema has them
COUNTED_TABLES = ("buildings", "elements", "meshes", "features", "points")


class SourceJson(TypedDict):
    """One source of the status document."""

    id: int
    name: str
    path: str
    kind: str
    format: str | None
    crs: str | None
    status: str
    sha256: str
    size_bytes: int
    counts: dict[str, Any]
    warnings: list[str]
    ingested_at: str


class AttentionItem(TypedDict):
    """Something the user should act on, and what to do."""

    reason: str
    message: str
    source_id: NotRequired[int]
    job_id: NotRequired[int]


class JobsSummary(TypedDict):
    """How many jobs run now, and the newest few."""

    running: int
    recent: list[JobJson]


class ServerHolding(TypedDict):
    """The `cim serve` that holds the store (when the status comes from it)."""

    pid: int
    url: str
    published_at: str


class StatusDocument(TypedDict):
    """The document described by ``schemas/status.schema.json``. While a server holds the
    store, `cim status` prints the one the server published, with ``store_busy`` and
    ``server``."""

    store: str
    schema_version: int
    crs: str
    counts: dict[str, int]
    sources: list[SourceJson]
    jobs: JobsSummary
    tilesets: list[TilesetState]
    attention: list[AttentionItem]
    analyses: NotRequired[AnalysesState]
    store_busy: NotRequired[bool]
    server: NotRequired[ServerHolding]


#: per analyzer: buildings with a current result, a stale one, none (``cim.analyze.stale_counts``)
AnalysesState = dict[str, dict[str, int]]


def status_document(
    store: Store, analyses: Callable[[Store], AnalysesState] | None = None
) -> StatusDocument:
    """The document described by ``schemas/status.schema.json``. ``analyses`` says how
    current each analyzer's results are (handed in by those who know the analyzers: the
    command line, the server's pipeline)."""
    existing = {
        r[0]
        for r in store.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    sources: list[SourceJson] = []
    attention: list[AttentionItem] = []
    for s in store.sources():
        sources.append(
            {
                "id": s.id,
                "name": s.name,
                "path": s.path,
                "kind": s.kind,
                "format": s.format,
                "crs": s.crs,
                "status": s.status,
                "sha256": s.sha256,
                "size_bytes": s.size_bytes,
                "counts": s.counts,
                "warnings": s.warnings,
                "ingested_at": s.ingested_at.isoformat(),
            }
        )
        if s.status == "needs_placement":
            attention.append(
                {
                    "source_id": s.id,
                    "reason": "needs_placement",
                    "message": f"{s.name} has no georeference: place it with "
                    f"`cim place {s.id} --anchor LON,LAT[,ELEV[,ROTATION]]`",
                }
            )
        if s.kind == "lidar" and s.counts.get("building_points") == 0:
            attention.append(
                {
                    "source_id": s.id,
                    "reason": "heights_unavailable",
                    "message": f"{s.name} has no building class (6): no roof heights from it",
                }
            )
        failed = s.counts.get("failed") if isinstance(s.counts, dict) else None
        if failed:
            attention.append(
                {
                    "source_id": s.id,
                    "reason": "geometry_failures",
                    "message": f"{s.name}: {failed} element(s) without geometry "
                    f"(see elements.geometry_error)",
                }
            )
    jobs = list_jobs(store, limit=20)
    for j in jobs:
        if j.status == "failed":
            attention.append(
                {
                    "job_id": j.id,
                    "reason": "job_failed",
                    "message": f"job {j.id} ({j.kind}): {j.error}",
                }
            )
            break  # the newest failure is enough here; `cim jobs` lists them all
    if "buildings" in existing:
        unknown = store.count("buildings", "height IS NULL AND same_as IS NULL")
        if unknown:
            attention.append(
                {
                    "reason": "heights_unknown",
                    "message": f"{unknown} building(s) have no known height: add a height or "
                    f"floors attribute, or ingest LiDAR covering them",
                }
            )
    tilesets = tileset_states(store.con, store.path) if "tilesets" in existing else []
    attention += _tiles_attention(tilesets)
    state = analyses(store) if analyses is not None and "analyses" in existing else None
    attention += _analyses_attention(state or {})
    counts = {t: store.count(t) for t in COUNTED_TABLES if t in existing}
    counts["sources"] = len(sources)
    doc: StatusDocument = {
        "store": str(store.path),
        "schema_version": store.schema_version,
        "crs": store.crs_label,
        "counts": counts,
        "sources": sources,
        "jobs": {
            "running": sum(1 for j in jobs if j.status == "running"),
            "recent": [j.as_json() for j in jobs[:5]],
        },
        "tilesets": tilesets,
        "attention": attention,
    }
    if state is not None:
        doc["analyses"] = state
    return doc


def _tiles_attention(tilesets: list[TilesetState]) -> list[AttentionItem]:
    out: list[AttentionItem] = []
    for ts in tilesets:
        if ts["state"] == "missing":
            out.append(
                {
                    "reason": "tiles_missing",
                    "message": f"the {ts['name']} tiles are missing beside the store (a store "
                    f"copied without its .tiles folder): run `cim tile` to write them again",
                }
            )
        elif ts["state"] == "stale":
            out.append(
                {
                    "reason": "tiles_stale",
                    "message": f"the {ts['name']} tiles are older than the store's content: "
                    f"run `cim tile` to bring them up to date",
                }
            )
    return out


def _analyses_attention(state: AnalysesState) -> list[AttentionItem]:
    out: list[AttentionItem] = []
    for name, n in state.items():
        if n["stale"] or n["missing"]:
            out.append(
                {
                    "reason": "analyses_stale",
                    # (the health check's subjects are built-up areas, not buildings)
                    "message": f"{n['stale'] + n['missing']} "
                    f"{'area(s)' if name == 'indicators' else 'building(s)'} without a current "
                    f"{name} result ({n['stale']} stale, {n['missing']} never analysed): run "
                    f"`cim analyze {name}`",
                }
            )
    return out
