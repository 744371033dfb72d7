"""The ``cim`` command line: the operator's contract (see DESIGN.md, "The command line").

One module a command; ``base`` holds what they share (the group, its error translation, the
store, the shared options). Commands import what they need when they run, so that `cim --help`
stays fast.
"""

from __future__ import annotations

from cim.cli import analyze, demo, ingest, init, jobs, place, serve, status, tile, token
from cim.cli.base import cli

cli.add_command(init.init)
cli.add_command(status.status)
cli.add_command(jobs.jobs)
cli.add_command(ingest.ingest)
cli.add_command(place.place)
cli.add_command(analyze.analyze)
cli.add_command(tile.tile)
cli.add_command(tile.export_tiles)
cli.add_command(serve.serve)
cli.add_command(token.token)
cli.add_command(demo.demo)

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="cim")
