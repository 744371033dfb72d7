"""What the harnesses share: a scratch folder and a store per process, and one ingest.

A harness's ``test_one_input(data)`` must return normally or raise a ``CimError`` for every
input: a ``CimError`` is the clear, expected refusal of an odd input, anything else is a
finding. ``expected`` wraps a call accordingly.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cim.errors import CimError

if TYPE_CHECKING:
    from cim.store import Store
    from ingest.base import IngestOptions


@functools.cache
def scratch() -> Path:
    """A temporary folder for this process, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="cim-fuzz-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


#: the stores this process made, by CRS
STORES: dict[str, Store] = {}


@functools.cache
def store(crs: str) -> Store:
    """One store per project CRS for this process; every input replaces the previous one (the
    same path), so the store stays small however long the harness runs."""
    from cim.store import Store

    s = Store.create(scratch() / f"fuzz-{crs.replace(':', '_')}.duckdb", crs)
    atexit.register(s.close)
    STORES[crs] = s
    return s


def ingested(path: Path) -> bool:
    """Whether the file now at ``path`` is a source of one of this process's stores (an input
    the ingest took rather than refused)."""
    from ingest.run import file_sha256

    sha = file_sha256(path)
    return any(s.source_by_sha256(sha) is not None for s in STORES.values())


def write(data: bytes, name: str) -> Path:
    path = scratch() / name
    path.write_bytes(data)
    return path


@contextmanager
def expected() -> Iterator[None]:
    """A ``CimError`` is an input refused with a clear message: not a finding."""
    with suppress(CimError):
        yield


def ingest(path: Path, crs: str, options: IngestOptions | None = None) -> Any:
    """``run_ingest`` of one file into this process's store in ``crs``, in this process."""
    from cim.executor import SerialExecutor
    from ingest import IngestOptions, run_ingest

    return run_ingest(store(crs), path, options or IngestOptions(), SerialExecutor())


def ingest_checked(path: Path, crs: str, options: IngestOptions | None = None) -> Any:
    """``ingest``, where an unexpected exception is a finding again: ``run_ingest`` wraps
    whatever an ingester raises that is not a ``CimError`` in an ``IngestError`` ("ingest
    failed (...)", the one line a user sees); the harness raises the original instead, with
    its traceback."""
    from cim.errors import IngestError

    try:
        return ingest(path, crs, options)
    except IngestError as exc:
        cause = exc.__cause__
        if isinstance(cause, Exception) and not isinstance(cause, CimError):
            raise cause from None
        raise
