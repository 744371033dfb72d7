"""Tiles from the files beside the store: ``/tiles/{tileset}/{file}``.

Content files are named by their sha256, so they never change: they are sent with
``Cache-Control: immutable`` and a year's max-age. ``tileset.json`` is replaced when a tileset
is rebuilt, so clients revalidate it (``no-cache``; its ETag answers 304 while it is unchanged).

Tiles are most of a map's requests, so they are answered by a bare ASGI app in front of the
FastAPI router and its middleware (``TileFiles``): files up to ``SMALL_FILE`` are kept in memory
(bounded, least recently used first out), checked against one ``stat`` per request, and JSON is
kept gzipped beside its plain bytes. It answers ETags and ``If-None-Match`` (304), one byte range
(206, or 416), ``HEAD``, and errors in the API's one shape. Only the store's own tilesets are
served: a path is a tileset's name and plain file names (no dot segments, no hidden files), and
the file found must lie inside the tiles folder. On a private server a tile needs a token too.
"""

from __future__ import annotations

import gzip
import json
import mimetypes
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from cim.errors import CimError
from cim.tilefiles import TILESET_JSON, TILESETS, tiles_dir_of

mimetypes.add_type("model/gltf-binary", ".glb")
mimetypes.add_type("application/wasm", ".wasm")
IMMUTABLE = "public, max-age=31536000, immutable"
_IMMUTABLE = IMMUTABLE.encode()
_TILESET_JSON = "/" + TILESET_JSON
PREFIX = "/tiles/"
#: files up to this size are served from memory; larger ones are read from disk per request
SMALL_FILE = 4 << 20
#: the memory the cache may hold
CACHE_BYTES = 256 << 20
#: JSON at least this large is sent gzipped to clients that accept it
GZIP_MIN = 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]*$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 20

#: checks a private server's request (raises a CimError when it may not read), given the scope
Guard = Callable[[Scope], Awaitable[None]]


@dataclass(frozen=True)
class _Entry:
    path: str
    key: tuple[int, int, int]  # inode, size, mtime_ns: a replaced file is a new entry
    etag: str
    media_type: str
    data: bytes | None  # None: too large to keep, read from disk
    gz: bytes | None = None

    @property
    def size(self) -> int:
        return self.key[1]


class TileCache:
    """Small tile files in memory, least recently used out first."""

    def __init__(self, capacity: int = CACHE_BYTES) -> None:
        self.capacity = capacity
        self.held = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, route: str) -> _Entry | None:
        """The entry of ``route`` (the caller checks it is still the file's: ``_Entry.key``)."""
        with self._lock:
            entry = self._entries.get(route)
            if entry is not None:
                self._entries.move_to_end(route)
            return entry

    def put(self, path: str, entry: _Entry) -> None:
        cost = len(entry.data or b"") + len(entry.gz or b"")
        if cost > self.capacity:
            return
        with self._lock:
            old = self._entries.pop(path, None)
            if old is not None:
                self.held -= len(old.data or b"") + len(old.gz or b"")
            self._entries[path] = entry
            self.held += cost
            while self.held > self.capacity:
                _, out = self._entries.popitem(last=False)
                self.held -= len(out.data or b"") + len(out.gz or b"")

    def drop_gone(self, prefix: str) -> int:
        """Forgets the files under ``prefix`` that are gone from the disk (or replaced): the
        tiles a rebuilt tileset no longer names. Without it a server that re-tiles every few
        minutes grows by the changed tiles each time, up to the cache's capacity."""
        with self._lock:
            routes = [r for r in self._entries if r.startswith(prefix)]
        gone = []
        for route in routes:
            entry = self._entries.get(route)
            if entry is None:
                continue
            try:
                if _key(os.stat(entry.path)) == entry.key:
                    continue
            except OSError:
                pass
            gone.append(route)
        with self._lock:
            for route in gone:
                out = self._entries.pop(route, None)
                if out is not None:
                    self.held -= len(out.data or b"") + len(out.gz or b"")
        return len(gone)


def _key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _entry(path: Path, key: tuple[int, int, int]) -> _Entry:
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    etag = f'"{key[1]:x}-{key[2]:x}"'
    if key[1] > SMALL_FILE:
        return _Entry(str(path), key, etag, media, None)
    data = path.read_bytes()
    gz = None
    if media == "application/json" and len(data) >= GZIP_MIN:
        gz = gzip.compress(data, compresslevel=6, mtime=0)
    return _Entry(str(path), (key[0], len(data), key[2]), etag, media, data, gz)


class TileFiles:
    """The store's tiles folder at ``/tiles/...``, answered before the app's router; every
    other request goes on to ``app``."""

    def __init__(self, app: ASGIApp, store_path: Path, guard: Guard | None = None) -> None:
        self.app = app
        self.folder = tiles_dir_of(store_path)
        self.folder.mkdir(exist_ok=True)
        self.root = self.folder.resolve()
        self.guard = guard
        self.cache = TileCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            await self._serve(scope, send)
        except CimError as exc:
            await _error(send, exc.http_status, exc.code, exc.message)

    def _find(self, route: str) -> tuple[str, _Entry | None, os.stat_result]:
        """The file of ``route`` and, when it is in memory, its entry."""
        known = self.cache.get(route)
        if known is not None:  # a route served before: one stat tells whether it changed
            try:
                st = os.stat(known.path)
            except OSError:
                raise _NotFound(route) from None
            if _key(st) == known.key:
                return known.path, known, st
        parts = route.split("/")
        if (
            len(parts) < 2
            or parts[0] not in TILESETS
            or not all(_SEGMENT.match(p) and p not in (".", "..") for p in parts)
        ):
            raise _NotFound(route)
        path = os.path.join(self.folder, *parts)
        try:
            st = os.stat(path)
        except OSError:
            raise _NotFound(route) from None
        if not stat.S_ISREG(st.st_mode):
            raise _NotFound(route)
        return path, None, st

    def _load(self, route: str, name: str, st: os.stat_result) -> _Entry:
        """A file not in memory (run on a worker thread: it reads the disk)."""
        path = Path(name)
        # a symbolic link may point anywhere: what is served must lie inside the folder
        if not path.resolve().is_relative_to(self.root):
            raise _NotFound(route)
        try:
            entry = _entry(path, _key(st))
        except OSError:
            raise _NotFound(route) from None
        if entry.data is not None:
            self.cache.put(route, entry)
        if route.endswith(_TILESET_JSON):  # a new generation: its old tiles are deleted
            self.cache.drop_gone(route[: -len(TILESET_JSON)])
        return entry

    async def _serve(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _error(send, 405, "method_not_allowed", "tiles are read with GET or HEAD")
            return
        if self.guard is not None:
            await self.guard(scope)
        route = scope["path"][len(PREFIX) :]
        path, found, st = self._find(route)
        if found is None:
            entry = await anyio.to_thread.run_sync(self._load, route, path, st)
        else:
            entry = found
        headers = _request_headers(scope)
        gzipped = entry.gz is not None and "gzip" in headers.get("accept-encoding", "")
        etag = entry.etag[:-1] + '-gz"' if gzipped else entry.etag
        out = [
            (b"etag", etag.encode()),
            (b"cache-control", (b"no-cache" if route.endswith(_TILESET_JSON) else _IMMUTABLE)),
            (b"access-control-allow-origin", b"*"),
            (b"access-control-expose-headers", b"ETag, Content-Length, Content-Range"),
        ]
        if entry.gz is not None:
            out.append((b"vary", b"Accept-Encoding"))
        if _matches(headers.get("if-none-match"), etag):
            await send({"type": "http.response.start", "status": 304, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            return
        out.append((b"content-type", entry.media_type.encode()))
        if gzipped:
            assert entry.gz is not None
            out.append((b"content-encoding", b"gzip"))
            await _send(send, 200, out, entry.gz, method)
            return
        out.append((b"accept-ranges", b"bytes"))
        status, start, end = 200, 0, entry.size
        wanted = headers.get("range")
        if wanted and _matches(headers.get("if-range", etag), etag):
            span = _byte_range(wanted, entry.size)
            if span is None:
                out.append((b"content-range", f"bytes */{entry.size}".encode()))
                await _error(send, 416, "range_not_satisfiable", f"no bytes {wanted}", out)
                return
            if span != (0, entry.size):
                status, (start, end) = 206, span
                out.append((b"content-range", f"bytes {start}-{end - 1}/{entry.size}".encode()))
        if entry.data is not None:
            await _send(send, status, out, entry.data[start:end], method)
        else:
            await _send_file(send, status, out, path, start, end, method)


class _NotFound(CimError):
    http_status = 404
    code = "not_found"

    def __init__(self, route: str) -> None:
        super().__init__(f"no tile {route!r}: see /api/tilesets")


def _request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """One range of ``bytes=a-b`` as [start, end); the whole file for what is not a single
    byte range (several ranges: a server may send the whole); None when unsatisfiable."""
    m = _RANGE.match(header.strip().replace(" ", ""))
    if m is None:
        return (0, size)
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return (0, size)
    if not first:  # the last n bytes
        n = int(last)
        return (max(0, size - n), size) if n > 0 and size > 0 else None
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        return None
    return start, end


async def _send(send: Send, status: int, headers: list[Any], body: bytes, method: str) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _send_file(
    send: Send, status: int, headers: list[Any], path: str, start: int, end: int, method: str
) -> None:
    headers.append((b"content-length", str(end - start).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if method == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(start)
        left = end - start
        while left > 0:
            chunk = await f.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
    if left > 0:  # the file shrank under us (it never should: content files never change)
        await send({"type": "http.response.body", "body": b""})


async def _error(
    send: Send, status: int, code: str, message: str, headers: list[Any] | None = None
) -> None:
    body = json.dumps({"code": code, "message": message, "detail": None}).encode()
    out = [h for h in (headers or []) if h[0] in (b"content-range", b"access-control-allow-origin")]
    out.append((b"content-type", b"application/json"))
    if status == 401:
        out.append((b"www-authenticate", b"Bearer"))
    await _send(send, status, out, body, "GET")
