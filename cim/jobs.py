"""Jobs: every long command is a row in ``jobs`` with status, progress and its outcome.

Job rows are written through a second connection to the same database, so progress is committed
and visible while the job's own work sits in an open transaction on the writer connection. If the
process dies, that transaction is never committed (the work is invisible) and the next process that
opens the store for writing finds the job's pid gone and marks it failed.

DuckDB lets one process hold a store, so while a job runs, `cim jobs` from another terminal cannot
open it. Running jobs therefore also mirror their progress to a small JSON file beside the store
(``<store>.jobs/<id>.json``, replaced atomically, removed when the job ends); `cim jobs` and
`cim status` show those when the store is busy.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from cim.errors import CimError
from cim.processes import alive, process_started
from cim.store import jobs_dir_of

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str | None], None]


class JobFields(TypedDict):
    """What a job has as JSON, whether read from the store or from beside it
    (``schemas/jobs.schema.json``, ``$defs/job``)."""

    id: int
    kind: str
    args: dict[str, Any]
    status: str
    progress: float
    message: str | None


class JobJson(JobFields):
    """A job row as JSON."""

    error: str | None
    result: Any
    pid: int | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class LiveJob(JobFields):
    """A running job as mirrored beside the store (``<store>.jobs/<id>.json``), with the
    status ``failed`` and an ``error`` when its process is gone."""

    pid: int
    pid_started: float | None
    started_at: str
    error: NotRequired[str]


class JobsDocument(TypedDict):
    """What `cim jobs --json` prints (``schemas/jobs.schema.json``): the jobs of the store, or
    when another process holds it (``store_busy``), the running jobs mirrored beside it."""

    jobs: list[JobJson] | list[LiveJob]
    store_busy: NotRequired[bool]


def live_jobs(store_path: Path) -> list[LiveJob]:
    """Running jobs as mirrored beside the store (readable while another process holds it)."""
    folder = jobs_dir_of(store_path)
    out: list[LiveJob] = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc: LiveJob = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if alive(doc.get("pid"), doc.get("pid_started")):
            out.append(doc)
        else:
            doc["status"] = "failed"
            doc["error"] = "the process running this job died before it finished"
            out.append(doc)
    return sorted(out, key=lambda d: -int(d.get("id", 0)))


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    args: dict[str, Any]
    status: str
    progress: float
    message: str | None
    error: str | None
    result: Any
    pid: int | None
    created_at: _dt.datetime
    started_at: _dt.datetime | None
    finished_at: _dt.datetime | None

    def as_json(self) -> JobJson:
        def iso(t: _dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "id": self.id,
            "kind": self.kind,
            "args": self.args,
            "status": self.status,
            "progress": self.progress,
            "message": self.message,
            "error": self.error,
            "result": self.result,
            "pid": self.pid,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


def list_jobs(store: Store, limit: int | None = None) -> list[JobRow]:
    sql = (
        "SELECT id, kind, args, status, progress, message, error, result, pid, created_at, "
        "started_at, finished_at FROM jobs ORDER BY id DESC"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    out = []
    for r in store.con.execute(sql).fetchall():
        out.append(
            JobRow(
                id=r[0],
                kind=r[1],
                args=json.loads(r[2]) if r[2] else {},
                status=r[3],
                progress=r[4],
                message=r[5],
                error=r[6],
                result=json.loads(r[7]) if r[7] else None,
                pid=r[8],
                created_at=r[9],
                started_at=r[10],
                finished_at=r[11],
            )
        )
    return out


class Job:
    """A running job. ``update(fraction, message)`` records progress (throttled)."""

    def __init__(
        self,
        store: Store,
        job_id: int,
        kind: str = "",
        args: dict[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        min_interval: float = 0.25,
    ) -> None:
        self.store = store
        self.id = job_id
        self.kind = kind
        self.args = args or {}
        self.started_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self._cur = store.con.cursor()  # own connection: commits independently of the work
        self._on_progress = on_progress
        self._min_interval = min_interval
        self._last_write = 0.0
        self.progress = 0.0
        self.message: str | None = None
        #: JSON-able outcome recorded with the job when it finishes
        self.result: Any = None

    def update(self, fraction: float | None = None, message: str | None = None) -> None:
        if fraction is not None:
            self.progress = min(1.0, max(0.0, float(fraction)))
        if message is not None:
            self.message = message
        if self._on_progress is not None:
            self._on_progress(self.progress, self.message)
        now = time.monotonic()
        if now - self._last_write >= self._min_interval or self.progress >= 1.0:
            self._last_write = now
            self._cur.execute(
                "UPDATE jobs SET progress = ?, message = ? WHERE id = ?",
                [self.progress, self.message, self.id],
            )
            self._mirror()

    def _mirror(self) -> None:
        doc: LiveJob = {
            "id": self.id,
            "kind": self.kind,
            "args": self.args,
            "status": "running",
            "progress": self.progress,
            "message": self.message,
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "started_at": self.started_at,
        }
        folder = jobs_dir_of(self.store.path)
        try:
            folder.mkdir(exist_ok=True)
            tmp = folder / f".{self.id}.json.tmp"
            tmp.write_text(json.dumps(doc))
            tmp.replace(folder / f"{self.id}.json")
        except OSError:  # a read-only folder only costs the live view
            log.debug("cannot write live progress of job %s", self.id, exc_info=True)

    def _finish(self, status: str, error: str | None, result: Any) -> None:
        with contextlib.suppress(OSError):
            (jobs_dir_of(self.store.path) / f"{self.id}.json").unlink()
        self._cur.execute(
            "UPDATE jobs SET status = ?, error = ?, result = ?, finished_at = current_timestamp, "
            "progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END, message = ? WHERE id = ?",
            [
                status,
                error,
                json.dumps(result) if result is not None else None,
                status,
                self.message,
                self.id,
            ],
        )
        self._cur.close()


def queue_job(store: Store, kind: str, args: dict[str, Any], token_id: int | None = None) -> int:
    """A job row waiting its turn (a server's job queue); ``run_job(..., queued=id)`` runs it.
    A queued job of a process that died is marked failed at the next open, like a running one."""
    pid = os.getpid()
    cur = store.con.cursor()
    try:
        row = cur.execute(
            "INSERT INTO jobs (kind, args, status, pid, pid_started, host, token_id) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?) RETURNING id",
            [kind, json.dumps(args), pid, process_started(pid), socket.gethostname(), token_id],
        ).fetchone()
    finally:
        cur.close()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def run_job(
    store: Store,
    kind: str,
    args: dict[str, Any],
    on_progress: ProgressCallback | None = None,
    queued: int | None = None,
) -> Iterator[Job]:
    """Create a running job row (or start the ``queued`` one), yield it, then mark it done or
    failed (and re-raise)."""
    pid = os.getpid()
    cur = store.con.cursor()
    if queued is None:
        row = cur.execute(
            "INSERT INTO jobs (kind, args, status, pid, pid_started, host, started_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, current_timestamp) RETURNING id",
            [kind, json.dumps(args), pid, process_started(pid), socket.gethostname()],
        ).fetchone()
    else:
        row = cur.execute(
            "UPDATE jobs SET status = 'running', started_at = current_timestamp WHERE id = ? "
            "RETURNING id",
            [queued],
        ).fetchone()
    cur.close()
    assert row is not None
    job = Job(store, int(row[0]), kind, args, on_progress)
    job._mirror()
    try:
        yield job
    except CimError as exc:
        job._finish("failed", str(exc), None)
        raise
    except KeyboardInterrupt:
        job._finish("failed", "interrupted (Ctrl-C): nothing of it was kept", None)
        raise
    except BaseException as exc:
        job._finish("failed", f"{type(exc).__name__}: {exc}", None)
        raise
    job._finish("done", None, job.result)
