"""`cim demo`: the embedded default, the sample district of Tongliao end to end.

generate (``district``) -> a store in EPSG:4550 -> ingest every file (the tower's declaration
kept for the prefab analyzer) -> every analyzer of ``ANALYZERS`` -> the 3D Tiles -> the one
map served at http://HOST:PORT. Each stage reuses what is unchanged: the generator writes the
same bytes, so a second run ingests nothing, finds every analysis current and every tile kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from cim.cli.base import progress_bar, workers_option

if TYPE_CHECKING:
    from cim.executor import Executor
    from cim.store import Store

#: the analyzers the plan calls for (DESIGN.md); those not in ANALYZERS are said to be missing
PLANNED_ANALYZERS = ("prefab", "energy", "pv", "indicators")
STORE_NAME = "tongliao.duckdb"


@dataclass
class DemoRun:
    """What one run did: each stage's seconds and outcomes, for the summary."""

    folder: Path
    seconds: dict[str, float] = field(default_factory=dict)
    seconds_of: dict[str, float] = field(default_factory=dict)  # each analyzer's
    manifest: dict[str, Any] = field(default_factory=dict)
    ingested: dict[str, str] = field(default_factory=dict)  # file -> ingested|replaced|unchanged
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    tiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def store_path(self) -> Path:
        return self.folder / STORE_NAME

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0


@click.group(invoke_without_command=True)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo/district"),
    show_default=True,
    help="Where the district's files (DIR/data) and its store (DIR/tongliao.duckdb) go.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Stop after the tiles (print the summary).")
@workers_option
@click.pass_context
def demo(
    ctx: click.Context,
    folder: Path,
    host: str,
    port: int,
    no_serve: bool,
    workers: int | None,
) -> None:
    """The sample district of Tongliao end to end: generate it, ingest it into a store,
    run every analyzer, build the 3D Tiles and serve the one map at http://HOST:PORT.

    A second run reuses what is unchanged. `cim demo generate DIR` only writes the files.
    The demo's store is DIR/tongliao.duckdb (the global --store is not used).
    """
    if ctx.invoked_subcommand is not None:
        return
    from cim.executor import get_executor

    if not no_serve:
        check_port(host, port)  # before minutes of work, not after
    run = DemoRun(folder)
    executor = get_executor(None, workers)
    serving = False
    try:
        store = run_pipeline(run, executor)
        print_summary(Console(highlight=False), run, store)
        if no_serve:
            store.close()
            return
        from cim.cli.serve import run_server

        click.echo(f"demo: the one map of the district: http://{host}:{port}", err=True)
        serving = True
        run_server(store, executor, host=host, port=port)  # closes the store and executor
    finally:
        if not serving:
            executor.close()


@demo.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def generate(folder: Path) -> None:
    """Write the sample district into FOLDER: a GeoPackage, a LAZ survey, three IFC4 buildings,
    the tower's prefab declaration and manifest.json (the same bytes on every run)."""
    from district import generate as write_district

    with progress_bar("generate") as bar:
        manifest = write_district(folder, bar)
    for f in manifest["files"]:
        click.echo(f"{f['path']}: {f['what']} ({f['bytes']:,} bytes)")
    click.echo(f"manifest.json: {len(manifest['files'])} files with their sha256")


def check_port(host: str, port: int) -> None:
    """Raise a UsageError when the server could not listen on ``host:port``."""
    import socket

    from cim.errors import UsageError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"cannot serve on {host}:{port} ({exc.strerror}): pass another --port, "
                "or --no-serve"
            ) from exc


def run_pipeline(run: DemoRun, executor: Executor) -> Store:
    """Every stage but the server; the open store (the caller closes it)."""
    from district import generate as write_district
    from district import generated

    with run.stage("generate"):
        have = generated(run.data)  # the same generator wrote it, every file intact
        if have is not None:
            run.manifest = have
            click.echo(f"generate: {run.data} is current ({len(have['files'])} files)", err=True)
        else:
            with progress_bar("generate") as bar:
                run.manifest = write_district(run.data, bar)
    store = _open_or_create(run.store_path)
    try:
        with run.stage("ingest"):
            _ingest(run, store, executor)
        with run.stage("analyze"):
            _analyze(run, store, executor)
        with run.stage("tile"):
            _tile(run, store, executor)
    except BaseException:
        store.close()
        raise
    return store


def _open_or_create(path: Path) -> Store:
    from cim.store import Store
    from district.plan import CENTRE, CRS

    if path.exists():
        return Store.open(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Store.create(path, CRS, CENTRE)


def _ingest(run: DemoRun, store: Store, executor: Executor) -> None:
    from cim.analyze.prefab import declare
    from cim.cli.ingest import worker_modules
    from cim.jobs import run_job
    from ingest import IngestOptions, run_ingest

    paths = [run.data / f["path"] for f in run.manifest["files"] if f["kind"] != "declaration"]
    preload = worker_modules(paths)
    if executor.workers >= 2 and preload:
        executor.start(preload)
    for path in paths:
        args = {"path": str(path)}
        with (
            progress_bar(f"ingest {path.name}") as bar,
            run_job(store, "ingest", args, on_progress=bar) as job,
        ):
            report = run_ingest(store, path, IngestOptions(), executor, job.update, job.id)
            job.result = {"source_id": report.source_id, "outcome": report.outcome}
            job.message = report.message
        run.ingested[path.name] = report.outcome
        click.echo(f"  {report.message}", err=True)
    declaration = run.data / run.manifest["tower"]["declaration"]
    with store.transaction():
        declare(store, declaration)


def _analyze(run: DemoRun, store: Store, executor: Executor) -> None:
    from cim.analyze import ANALYZERS, run_analyzer
    from cim.jobs import run_job

    run.missing = [n for n in PLANNED_ANALYZERS if n not in ANALYZERS]
    for name in ANALYZERS:
        t0 = time.perf_counter()
        analyzer = ANALYZERS[name](store=store)
        with (
            progress_bar(f"analyze {name}") as bar,
            run_job(store, "analyze", {"analyzer": name}, on_progress=bar) as job,
        ):
            report = run_analyzer(
                store, analyzer, job_id=job.id, progress=job.update, executor=executor
            )
            job.result = {k: v for k, v in report.items() if k != "results"}
        if name == "indicators":
            from cim.cli.indicators_report import with_boundaries

            with_boundaries(store, report)
        run.analyses[name] = report
        run.seconds_of[name] = time.perf_counter() - t0
    for name in run.missing:
        click.echo(f"  {name}: not built yet (no such analyzer): skipped", err=True)


def _tile(run: DemoRun, store: Store, executor: Executor) -> None:
    from cim.jobs import run_job
    from cim.tilefiles import TILESETS
    from tiles.build import build_tilesets

    names = list(TILESETS)
    with (
        progress_bar("tile") as bar,
        run_job(store, "tile", {"tilesets": names}, on_progress=bar) as job,
    ):
        run.tiles = build_tilesets(store, names, executor, job.update)
        job.result = run.tiles


def tower_result(store: Store, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The prefab analyzer's stored result for the generated tower (found by its name)."""
    from cim.model.analyses import stored

    name = manifest["tower"]["building"]
    row = store.con.execute("SELECT id FROM buildings WHERE name = ?", [name]).fetchone()
    if row is None:
        return None
    found = stored(store, "prefab").get(f"building:{row[0]}")
    return None if found is None else dict(found["result"])


def print_summary(console: Console, run: DemoRun, store: Store) -> None:
    """Each stage's time, the counts, the tower's assembly rate and the indicators."""
    from cim.status import status_document

    times = Table("stage", "seconds", "what it did", title="cim demo")
    outcomes: dict[str, int] = {}
    for outcome in run.ingested.values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    did = {
        "generate": f"{len(run.manifest['files'])} files in {run.data}",
        "ingest": ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())),
        "analyze": "; ".join(
            f"{n}: {r['computed']} computed, {r['unchanged']} unchanged "
            f"({run.seconds_of.get(n, 0.0):.1f} s)"
            for n, r in run.analyses.items()
        )
        + "".join(f"; {n}: missing" for n in run.missing),
        "tile": "; ".join(_tileset_line(n, t) for n, t in run.tiles.items()),
    }
    for stage, seconds in run.seconds.items():
        times.add_row(stage, f"{seconds:.1f}", did.get(stage, ""))
    times.add_row("total", f"{sum(run.seconds.values()):.1f}", "")
    console.print(times)
    counts = status_document(store)["counts"]
    console.print("store: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    _print_tower(console, run, store)
    if "indicators" in run.analyses:
        from cim.cli.indicators_report import print_indicators

        print_indicators(console, run.analyses["indicators"])
    else:
        console.print("indicators (城市体检): missing: the analyzer is not built yet")


def _tileset_line(name: str, t: dict[str, Any]) -> str:
    if "skipped" in t:
        return f"{name}: skipped ({t['skipped']})"
    return f"{name}: {t['tiles']} tiles ({t['files_written']} written, {t['files_reused']} kept)"


def _print_tower(console: Console, run: DemoRun, store: Store) -> None:
    tower = run.manifest["tower"]
    result = tower_result(store, run.manifest)
    if result is None:
        console.print(f"[red]{tower['building']}: no prefab result[/]")
        return
    rate, grade = result.get("rate"), result.get("grade")
    agrees = "as built" if rate == tower["assembly_rate"] else "[red]the generator says "
    agrees += "" if rate == tower["assembly_rate"] else f"{tower['assembly_rate']}%[/]"
    console.print(
        f"{tower['building']}: assembly rate (装配率) {rate}%, grade {grade or '-'} ({agrees})"
    )


__all__ = ["DemoRun", "demo", "run_pipeline", "tower_result"]
