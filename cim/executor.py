"""Executors: where CPU-heavy work items run.

Work is split into pure, picklable items (a function at module level and its arguments) whose
results (NumPy arrays, Arrow batches, plain data) stream back, in submission order, to the one
process that writes the store. Two backends share one interface:

* ``LocalExecutor``: a process pool, one worker per core by default. Workers start with
  ``forkserver``: a forked child of a process that already decoded LAZ inherits lazrs's thread
  pool without its threads and hangs (DESIGN.md, known traps). Workers ignore Ctrl-C; the
  process that owns the pool kills them when it is interrupted during a map.
* ``DaskExecutor``: a Dask distributed cluster (``--cluster tcp://host:8786`` or ``CIM_CLUSTER``).

At most ``window`` items are in flight, so memory stays bounded however many items there are.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

import psutil

from cim.errors import UsageError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Executor(Protocol):
    """Runs ``fn(item)`` for each item and yields the results in the items' order."""

    workers: int
    distributed: bool

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None
    ) -> Iterator[R]: ...

    def start(self, modules: Sequence[str] = ()) -> None:
        """Get the workers going now, importing ``modules``, without waiting for them."""
        ...

    def close(self) -> None: ...


def _worker_init(owner: int, owner_started: float) -> None:
    """A worker's initializer. Ctrl-C is for the process that owns the pool (LocalExecutor.map
    stops the workers), not for each worker to print its traceback. And a worker ends when the
    owner is gone: killed (SIGKILL, SIGTERM), the owner cannot stop it, and a worker waiting
    for work would wait forever (it holds both ends of its queue's pipe, and the forkserver,
    its parent, waits for it). A thread looks once a second."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    single_threaded_libraries()  # the forkserver's preload did it already; spawn did not

    def watch() -> None:
        while True:
            time.sleep(OWNER_CHECK_SECONDS)
            try:
                process = psutil.Process(owner)
                if (
                    process.create_time() == owner_started
                    and process.status() != psutil.STATUS_ZOMBIE  # dead, not yet reaped
                ):
                    continue
            except psutil.Error:
                pass
            os._exit(1)  # the owner is gone (or its pid is another process's now)

    threading.Thread(target=watch, name="cim-owner-watch", daemon=True).start()


#: the numerical libraries' thread pools, one thread each in a worker
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_libraries() -> None:
    """One thread for OpenBLAS (NumPy's and SciPy's), OpenMP and MKL in this process, as Dask's
    nanny sets for its workers: a pool has one worker per core already. Read when those
    libraries load, so before NumPy is imported. Unset, each LiDAR worker carried an OpenBLAS
    thread spinning on its queue, on a core the other worker needs."""
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


#: how often a worker checks that the process owning its pool is still there
OWNER_CHECK_SECONDS = 1.0


def _import(modules: Sequence[str]) -> None:
    """A worker's first task (LocalExecutor.start): import what later tasks need."""
    for name in modules:
        importlib.import_module(name)


class _Future(Protocol[R_co]):
    """What ``_bounded`` needs of a future (concurrent.futures' or Dask's)."""

    def result(self) -> R_co: ...

    def cancel(self) -> bool: ...


def _bounded(submit: Callable[[T], _Future[R]], items: Iterable[T], limit: int) -> Iterator[R]:
    """Submit items keeping at most ``limit`` in flight; yield results in submission order.
    ``submit`` returns a future with ``result()`` and ``cancel()`` (concurrent or Dask)."""
    pending: deque[_Future[R]] = deque()
    try:
        for item in items:
            pending.append(submit(item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()


class SerialExecutor:
    """Runs items in this process (one worker). Useful for tiny jobs and debugging."""

    workers = 1
    distributed = False

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None
    ) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def start(self, modules: Sequence[str] = ()) -> None:
        pass

    def close(self) -> None:
        pass


class LocalExecutor:
    """A process pool on this machine (``forkserver`` start method)."""

    distributed = False

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._starting: threading.Thread | None = None
        self._preload: list[str] = []  # what the forkserver imports for its workers (start)

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                method = (
                    "forkserver"
                    if "forkserver" in multiprocessing.get_all_start_methods()
                    else "spawn"
                )
                if method == "forkserver":
                    # the forkserver starts once per process, with the preload set first
                    multiprocessing.get_context(method).set_forkserver_preload(
                        ["cim.forkserver_preload", *self._preload]
                    )
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context(method),
                    initializer=_worker_init,
                    initargs=(os.getpid(), psutil.Process().create_time()),
                )
            return self._pool

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None
    ) -> Iterator[R]:
        pool = self._get_pool()
        try:
            yield from _bounded(
                lambda item: pool.submit(fn, item), items, window or 2 * self.workers
            )
        except BrokenProcessPool:
            # a worker died (killed, out of memory, a crash in a native library): the next
            # map starts a fresh pool
            self.close()
            raise
        except KeyboardInterrupt:
            # Ctrl-C: the workers ignore it (_worker_init) and are stopped here, at once; a
            # worker deep in native code (the IFC kernel setting up a chunk) would only see a
            # signal when that returns, seconds later
            self.close(kill=True)
            raise

    def start(self, modules: Sequence[str] = ()) -> None:
        """Start the workers now (they start on first use otherwise), importing ``modules``
        (the IFC ingester's imports take a noticeable part of a second), while this process
        goes on.

        From a thread: starting a worker waits until the forkserver has forked it, and the
        forkserver first imports ``modules`` itself (its preload, if this starts it), so that
        every worker has them without importing them again. Waiting for it here made `cim
        ingest` of one small IFC file slower with the workers than without."""
        if self._starting is not None or self._pool is not None:
            return

        self._preload = list(modules)  # before the pool exists, whichever thread makes it

        def run() -> None:
            try:
                pool = self._get_pool()
                for _ in range(self.workers):
                    pool.submit(_import, tuple(modules))
            except Exception:  # Ctrl-C killed the forkserver, say; map() will tell
                log.debug("starting the workers failed", exc_info=True)

        self._starting = threading.Thread(target=run, name="cim-pool-start", daemon=True)
        self._starting.start()

    def close(self, kill: bool = False) -> None:
        """Stop the workers once their current items are done, or at once with ``kill``."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            # ProcessPoolExecutor has no public way to stop a busy worker before Python 3.14
            # (kill_workers); its process table is what that method uses
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """A Dask distributed cluster: a scheduler address, or a ``distributed`` cluster object."""

    #: work goes to other machines: work items must carry paths, not open files
    distributed = True

    def __init__(self, cluster: Any, timeout: str = "10s") -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - dependency of the distribution
            raise UsageError(
                "Dask distributed is not installed: pip install 'dask[distributed]'"
            ) from exc
        try:
            # (distributed does not annotate Client)
            self._client = Client(  # type: ignore[no-untyped-call]
                cluster, timeout=timeout, set_as_default=False
            )
        except OSError as exc:
            raise UsageError(
                f"cannot reach the Dask scheduler at {cluster}: start one with "
                f"`dask scheduler` and workers with `dask worker {cluster}`, or drop --cluster"
            ) from exc
        info = self._client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None
    ) -> Iterator[R]:
        client = self._client
        return _bounded(
            lambda item: client.submit(fn, item, pure=False), items, window or 2 * self.workers
        )

    def start(self, modules: Sequence[str] = ()) -> None:
        pass  # the cluster's workers are running already

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def get_executor(cluster: str | None = None, workers: int | None = None) -> Executor:
    """The executor for ``--cluster`` / ``CIM_CLUSTER``; a local pool when neither is given."""
    address = cluster or os.environ.get("CIM_CLUSTER") or None
    if address:
        return DaskExecutor(address)
    if workers == 1:
        return SerialExecutor()
    return LocalExecutor(workers)
