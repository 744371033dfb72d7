"""`cim tile` and `cim export-tiles`: the store's 3D Tiles, built beside it or copied out."""

from __future__ import annotations

from pathlib import Path

import click

from cim.cli.base import (
    cluster_option,
    emit_json,
    json_option,
    open_store,
    progress_bar,
    workers_option,
)
from cim.tilefiles import TILESETS


@click.command()
@click.option(
    "--tileset",
    "which",
    type=click.Choice([*TILESETS, "all"]),
    default="all",
    show_default=True,
    help="Which tileset to (re)build.",
)
@cluster_option
@workers_option
@json_option("Print each tileset's figures as one JSON document.")
@click.pass_context
def tile(
    ctx: click.Context, which: str, cluster: str | None, workers: int | None, as_json: bool
) -> None:
    """(Re)build the 3D Tiles beside the store (buildings, BIM models, point clouds, PV facets).

    Tiles whose inputs did not change are kept as they are; each tileset is one transaction
    and is published only when it passes its structural checks.
    """
    from cim.executor import get_executor
    from cim.jobs import run_job
    from tiles.build import build_tilesets

    names = list(TILESETS) if which == "all" else [which]
    executor = get_executor(cluster, workers)
    try:
        with (
            open_store(ctx) as store,
            progress_bar("tile", enabled=not as_json) as bar,
            run_job(store, "tile", {"tilesets": names}, on_progress=bar) as job,
        ):
            report = build_tilesets(store, names, executor, job.update)
            job.result = report
    finally:
        executor.close()
    if as_json:
        emit_json({"tilesets": report})
        return
    folder = f"{store.path}.tiles"
    for name, r in report.items():
        if "skipped" in r:
            click.echo(f"{name}: skipped ({r['skipped']})")
            continue
        click.echo(
            f"{name}: {r['tiles']:,} tiles, {r['bytes'] / 1e6:,.1f} MB "
            f"({r['files_written']:,} written, {r['files_reused']:,} unchanged) in "
            f"{r['seconds']:.1f} s -> {folder}/{name}/tileset.json"
        )


@click.command("export-tiles")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@json_option("Print what was exported as JSON.")
@click.pass_context
def export_tiles(ctx: click.Context, dest: Path, as_json: bool) -> None:
    """Copy the current tiles to DEST (one folder per tileset) for a static server or CDN."""
    from cim.tilefiles import export_tiles as export

    with open_store(ctx) as store:
        done = export(store.con, store.path, dest)
    if as_json:
        emit_json({"exported": done})
        return
    for t in done:
        click.echo(
            f"{t['name']}: generation {t['generation']}, {t['files']} files, "
            f"{t['bytes'] / 1e6:,.1f} MB -> {dest / t['name']}"
        )
