"""Tile files beside the store: ``<store file>.tiles/<tileset>/`` (migration 010).

Tiles are derived data kept as plain files, so any static file server (or a CDN, after
``cim export-tiles``) can serve them, and named in the store so a reader never sees half a
tileset:

* every content file is named by its sha256 and written under a temporary name, then renamed,
  before the transaction that lists it in ``tiles`` commits; a file with the same content is
  not written again, so a rebuild that changes one building writes only the tiles that hold it;
* ``tileset.json`` (the one stable name a client asks for) is replaced after the commit, from the
  document kept in ``tilesets``; a crash in between is put right at the next open;
* a rollback deletes the files the build wrote; files of generations older than the previous
  one are deleted after the commit (a client still reading the previous tileset.json finds its
  tiles); files no row names (a killed build) are deleted at the next open.

Tiles are derived: a store copied without its ``.tiles`` folder opens, ``cim status`` says the
tiles are missing, and ``cim tile`` writes them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

import duckdb

from cim.errors import StoreError, UsageError

log = logging.getLogger(__name__)

TILESET_JSON = "tileset.json"
#: the tilesets a store can hold
TILESETS = ("buildings", "bim", "points", "pv")
_TMP_RE = re.compile(r"^\.tmp-p(\d+)-")


class _StoreLike(Protocol):
    """What a tileset writer needs of ``cim.store.Store`` (which imports this module)."""

    path: Path
    con: duckdb.DuckDBPyConnection

    @property
    def in_transaction(self) -> bool: ...

    def after_commit(self, hook: Callable[[], None]) -> None: ...

    def after_rollback(self, hook: Callable[[], None]) -> None: ...


def tiles_dir_of(store_path: Path) -> Path:
    """The tiles' folder of the store at ``store_path``: ``<store file>.tiles``."""
    return store_path.with_name(store_path.name + ".tiles")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-p{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class TileRow(TypedDict):
    path: str
    bytes: int
    sha256: str


@dataclass
class TilesetWriter:
    """Writes one generation of a tileset inside the caller's transaction: ``put`` each content
    file (or ``reuse`` one whose inputs did not change), then ``finish`` with the document."""

    store: _StoreLike
    name: str
    generation: int = 0
    written: int = 0
    reused: int = 0
    size: int = 0  # bytes of the content files listed so far
    _rows: dict[str, tuple[int, str, str | None]] = field(default_factory=dict)
    _previous: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    _created: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.store.in_transaction:
            raise StoreError("a tileset is written inside a transaction")
        row = self.store.con.execute(
            "SELECT generation FROM tilesets WHERE name = ?", [self.name]
        ).fetchone()
        previous = int(row[0]) if row else 0
        self.generation = previous + 1
        for path, size, sha, key in self.store.con.execute(
            "SELECT path, bytes, sha256, input_key FROM tiles WHERE tileset = ? AND "
            "generation = ? AND input_key IS NOT NULL",
            [self.name, previous],
        ).fetchall():
            self._previous[key] = (path, size, sha)
        self.folder.mkdir(parents=True, exist_ok=True)

        def remove_created() -> None:
            for p in self._created:
                p.unlink(missing_ok=True)

        self.store.after_rollback(remove_created)

    @property
    def tiles(self) -> int:
        """Content files listed in this generation so far."""
        return len(self._rows)

    @property
    def folder(self) -> Path:
        return tiles_dir_of(self.store.path) / self.name

    def reuse(self, input_key: str) -> str | None:
        """The file of the previous generation built from the same inputs, if it is still
        there: listed in this generation as it is, without encoding it again."""
        prev = self._previous.get(input_key)
        if prev is None:
            return None
        path, size, sha = prev
        file = self.folder / path
        if not file.is_file() or file.stat().st_size != size:
            return None
        self._rows[path] = (size, sha, input_key)
        self.reused += 1
        self.size += size
        return path

    def put(self, data: bytes, suffix: str = ".glb", input_key: str | None = None) -> str:
        """Write one content file (named by its sha256) and list it; returns its path in the
        tileset's folder. Identical content already on disk is not written again."""
        sha = _sha256(data)
        path = sha[:32] + suffix
        file = self.folder / path
        if not (file.is_file() and file.stat().st_size == len(data)):
            _write_atomic(file, data)
            self._created.append(file)
            self.written += 1
        else:
            self.reused += 1
        self._rows[path] = (len(data), sha, input_key)
        self.size += len(data)
        return path

    def finish(self, document: Mapping[str, Any], stats: dict[str, Any], inputs: str) -> None:
        """List this generation, keep the document; after the commit write tileset.json and
        delete the files of generations before the previous one."""
        con = self.store.con
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        sha = _sha256(text)
        stats = {**stats, "tiles": len(self._rows), "bytes": self.size + len(text)}
        con.execute("DELETE FROM tilesets WHERE name = ?", [self.name])
        con.execute(
            "INSERT INTO tilesets (name, generation, document, sha256, stats, inputs) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [self.name, self.generation, text.decode("utf-8"), sha, json.dumps(stats), inputs],
        )
        if self._rows:
            import pyarrow as pa

            paths = sorted(self._rows)
            _rows = pa.table(  # read by name below; executemany binds each row (1.8 s for 1,100)
                {
                    "tileset": [self.name] * len(paths),
                    "generation": [self.generation] * len(paths),
                    "path": paths,
                    "bytes": [self._rows[p][0] for p in paths],
                    "sha256": [self._rows[p][1] for p in paths],
                    "input_key": [self._rows[p][2] for p in paths],
                }
            )
            con.execute("INSERT INTO tiles SELECT * FROM _rows")
        con.execute(
            "DELETE FROM tiles WHERE tileset = ? AND generation < ?",
            [self.name, self.generation - 1],
        )
        folder = self.folder

        def publish() -> None:
            _write_atomic(folder / TILESET_JSON, text)
            keep = _kept_files(con, self.name)
            for f in folder.iterdir():
                stale = f.is_file() and f.name != TILESET_JSON and f.name not in keep
                if stale and not _TMP_RE.match(f.name):
                    f.unlink(missing_ok=True)

        self.store.after_commit(publish)


def _kept_files(con: duckdb.DuckDBPyConnection, tileset: str) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT path FROM tiles WHERE tileset = ?", [tileset]).fetchall()
    }


def recover_tiles(con: duckdb.DuckDBPyConnection, store_path: Path) -> None:
    """At open: rewrite a tileset.json a crash left stale (the commit happened, the file was not
    replaced), and delete files no row names (a build killed before its commit)."""
    root = tiles_dir_of(store_path)
    if not root.is_dir():
        return
    documents = {
        name: (doc, sha)
        for name, doc, sha in con.execute("SELECT name, document, sha256 FROM tilesets").fetchall()
    }
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        if folder.name not in documents:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        doc, sha = documents[folder.name]
        target = folder / TILESET_JSON
        if not target.is_file() or _sha256(target.read_bytes()) != sha:
            with contextlib.suppress(OSError):
                _write_atomic(target, doc.encode("utf-8"))
                log.warning("%s: tileset.json restored from the store", folder)
        keep = _kept_files(con, folder.name)
        for f in folder.iterdir():
            if not f.is_file() or f.name == TILESET_JSON or f.name in keep:
                continue
            m = _TMP_RE.match(f.name)
            if m and int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1))):
                continue
            f.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TilesetState(TypedDict):
    """What ``cim status`` says of one tileset."""

    name: str
    generation: int
    state: str  # ok | missing | stale
    tiles: int
    bytes: int
    built_at: str


def inputs_digest(con: duckdb.DuckDBPyConnection, tileset: str) -> str:
    """A digest of what a tileset is built from: its tiles are stale when it changes. The
    sources (their bytes and state) and the placements cover buildings and models; the point
    files cover the points."""
    h = hashlib.sha256(tileset.encode())
    queries = {
        "points": ["SELECT file, points FROM point_files ORDER BY file"],
    }.get(
        tileset,
        [
            "SELECT id, sha256, status FROM sources ORDER BY id",
            "SELECT source_id, matrix::VARCHAR FROM placements ORDER BY source_id",
            # the analyzers' figures the buildings carry (prefab rate and grade)
            "SELECT analyzer, subject, fingerprint FROM analyses ORDER BY analyzer, subject",
        ],
    )
    for sql in queries:
        for row in con.execute(sql).fetchall():
            h.update(repr(row).encode())
    return h.hexdigest()[:32]


def tileset_states(con: duckdb.DuckDBPyConnection, store_path: Path) -> list[TilesetState]:
    """Each built tileset: ok, missing (its folder or a file is gone: a store copied without
    its tiles) or stale (the store changed since it was built)."""
    out: list[TilesetState] = []
    rows = con.execute(
        "SELECT name, generation, stats, inputs, built_at FROM tilesets ORDER BY name"
    ).fetchall()
    for name, generation, stats, inputs, built_at in rows:
        folder = tiles_dir_of(store_path) / name
        files = [
            r[0]
            for r in con.execute(
                "SELECT path FROM tiles WHERE tileset = ? AND generation = ?", [name, generation]
            ).fetchall()
        ]
        present = (folder / TILESET_JSON).is_file() and all((folder / f).is_file() for f in files)
        state = "missing" if not present else "ok"
        if state == "ok" and inputs != inputs_digest(con, name):
            state = "stale"
        s = json.loads(stats) if stats else {}
        out.append(
            {
                "name": name,
                "generation": int(generation),
                "state": state,
                "tiles": int(s.get("tiles", len(files))),
                "bytes": int(s.get("bytes", 0)),
                "built_at": built_at.isoformat(timespec="seconds"),
            }
        )
    return out


class ExportedTileset(TypedDict):
    name: str
    generation: int
    files: int
    bytes: int


def export_tiles(
    con: duckdb.DuckDBPyConnection, store_path: Path, dest: Path
) -> list[ExportedTileset]:
    """Copy the current generation of every tileset to ``dest/<tileset>/``, each file checked
    against its sha256; each tileset's folder is replaced whole (written beside, then renamed),
    so a server reading ``dest`` sees the old tileset or the new one, never a mix."""
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file: give a folder to export the tiles into")
    rows = con.execute("SELECT name, generation, document FROM tilesets ORDER BY name").fetchall()
    if not rows:
        raise StoreError(f"{store_path} has no tiles yet: run `cim tile` first")
    dest.mkdir(parents=True, exist_ok=True)
    out: list[ExportedTileset] = []
    for name, generation, document in rows:
        source = tiles_dir_of(store_path) / name
        files = con.execute(
            "SELECT path, sha256, bytes FROM tiles WHERE tileset = ? AND generation = ? "
            "ORDER BY path",
            [name, generation],
        ).fetchall()
        staging = dest / f".{name}.export-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        total = 0
        try:
            for path, sha, size in files:
                data = (source / path).read_bytes() if (source / path).is_file() else b""
                if len(data) != size or _sha256(data) != sha:
                    raise StoreError(
                        f"{source / path} is missing or damaged (a store copied without its "
                        f".tiles folder?): run `cim tile` to write the tiles again"
                    )
                (staging / path).write_bytes(data)
                total += size
            (staging / TILESET_JSON).write_text(document, encoding="utf-8")
            target = dest / name
            old = dest / f".{name}.old-{os.getpid()}"
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        out.append(
            {"name": name, "generation": int(generation), "files": len(files) + 1, "bytes": total}
        )
    return out
