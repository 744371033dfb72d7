"""Running an ingest: the registry of ingesters, and what every kind shares around its own work.

``run_ingest`` owns choosing the ingester, the sha256 de-duplication, the replacement of a
changed file (at the same path, or of the source named by ``replaces``: a revised model), the
one transaction per source and the progress; the ingester only reads its file and writes its
rows. ``INGESTER_MODULES`` is the one place that names the kinds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from cim.errors import (
    CimError,
    Conflict,
    IngestError,
    InputFileError,
    UnsupportedFile,
    UsageError,
)
from ingest.base import (
    OPTION_USES,
    Anchor,
    IngestContext,
    Ingester,
    IngestOptions,
    IngestReport,
)
from ingest.sniff import describe

if TYPE_CHECKING:
    from cim.executor import Executor
    from cim.store import SourceRow, Store

log = logging.getLogger(__name__)

#: modules holding an ``INGESTER``; the first whose ``supports`` says yes takes the file
INGESTER_MODULES = ("ingest.ifc", "ingest.lidar", "ingest.gis")


def _relink(store: Store) -> None:
    """After rows were deleted, repair links (buildings.same_as) that pointed at them."""
    from cim.model.linking import link_buildings  # lazily: it pulls in scipy and shapely

    link_buildings(store, [])


def registry() -> list[Ingester]:
    """Every available ingester, in the order they are asked."""
    return [importlib.import_module(name).INGESTER for name in INGESTER_MODULES]


def _kinds(ingesters: list[Ingester], shown: int = 10) -> str:
    """What cim reads, from the registry: "an IFC model (.ifc), a LiDAR cloud (.las, .laz) ..."."""
    parts = []
    for ing in ingesters:
        exts = ", ".join(ing.extensions[:shown]) + (" ..." if len(ing.extensions) > shown else "")
        parts.append(f"{ing.description} ({exts})")
    return ", ".join(parts)


def choose_ingester(path: Path) -> Ingester:
    """The first ingester whose ``supports`` takes the file (or dataset folder); else one line
    saying what the file looks like and which kinds exist."""
    ingesters = registry()
    for ing in ingesters:
        if ing.supports(path):
            return ing
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder; give the files to ingest")
    looks = describe(path)
    named = next((i for i in ingesters if path.name.lower().endswith(i.extensions)), None)
    if named is not None:
        looks = f"is named like {named.description}, but it looks like {looks}"
    else:
        looks = f"looks like {looks}"
    raise UnsupportedFile(
        f"{path}: not a file cim can ingest: it {looks}; cim reads {_kinds(ingesters)}"
    )


def check_options(path: Path, ingester: Ingester, options: IngestOptions) -> None:
    """Options that do not apply to this kind of file are a mistake worth saying, not ignoring."""
    given = [k for k, v in options.as_json().items() if v is not None]
    wrong = []
    for name in given:
        if name not in ingester.options:
            wrong.append(f"--{name} {OPTION_USES[name]}")
    if wrong:
        raise UsageError(f"{path}: is {ingester.description}, and " + "; ".join(wrong))


def dataset_files(path: Path) -> list[Path]:
    """The files of a source: the file itself, or every file under a dataset folder (a .gdb),
    in a stable order."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def source_size(path: Path) -> int:
    return sum(p.stat().st_size for p in dataset_files(path))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes; of a dataset folder, of its files' relative names and
    bytes (the same folder copied elsewhere hashes the same)."""
    h = hashlib.sha256()
    for p in dataset_files(path):
        if p != path:  # name and size first: no two folders give the same stream
            name = p.relative_to(path).as_posix().encode()
            h.update(name + b"\0" + p.stat().st_size.to_bytes(8, "little"))
        with p.open("rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


#: a file at least this large whose size no source has is hashed while it is ingested (a
#: thread: hashlib releases the GIL) rather than before: 0.47 s of a 20M-point LAS file's
#: 4 s. Same-size files are hashed first: they may be the same bytes, a no-op to find early.
HASH_ALONGSIDE_BYTES = 64 << 20
_hasher: ThreadPoolExecutor | None = None


def _hash_alongside(path: Path) -> Future[str]:
    global _hasher
    if _hasher is None:
        _hasher = ThreadPoolExecutor(1, thread_name_prefix="cim-sha256")
    return _hasher.submit(file_sha256, path)


def check_readable(path: Path) -> Path:
    p = path.expanduser()
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():  # a dataset folder (a .gdb) or not: choose_ingester says
        return p.resolve()
    if p.stat().st_size == 0:
        raise InputFileError(f"{p}: the file is empty (0 bytes); export it again")
    return p.resolve()


def _unchanged(p: Path, same: SourceRow, t0: float) -> IngestReport:
    where = "" if same.path == str(p) else f" (from {same.path})"
    return IngestReport(
        path=str(p),
        kind=same.kind,
        outcome="unchanged",
        source_id=same.id,
        status=same.status,
        format=same.format,
        crs=same.crs,
        counts=same.counts,
        warnings=[],
        seconds=time.perf_counter() - t0,
        message=f"{p.name}: already ingested as source {same.id}{where}; nothing to do",
    )


def _replaced_source(store: Store, p: Path, ingester: Ingester, replaces: int) -> SourceRow:
    """The source a revised file replaces: it must exist and be of the file's own kind."""
    old = store.source(replaces)
    if old.kind != ingester.kind:
        raise Conflict(
            f"{p}: is {ingester.description}, and source {old.id} ({old.name}) is a "
            f"{old.kind} source: a file replaces only a source of its own kind"
        )
    return old


def _kept_anchor(store: Store, old: SourceRow) -> Anchor | None:
    """The anchor a model was placed by (at its ingest or later by `cim place`), which its
    revision keeps: the revised model of the same building stands where the old one stood."""
    row = store.con.execute(
        "SELECT params FROM placements WHERE source_id = ? AND method = 'anchor'", [old.id]
    ).fetchone()
    if row is None or not row[0]:
        return None
    params = json.loads(row[0])
    try:
        return Anchor(
            float(params["lon"]),
            float(params["lat"]),
            float(params.get("elevation", 0.0)),
            float(params.get("rotation_deg", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        log.warning("source %s: its anchor placement has no lon/lat; not kept", old.id)
        return None


def run_ingest(
    store: Store,
    path: Path,
    options: IngestOptions,
    executor: Executor,
    progress: Callable[[float | None, str | None], None] | None = None,
    job_id: int | None = None,
    replaces: int | None = None,
) -> IngestReport:
    """Ingest one file in one transaction. The store is unchanged if anything fails.

    A source already at the file's path is replaced by it; so is the source ``replaces`` (a
    revised model uploaded beside the old one), whose anchor the new model keeps when it was
    placed by one and no other anchor is given. The same bytes as any source is a no-op."""
    t0 = time.perf_counter()
    p = check_readable(path)
    ingester = choose_ingester(p)
    check_options(p, ingester, options)
    target = _replaced_source(store, p, ingester, replaces) if replaces is not None else None
    if target is not None and options.anchor is None and "anchor" in ingester.options:
        kept = _kept_anchor(store, target)
        if kept is not None:
            options = dataclasses.replace(options, anchor=kept)
    report_progress = progress or (lambda f, m: None)
    size = source_size(p)
    hashing: Future[str] | None = None
    sha = ""
    if (
        size >= HASH_ALONGSIDE_BYTES
        and not store.con.execute("SELECT 1 FROM sources WHERE size_bytes = ?", [size]).fetchone()
    ):
        hashing = _hash_alongside(p)
    else:
        sha = file_sha256(p)
        same = store.source_by_sha256(sha)
        if same is not None:
            return _unchanged(p, same, t0)

    at_path = store.source_by_path(str(p))
    olds = {s.id: s for s in (at_path, target) if s is not None}
    with store.transaction() as con:
        if olds:
            for old_id in olds:
                store.delete_source(old_id)
            _relink(store)
        row = con.execute(
            "INSERT INTO sources (path, name, kind, sha256, size_bytes, status, options, job_id) "
            "VALUES (?, ?, ?, ?, ?, 'ingested', ?, ?) RETURNING id",
            [
                str(p),
                p.name,
                ingester.kind,
                sha,
                size,
                json.dumps(options.as_json()),
                job_id,
            ],
        ).fetchone()
        assert row is not None
        source_id = int(row[0])
        ctx = IngestContext(source_id, options, executor, report_progress)
        try:
            result = ingester.ingest(p, store, ctx)
        except CimError:
            raise
        except duckdb.InterruptException as exc:
            # Ctrl-C while DuckDB was working: DuckDB says so with its own exception
            raise KeyboardInterrupt from exc
        except Exception as exc:
            log.debug("ingest of %s failed", p, exc_info=True)
            raise IngestError(
                f"{p}: ingest failed ({type(exc).__name__}: {exc}); the store is unchanged. "
                f"Please report it if the file opens in other tools",
                detail=repr(exc),
            ) from exc
        if hashing is not None:
            sha = hashing.result()
        con.execute(
            "UPDATE sources SET format = ?, crs = ?, status = ?, counts = ?, warnings = ?, "
            "sha256 = ? WHERE id = ?",
            [
                result.format,
                result.crs,
                result.status,
                json.dumps(result.counts),
                json.dumps(result.warnings),
                sha,
                source_id,
            ],
        )
    outcome = "replaced" if olds else "ingested"
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if not isinstance(v, dict))
    extra = ""
    if olds:
        named = " and ".join(f"{o.id} ({o.name})" for o in olds.values())
        extra = f", replacing source{'s' if len(olds) > 1 else ''} {named}"
    return IngestReport(
        path=str(p),
        kind=ingester.kind,
        outcome=outcome,
        source_id=source_id,
        status=result.status,
        format=result.format,
        crs=result.crs,
        counts=result.counts,
        warnings=result.warnings,
        seconds=time.perf_counter() - t0,
        message=f"{p.name}: {outcome} as source {source_id}{extra} ({counts})",
        replaced=sorted(olds),
    )
