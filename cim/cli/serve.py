"""`cim serve`: the one map (FastAPI + CesiumJS) over the store, which it holds while it runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cim.cli.base import cluster_option, open_store, workers_option

if TYPE_CHECKING:
    from cim.executor import Executor
    from cim.pipeline import Progress
    from cim.store import Store


class CliPipeline:
    """The layers a server may not import, handed to it by the command line (cim.pipeline)."""

    def ingest(
        self,
        store: Store,
        path: Path,
        executor: Executor,
        progress: Progress,
        job_id: int,
        replaces: int | None = None,
    ) -> dict[str, Any]:
        from ingest import IngestOptions, run_ingest

        report = run_ingest(store, path, IngestOptions(), executor, progress, job_id, replaces)
        out: dict[str, Any] = dict(report.as_json())
        return out

    def tile(
        self, store: Store, names: Sequence[str], executor: Executor, progress: Progress
    ) -> dict[str, Any]:
        from tiles.build import build_tilesets

        return build_tilesets(store, names, executor, progress)

    def analyze(
        self,
        store: Store,
        progress: Progress,
        job_id: int,
        declaration: Path | None = None,
        source_id: int | None = None,
        executor: Executor | None = None,
    ) -> dict[str, Any]:
        from cim.analyze import ANALYZERS, run_analyzer
        from cim.analyze.prefab import declare, read_declaration

        if declaration is not None:
            named = read_declaration(declaration).get("building") is not None
            rows = store.con.execute(
                "SELECT id FROM buildings WHERE source_id = ? ORDER BY id", [source_id]
            ).fetchall()
            with store.transaction():
                for building in [None] if named or not rows else [int(r[0]) for r in rows]:
                    declare(store, declaration, building)
        out: dict[str, Any] = {}
        names = list(ANALYZERS)
        for i, name in enumerate(names):

            def step(f: float | None, m: str | None, i: int = i) -> None:
                progress(None if f is None else (i + f) / len(names), m)

            analyzer = ANALYZERS[name](store=store)
            report = run_analyzer(store, analyzer, job_id=job_id, progress=step, executor=executor)
            out[name] = {k: v for k, v in report.items() if k not in ("results", "city")}
        return out

    def check_declaration(self, path: Path) -> None:
        from cim.analyze.prefab import read_declaration

        read_declaration(path)

    def fingerprints(self, store: Store, analyzer: str) -> dict[str, str]:
        from cim.analyze import ANALYZERS

        return {s.key: s.fingerprint for s in ANALYZERS[analyzer](store=store).subjects(store)}

    def analyses_state(self, store: Store) -> dict[str, dict[str, int]]:
        from cim.cli.status import analyses_state

        return analyses_state(store)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--private", is_flag=True, help="Reading the map needs a token too.")
@click.option(
    "--max-upload-mb", default=512, show_default=True, type=int, help="Largest upload accepted."
)
@cluster_option
@workers_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    private: bool,
    max_upload_mb: int,
    cluster: str | None,
    workers: int | None,
) -> None:
    """Serve the one map at http://HOST:PORT: the page, the API (/docs) and the 3D Tiles.

    The server holds the store while it runs: uploads and re-tiling are jobs inside it, and
    other `cim` commands that write are told to use its API. Ctrl-C stops it.
    """
    from cim.executor import get_executor

    store = open_store(ctx)
    run_server(
        store,
        get_executor(cluster, workers),
        host=host,
        port=port,
        private=private,
        max_upload_bytes=max_upload_mb << 20,
    )


def run_server(
    store: Store,
    executor: Executor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    private: bool = False,
    max_upload_bytes: int = 512 << 20,
) -> None:
    """Serve the one map over ``store`` (which the server owns and closes) until Ctrl-C."""
    import uvicorn

    from viewer.app import create_app
    from viewer.http import CoalescingHttpToolsProtocol
    from viewer.state import ServerState, Settings

    state = ServerState(
        store=store,
        pipeline=CliPipeline(),
        executor=executor,
        settings=Settings(private=private, max_upload_bytes=max_upload_bytes),
    )
    url = f"http://{host}:{port}"
    state.publish(url)
    app = create_app(state)
    click.echo(f"serving {store.path} at {url} (API docs: {url}/docs); Ctrl-C stops", err=True)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            http=CoalescingHttpToolsProtocol,
        )
    finally:
        state.close()  # waits for the running job; then the store is free again
