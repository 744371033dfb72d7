"""The tilesets built from the real samples load in CesiumJS in headless Chromium: no tileFailed,
no page error, no request off 127.0.0.1, and picking returns the store's own attributes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cim.store import Store
from cim.tilefiles import tiles_dir_of
from tests.browser import TilesBrowser
from tests.conftest import ROOT, SAMPLES, MakeStore
from tests.page_city import district
from tests.test_tiles import ingest
from tiles.build import build_tilesets

pytestmark = pytest.mark.browser
DOCS = ROOT / "docs"


def _district(store: Store, tmp_path: Path) -> None:
    """Two sample models at Tongliao among footprints of a street grid around them."""
    district(store, tmp_path, lambda rng: {"height": float(rng.choice([9, 18, 33, 54]))})


def test_city_and_bim_tilesets_load_and_pick(
    store: Store, tmp_path: Path, tiles_browser: TilesBrowser
) -> None:
    _district(store, tmp_path)
    build_tilesets(store, ["buildings", "bim"])
    tiles = tiles_dir_of(store.path)
    tp = tiles_browser.open_tileset(tiles, ["buildings/tileset.json"], viewport=(800, 600))
    tp.settle()
    found: dict[int, dict[str, object]] = {}
    for fx in np.linspace(0.1, 0.9, 9):
        for fy in np.linspace(0.2, 0.8, 7):
            picked = tp.pick(800 * fx, 600 * fy)
            if picked and "id" in picked["properties"]:
                found[int(picked["properties"]["id"])] = picked["properties"]
    assert len(found) >= 5, "picking found too few buildings"
    rows = dict(store.con.execute("SELECT id, name FROM buildings").fetchall())
    for bid, props in found.items():
        assert bid in rows and (props.get("name") or None) == rows[bid]
    png = tp.screenshot(tmp_path / "city.png")
    px = tp.pixels(png)
    assert (np.abs(px[:, :, :3].astype(int) - px[0, 0, :3]).sum(axis=2) > 30).mean() > 0.05
    DOCS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "city.png", DOCS / "tiles-harness.png")
    tp.assert_clean()

    bim = tiles_browser.open_tileset(tiles, ["bim/tileset.json"], viewport=(640, 480))
    bim.settle()
    elements = [
        p
        for fx in np.linspace(0.05, 0.95, 19)
        for fy in np.linspace(0.05, 0.95, 15)
        if (p := bim.pick(640 * fx, 480 * fy)) and "global_id" in p["properties"]
    ]
    assert elements, "picking in the BIM tileset found no element"
    guids = {r[0] for r in store.con.execute("SELECT global_id FROM elements").fetchall()}
    assert all(e["properties"]["global_id"] in guids for e in elements)
    bim.assert_clean()


def test_point_tileset_loads(make_store: MakeStore, tiles_browser: TilesBrowser) -> None:
    store = make_store("EPSG:2154")
    for laz in sorted((SAMPLES / "lidar" / "montpellier").glob("*.laz"))[:2]:
        ingest(store, laz)
    build_tilesets(store, ["points"])
    tp = tiles_browser.open_tileset(tiles_dir_of(store.path), ["points/tileset.json"])
    tp.settle()
    picked = tp.pick_center()
    assert picked is None or "classification" in picked["properties"]
    tp.assert_clean()
