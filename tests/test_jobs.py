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
    with Store.create(store_path) as store, run_job(store, "tile", {}):
        assert store.recover_dead_jobs() == []
        assert list_jobs(store)[0].status == "running"


def test_running_job_progress_is_readable_while_the_store_is_locked(store_path: Path) -> None:
    import json
    import subprocess
    import sys

    Store.create(store_path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from cim.store import Store; from cim.jobs import run_job\n"
            "s = Store.open(sys.argv[1])\n"
            "with run_job(s, 'ingest', {'path': 'big.laz'}) as job:\n"
            "    job.update(0.3, 'decoding'); print('ready', flush=True); time.sleep(30)\n",
            str(store_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        r = subprocess.run(
            [sys.executable, "-m", "cim.cli", "--store", str(store_path), "jobs", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["store_busy"] is True
        [job] = doc["jobs"]
        assert job["kind"] == "ingest" and job["status"] == "running"
        assert job["progress"] == pytest.approx(0.3) and job["message"] == "decoding"
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its mirror now says so, and opening the store marks the job failed
    r = subprocess.run(
        [sys.executable, "-m", "cim.cli", "--store", str(store_path), "jobs", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    [job] = json.loads(r.stdout)["jobs"]
    assert job["status"] == "failed"
    from cim.store import jobs_dir_of

    assert not list(jobs_dir_of(store_path).glob("*.json"))  # recovery removed the mirror


def test_killed_ingest_leaves_nothing_and_its_job_is_failed(store_path: Path) -> None:
    """A real `cim ingest` killed mid-way: no source, no rows, and the job is marked failed."""
    import signal
    import subprocess
    import sys
    import time

    from cim.jobs import live_jobs
    from tests.conftest import SAMPLES

    Store.create(store_path, "EPSG:26916").close()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cim.cli",
            "--store",
            str(store_path),
            "ingest",
            str(SAMPLES / "ifc" / "duplex.ifc"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = live_jobs(store_path)
            if live and live[0]["progress"] >= 0.1:  # past reading, into the geometry
                break
            if proc.poll() is not None:
                pytest.fail("the ingest finished before it could be killed")
            time.sleep(0.02)
        else:
            pytest.fail("the ingest never reported progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Store.open(store_path) as store:
        [job] = list_jobs(store)
        assert job.status == "failed" and "died" in (job.error or "")
        assert store.sources() == []
        for table in store.tables_with_source_id():
            assert store.count(table) == 0, table
