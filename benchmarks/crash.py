"""kill -9 anywhere: `cim ingest` killed with SIGKILL at a random moment, then the store checked.

For each kind (an IFC model, a LAZ cloud, a GIS layer, all samples), a store is prepared once
(with other sources already in it, so that a rollback has something to keep), and its content
snapshotted. Then, ``--runs`` times: a fresh copy of that store, the real CLI started as a
subprocess (`cim --store S ingest FILE`, its own session, the local executor's workers
included), SIGKILL sent to the `cim` process after a random delay within the ingest's measured
duration (from the moment its job starts, the command's imports done, to the moment a complete
ingest of the same file exits), and these checks:

* no process of the killed command is left (the executor's workers end by themselves) within
  ``--grace`` seconds;
* the store opens (``Store.open``: a dead job is marked failed, orphan point files removed);
* the ingest's job is ``failed`` (or ``done``: the kill came after the commit), or there is no
  job row yet (killed before it was written);
* every table equals the snapshot taken before the ingest, or, when the ingest committed, every
  table has the row counts of a completed ingest of the same file;
* every point file in ``<store>.points/`` is named in ``point_files`` and every one named
  exists; no progress mirror is left in ``<store>.jobs/``.

Prints one line a run with ``--verbose``, a line a kind (how many runs were rolled back,
completed, inconsistent; the kill delays) and ``N/N stores consistent``; exits 1 on any
inconsistency. Usage::

    .venv/bin/python benchmarks/crash.py                # 20 runs a kind
    .venv/bin/python benchmarks/crash.py --runs 2 --kinds lidar
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: tests.conftest's snapshot

from cim.store import Store, jobs_dir_of, points_dir_of  # noqa: E402
from tests.conftest import snapshot  # noqa: E402

SAMPLES = ROOT / "samples"
CIM = str(Path(sys.executable).with_name("cim"))


@dataclass(frozen=True)
class Case:
    """One kind: the store's CRS, what it holds before, the file whose ingest is killed."""

    crs: str
    before: tuple[tuple[str, ...], ...]  # `cim ingest` arguments, one tuple a command
    target: tuple[str, ...]


CASES = {
    "ifc": Case(
        "EPSG:4550",
        ((str(SAMPLES / "ifc" / "IfcOpenHouse.ifc"), "--anchor", "122.2650,43.6190,180,0"),),
        (str(SAMPLES / "ifc" / "duplex.ifc"), "--anchor", "122.2610,43.6200,180,0"),
    ),
    "lidar": Case(
        "EPSG:2154",
        tuple((str(p),) for p in sorted((SAMPLES / "lidar" / "lidarprod").glob("*.shp"))),
        tuple(str(p) for p in sorted((SAMPLES / "lidar" / "lidarprod").glob("*.laz"))),
    ),
    "gis": Case(
        "EPSG:32633",
        (),
        (str(SAMPLES / "gis" / "bubenec.gpkg"),),
    ),
}


@dataclass
class Tally:
    rolled_back: int = 0
    completed: int = 0
    bad: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)


def cim(store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CIM, "--store", str(store), *args], capture_output=True, text=True, check=check
    )


def copy_store(src: Path, dst: Path) -> None:
    """The store file and its folders (points, job mirrors), as a user would copy them."""
    shutil.copy2(src, dst)
    for folder in (points_dir_of, jobs_dir_of):
        if folder(src).is_dir():
            shutil.copytree(folder(src), folder(dst))


def remove_store(path: Path) -> None:
    path.unlink(missing_ok=True)
    for extra in (path.with_name(path.name + ".wal"), points_dir_of(path), jobs_dir_of(path)):
        if extra.is_dir():
            shutil.rmtree(extra)
        else:
            extra.unlink(missing_ok=True)


def counts(store: Store) -> dict[str, int]:
    """Rows a table (and view), from the same snapshot the rollback is compared on."""
    return {table: len(rows) for table, rows in snapshot(store).items()}  # type: ignore[arg-type]


def session_processes(sid: int) -> list[int]:
    """The processes still in the session the killed command led (its workers)."""
    left = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                left.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return left


def point_files_consistent(store: Store) -> str | None:
    folder = store.points_dir
    named = {r[0] for r in store.con.execute("SELECT file FROM point_files").fetchall()}
    present = (
        {f.relative_to(folder).as_posix() for f in folder.glob("source_id=*/*")}
        if folder.is_dir()
        else set()
    )
    if present - named:
        return f"orphan point files after open: {sorted(present - named)[:3]}"
    if named - present:
        return f"point files named but missing: {sorted(named - present)[:3]}"
    return None


@dataclass(frozen=True)
class Prepared:
    """A kind's template store, its snapshot, and the row counts and seconds of a complete
    ingest of the target."""

    template: Path
    last_job: int  # the template's last job: the killed ingest's job comes after it
    before: dict[str, object]
    complete: dict[str, int]
    job_start: float  # seconds from the command's start to its job's start
    seconds: float  # the whole command


def check(path: Path, prepared: Prepared) -> tuple[str, str]:
    """('rolled back' | 'completed' | 'inconsistent', detail) for a store after a kill."""
    try:
        store = Store.open(path)
    except Exception as exc:
        return "inconsistent", f"does not open: {type(exc).__name__}: {exc}"
    try:
        jobs = store.con.execute(
            "SELECT status FROM jobs WHERE id > ? ORDER BY id", [prepared.last_job]
        ).fetchall()
        if len(jobs) > 1:
            return "inconsistent", f"{len(jobs)} jobs for one command"
        job = jobs[0][0] if jobs else None
        files = point_files_consistent(store)
        if files:
            return "inconsistent", files
        mirrors = list(jobs_dir_of(path).glob("*.json")) if jobs_dir_of(path).is_dir() else []
        if mirrors:
            return "inconsistent", f"progress mirrors left: {[m.name for m in mirrors]}"
        if snapshot(store) == prepared.before:
            if job not in (None, "failed"):
                return "inconsistent", f"store unchanged but the job is {job!r}"
            return "rolled back", f"job {job}"
        now = counts(store)
        if job == "done" and now == prepared.complete:
            return "completed", "job done"
        complete = prepared.complete
        changed = {t: (complete.get(t), n) for t, n in now.items() if n != complete.get(t)}
        return "inconsistent", f"job {job}; tables differ from before and from complete: {changed}"
    finally:
        store.close()


def prepare(kind: str, case: Case, work: Path) -> Prepared:
    template = work / f"{kind}.duckdb"
    cim(template, "init", "--crs", case.crs)
    for args in case.before:
        cim(template, "ingest", *args)
    with Store.open(template) as store:
        before = snapshot(store)
        last_job = int(store.con.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()[0])
    trial = work / f"{kind}-complete.duckdb"
    copy_store(template, trial)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [CIM, "--store", str(trial), "ingest", *case.target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = None  # when the job's progress mirror appears: the command's imports are done
    while proc.poll() is None:
        if started is None and any(jobs_dir_of(trial).glob("*.json")):
            started = time.monotonic() - t0
        time.sleep(0.005)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind}: `cim ingest {' '.join(case.target)}` failed by itself")
    with Store.open(trial) as store:
        complete = counts(store)
    remove_store(trial)
    return Prepared(template, last_job, before, complete, started or 0.0, seconds)


def kill_run(
    prepared: Prepared, run: Path, case: Case, delay: float, grace: float
) -> tuple[str, str, bool]:
    """One ingest killed after ``delay`` seconds: (outcome, detail, workers all gone)."""
    copy_store(prepared.template, run)
    proc = subprocess.Popen(
        [CIM, "--store", str(run), "ingest", *case.target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=delay)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + grace
    while (left := session_processes(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # the test's own children, by id: never left running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if finished and proc.returncode != 0:
        return "inconsistent", f"the ingest failed by itself (exit {proc.returncode})", not left
    return (*check(run, prepared), not left)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="kills a kind (default 20)")
    parser.add_argument(
        "--kinds", default="ifc,lidar,gis", help="comma-separated, of ifc,lidar,gis"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed of the delays")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds workers may take")
    parser.add_argument("--verbose", action="store_true", help="a line a run")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # Store.open says it marked the dead job failed: expected
    rng = random.Random(args.seed)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    total = consistent = 0
    with tempfile.TemporaryDirectory(prefix="cim-crash-") as tmp:
        work = Path(tmp)
        for kind in kinds:
            case = CASES[kind]
            prepared = prepare(kind, case, work)
            tally = Tally()
            for i in range(args.runs):
                run = work / f"{kind}-run.duckdb"
                delay = rng.uniform(prepared.job_start, prepared.seconds)
                tally.delays.append(delay)
                outcome, detail, no_workers = kill_run(prepared, run, case, delay, args.grace)
                if not no_workers:
                    outcome, detail = "inconsistent", f"worker processes left; {detail}"
                if outcome == "rolled back":
                    tally.rolled_back += 1
                elif outcome == "completed":
                    tally.completed += 1
                else:
                    tally.bad.append(f"run {i + 1} (kill at {delay:.2f} s): {detail}")
                if args.verbose:
                    print(f"{kind} run {i + 1}: kill at {delay:.2f} s: {outcome} ({detail})")
                remove_store(run)
            n_ok = tally.rolled_back + tally.completed
            total += args.runs
            consistent += n_ok
            print(
                f"{kind}: {n_ok}/{args.runs} consistent ({tally.rolled_back} rolled back, "
                f"{tally.completed} completed before the kill); a complete ingest took "
                f"{prepared.seconds:.2f} s, its job starting at {prepared.job_start:.2f} s; "
                f"kills at "
                f"{min(tally.delays):.2f}-{max(tally.delays):.2f} s"
            )
            for line in tally.bad:
                print(f"  INCONSISTENT {line}")
    print(f"{consistent}/{total} stores consistent")
    return 0 if consistent == total else 1


if __name__ == "__main__":
    sys.exit(main())
