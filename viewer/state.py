"""What a running server holds: the store (it owns it while it runs), one writer thread for the
jobs that change it, the executor for their CPU work, and the settings.

DuckDB lets one process write a store. The server opens it once; every request reads through its
own cursor (a connection of its own to the same database: it sees committed data only, so a
reader never sees half an upload), and everything that writes (uploads, re-tiling) is a job run
one at a time on the writer thread. While it runs the server publishes ``<store>.serve.json``
(pid, address), so another `cim` command that wants to write is told which server holds the
store and which API to use, and `cim status` / `cim jobs` read the jobs mirror.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cim.executor import Executor
from cim.jobs import queue_job, run_job
from cim.pipeline import Pipeline
from cim.processes import process_started
from cim.store import Store

log = logging.getLogger(__name__)


def serve_file_of(store_path: Path) -> Path:
    """Where a running server says it holds the store: ``<store>.serve.json``."""
    return store_path.with_name(store_path.name + ".serve.json")


@dataclass
class Settings:
    private: bool = False  # reading needs a token too
    max_upload_bytes: int = 512 * 1024 * 1024
    url: str = ""


@dataclass
class ServerState:
    store: Store
    pipeline: Pipeline | None
    executor: Executor | None
    settings: Settings = field(default_factory=Settings)
    _writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="cim-writer")
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def uploads_dir(self) -> Path:
        folder = self.store.path.with_name(self.store.path.name + ".uploads")
        folder.mkdir(exist_ok=True)
        return folder

    @contextlib.contextmanager
    def reader(self) -> Iterator[Store]:
        """A read-only view of the store on a cursor of its own (one per request)."""
        with self._lock:
            cur = self.store.con.cursor()
        view = Store(cur, self.store.path)
        try:
            yield view
        finally:
            cur.close()

    def submit(
        self,
        kind: str,
        args: dict[str, Any],
        work: Callable[[Any], Any],
        token_id: int | None = None,
    ) -> int:
        """Queue a job that changes the store; it runs on the writer thread. Returns its id."""
        with self._lock:
            job_id = queue_job(self.store, kind, args, token_id)

        def run() -> None:
            try:
                with run_job(self.store, kind, args, queued=job_id) as job:
                    job.result = work(job)
            except BaseException:
                log.warning("job %s (%s) failed", job_id, kind, exc_info=True)

        future: Future[None] = self._writer.submit(run)
        del future
        return job_id

    def publish(self, url: str) -> None:
        """Say beside the store that this process serves it (removed by ``close``)."""
        self.settings.url = url
        doc = {"pid": os.getpid(), "pid_started": process_started(os.getpid()), "url": url}
        target = serve_file_of(self.store.path)
        tmp = target.with_name("." + target.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(target)

    def close(self) -> None:
        self._writer.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(OSError):
            serve_file_of(self.store.path).unlink()
        if self.executor is not None:
            self.executor.close()
        self.store.close()
