"""CesiumJS in headless Chromium for the tests: serve tiles, load them, pick, take screenshots.

    @pytest.mark.browser
    def test_city_loads(tiles_browser, tmp_path):
        tp = tiles_browser.open_tileset(tmp_path / "tiles", ["buildings/tileset.json"])
        assert tp.pick_center()["properties"]["name"] == "..."
        tp.screenshot(tmp_path / "city.png")
        tp.assert_clean()

`tiles_browser` (a pytest fixture, registered in tests/conftest.py) starts a tiny threaded HTTP
server on 127.0.0.1 per page, with mounts: `/harness/` (tests/harness/, the page), `/cesium/`
(viewer/node_modules/cesium/Build/Cesium/), `/tiles/` (the folder given) and any others asked
for. It launches Debian's Chromium (/usr/bin/chromium, or $CIM_CHROMIUM) through Playwright with
SwiftShader WebGL and a fresh profile, records every request (a request off 127.0.0.1 is aborted
and fails the test), and collects console errors and page errors. The page's clock is pinned.

Without /usr/bin/chromium or viewer/node_modules the tests that use it are skipped, saying why;
with CIM_REQUIRE_BROWSER=1 (set by .ci/run) or CI set, they fail instead.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import shutil
import struct
import threading
import urllib.parse
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gltf import must_not_skip

ROOT = Path(__file__).resolve().parent.parent
HARNESS_DIR = Path(__file__).resolve().parent / "harness"
CESIUM_BUILD = ROOT / "viewer" / "node_modules" / "cesium" / "Build" / "Cesium"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# the instant every page sees as "now" (Date) and the scene's clock: noon in Tongliao
PINNED_TIME = dt.datetime(2025, 6, 21, 4, 0, 0, tzinfo=dt.UTC)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-default-browser-check",
]

MIME_TYPES = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".b3dm": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
    ".bin": "application/octet-stream",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".ktx2": "image/ktx2",
    ".svg": "image/svg+xml",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}


# -- the server -------------------------------------------------------------------------------


@dataclass
class Served:
    """One request the server answered."""

    method: str
    path: str
    status: int


class StaticServer:
    """Serves folders under URL prefixes on 127.0.0.1 from a thread; records every request.

    `mounts` maps a prefix ("/tiles/") to a folder. Unknown paths are 404, a path escaping its
    folder is 403, /favicon.ico is 204 (so Chromium's own request is no error).
    """

    def __init__(self, mounts: Mapping[str, Path | str]) -> None:
        self.mounts: dict[str, Path] = {}
        for prefix, folder in mounts.items():
            p = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
            self.mounts[p] = Path(folder).resolve()
        self.served: list[Served] = []
        self._lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def guess_type(self, path: str | os.PathLike[str]) -> str:
                known = MIME_TYPES.get(Path(path).suffix.lower())
                return known or super().guess_type(path)

            def translate_path(self, path: str) -> str:
                return server.resolve(path) or ""

            def send_head(self) -> Any:
                url_path = urllib.parse.urlsplit(self.path).path
                if url_path == "/favicon.ico":
                    self.send_response(HTTPStatus.NO_CONTENT)
                    self.end_headers()
                    return None
                target = server.resolve(self.path)
                if target is None:
                    self.send_error(HTTPStatus.NOT_FOUND, "not mounted")
                    return None
                if target == "":
                    self.send_error(HTTPStatus.FORBIDDEN, "outside the mount")
                    return None
                return super().send_head()

            def end_headers(self) -> None:
                self.send_header("Cache-Control", "no-store")
                super().end_headers()

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                status = code.value if isinstance(code, HTTPStatus) else code
                with server._lock:
                    server.served.append(
                        Served(self.command, self.path, int(status) if str(status).isdigit() else 0)
                    )

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def resolve(self, raw_path: str) -> str | None:
        """The file for a URL path; None when no mount has it, "" when it escapes its mount."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(raw_path).path)
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if path.startswith(prefix) or path + "/" == prefix:
                rel = posixpath.normpath(path[len(prefix) :] or ".")
                root = self.mounts[prefix]
                target = (root / rel).resolve()
                if target != root and root not in target.parents:
                    return ""
                return str(target)
        return None

    def start(self) -> StaticServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def failed(self) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.status >= 400]

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- screenshots ---------------------------------------------------------------------------------


def png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit, non-interlaced PNG (what Chromium's screenshots are) as RGBA uint8 (h, w, 4).

    A few lines of zlib and numpy, so the tests need no image library; the Average and Paeth
    filters are undone in Python, about 0.3 s for a 640x480 screenshot.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    off, idat = 8, bytearray()
    width = height = color_type = 0
    while off < len(data):
        length, kind = struct.unpack(">I4s", data[off : off + 8])
        body = data[off + 8 : off + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace != 0 or color_type not in (0, 2, 4, 6):
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {color_type}")
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        off += 12 + length
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        ftype, line = int(raw[y, 0]), raw[y, 1:].astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif ftype == 2:  # Up
            cur = (line + prev) & 0xFF
        elif ftype in (3, 4):  # Average, Paeth: each byte needs the one to its left
            cur_l = [0] * stride
            ln, up = line.tolist(), prev.tolist()
            for i in range(stride):
                a = cur_l[i - bpp] if i >= bpp else 0
                b = up[i]
                if ftype == 3:
                    cur_l[i] = (ln[i] + ((a + b) >> 1)) & 0xFF
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur_l[i] = (ln[i] + pred) & 0xFF
            cur = np.array(cur_l, dtype=np.int32)
        else:
            raise ValueError(f"bad PNG filter {ftype} in row {y}")
        out[y] = cur
        prev = cur
    px = out.reshape(height, width, bpp)
    if bpp == 4:
        return px
    rgba = np.full((height, width, 4), 255, dtype=np.uint8)
    if bpp in (1, 2):
        rgba[..., :3] = px[..., :1]
        if bpp == 2:
            rgba[..., 3] = px[..., 1]
    else:
        rgba[..., :3] = px
    return rgba


# -- what is needed, and skipping --------------------------------------------------------------


def chromium_path() -> str:
    return os.environ.get("CIM_CHROMIUM") or DEFAULT_CHROMIUM


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    exe = chromium_path()
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return f"{exe} is missing (apt-get install chromium)"
    if not (CESIUM_BUILD / "Cesium.js").is_file():
        return f"{CESIUM_BUILD} is missing: run `make install` (npm ci in viewer/)"
    return None


def require_browser() -> None:
    reason = browser_missing_reason()
    if reason is None:
        return
    if must_not_skip():
        pytest.fail(f"browser tests required (CI / CIM_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(reason)


# -- one page ----------------------------------------------------------------------------------


def _is_local(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname == "127.0.0.1"


@dataclass
class TilesPage:
    """The harness page with its tilesets loaded, and everything seen while it ran."""

    page: Any  # playwright.sync_api.Page
    server: StaticServer
    url: str
    requests: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def harness_errors(self) -> list[dict[str, str]]:
        """window.cimHarness.errors: tileFailed, tileset load, render and page errors."""
        errors: list[dict[str, str]] = self.page.evaluate("() => window.cimHarness.errors")
        return errors

    def pick(self, x: float, y: float) -> dict[str, Any] | None:
        """The feature at canvas CSS pixel x, y: {tileset, tilesetIndex, featureId, className,
        properties} or None."""
        result: dict[str, Any] | None = self.page.evaluate(
            "([x, y]) => window.cimHarness.pick(x, y)", [x, y]
        )
        return result

    def pick_center(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.page.evaluate("() => window.cimHarness.pickCenter()")
        return result

    def settle(self, timeout_s: float = 60.0) -> None:
        """Waits until every tile the view needs is loaded and two more frames are drawn."""
        self.page.evaluate("(ms) => window.cimHarness.settle(ms)", int(timeout_s * 1000))

    def screen_position(self, index: int = 0) -> tuple[float, float] | None:
        """Canvas CSS pixel of tileset `index`'s bounding sphere centre (None: behind camera)."""
        p = self.page.evaluate("(i) => window.cimHarness.screenPosition(i)", index)
        return None if p is None else (p["x"], p["y"])

    def set_tilesets_visible(self, visible: bool) -> None:
        self.page.evaluate("(v) => window.cimHarness.setTilesetsVisible(v)", visible)
        self.settle()

    def screenshot(self, path: Path | str | None = None) -> bytes:
        """A PNG of the page once the tiles have settled; written to `path` when given."""
        self.settle()
        png: bytes = self.page.screenshot(animations="disabled", caret="hide")
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(png)
        return png

    def pixels(self, png: bytes) -> np.ndarray:
        """A PNG (a screenshot) as an RGBA uint8 array (height, width, 4)."""
        return png_pixels(png)

    def problems(self) -> list[str]:
        """Everything that makes a load unclean, one line each."""
        lines = [f"request off 127.0.0.1: {u}" for u in self.offsite]
        lines += [f"page error: {e}" for e in self.page_errors]
        lines += [f"console error: {e}" for e in self.console_errors]
        try:
            lines += [
                f"harness {e['kind']}: {e['message']}" + (f" ({e['url']})" if "url" in e else "")
                for e in self.harness_errors()
                if e["kind"] != "pageerror"  # already among the page errors
            ]
        except Exception as e:  # the page itself is gone
            lines.append(f"harness unreachable: {e}")
        lines += [f"HTTP {s.status}: {s.method} {s.path}" for s in self.server.failed()]
        return lines

    def assert_clean(self) -> None:
        """Fails listing every off-host request, page or console error, tileFailed and HTTP
        error seen so far."""
        problems = self.problems()
        if problems:
            pytest.fail("browser run not clean:\n  " + "\n  ".join(problems), pytrace=False)


class TilesBrowser:
    """Opens the harness page on tilesets in Chromium; one fresh profile per page."""

    def __init__(self, playwright: Any, profile_root: Path) -> None:
        self._pw = playwright
        self._profile_root = profile_root
        self._open: list[tuple[Any, StaticServer, TilesPage]] = []

    def open_tileset(
        self,
        tiles_dir: Path | str,
        tilesets: Sequence[str] = ("tileset.json",),
        *,
        mounts: Mapping[str, Path | str] | None = None,
        params: Mapping[str, str] | None = None,
        viewport: tuple[int, int] = (640, 480),
        wait: bool = True,
        timeout_s: float = 60.0,
        pin_clock: bool = True,
    ) -> TilesPage:
        """The harness page on `tilesets` (paths under `tiles_dir`, served at /tiles/, or
        absolute URL paths such as "/other/tileset.json" of an extra mount). With `wait` it
        returns once every tileset raised initialTilesLoaded, and fails the test (listing what
        went wrong) on tileFailed, a page error, a request off 127.0.0.1 or a timeout."""
        server = StaticServer(
            {
                "/harness/": HARNESS_DIR,
                "/cesium/": CESIUM_BUILD,
                "/tiles/": Path(tiles_dir),
                **(mounts or {}),
            }
        ).start()
        n = len(self._open)
        context = self._pw.chromium.launch_persistent_context(
            str(self._profile_root / f"profile-{n}"),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
            device_scale_factor=1,
            service_workers="block",
            offline=False,
        )
        query: list[tuple[str, str]] = [
            ("tileset", t if t.startswith("/") else "/tiles/" + t.lstrip("/")) for t in tilesets
        ]
        query += list((params or {}).items())
        url = f"{server.base_url}/harness/index.html?{urllib.parse.urlencode(query)}"
        page = context.pages[0] if context.pages else context.new_page()
        tp = TilesPage(page=page, server=server, url=url)
        self._open.append((context, server, tp))

        def route(r: Any) -> None:
            u = r.request.url
            if _is_local(u):
                r.continue_()
            else:
                tp.offsite.append(u)
                r.abort("blockedbyclient")

        context.route("**/*", route)
        page.on("request", lambda req: tp.requests.append(req.url))
        page.on(
            "console",
            lambda msg: tp.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda err: tp.page_errors.append(str(err)))
        if pin_clock:
            page.clock.set_fixed_time(PINNED_TIME)
        page.goto(url, wait_until="load", timeout=timeout_s * 1000)
        if wait:
            self.wait_ready(tp, timeout_s)
        return tp

    def wait_ready(self, tp: TilesPage, timeout_s: float = 60.0) -> dict[str, Any]:
        """Waits for window.cimHarness.ready; fails the test with every problem seen."""
        try:
            result: dict[str, Any] = tp.page.evaluate(
                """(ms) => Promise.race([
                    window.cimHarness.ready,
                    new Promise((_, reject) => setTimeout(
                        () => reject(new Error(`initialTilesLoaded not raised in ${ms} ms`)), ms)),
                ])""",
                int(timeout_s * 1000),
            )
        except Exception as e:
            lines = [str(e).splitlines()[0], *tp.problems()]
            pytest.fail("tilesets did not load:\n  " + "\n  ".join(lines), pytrace=False)
        tp.assert_clean()
        return result

    def close(self) -> None:
        for context, server, _ in self._open:
            try:
                context.close()
            finally:
                server.close()
        self._open.clear()


@pytest.fixture(scope="session")
def _playwright() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def tiles_browser(_playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A `TilesBrowser`: `open_tileset(tiles_dir, ["tileset.json"]) -> TilesPage`. Every page it
    opened is checked at the end: a request off 127.0.0.1 fails the test even if the test
    itself did not call `assert_clean()`."""
    require_browser()
    profiles = tmp_path_factory.mktemp("chromium-profile")
    tb = TilesBrowser(_playwright, profiles)
    try:
        yield tb
        offsite = [u for _, _, tp in tb._open for u in tp.offsite]
        if offsite:
            pytest.fail("requests off 127.0.0.1:\n  " + "\n  ".join(offsite), pytrace=False)
    finally:
        tb.close()
        shutil.rmtree(profiles, ignore_errors=True)
