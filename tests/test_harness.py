"""The test harness itself, independent of the project's tile writers: the glTF validator helper
catches what it must, the static server serves what Cesium needs, and a one-box tileset made
here loads, renders and picks in CesiumJS in headless Chromium with every request on 127.0.0.1.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.browser import HARNESS_DIR, StaticServer, TilesBrowser
from tests.gltf import (
    ERROR,
    INFO,
    assert_valid_glb,
    require_validator,
    validate_glb,
)
from tests.minitiles import (
    PropertyValue,
    box_glb,
    enu_to_ecef,
    read_glb,
    write_box_tileset,
    write_glb,
)

PROPS: dict[str, PropertyValue] = {
    "id": "B-0001",
    "name": "Test box",
    "height": 30.0,
    "floors": 10,
    "use": "office",
}


@pytest.fixture
def validator() -> None:
    require_validator()


# -- the validator ------------------------------------------------------------------------------


def test_box_glb_is_valid(validator: None, tmp_path: Path) -> None:
    plain = tmp_path / "plain.glb"
    plain.write_bytes(box_glb())
    meta = tmp_path / "meta.glb"
    meta.write_bytes(box_glb(properties=PROPS))
    reports = assert_valid_glb([plain, meta])
    assert [r["path"] for r in reports] == [str(plain), str(meta)]
    assert all(r["numErrors"] == 0 for r in reports)


def test_metadata_extensions_are_info_not_error(validator: None, tmp_path: Path) -> None:
    """gltf-validator does not know EXT_mesh_features / EXT_structural_metadata: it says
    UNSUPPORTED_EXTENSION at severity info (2) for each and validates nothing inside them."""
    meta = tmp_path / "meta.glb"
    meta.write_bytes(box_glb(properties=PROPS))
    (report,) = validate_glb([meta])
    unsupported = {
        m["message"].split("'")[1]: m["severity"]
        for m in report["messages"]
        if m["code"] == "UNSUPPORTED_EXTENSION"
    }
    assert unsupported == {"EXT_mesh_features": INFO, "EXT_structural_metadata": INFO}
    assert report["numErrors"] == 0


def _broken_variants(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken glbs and the validator code each must give."""
    good = box_glb()
    doc, binary = read_glb(good)
    out: dict[str, tuple[Path, str]] = {}

    # an index pointing past the vertices
    d = json.loads(json.dumps(doc))
    idx = d["accessors"][d["meshes"][0]["primitives"][0]["indices"]]
    raw = bytearray(binary)
    view = d["bufferViews"][idx["bufferView"]]
    raw[view["byteOffset"] : view["byteOffset"] + 4] = (9999).to_bytes(4, "little")
    idx["max"] = [9999]
    out["index_oob"] = (tmp_path / "index_oob.glb", "ACCESSOR_INDEX_OOB")
    out["index_oob"][0].write_bytes(write_glb(d, bytes(raw)))

    # a buffer view longer than its buffer
    d = json.loads(json.dumps(doc))
    d["bufferViews"][0]["byteLength"] = len(binary) * 4
    out["view_too_long"] = (tmp_path / "view_too_long.glb", "BUFFER_VIEW_TOO_LONG")
    out["view_too_long"][0].write_bytes(write_glb(d, binary))

    # a mesh attribute naming an accessor that does not exist
    d = json.loads(json.dumps(doc))
    d["meshes"][0]["primitives"][0]["attributes"]["NORMAL"] = 99
    out["unresolved"] = (tmp_path / "unresolved.glb", "UNRESOLVED_REFERENCE")
    out["unresolved"][0].write_bytes(write_glb(d, binary))

    # cut in the middle of the binary chunk
    out["truncated"] = (tmp_path / "truncated.glb", "GLB_")
    out["truncated"][0].write_bytes(good[: len(good) // 2])

    out["not_gltf"] = (tmp_path / "not_gltf.glb", "NOT_GLTF")
    out["not_gltf"][0].write_bytes(b"this is not a glb at all")
    out["missing"] = (tmp_path / "missing.glb", "READ_ERROR")
    return out


def test_broken_glb_fails_with_each_error_listed(validator: None, tmp_path: Path) -> None:
    variants = _broken_variants(tmp_path)
    good = tmp_path / "good.glb"
    good.write_bytes(box_glb())
    paths = [good] + [p for p, _ in variants.values()]
    reports = validate_glb(paths)
    assert reports[0]["numErrors"] == 0
    for (name, (path, code)), report in zip(variants.items(), reports[1:], strict=True):
        assert report["path"] == str(path)
        assert report["numErrors"] > 0, name
        codes = [m["code"] for m in report["messages"] if m["severity"] == ERROR]
        assert any(c.startswith(code) for c in codes), (name, codes)

    with pytest.raises(pytest.fail.Exception) as failed:
        assert_valid_glb(paths)
    text = str(failed.value)
    assert f"{len(variants)} of {len(paths)} file(s) with errors" in text
    assert "ACCESSOR_INDEX_OOB /meshes/0/primitives/0/indices" in text
    assert "BUFFER_VIEW_TOO_LONG /bufferViews/0" in text
    assert str(good) + ":" not in text


def test_many_files_in_one_run(validator: None, tmp_path: Path) -> None:
    data = box_glb(properties=PROPS)
    paths = []
    for i in range(40):
        p = tmp_path / f"t{i:02d}.glb"
        p.write_bytes(data)
        paths.append(p)
    reports = assert_valid_glb(paths)
    assert [r["path"] for r in reports] == [str(p) for p in paths]
    assert validate_glb([]) == []


# -- the server ----------------------------------------------------------------------------------


def test_static_server_mime_types_and_mounts(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    write_box_tileset(tiles, properties=PROPS)
    (tmp_path / "secret.txt").write_text("no")
    wasm = tiles / "x.wasm"
    wasm.write_bytes(b"\0asm")
    with StaticServer({"/tiles/": tiles, "/harness/": HARNESS_DIR}) as server:

        def get(path: str) -> tuple[int, str, bytes]:
            try:
                with urllib.request.urlopen(server.base_url + path, timeout=5) as r:
                    return r.status, r.headers.get("Content-Type", ""), r.read()
            except urllib.error.HTTPError as e:
                return e.code, "", b""

        status, ctype, body = get("/tiles/box.glb")
        assert (status, ctype) == (200, "model/gltf-binary")
        assert body == (tiles / "box.glb").read_bytes()
        assert get("/tiles/tileset.json")[:2] == (200, "application/json")
        assert get("/tiles/x.wasm")[:2] == (200, "application/wasm")
        assert get("/harness/harness.js")[:2] == (200, "text/javascript")
        assert get("/tiles/nothing.glb")[0] == 404
        assert get("/elsewhere/box.glb")[0] == 404
        assert get("/tiles/../secret.txt")[0] in (403, 404)
        assert get("/tiles/%2e%2e/secret.txt")[0] == 403
        assert {s.path for s in server.served} >= {"/tiles/box.glb", "/tiles/nothing.glb"}
        assert [s.status for s in server.failed()].count(404) >= 2


def test_box_tileset_transform() -> None:
    m = np.array(enu_to_ecef(122.263, 43.617, 180.0)).reshape(4, 4).T  # column-major
    origin = m[:3, 3]
    assert 6.3e6 < np.linalg.norm(origin) < 6.4e6
    up = m[:3, 2]
    assert np.allclose(up, origin / np.linalg.norm(origin), atol=5e-3)  # geodetic ~ geocentric
    assert np.allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-12)


# -- CesiumJS in Chromium ------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_box_tileset_loads_renders_and_picks(tiles_browser: TilesBrowser, tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    write_box_tileset(tiles, properties=PROPS)
    assert_valid_glb([tiles / "box.glb"])

    tp = tiles_browser.open_tileset(tiles, ["tileset.json"])
    tp.assert_clean()
    assert tp.requests, "no request recorded"
    assert all(u.startswith(tp.server.base_url) or u.startswith("data:") for u in tp.requests)
    served = {s.path for s in tp.server.served}
    assert {"/tiles/tileset.json", "/tiles/box.glb", "/cesium/Cesium.js"} <= served

    picked = tp.pick_center()
    assert picked is not None, "nothing at the canvas centre"
    assert picked["tileset"] == "/tiles/tileset.json"
    assert picked["tilesetIndex"] == 0
    assert picked["featureId"] == 0
    assert picked["className"] == "building"
    assert picked["properties"] == PROPS
    assert tp.pick(2, 2) is None  # a corner: sky

    shot = tmp_path / "box.png"
    png = tp.screenshot(shot)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 1000
    with_box = tp.pixels(png)
    tp.set_tilesets_visible(False)
    without_box = tp.pixels(tp.screenshot())
    h, w, _ = with_box.shape
    centre = (slice(h // 2 - 20, h // 2 + 20), slice(w // 2 - 20, w // 2 + 20))
    differs = np.abs(
        with_box[centre][..., :3].astype(int) - without_box[centre][..., :3].astype(int)
    ).max(axis=-1)
    assert (differs > 30).mean() > 0.9, "the box does not cover the centre of the screenshot"
    # the box is shaded terracotta (200, 80, 40): red over blue
    rgb = with_box[centre][..., :3].reshape(-1, 3).astype(int)
    assert (rgb[:, 0] > rgb[:, 2] + 40).mean() > 0.9
    tp.assert_clean()


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_two_tilesets_and_plain_content(tiles_browser: TilesBrowser, tmp_path: Path) -> None:
    """Two tilesets (one without metadata) both load; picking plain content names its tileset."""
    write_box_tileset(tmp_path / "tiles" / "a", properties=PROPS)
    write_box_tileset(tmp_path / "tiles" / "b", lon=122.2634, size=(10.0, 10.0, 10.0))
    tp = tiles_browser.open_tileset(tmp_path / "tiles", ["a/tileset.json", "b/tileset.json"])
    ready = tp.page.evaluate("() => window.cimHarness.ready")
    assert [t["url"] for t in ready["tilesets"]] == [
        "/tiles/a/tileset.json",
        "/tiles/b/tileset.json",
    ]
    picked = []
    for i in (0, 1):
        pos = tp.screen_position(i)
        assert pos is not None
        picked.append(tp.pick(*pos))
    assert picked[0] is not None and picked[1] is not None
    assert picked[0]["tileset"] == "/tiles/a/tileset.json"
    assert picked[0]["properties"] == PROPS
    assert picked[1]["tileset"] == "/tiles/b/tileset.json"
    assert picked[1]["tilesetIndex"] == 1
    assert picked[1]["featureId"] is None and picked[1]["properties"] == {}
    tp.assert_clean()


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_tile_failed_fails_the_load(tiles_browser: TilesBrowser, tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    write_box_tileset(tiles)
    (tiles / "box.glb").unlink()
    with pytest.raises(pytest.fail.Exception) as failed:
        tiles_browser.open_tileset(tiles, ["tileset.json"])
    text = str(failed.value)
    assert "tileFailed" in text and "box.glb" in text
    assert "HTTP 404: GET /tiles/box.glb" in text


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_request_off_localhost_is_caught(tiles_browser: TilesBrowser, tmp_path: Path) -> None:
    """Content on another host (here 127.0.0.2, which is not the test server) is aborted and
    named; the fixture would fail the test at teardown even if nobody asked."""
    tiles = tmp_path / "tiles"
    write_box_tileset(tiles)
    ts = json.loads((tiles / "tileset.json").read_text())
    ts["root"]["content"]["uri"] = "http://127.0.0.2:9/box.glb"
    (tiles / "tileset.json").write_text(json.dumps(ts))
    with pytest.raises(pytest.fail.Exception) as failed:
        tiles_browser.open_tileset(tiles, ["tileset.json"])
    assert "request off 127.0.0.1: http://127.0.0.2:9/box.glb" in str(failed.value)
    for _, _, tp in tiles_browser._open:
        assert tp.offsite == ["http://127.0.0.2:9/box.glb"]
        tp.offsite.clear()  # seen and asserted: let the fixture's teardown pass
