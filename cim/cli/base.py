"""What every ``cim`` command shares: the group and its error translation, the store, the
shared options, JSON output and the progress bar.

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
from typing import Any, NoReturn, TypeVar

import click
import duckdb
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from cim import __version__
from cim.errors import CimError, IngestError, SourceNotFound, StoreLocked
from cim.store import Store

err_console = Console(stderr=True)
out_console = Console()

F = TypeVar("F", bound=Callable[..., Any])


def default_store_path() -> Path:
    return Path(os.environ.get("CIM_STORE") or "cim.duckdb")


#: what the command line adds to an error of these kinds: the command that helps. The library's
#: messages describe the problem; only the command line knows its own commands.
CLI_HINTS: dict[type[CimError], str] = {
    StoreLocked: "`cim jobs` shows its progress",
    SourceNotFound: "`cim status` lists the sources",
    IngestError: "run with --debug for the traceback",
}


def cli_hint(exc: CimError) -> str:
    """``; <hint>`` for an error whose kind has one (see ``CLI_HINTS``), else nothing."""
    hint = next((CLI_HINTS[c] for c in type(exc).__mro__ if c in CLI_HINTS), None)
    return f"; {hint}" if hint else ""


class CimGroup(click.Group):
    """Translates CimError into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CimError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}{cli_hint(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except (KeyboardInterrupt, duckdb.InterruptException):
            # (DuckDB turns a Ctrl-C during a query into its own exception)
            self._interrupted(ctx)
        except RuntimeError as exc:
            if str(exc) != "Query interrupted":  # what DuckDB raises for a Ctrl-C in a LOAD
                raise
            self._interrupted(ctx)

    @staticmethod
    def _interrupted(ctx: click.Context) -> NoReturn:
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


def store_file(ctx: click.Context) -> Path:
    """The store the command works on (``--store``, else $CIM_STORE, else ./cim.duckdb)."""
    path: Path = ctx.obj["store_path"]
    return path


def debugging(ctx: click.Context) -> bool:
    """Whether ``--debug`` was given: errors then raise, with their traceback."""
    return bool(ctx.obj["debug"])


def open_store(ctx: click.Context) -> Store:
    return Store.open(store_file(ctx))


def json_option(help: str) -> Callable[[F], F]:
    """``--json`` (the parameter ``as_json``): print one JSON document (``emit_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def emit_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


#: ``--cluster`` (the parameter ``cluster``): where the work items run (cim.executor)
cluster_option = click.option(
    "--cluster", envvar="CIM_CLUSTER", help="Dask scheduler address (tcp://host:8786)."
)
#: ``--workers`` (the parameter ``workers``): the size of the local pool
workers_option = click.option(
    "--workers", type=int, help="Local worker processes (default: one per core)."
)


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
