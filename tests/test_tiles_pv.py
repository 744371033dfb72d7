"""The rooftop PV facet tileset (tiles/pv.py): every facet the PV analyzer stored is one feature
with its figures, its usable part coloured by specific yield on the page's legend, the rest
grey; the tiles pass the Khronos validator and the structural checks, and go stale when the
results change."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.analyze import run_analyzer
from cim.analyze.pv import PvAnalyzer, load_rules
from cim.executor import SerialExecutor
from cim.model.analyses import stored
from cim.store import Store
from cim.tilefiles import tileset_states
from ingest import Anchor, IngestOptions, run_ingest
from tests.conftest import ROOT, SAMPLES
from tests.test_pv import LAT, LON, _layer
from tests.test_tiles import glbs, tileset, validate
from tiles import pv as pv_tiles
from tiles.build import build_tilesets
from tiles.frame import Frame
from tiles.gltf import feature_ids, property_tables, read_glb
from tiles.tileset import check_tileset


@pytest.fixture
def city(tmp_path: Path) -> Store:
    """AC20-FZK-Haus at Tongliao (a 30-degree gable roof: a south half used, a north half left
    out), a flat box east of it and a 3 x 3 m kiosk (too small after the setback)."""
    store = Store.create(tmp_path / "pv.duckdb", "EPSG:4550", origin=(LON, LAT))
    opts = IngestOptions(anchor=Anchor(LON, LAT, 180.0, 0.0))
    run_ingest(store, SAMPLES / "ifc" / "AC20-FZK-Haus.ifc", opts, SerialExecutor())
    boxes = [(30.0, -10.0, 16.0, 12.0, 9.0), (30.0, 20.0, 3.0, 3.0, 3.0)]
    run_ingest(
        store,
        _layer(tmp_path / "b.geojson", boxes),
        IngestOptions(role="buildings"),
        SerialExecutor(),
    )
    run_analyzer(store, PvAnalyzer())
    return store


def _primitives(data: bytes) -> list[tuple[tuple[float, ...], np.ndarray, np.ndarray]]:
    """Each primitive's material colour, its positions (glTF axes) and its feature ids."""
    doc, binary = read_glb(data)
    ids = feature_ids(data)
    out = []
    for k, prim in enumerate(doc["meshes"][0]["primitives"]):
        acc = doc["accessors"][prim["attributes"]["POSITION"]]
        v = doc["bufferViews"][acc["bufferView"]]
        start = v.get("byteOffset", 0) + acc.get("byteOffset", 0)
        xyz = np.frombuffer(binary, "<f4", acc["count"] * 3, start).reshape(-1, 3)
        colour = doc["materials"][prim["material"]]["pbrMetallicRoughness"]["baseColorFactor"]
        out.append((tuple(colour), xyz.astype(np.float64), ids[k][0]))
    return out


def _area(xyz: np.ndarray) -> float:
    t = xyz.reshape(-1, 3, 3)
    return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())


def test_every_facet_is_a_feature_coloured_by_its_yield(city: Store) -> None:
    report = build_tilesets(city, ["pv"])["pv"]
    folder, doc = tileset(city, "pv")
    assert check_tileset(folder) == []
    tiles = glbs(folder, doc)
    validate([folder / t["content"]["uri"] for t, _ in tiles])
    results = {
        int(r["building_id"]): r["result"]
        for r in stored(city, "pv").values()
        if r["building_id"] is not None
    }
    expected = {f"{b}.{f['facet']}": f for b, r in results.items() for f in r["facets"]}
    assert report["facets"] == len(expected) == 4
    seen: dict[str, dict[str, Any]] = {}
    coloured: dict[str, float] = {}
    grey: dict[str, float] = {}
    for _, data in tiles:
        table = property_tables(data)["facet"]
        rows = [dict(zip(table, vals, strict=True)) for vals in zip(*table.values(), strict=True)]
        for colour, xyz, fid in _primitives(data):
            for row_no in np.unique(fid).astype(int):
                f = rows[row_no]
                area = _area(xyz[fid == row_no])
                target = grey if colour == pv_tiles.rgba(pv_tiles.UNUSABLE) else coloured
                target[f["facet_id"]] = target.get(f["facet_id"], 0.0) + area
                if target is coloured:
                    assert colour == pv_tiles.rgba(pv_tiles.yield_colour(f["kwh_per_kwp"]))
        seen.update({r["facet_id"]: r for r in rows})
    assert set(seen) == set(expected)
    for fid, f in expected.items():
        row = seen[fid]
        assert row["tilt"] == f["tilt_deg"] and row["azimuth"] == f["azimuth_deg"]
        assert row["usable_area_m2"] == f["usable_area_m2"] and row["usable"] == f["usable"]
        # the drawn pieces cover the facet: its usable part coloured, the rest grey
        assert coloured.get(fid, 0.0) == pytest.approx(f["usable_area_m2"], rel=0.01, abs=0.05)
        total = coloured.get(fid, 0.0) + grey.get(fid, 0.0)
        assert total == pytest.approx(f["area_m2"], rel=0.01)
        if f["usable"]:
            assert row["kwh_per_year"] == f["kwh_per_year"] and row["kwp"] == f["kwp"]
            assert row["shading_loss"] == f["shading_loss"]
            assert row["kwh_per_m2"] == pytest.approx(
                f["kwh_per_year"] / f["usable_area_m2"], abs=0.1
            )
        else:
            assert row["excluded_by"] == f["excluded_by"]["rule"] and row["why"]
            assert row["kwh_per_year"] is None  # no data
    reasons = {seen[k]["excluded_by"] for k, f in expected.items() if not f["usable"]}
    assert reasons == {"north-facing", "min-area"}
    south = next(r for r in seen.values() if r["usable"] and r["tilt"] > 20)
    flat = next(r for r in seen.values() if r["usable"] and r["tilt"] < 1)
    assert south["kwh_per_kwp"] > flat["kwh_per_kwp"]  # and so a darker colour or the same


def test_facets_float_a_few_centimetres_above_their_roof(city: Store) -> None:
    build_tilesets(city, ["pv"])
    folder, doc = tileset(city, "pv")
    frame = Frame(city.crs, city.project_origin)
    roof_up = {}  # facet id -> the ENU height of its roof (flat facets)
    for r in stored(city, "pv").values():
        for f in r["result"].get("facets", []) if r["building_id"] is not None else []:
            if f["tilt_deg"] < 1:
                up = frame.to_enu(np.asarray(f["outline"][0], dtype=np.float64))[:, 2].mean()
                roof_up[f"{r['building_id']}.{f['facet']}"] = up
    assert roof_up
    checked = 0
    for _, data in glbs(folder, doc):
        node = read_glb(data)[0]["nodes"][0]
        lift = np.asarray(node.get("translation", [0.0, 0.0, 0.0]))[1]  # glTF y is up
        rows = property_tables(data)["facet"]["facet_id"]
        for _, xyz, fid in _primitives(data):
            for row_no in np.unique(fid).astype(int):
                if rows[row_no] in roof_up:
                    up = xyz[fid == row_no][:, 1] + lift
                    assert np.ptp(up) < 0.01
                    assert up.mean() - roof_up[rows[row_no]] == pytest.approx(
                        pv_tiles.LIFT, abs=0.01
                    )
                    checked += 1
    assert checked >= len(roof_up)


def test_new_results_make_the_tileset_stale_and_a_rebuild_draws_them(
    city: Store, tmp_path: Path
) -> None:
    build_tilesets(city, ["pv"])
    assert {s["name"]: s["state"] for s in tileset_states(city.con, city.path)}["pv"] == "ok"
    doc = json.loads(load_rules().path.read_text())
    next(r for r in doc["usable"] if r["id"] == "edge-setback")["setback_m"] = 1.5
    rules = tmp_path / "pv-rules-wide-setback.json"
    rules.write_text(json.dumps(doc))
    run_analyzer(city, PvAnalyzer(rules=load_rules(rules)))
    assert {s["name"]: s["state"] for s in tileset_states(city.con, city.path)}["pv"] == "stale"
    before = build_tilesets(city, ["pv"])["pv"]
    assert before["files_written"] >= 1
    folder, doc2 = tileset(city, "pv")
    usable = [
        a for _, g in glbs(folder, doc2) for a in property_tables(g)["facet"]["usable_area_m2"]
    ]
    stored_usable = [
        f["usable_area_m2"]
        for r in stored(city, "pv").values()
        if r["building_id"] is not None
        for f in r["result"]["facets"]
    ]
    assert sorted(usable) == sorted(stored_usable)
    assert build_tilesets(city, ["pv"])["pv"]["files_written"] == 0  # nothing changed


def test_no_pv_results_no_tileset(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "empty.duckdb", "EPSG:4550")
    try:
        assert "skipped" in build_tilesets(store, ["pv"])["pv"]
    finally:
        store.close()


def test_the_page_legend_has_the_tiles_buckets_and_colours() -> None:
    """colour.js PV_FACETS draws the legend of the colours tiles/pv.py bakes in."""
    js = (ROOT / "viewer" / "static" / "colour.js").read_text()
    block = re.search(r"export const PV_FACETS = \{(.*?)\};", js, re.S)
    assert block is not None
    edges = re.search(r"edges: \[([^\]]*)\]", block.group(1))
    assert edges is not None
    assert tuple(float(v) for v in edges.group(1).split(",")) == pv_tiles.YIELD_EDGES
    ramp = re.search(r"const RAMP = \[([^\]]*)\]", js)
    assert ramp is not None
    assert tuple(re.findall(r"#[0-9a-f]{6}", ramp.group(1))) == pv_tiles.YIELD_RAMP
    unknown = re.search(r'const UNKNOWN = "(#[0-9a-f]{6})"', js)
    assert unknown is not None and unknown.group(1) == pv_tiles.UNUSABLE
