"""`cim ingest`: IFC, LAS/LAZ and GIS files into the store, one job per file.

What the command knows of the ingesters (which modules their workers run, the values an option
takes) comes from the registry (``ingest.registry()``), read when a command needs it: the
ingesters import ifcopenshell, laspy, GDAL's bindings and SciPy, which `cim --help` should not
wait for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import click

from cim.cli.base import (
    cli_hint,
    cluster_option,
    debugging,
    emit_json,
    json_option,
    open_store,
    progress_bar,
    workers_option,
)
from cim.errors import CimError

if TYPE_CHECKING:
    from ingest.base import IngestFailureJson, IngestReportJson


class IngestDocument(TypedDict):
    """What `cim ingest --json` prints (``schemas/ingest.schema.json``): one report a file."""

    reports: list[IngestReportJson | IngestFailureJson]


class IngesterChoice(click.Choice[str]):
    """The values an ingester option takes (the ``choices`` of the ingesters that take it),
    read from the registry the first time they are needed: when the option is given, or for
    `cim ingest --help`."""

    _choices: tuple[str, ...]

    def __init__(self, option: str) -> None:
        super().__init__((), case_sensitive=True)
        self.option = option

    @property
    def choices(self) -> tuple[str, ...]:
        if not self._choices:
            from ingest import registry

            values = (v for ing in registry() for v in ing.choices.get(self.option, ()))
            self._choices = tuple(dict.fromkeys(values))
        return self._choices

    @choices.setter
    def choices(self, values: tuple[str, ...]) -> None:
        self._choices = values


def worker_modules(paths: Sequence[Path]) -> list[str]:
    """The modules the executor's workers run for these files, by the kind each file is (read
    from its first bytes, as the ingest will: a LAZ named ``.bin`` is a LiDAR cloud)."""
    from ingest import choose_ingester

    modules: dict[str, None] = {}
    for path in paths:
        try:
            module = choose_ingester(path).worker_module
        except (CimError, OSError):
            continue  # the ingest of this file will say what is wrong with it
        if module:
            modules[module] = None
    return list(modules)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--crs", help="CRS of the files, overriding what they say (EPSG code, WKT, or GCJ02)."
)
@click.option("--layer", help="GIS: the one layer to read (default: every layer).")
@click.option(
    "--role",
    type=IngesterChoice("role"),
    help="GIS: what the layer is (default: guessed from its name and fields, and reported).",
)
@click.option("--anchor", help="IFC: LON,LAT[,ELEV[,ROTATION_DEG]] placing the model's origin.")
@cluster_option
@workers_option
@json_option("Print the reports as one JSON document.")
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
    reports: list[IngestReportJson | IngestFailureJson] = []
    errors: list[CimError] = []
    executor = get_executor(cluster, workers)
    # IFC models are meshed by the workers, large point clouds encoded by them: let them start
    # and import the ingester while this process opens the store and reads
    preload = worker_modules(paths)
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
                    if debugging(ctx):
                        raise
                    errors.append(exc)
                    click.echo(f"error: {exc}{cli_hint(exc)}", err=True)
                    reports.append({"path": str(path), "outcome": "failed", "error": str(exc)})
                    continue
                reports.append(report.as_json())
                if not as_json:
                    click.echo(report.message)
                    for w in report.warnings:
                        click.echo(f"  warning: {w}", err=True)
                    if report.status == "needs_placement":
                        click.echo(
                            f"  run `cim place {report.source_id} "
                            f"--anchor LON,LAT[,ELEV[,ROTATION]]`",
                            err=True,
                        )
    finally:
        executor.close()
    if as_json:
        doc: IngestDocument = {"reports": reports}
        emit_json(doc)
    if errors:
        ctx.exit(errors[0].exit_code)
