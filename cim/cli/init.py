"""`cim init`: a new store in a project CRS."""

from __future__ import annotations

import click

from cim.cli.base import store_file
from cim.crs import DEFAULT_PROJECT_CRS
from cim.errors import UsageError
from cim.store import Store


@click.command()
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
    store = Store.create(store_file(ctx), crs, lonlat)
    with store:
        click.echo(
            f"created {store.path} (schema {store.schema_version}, project CRS {store.crs_label})"
        )
