from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from cim.errors import InputFileError
from cim.jobs import list_jobs, run_job
from cim.store import Store


def _crash_midway(path: str) -> None:
    """A job that writes part of its work in its transaction, then its process dies."""
    store = Store.open(path)
    with run_job(store, "ingest", {"path": "big.ifc"}) as job:
        job.update(0.4, "halfway")
        store.con.execute("BEGIN TRANSACTION")
        store.con.execute(
            "INSERT INTO sources (path, name, kind, sha256, size_bytes, status) "
            "VALUES ('/big.ifc', 'big.ifc', 'ifc', 'abc', 1, 'ingested')"
        )
        job.update(0.5, "still going")
        os._exit(9)  # killed: no rollback, no finally, no job update


def test_dead_job_is_marked_failed_and_its_work_invisible(store_path: Path) -> None:
    Store.create(store_path).close()
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_crash_midway, args=(str(store_path),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    with Store.open(store_path) as store:
        [job] = list_jobs(store)
        assert job.status == "failed"
        assert "died" in (job.error or "")
        assert job.progress == pytest.approx(0.4)  # last committed progress
        assert store.sources() == []  # the uncommitted work is gone


def test_job_records_done_and_failed(store: Store) -> None:
    seen: list[float] = []
    with run_job(store, "ingest", {"path": "a"}, on_progress=lambda f, m: seen.append(f)) as job:
        job.update(0.5, "half")
        job.result = {"ok": True}
    with pytest.raises(InputFileError), run_job(store, "ingest", {"path": "b"}):
        raise InputFileError("b: corrupt")
    failed, done = list_jobs(store)
    assert done.status == "done" and done.progress == 1.0 and done.result == {"ok": True}
    assert failed.status == "failed" and failed.error == "b: corrupt"
    assert seen == [0.5]


def test_running_job_of_a_live_process_is_left_alone(store_path: Path) -> None:
    from cim.jobs import recover_dead_jobs

    with Store.create(store_path) as store, run_job(store, "tile", {}):
        assert recover_dead_jobs(store) == []
        assert list_jobs(store)[0].status == "running"
