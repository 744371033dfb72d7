"""`cim place`: put an IFC model on the map (or move it) without reading its file again."""

from __future__ import annotations

import click

from cim.cli.base import emit_json, json_option, open_store


@click.command()
@click.argument("source")
@click.option(
    "--anchor",
    required=True,
    help="LON,LAT[,ELEV[,ROTATION_DEG]]: where the model's origin goes, and its rotation "
    "(counter-clockwise, degrees) from east/north.",
)
@json_option("Print the outcome as JSON.")
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
