"""What a running server holds: the store (it owns it while it runs), one writer thread for the
jobs that change it, the executor for their CPU work, and the settings.

DuckDB lets one process write a store. The server opens it once; every request reads through its
own cursor (a connection of its own to the same database: it sees committed data only, so a
reader never sees half an upload), and everything that writes (uploads, re-tiling) is a job run
one at a time on the writer thread. A request's reads run in one transaction on its cursor: they
all see the store as it was when the request began, never part of a job's commit.

While it runs the server publishes ``<store>.serve.json``: its pid and address, and the store's
status document, written at start and after each job. Another `cim` command that wants to write
is told which server holds the store and which API to use; `cim status` prints that document and
`cim jobs` the jobs mirror.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyproj import CRS

from cim.connection import serve_file_of
from cim.errors import CimError
from cim.executor import Executor
from cim.jobs import queue_job, run_job
from cim.pipeline import Pipeline
from cim.processes import process_started
from cim.status import status_document
from cim.store import Store

log = logging.getLogger(__name__)

__all__ = ["FailedSignIns", "ServerState", "Settings", "TooManyAttempts", "serve_file_of"]


class TooManyAttempts(CimError):
    http_status = 429
    code = "too_many_attempts"


@dataclass
class FailedSignIns:
    """Failed sign-ins per client: after ``limit`` within ``window`` seconds, 429 until the
    oldest of them is older than the window. Held by the server (not the module), so two apps
    in one process count apart."""

    limit: int = 10
    window: float = 60.0
    _seen: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(client)
            while seen and now - seen[0] > self.window:
                seen.popleft()
            if seen is not None and not seen:
                del self._seen[client]
            elif seen is not None and len(seen) >= self.limit:
                wait = max(1, round(self.window - (now - seen[0])))
                raise TooManyAttempts(
                    f"too many failed sign-ins from {client}: try again in {wait} s"
                )

    def failed(self, client: str) -> None:
        with self._lock:
            self._seen.setdefault(client, deque()).append(time.monotonic())


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
    failures: FailedSignIns = field(default_factory=FailedSignIns)
    _writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="cim-writer")
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _published: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # the connection requests make their cursors from: never the writer's own connection,
        # which the writer thread may be using at that moment
        self._root = self.store.con.cursor()
        # read once, here: ``Store.crs`` and ``project_origin`` are read lazily from ``meta``
        # on the writer's connection, which a request thread must never touch (a query there
        # while a job runs on it answered a request with "no crs_wkt in meta")
        self.crs: CRS = self.store.crs
        self.origin: tuple[float, float] = self.store.project_origin

    @property
    def uploads_dir(self) -> Path:
        folder = self.store.path.with_name(self.store.path.name + ".uploads")
        folder.mkdir(exist_ok=True)
        return folder

    @contextlib.contextmanager
    def reader(self) -> Iterator[Store]:
        """A read-only view of the store on a cursor of its own (one per request)."""
        with self._lock:
            cur = self._root.cursor()
        try:
            # one snapshot for the whole request: a count and its page agree, and a job that
            # commits meanwhile is seen entirely by the next request, not half by this one
            cur.execute("BEGIN TRANSACTION")
            yield Store(cur, self.store.path)
        finally:
            cur.close()  # (closing ends the read-only transaction)

    def submit(
        self,
        kind: str,
        args: dict[str, Any],
        work: Callable[[Any], Any],
        token_id: int | None = None,
    ) -> int:
        """Queue a job that changes the store; it runs on the writer thread. Returns its id."""
        with self._lock:
            job_id = queue_job(Store(self._root, self.store.path), kind, args, token_id)

        def run() -> None:
            try:
                with run_job(self.store, kind, args, queued=job_id) as job:
                    job.result = work(job)
            except BaseException:
                log.warning("job %s (%s) failed", job_id, kind, exc_info=True)
            finally:
                self.republish()

        future: Future[None] = self._writer.submit(run)
        del future
        return job_id

    def publish(self, url: str) -> None:
        """Say beside the store that this process serves it, with the store's status document
        (``republish`` after each job; removed by ``close``)."""
        self.settings.url = url
        self._published = {
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "url": url,
        }
        self.republish()

    def republish(self) -> None:
        """Write ``<store>.serve.json`` again with the status as of now (after a job)."""
        if self._published is None:
            return
        try:
            with self.reader() as store:
                status = status_document(
                    store, self.pipeline.analyses_state if self.pipeline else None
                )
            doc = {
                **self._published,
                "published_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "status": status,
            }
            target = serve_file_of(self.store.path)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc, default=str))
            tmp.replace(target)
        except Exception:  # the status beside the store is a courtesy: never fail a job on it
            log.warning("cannot write %s", serve_file_of(self.store.path), exc_info=True)

    def close(self) -> None:
        self._writer.shutdown(wait=True, cancel_futures=True)
        if self._published is not None:
            with contextlib.suppress(OSError):
                serve_file_of(self.store.path).unlink()
        self._root.close()
        if self.executor is not None:
            self.executor.close()
        self.store.close()
