"""What `cim status` reports: one structure, rendered as JSON or as console tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from cim.jobs import list_jobs
from cim.store import Store

#: tables whose row counts the status reports, when the schema has them
COUNTED_TABLES = ("buildings", "elements", "meshes", "features", "points")


def status_document(store: Store) -> dict[str, Any]:
    """The document described by ``schemas/status.schema.json``."""
    existing = {
        r[0]
        for r in store.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    sources = []
    attention: list[dict[str, Any]] = []
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
    counts = {t: store.count(t) for t in COUNTED_TABLES if t in existing}
    counts["sources"] = len(sources)
    return {
        "store": str(store.path),
        "schema_version": store.schema_version,
        "crs": store.crs_label,
        "counts": counts,
        "sources": sources,
        "jobs": {
            "running": sum(1 for j in jobs if j.status == "running"),
            "recent": [j.as_json() for j in jobs[:5]],
        },
        "attention": attention,
    }


def render_status(doc: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]{doc['store']}[/]  schema {doc['schema_version']}  CRS {doc['crs']}  "
        + "  ".join(f"{k} {v}" for k, v in doc["counts"].items())
    )
    if doc["sources"]:
        table = Table("id", "name", "kind", "format", "status", "counts")
        for s in doc["sources"]:
            counts = _summary(s["kind"], s["counts"])
            table.add_row(
                str(s["id"]), s["name"], s["kind"], s["format"] or "", s["status"], counts
            )
        console.print(table)
    else:
        console.print("no sources yet: add files with `cim ingest PATH...`")
    for item in doc["attention"]:
        console.print(f"[yellow]attention[/]: {item['message']}")


#: the counts the console table shows first, per kind (all of them are in --json)
_SUMMARY_KEYS = {
    "ifc": ("products", "meshed", "failed", "buildings"),
    "lidar": ("points", "ground_points", "building_points", "buildings_with_heights"),
    "gis": ("buildings", "roads", "landcover", "parks", "pois", "boundary", "repaired", "skipped"),
}


def _summary(kind: str, counts: dict[str, Any]) -> str:
    keys = _SUMMARY_KEYS.get(kind, ())
    always = {"products", "meshed", "failed", "points"}
    shown = [(k, counts[k]) for k in keys if k in counts and (counts[k] or k in always)]
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in shown)
