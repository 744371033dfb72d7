"""Both executor backends run the same work items and give identical results."""

from __future__ import annotations

import numpy as np
import pytest

from cim.errors import UsageError
from cim.executor import DaskExecutor, LocalExecutor, SerialExecutor, get_executor


def _items() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=(2000, 3)) for _ in range(9)]


def test_local_and_dask_give_identical_results() -> None:
    from distributed import LocalCluster

    items = _items()
    serial = list(SerialExecutor().map(np.sort, items))
    local = LocalExecutor(2)
    try:
        pooled = list(local.map(np.sort, items, window=3))
    finally:
        local.close()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cl:
        dask = DaskExecutor(cl)
        try:
            assert dask.workers == 2
            distributed = list(dask.map(np.sort, items, window=3))
        finally:
            dask.close()
    assert len(serial) == len(pooled) == len(distributed) == len(items)
    for a, b, c in zip(serial, pooled, distributed, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_unreachable_cluster_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler"):
        DaskExecutor("tcp://127.0.0.1:1", timeout="1s")


def test_default_is_a_local_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIM_CLUSTER", raising=False)
    assert isinstance(get_executor(), LocalExecutor)
    assert isinstance(get_executor(workers=1), SerialExecutor)


def _die(code: int) -> int:
    """A worker that dies as a crash in a native library would kill it."""
    import os

    os._exit(code)


def test_a_dead_worker_is_an_error_and_the_next_map_gets_a_new_pool() -> None:
    from concurrent.futures.process import BrokenProcessPool

    local = LocalExecutor(2)
    try:
        local.start(["numpy"])
        with pytest.raises(BrokenProcessPool):
            list(local.map(_die, [3]))
        assert list(local.map(abs, [-1, -2])) == [1, 2]
    finally:
        local.close()


def _thread_settings(_: int) -> tuple[str | None, ...]:
    import os

    return tuple(os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"))


@pytest.mark.parametrize("preload", [False, True])
def test_workers_run_the_numerical_libraries_on_one_thread(preload: bool) -> None:
    """One worker per core: OpenBLAS and OpenMP get one thread each in a worker, whether the
    pool was started ahead (its forkserver imports the modules) or on first use."""
    local = LocalExecutor(2)
    try:
        if preload:
            local.start(["numpy"])
        assert set(local.map(_thread_settings, [1, 2])) == {("1", "1")}
    finally:
        local.close()
