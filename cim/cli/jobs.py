"""`cim jobs`: the store's jobs, newest first; while another process holds the store, the
progress its running jobs mirror beside it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from cim.cli.base import emit_json, json_option, open_store, out_console, store_file

if TYPE_CHECKING:
    from cim.jobs import JobsDocument


@click.command()
@json_option("Print one JSON document (schemas/jobs.schema.json).")
@click.option("--limit", type=int, default=50, show_default=True, help="Newest jobs to show.")
@click.pass_context
def jobs(ctx: click.Context, as_json: bool, limit: int) -> None:
    """List jobs, newest first."""
    from cim.errors import StoreLocked
    from cim.jobs import list_jobs, live_jobs

    try:
        store = open_store(ctx)
    except StoreLocked as exc:
        live = live_jobs(store_file(ctx))
        if not live:
            if not _from_server(store_file(ctx), as_json):
                raise
            return
        # the store is busy: show what the running jobs mirror beside it
        if as_json:
            busy: JobsDocument = {"jobs": live, "store_busy": True}
            emit_json(busy)
        else:
            click.echo(f"{exc.message}; live progress:", err=True)
            for j in live:
                click.echo(
                    f"{j['id']}  {j['kind']}  {j['status']}  {j['progress']:.0%}  "
                    f"{j.get('message') or ''}"
                )
        return
    with store:
        rows = list_jobs(store, limit)
    if as_json:
        doc: JobsDocument = {"jobs": [r.as_json() for r in rows]}
        emit_json(doc)
        return
    table = Table("id", "kind", "status", "progress", "started", "message / error")
    for r in rows:
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else ""
        note = r.error or r.message or ""
        table.add_row(str(r.id), r.kind, r.status, f"{r.progress:.0%}", started, note)
    out_console.print(table)


def _from_server(path: Path, as_json: bool) -> bool:
    """The newest jobs a running `cim serve` published beside the store; False when none."""
    from cim.connection import server_holding

    server = server_holding(path)
    recent = (server or {}).get("status", {}).get("jobs", {}).get("recent")
    if server is None or not isinstance(recent, list):
        return False
    if as_json:
        doc: JobsDocument = {"jobs": recent, "store_busy": True}
        emit_json(doc)
        return True
    click.echo(
        f"held by `cim serve` (pid {server['pid']}) at {server.get('url')}: its newest jobs "
        f"as of {server.get('published_at')} (live: GET {server.get('url')}/api/jobs)"
    )
    for j in recent:
        note = j.get("error") or j.get("message") or ""
        click.echo(f"{j['id']}  {j['kind']}  {j['status']}  {j['progress']:.0%}  {note}")
    return True
