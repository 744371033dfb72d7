"""The ``cim`` command line: the operator's contract (see DESIGN.md, "The command line").

The CLI owns stdout (results; one JSON document with ``--json``) and stderr (logs, progress bars,
errors). A user error prints one line and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import duckdb
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cim import __version__
from cim.crs import DEFAULT_PROJECT_CRS
from cim.errors import CimError, UsageError
from cim.store import Store

log = logging.getLogger("cim")
err_console = Console(stderr=True)
out_console = Console()


def default_store_path() -> Path:
    return Path(os.environ.get("CIM_STORE") or "cim.duckdb")


class CimGroup(click.Group):
    """Translates CimError into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CimError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (KeyboardInterrupt, duckdb.InterruptException):
            # (DuckDB turns a Ctrl-C during a query into its own exception)
            self._interrupted(ctx)
        except RuntimeError as exc:
            if str(exc) != "Query interrupted":  # what DuckDB raises for a Ctrl-C in a LOAD
                raise
            self._interrupted(ctx)

    @staticmethod
    def _interrupted(ctx: click.Context) -> None:
        click.echo("interrupted: nothing of the unfinished step was kept", err=True)
        ctx.exit(130)


@click.group(cls=CimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Store file (default: $CIM_STORE, else ./cim.duckdb).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-v", "--verbose", is_flag=True, help="Show info logs.")
@click.version_option(__version__, prog_name="cim")
@click.pass_context
def cli(ctx: click.Context, store_path: Path | None, debug: bool, verbose: bool) -> None:
    """City information model pipeline: IFC, LiDAR and GIS in one DuckDB store."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.ensure_object(dict)
    ctx.obj["store_path"] = store_path or default_store_path()
    ctx.obj["debug"] = debug


def open_store(ctx: click.Context) -> Store:
    return Store.open(ctx.obj["store_path"])


@contextmanager
def progress_bar(
    description: str, enabled: bool = True
) -> Iterator[Callable[[float, str | None], None]]:
    """A rich progress bar on stderr; yields a callback (fraction 0..1, message)."""
    if not enabled:
        yield lambda f, m: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[msg]}"),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=1.0, msg="")

        def update(fraction: float, message: str | None) -> None:
            bar.update(task, completed=fraction, msg=message or "")

        yield update


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


# ---- init ------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--crs",
    default=DEFAULT_PROJECT_CRS,
    show_default=True,
    help="Project CRS: projected, in metres (EPSG code or WKT).",
)
@click.option(
    "--origin",
    help="Project origin LON,LAT (where unplaced models go; default: centre of the CRS's area).",
)
@click.pass_context
def init(ctx: click.Context, crs: str, origin: str | None) -> None:
    """Create a new store in a project CRS."""
    lonlat = None
    if origin:
        try:
            lon, lat = (float(v) for v in origin.split(","))
        except ValueError as exc:
            raise UsageError(f"--origin {origin!r}: give LON,LAT in degrees") from exc
        lonlat = (lon, lat)
    store = Store.create(ctx.obj["store_path"], crs, lonlat)
    with store:
        click.echo(
            f"created {store.path} (schema {store.schema_version}, project CRS {store.crs_label})"
        )


# ---- status ----------------------------------------------------------------------------
@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (schemas/status.schema.json)."
)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Sources, counts, jobs, and what needs attention."""
    from cim.status import status_document

    with open_store(ctx) as store:
        doc = status_document(store)
    if as_json:
        emit_json(doc)
        return
    from cim.status import render_status

    render_status(doc, out_console)


# ---- jobs ------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (schemas/jobs.schema.json)."
)
@click.option("--limit", type=int, default=50, show_default=True, help="Newest jobs to show.")
@click.pass_context
def jobs(ctx: click.Context, as_json: bool, limit: int) -> None:
    """List jobs, newest first."""
    from cim.errors import StoreLocked
    from cim.jobs import list_jobs, live_jobs

    try:
        store = open_store(ctx)
    except StoreLocked as exc:
        live = live_jobs(ctx.obj["store_path"])
        if not live:
            raise
        # the store is busy: show what the running jobs mirror beside it
        if as_json:
            emit_json({"jobs": live, "store_busy": True})
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
        emit_json({"jobs": [r.as_json() for r in rows]})
        return
    table = Table("id", "kind", "status", "progress", "started", "message / error")
    for r in rows:
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else ""
        note = r.error or r.message or ""
        table.add_row(str(r.id), r.kind, r.status, f"{r.progress:.0%}", started, note)
    out_console.print(table)


# ---- ingest ----------------------------------------------------------------------------
@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--crs", help="CRS of the files, overriding what they say (EPSG code, WKT, or GCJ02)."
)
@click.option("--layer", help="GIS: the one layer to read (default: every layer).")
@click.option(
    "--role",
    type=click.Choice(["buildings", "roads", "landcover", "parks", "pois", "boundary"]),
    help="GIS: what the layer is (default: guessed from its name and fields, and reported).",
)
@click.option("--anchor", help="IFC: LON,LAT[,ELEV[,ROTATION_DEG]] placing the model's origin.")
@click.option("--cluster", envvar="CIM_CLUSTER", help="Dask scheduler address (tcp://host:8786).")
@click.option("--workers", type=int, help="Local worker processes (default: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as one JSON document.")
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[Path, ...],
    crs: str | None,
    layer: str | None,
    role: str | None,
    anchor: str | None,
    cluster: str | None,
    workers: int | None,
    as_json: bool,
) -> None:
    """Ingest IFC, LAS/LAZ and GIS files (the kind is chosen from each file).

    Each file is one job and one transaction: a file that fails leaves the store as it was,
    and the other files still go in. The same bytes twice is a no-op.
    """
    from cim.executor import get_executor
    from cim.jobs import run_job
    from ingest import Anchor, IngestOptions, run_ingest

    options = IngestOptions(
        crs=crs, layer=layer, role=role, anchor=Anchor.parse(anchor) if anchor else None
    )
    reports: list[dict[str, Any]] = []
    errors: list[CimError] = []
    executor = get_executor(cluster, workers)
    # IFC models are meshed by the workers, large point clouds encoded by them: let them start
    # and import the ingester (about 0.5 s) while this process opens the store and reads
    suffixes = {p.suffix.lower() for p in paths}
    preload = [
        m
        for m, ext in (("ingest.ifc", {".ifc"}), ("ingest.lidar", {".las", ".laz"}))
        if suffixes & ext
    ]
    if executor.workers >= 2 and preload:
        executor.start(preload)
    try:
        with open_store(ctx) as store:
            for path in paths:
                args = {"path": str(path), **options.as_json()}
                try:
                    with (
                        progress_bar(f"ingest {path.name}", enabled=not as_json) as bar,
                        run_job(store, "ingest", args, on_progress=bar) as job,
                    ):
                        report = run_ingest(store, path, options, executor, job.update, job.id)
                        job.result = {"source_id": report.source_id, "outcome": report.outcome}
                        job.message = report.message
                except CimError as exc:
                    if ctx.obj["debug"]:
                        raise
                    errors.append(exc)
                    click.echo(f"error: {exc}", err=True)
                    reports.append({"path": str(path), "outcome": "failed", "error": str(exc)})
                    continue
                reports.append(report.as_json())
                if not as_json:
                    click.echo(report.message)
                    for w in report.warnings:
                        click.echo(f"  warning: {w}", err=True)
    finally:
        executor.close()
    if as_json:
        emit_json({"reports": reports})
    if errors:
        ctx.exit(errors[0].exit_code)


# ---- place -----------------------------------------------------------------------------
@cli.command()
@click.argument("source")
@click.option(
    "--anchor",
    required=True,
    help="LON,LAT[,ELEV[,ROTATION_DEG]]: where the model's origin goes, and its rotation "
    "(counter-clockwise, degrees) from east/north.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def place(ctx: click.Context, source: str, anchor: str, as_json: bool) -> None:
    """Place (or re-place) an IFC model on the map without re-reading its file.

    SOURCE is a source id, file name or path (see `cim status`).
    """
    from cim.jobs import run_job
    from ingest import Anchor
    from ingest.ifc import place as place_model

    where = Anchor.parse(anchor)
    with open_store(ctx) as store:
        src = store.source(source)
        with run_job(store, "place", {"source": src.id, "anchor": anchor}) as job:
            with store.transaction():
                outcome = place_model(store, src.id, where)
            job.result = outcome
    if as_json:
        emit_json(outcome)
    else:
        click.echo(
            f"{src.name}: placed at {where.lon}, {where.lat} "
            f"({outcome['elements']} elements, {outcome['buildings']} buildings moved)"
        )


def main() -> None:
    cli(prog_name="cim")
