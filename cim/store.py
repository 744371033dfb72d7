"""The store: one DuckDB file holding the city model, and a folder of point files beside it.

``Store.create`` makes a new store in a project CRS; ``Store.open`` opens one, migrating an older
schema and refusing a newer one (the connection itself, with the spatial extension loaded
offline, is ``cim/connection.py``). One process writes at a time (DuckDB's file lock); heavy work
is done elsewhere and streamed to this single writer. At open the store also puts itself right
after a process that died: its jobs are marked failed and its uncommitted point files deleted.

Point clouds live in Parquet files in ``<store file>.points/`` (migration 008), one folder per
source (``source_id=N/``, read with hive partitioning), listed in the ``point_files`` table and
read through the ``point_rows`` view, which ``refresh_point_view`` rebuilds in the transaction
that changes the list. A file is written before the transaction that names it commits and
deleted only after the one that drops it has committed, so the store never names a missing
file: a failure leaves at worst files no row names, and ``Store.open`` removes those of dead
processes. Copy or move the store file and its ``.points`` folder together.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import logging
import math
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import psutil
from pyproj import CRS

from cim import __version__
from cim.connection import connect, quiet
from cim.crs import DEFAULT_PROJECT_CRS, check_project_crs, crs_label, parse_crs
from cim.errors import (
    CrsError,
    NotFound,
    SchemaVersionError,
    SourceNotFound,
    StoreError,
    StoreNotFound,
)
from cim.processes import alive
from cim.tilefiles import recover_tiles

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

BASELINE_VERSION = 1
_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

#: columns of the point files, in order (the ``point_rows`` view adds ``source_id``)
POINT_FILE_COLUMNS = ("x", "y", "z", "classification", "attributes", "rgb")
_POINT_ROWS_EMPTY = (
    "SELECT NULL::INTEGER AS source_id, NULL::DECIMAL(18,3) AS x, NULL::DECIMAL(18,3) AS y, "
    "NULL::DECIMAL(18,3) AS z, NULL::UTINYINT AS classification, NULL::UBIGINT AS attributes, "
    "NULL::UBIGINT AS rgb WHERE false"
)
#: `points` with no rows, typed, reading no file
_POINTS_EMPTY = (
    "(SELECT NULL::INTEGER AS source_id, NULL::DECIMAL(18,3) AS x, NULL::DECIMAL(18,3) AS y, "
    "NULL::DECIMAL(18,3) AS z, NULL::UTINYINT AS classification, NULL::USMALLINT AS intensity, "
    "NULL::UTINYINT AS return_number, NULL::UTINYINT AS number_of_returns, "
    "NULL::USMALLINT AS red, NULL::USMALLINT AS green, NULL::USMALLINT AS blue, "
    "NULL::USMALLINT AS point_source_id WHERE false)"
)
_POINT_FILE_RE = re.compile(r"^\d{5}-p(\d+)-[0-9a-f]{12}\.parquet$")
#: point files this process is writing and has not committed yet (never collected as orphans)
_WRITING: set[Path] = set()


def _schema_files() -> tuple[str, list[tuple[int, str, str]]]:
    root = resources.files("schemas")
    baseline = root.joinpath("store.sql").read_text(encoding="utf-8")
    migrations: list[tuple[int, str, str]] = []
    for entry in root.joinpath("migrations").iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            migrations.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    migrations.sort()
    numbers = [n for n, _, _ in migrations]
    if len(set(numbers)) != len(numbers) or (numbers and numbers[0] <= BASELINE_VERSION):
        raise StoreError(f"broken migration set in schemas/migrations: {numbers}")
    return baseline, migrations


def points_dir_of(store_path: Path) -> Path:
    """The point files' folder of the store at ``store_path``: ``<store file>.points``."""
    return store_path.with_name(store_path.name + ".points")


def jobs_dir_of(store_path: Path) -> Path:
    """Where running jobs mirror their progress (``cim/jobs.py``): ``<store file>.jobs``."""
    return store_path.with_name(store_path.name + ".jobs")


def _migrate_point_rows(store: Store) -> None:
    """Migration 008's Python step: each source's rows of the ``point_rows`` table, in their
    stored order, into a Parquet file by DuckDB's COPY; then the table becomes the view."""
    con = store.con
    sources = [r[0] for r in con.execute("SELECT DISTINCT source_id FROM point_rows").fetchall()]
    for sid in sorted(sources):
        path = store.new_point_file(int(sid), 0)
        target = str(path).replace("'", "''")
        con.execute(
            f"COPY (SELECT {', '.join(POINT_FILE_COLUMNS)} FROM point_rows "
            f"WHERE source_id = {int(sid)} ORDER BY rowid) TO '{target}' "
            "(FORMAT parquet, ROW_GROUP_SIZE 122880)"
        )
        row = con.execute(
            f"SELECT count(*), min(x), min(y), min(z), max(x), max(y), max(z) "
            f"FROM read_parquet('{target}')"
        ).fetchone()
        assert row is not None
        groups = con.execute(
            f"SELECT count(DISTINCT row_group_id) FROM parquet_metadata('{target}')"
        ).fetchone()
        assert groups is not None
        store.add_point_file(
            int(sid),
            path,
            int(row[0]),
            int(groups[0]),
            [None if v is None else float(v) for v in row[1:]],
        )
    # the `points` view of migration 005 stays: DuckDB binds a view's names when it is read,
    # so it reads the `point_rows` view in place of the table
    con.execute("DROP TABLE point_rows")
    store.refresh_point_view()


#: migration steps in Python, run after the SQL script of the same number
_MIGRATION_STEPS: dict[int, Callable[[Store], None]] = {8: _migrate_point_rows}


def latest_schema_version() -> int:
    _, migrations = _schema_files()
    return migrations[-1][0] if migrations else BASELINE_VERSION


def project_origin_for(crs: CRS, origin: tuple[float, float] | None) -> tuple[float, float]:
    from cim.crs import transformer

    if origin is None:
        area = crs.area_of_use
        if area is None:
            return 0.0, 0.0
        origin = ((area.west + area.east) / 2, (area.south + area.north) / 2)
    x, y = transformer(CRS.from_epsg(4326), crs).transform(*origin)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise CrsError(f"origin {origin} cannot be expressed in the project CRS")
    return float(x), float(y)


@dataclass(frozen=True)
class SourceRow:
    id: int
    path: str
    name: str
    kind: str
    format: str | None
    sha256: str
    size_bytes: int
    crs: str | None
    status: str
    counts: dict[str, Any]
    options: dict[str, Any]
    warnings: list[str]
    job_id: int | None
    ingested_at: _dt.datetime


_SOURCE_COLS = (
    "id, path, name, kind, format, sha256, size_bytes, crs, status, counts, options, warnings, "
    "job_id, ingested_at"
)


def _source(row: tuple[Any, ...]) -> SourceRow:
    return SourceRow(
        id=row[0],
        path=row[1],
        name=row[2],
        kind=row[3],
        format=row[4],
        sha256=row[5],
        size_bytes=row[6],
        crs=row[7],
        status=row[8],
        counts=json.loads(row[9]) if row[9] else {},
        options=json.loads(row[10]) if row[10] else {},
        warnings=json.loads(row[11]) if row[11] else [],
        job_id=row[12],
        ingested_at=row[13],
    )


class Store:
    """An open CIM store: ``Store.create`` / ``Store.open``, then ``close()`` or ``with``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path
        self._crs: CRS | None = None
        self._in_tx = False
        self._after_commit: list[Callable[[], None]] = []
        self._after_rollback: list[Callable[[], None]] = []
        folder = str(self.points_dir).replace("'", "''")
        if "," in folder:
            # DuckDB's file_search_path is a comma-separated list
            raise StoreError(f"store {path}: a store's folder may not contain a comma")
        con.execute(f"SET file_search_path = '{folder}'")
        quiet(con)

    # ---- opening -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        crs: str = DEFAULT_PROJECT_CRS,
        origin: tuple[float, float] | None = None,
    ) -> Store:
        """Create a new store at ``path`` with project CRS ``crs`` (projected, metres).

        ``origin`` (lon, lat) is the project origin, where models without a georeference are
        put until they are placed; by default the centre of the CRS's area of use.
        """
        p = Path(path)
        if p.exists():
            raise StoreError(f"{p} already exists: pick another path, or remove it first")
        parsed = parse_crs(crs, what="project CRS")
        check_project_crs(parsed, crs)
        if not p.parent.exists():
            raise StoreError(f"cannot create store {p}: folder {p.parent} does not exist")
        ox, oy = project_origin_for(parsed, origin)
        baseline, migrations = _schema_files()
        con = connect(p)
        try:
            con.execute("BEGIN")
            con.execute(baseline)
            now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            entries = {
                "schema_version": str(BASELINE_VERSION),
                "crs": crs_label(parsed),
                "crs_wkt": parsed.to_wkt(),
                "created_at": now,
                "created_by": f"cim {__version__}",
                "origin_x": repr(ox),
                "origin_y": repr(oy),
            }
            con.executemany("INSERT INTO meta VALUES (?, ?)", list(entries.items()))
            con.execute("COMMIT")
            store = cls(con, p)
            store._migrate(migrations)
        except BaseException:
            con.close()
            with contextlib.suppress(OSError):
                p.unlink()
            with contextlib.suppress(OSError):
                Path(str(p) + ".wal").unlink()
            shutil.rmtree(points_dir_of(p), ignore_errors=True)
            raise
        log.info("created store %s in %s", p, entries["crs"])
        return store

    @classmethod
    def open(cls, path: str | Path, *, migrate: bool = True, recover: bool = True) -> Store:
        """Open an existing store, migrating an older schema; a newer one is refused."""
        p = Path(path)
        if not p.is_file():
            raise StoreNotFound(f"no store at {p}: create one with `cim init --crs EPSG:4550`")
        con = connect(p)
        store = cls(con, p)
        try:
            try:
                version = int(store.meta("schema_version"))
            except (duckdb.Error, KeyError, ValueError) as exc:
                raise StoreError(f"{p} is not a CIM store (no schema version)") from exc
            _, migrations = _schema_files()
            latest = migrations[-1][0] if migrations else BASELINE_VERSION
            if version > latest:
                raise SchemaVersionError(
                    f"store {p} has schema version {version}, newer than this cim "
                    f"({__version__}, schema {latest}): upgrade cim to open it"
                )
            if version < latest:
                if not migrate:
                    raise SchemaVersionError(f"store {p} needs migration {version} -> {latest}")
                # said on stderr: on a store of many millions of points it takes minutes
                log.warning("upgrading store %s from schema %d to %d", p, version, latest)
                store._migrate(migrations)
            store.check_point_files()
            if recover:
                store.recover_dead_jobs()
                store.collect_orphan_point_files()
                if store.schema_version >= 10:
                    recover_tiles(store.con, p)
        except BaseException:
            con.close()
            raise
        return store

    def _migrate(self, migrations: list[tuple[int, str, str]]) -> None:
        version = int(self.meta("schema_version"))
        for number, name, sql in migrations:
            if number <= version:
                continue
            log.info("migrating %s: applying %s", self.path, name)
            with self.transaction():
                self.con.execute(sql)
                if number in _MIGRATION_STEPS:
                    _MIGRATION_STEPS[number](self)
                self.set_meta("schema_version", str(number))
            version = number

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- meta --------------------------------------------------------------------------
    def meta(self, key: str) -> str:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        if row is None:
            raise KeyError(key)
        return str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    @property
    def schema_version(self) -> int:
        return int(self.meta("schema_version"))

    # the project CRS and origin are fixed when the store is created: read once per connection
    @functools.cached_property
    def crs_label(self) -> str:
        return self.meta("crs")

    @functools.cached_property
    def project_origin(self) -> tuple[float, float]:
        """Project origin in the project CRS (where unplaced models sit)."""
        return float(self.meta("origin_x")), float(self.meta("origin_y"))

    @property
    def crs(self) -> CRS:
        if self._crs is None:
            self._crs = CRS.from_wkt(self.meta("crs_wkt"))
        return self._crs

    # ---- transactions ------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One all-or-nothing unit of work on the writer connection."""
        if self._in_tx:
            raise StoreError("nested transactions are not supported")
        self.con.execute("BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield self.con
        except BaseException:
            self._in_tx = False
            try:
                self.con.execute("ROLLBACK")
            finally:
                self._end_transaction(self._after_rollback)
            raise
        self._in_tx = False
        try:
            self.con.execute("COMMIT")
        except BaseException:
            self._end_transaction(self._after_rollback)
            raise
        self._end_transaction(self._after_commit)

    def _end_transaction(self, hooks: list[Callable[[], None]]) -> None:
        run = list(hooks)
        self._after_commit.clear()
        self._after_rollback.clear()
        for hook in run:
            try:
                hook()
            except OSError as exc:  # a file left behind is collected at the next open
                log.warning("after the transaction on %s: %s", self.path, exc)

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once the current transaction has committed (not if it rolls back)."""
        self._after_commit.append(hook)

    def after_rollback(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` if the current transaction rolls back."""
        self._after_rollback.append(hook)

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    # ---- sources -----------------------------------------------------------------------
    def sources(self) -> list[SourceRow]:
        rows = self.con.execute(f"SELECT {_SOURCE_COLS} FROM sources ORDER BY id").fetchall()
        return [_source(r) for r in rows]

    def source(self, ref: int | str) -> SourceRow:
        """A source by id, by file name or by path."""
        if isinstance(ref, int) or str(ref).isdigit():
            rows = self.con.execute(
                f"SELECT {_SOURCE_COLS} FROM sources WHERE id = ?", [int(ref)]
            ).fetchall()
        else:
            resolved = str(Path(ref).resolve())
            rows = self.con.execute(
                f"SELECT {_SOURCE_COLS} FROM sources WHERE path = ? OR name = ? ORDER BY id",
                [resolved, str(ref)],
            ).fetchall()
        if not rows:
            raise SourceNotFound(f"no source {ref!r} in {self.path}")
        if len(rows) > 1:
            raise NotFound(f"{ref!r} names several sources: give the source id instead")
        return _source(rows[0])

    def source_by_sha256(self, sha256: str) -> SourceRow | None:
        row = self.con.execute(
            f"SELECT {_SOURCE_COLS} FROM sources WHERE sha256 = ?", [sha256]
        ).fetchone()
        return _source(row) if row else None

    def source_by_path(self, path: str) -> SourceRow | None:
        row = self.con.execute(
            f"SELECT {_SOURCE_COLS} FROM sources WHERE path = ?", [path]
        ).fetchone()
        return _source(row) if row else None

    def tables_with_source_id(self) -> list[str]:
        rows = self.con.execute(
            "SELECT c.table_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.column_name = 'source_id' AND c.table_schema = 'main' "
            "AND t.table_type = 'BASE TABLE' ORDER BY c.table_name"
        ).fetchall()
        return [r[0] for r in rows]

    def delete_source(self, source_id: int) -> None:
        """Delete a source and every row that came from it (call inside a transaction); its
        point files are deleted once the transaction has committed."""
        files = [
            self.points_dir / name
            for (name,) in self.con.execute(
                "SELECT file FROM point_files WHERE source_id = ?", [source_id]
            ).fetchall()
        ]
        for table in self.tables_with_source_id():
            self.con.execute(f'DELETE FROM "{table}" WHERE source_id = ?', [source_id])
        self.con.execute("DELETE FROM sources WHERE id = ?", [source_id])
        if files:
            self.refresh_point_view()

            def remove() -> None:
                for f in files:
                    f.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    f.parent.rmdir()  # the source's folder, when empty

            self.after_commit(remove)

    # ---- bulk inserts ------------------------------------------------------------------
    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Bulk insert of an Arrow table whose columns are named like the table's.

        The table is read by name (DuckDB's replacement scan of this frame's local), not
        through ``con.register``: registering and unregistering cost more than many inserts,
        and a view registered inside a transaction stays in the catalog until the commit."""
        cols = ", ".join(data.column_names)
        _insert_data = data  # read by name by the SQL below
        self.con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM _insert_data')

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Bulk insert of rows (tuples in ``columns`` order) through Arrow: DuckDB's
        executemany prepares and binds every row on its own, which is slow for more than a few
        rows."""
        import pyarrow as pa  # not at import time: `cim status` needs none of it

        if rows:
            self.insert_arrow(
                table, pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
            )

    # ---- point files -------------------------------------------------------------------
    @property
    def points_dir(self) -> Path:
        """The folder of this store's point files."""
        return points_dir_of(self.path)

    def new_point_file(self, source_id: int, part: int) -> Path:
        """A path for part ``part`` of a source's points, to be written now and named in
        ``point_files`` by ``add_point_file`` in the current transaction; it is deleted if the
        transaction rolls back."""
        folder = self.points_dir / f"source_id={source_id}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{part:05d}-p{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
        _WRITING.add(path)

        def forget() -> None:
            _WRITING.discard(path)

        def remove() -> None:
            _WRITING.discard(path)
            path.unlink(missing_ok=True)

        self.after_commit(forget)
        self.after_rollback(remove)
        return path

    def add_point_file(
        self, source_id: int, path: Path, points: int, row_groups: int, bbox: list[float | None]
    ) -> None:
        """Name a written point file in ``point_files`` (``bbox``: min x, y, z, max x, y, z)."""
        self.con.execute(
            "INSERT INTO point_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                source_id,
                path.relative_to(self.points_dir).as_posix(),
                points,
                path.stat().st_size,
                row_groups,
                *bbox,
            ],
        )

    def refresh_point_view(self) -> None:
        """Rebuild ``point_rows`` over the files ``point_files`` names (call it in the
        transaction that changed them: DuckDB binds the files when the view is made)."""
        files = [
            r[0] for r in self.con.execute("SELECT file FROM point_files ORDER BY file").fetchall()
        ]
        if not files:
            body = _POINT_ROWS_EMPTY
        else:
            names = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            body = (
                f"SELECT source_id, {', '.join(POINT_FILE_COLUMNS)} FROM read_parquet([{names}], "
                "hive_partitioning = true, hive_types = {'source_id': INTEGER})"
            )
        self.con.execute(f"CREATE OR REPLACE VIEW point_rows AS {body}")

    def check_point_files(self) -> None:
        """Refuse a store whose point files are not all where ``point_files`` says: a store file
        copied or moved without its points folder would fail later on any query of its points
        with DuckDB's "No files found" (`cim status` printed a traceback)."""
        if self.schema_version < 8:
            return
        rows = self.con.execute("SELECT file FROM point_files ORDER BY file").fetchall()
        names = [r[0] for r in rows]
        missing = [n for n in names if not (self.points_dir / n).is_file()]
        if missing:
            raise StoreError(
                f"{self.path}: {len(missing)} of its {len(names)} point files are missing from "
                f"{self.points_dir} (first: {missing[0]}). A store keeps its LiDAR points in "
                f"that folder beside the store file: copy or move the folder together with the "
                f"store file, or restore it from where the store came from"
            )

    def points_from(
        self, xmin: float, ymin: float, xmax: float, ymax: float
    ) -> tuple[str, list[Any]]:
        """A FROM item with the columns of ``points`` over the point files whose bounds meet
        the box, and its parameters (they come before the query's own): ``points_in`` of those
        files (migration 009), or no rows when none does. The box is in the project CRS; the
        files' bounds are compared with a millimetre to spare (they are rounded to doubles)."""
        files = [
            r[0]
            for r in self.con.execute(
                "SELECT file FROM point_files WHERE xmin <= ? AND xmax >= ? AND ymin <= ? "
                "AND ymax >= ? ORDER BY file",
                [xmax + 0.001, xmin - 0.001, ymax + 0.001, ymin - 0.001],
            ).fetchall()
        ]
        if not files:
            return _POINTS_EMPTY, []
        return "points_in(?::VARCHAR[])", [files]

    def recover_dead_jobs(self) -> list[int]:
        """Mark failed every queued/running job whose process is gone (its work, never
        committed, is gone with it), and remove its progress mirror. Returns their ids."""
        rows = self.con.execute(
            "SELECT id, pid, pid_started, host FROM jobs WHERE status IN ('queued', 'running')"
        ).fetchall()
        me = socket.gethostname()
        dead: list[int] = []
        for job_id, pid, started, host in rows:
            if host not in (None, me):
                continue  # cannot see processes of another host
            if pid == os.getpid() or alive(pid, started):
                continue
            dead.append(job_id)
        for job_id in dead:
            self.con.execute(
                "UPDATE jobs SET status = 'failed', finished_at = current_timestamp, "
                "error = ? WHERE id = ?",
                [
                    "the process running this job died before it finished; "
                    "nothing it did was kept, run the command again",
                    job_id,
                ],
            )
            log.warning("job %s: its process died; marked failed", job_id)
            with contextlib.suppress(OSError):
                (jobs_dir_of(self.path) / f"{job_id}.json").unlink()
        return dead

    def collect_orphan_point_files(self) -> int:
        """Delete point files that no row names, left by a process that died mid-ingest (not
        those a live process is writing). Returns how many."""
        folder = self.points_dir
        if not folder.is_dir() or self.schema_version < 8:
            return 0
        known = {r[0] for r in self.con.execute("SELECT file FROM point_files").fetchall()}
        removed = 0
        for f in folder.glob("source_id=*/*"):
            name = f.relative_to(folder).as_posix()
            m = _POINT_FILE_RE.match(f.name)
            if name in known or f in _WRITING:
                continue
            if m and int(m.group(1)) != os.getpid() and psutil.pid_exists(int(m.group(1))):
                continue  # another process's ingest, still running
            f.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.warning("%s: removed %d point files left by an interrupted ingest", folder, removed)
        return removed

    def count(self, table: str, where: str = "", params: list[Any] | None = None) -> int:
        sql = f'SELECT count(*) FROM "{table}"' + (f" WHERE {where}" if where else "")
        row = self.con.execute(sql, params or []).fetchone()
        return int(row[0]) if row else 0
