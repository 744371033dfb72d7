"""Whether the process that started something is still alive, across pid reuse.

A job row and a job's mirror beside the store keep the pid and the start time of the process
that runs it; a pid alone may have been reused by a later process.
"""

from __future__ import annotations

import psutil


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when there is none."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (None: any)."""
    if pid is None:
        return False
    actual = process_started(pid)
    if actual is None:
        return False
    # a reused pid belongs to a process started later than the one that ran the job
    return started is None or abs(actual - started) < 1.0
