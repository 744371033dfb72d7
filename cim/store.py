"""The store: one DuckDB file holding the whole city model.

``Store.create`` makes a new store in a project CRS; ``Store.open`` opens one, migrating an older
schema and refusing a newer one. The spatial extension is loaded from the pinned
``duckdb-extension-spatial`` wheel's file, never downloaded. One process writes at a time (DuckDB's
file lock); heavy work is done elsewhere and streamed to this single writer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.abc
import importlib.util
import json
import logging
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
from pyproj import CRS

from cim import __version__
from cim.crs import DEFAULT_PROJECT_CRS, check_project_crs, crs_label, parse_crs
from cim.errors import (
    CrsError,
    NotFound,
    SchemaVersionError,
    StoreError,
    StoreLocked,
    StoreNotFound,
)

log = logging.getLogger(__name__)

BASELINE_VERSION = 1
_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def spatial_extension_path() -> Path:
    """The spatial extension file shipped inside the pinned ``duckdb-extension-spatial`` wheel."""
    try:
        import duckdb_extension_spatial
    except ImportError as exc:  # pragma: no cover - an install problem, not a user error
        raise StoreError(
            "the duckdb-extension-spatial package is not installed: run `make install`"
        ) from exc
    version = duckdb.__version__
    for base in duckdb_extension_spatial.__path__:
        candidate = Path(base) / "extensions" / f"v{version}" / "spatial.duckdb_extension"
        if candidate.is_file():
            return candidate
    raise StoreError(
        f"no spatial extension for DuckDB {version} in duckdb-extension-spatial: "
        f"install duckdb-extension-spatial=={version} (the two versions must match)"
    )


class _AbsentModule(importlib.abc.MetaPathFinder):
    """Answers "no such module" for a module known to be absent, without searching sys.path.

    DuckDB's client tries ``import pandas`` twice per parameter value of every statement, and
    each failed import searches the whole path (30 us: a 3-parameter statement took 350 us, 170
    us with this). Installed only when the module is really absent, so ``import pandas`` raises
    the same ModuleNotFoundError as before, just sooner (putting None in sys.modules instead
    breaks pyarrow's pandas shim).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == self.name:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _skip_absent_pandas() -> None:
    if any(isinstance(f, _AbsentModule) for f in sys.meta_path):
        return
    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.meta_path.insert(0, _AbsentModule("pandas"))


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the spatial extension loaded from its file (no network)."""
    _skip_absent_pandas()
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            holder = re.search(r"PID (\d+)", text)
            who = f"process {holder.group(1)}" if holder else "another process"
            raise StoreLocked(
                f"store {path} is in use by {who}: wait for its job to finish (see `cim jobs`)",
                detail=text,
            ) from exc
        raise StoreError(f"cannot open store {path}: {text}") from exc
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    con.execute(f"LOAD '{spatial_extension_path()}'")
    return con


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
            if recover:
                from cim.jobs import recover_dead_jobs

                recover_dead_jobs(store)
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
            self.con.execute("ROLLBACK")
            raise
        self._in_tx = False
        self.con.execute("COMMIT")

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
            raise NotFound(f"no source {ref!r} in {self.path}: see `cim status` for the list")
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
        """Delete a source and every row that came from it (call inside a transaction)."""
        for table in self.tables_with_source_id():
            self.con.execute(f'DELETE FROM "{table}" WHERE source_id = ?', [source_id])
        self.con.execute("DELETE FROM sources WHERE id = ?", [source_id])

    def features(
        self, role: str, bbox: tuple[float, float, float, float] | None = None
    ) -> list[Any]:
        """GIS features of one role (roads, landcover, parks, pois, boundary), optionally only
        those intersecting ``bbox`` (project CRS). See ``ingest.gis.features``."""
        from ingest.gis import features  # the GIS ingester owns the features table

        return features(self, role, bbox)

    def count(self, table: str, where: str = "", params: list[Any] | None = None) -> int:
        sql = f'SELECT count(*) FROM "{table}"' + (f" WHERE {where}" if where else "")
        row = self.con.execute(sql, params or []).fetchone()
        return int(row[0]) if row else 0
