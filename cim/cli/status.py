"""`cim status`: sources, counts, jobs, and what needs attention, as JSON or console tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from cim.cli.base import emit_json, json_option, open_store, out_console, store_file

if TYPE_CHECKING:
    from cim.status import ServerHolding, StatusDocument
    from cim.store import Store


@click.command()
@json_option("Print one JSON document (schemas/status.schema.json).")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Sources, counts, jobs, and what needs attention.

    While `cim serve` holds the store, the status it published after its last job."""
    from cim.errors import StoreLocked
    from cim.status import status_document

    try:
        store = open_store(ctx)
    except StoreLocked:
        if not _from_server(store_file(ctx), as_json):
            raise
        return
    with store:
        doc = status_document(store, analyses_state)
    if as_json:
        emit_json(doc)
        return
    render_status(doc, out_console)


def analyses_state(store: Store) -> dict[str, dict[str, int]]:
    """How current each analyzer's results are (the command line knows the analyzers)."""
    from cim.analyze import ANALYZERS, stale_counts

    return stale_counts(store, [make(store=store) for make in ANALYZERS.values()])


def _from_server(path: Path, as_json: bool) -> bool:
    """Print the status a running `cim serve` publishes beside the store; False when none."""
    from cim.connection import server_holding

    server = server_holding(path)
    if server is None or not isinstance(server.get("status"), dict):
        return False
    doc: StatusDocument = server["status"]
    held: ServerHolding = {
        "pid": int(server["pid"]),
        "url": str(server.get("url", "")),
        "published_at": str(server.get("published_at", "")),
    }
    if as_json:
        emit_json({**doc, "store_busy": True, "server": held})
        return True
    click.echo(
        f"held by `cim serve` (pid {held['pid']}) at {held['url']}: its status as of "
        f"{held['published_at']} (after its last job)"
    )
    render_status(doc, out_console)
    return True


def render_status(doc: StatusDocument, console: Console) -> None:
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
