"""3D Tiles from the store: the glb writer, LoD1 blocks, the frame, the buildings and BIM
tilesets, tile files beside the store (rollback, crash, copy without tiles, export) and the
incremental rebuild. The glbs pass the Khronos validator (tests/gltf.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer

from cim.executor import SerialExecutor
from cim.store import Store
from cim.tilefiles import TILESET_JSON, export_tiles, tiles_dir_of, tileset_states
from ingest import Anchor, IngestOptions, run_ingest
from tests.conftest import SAMPLES, MakeStore
from tests.ifc_models import storeyed
from tests.test_gis import write_layer
from tiles import buildings as city_tiles
from tiles.blocks import UNKNOWN_HEIGHT, extrude
from tiles.build import build_tilesets
from tiles.frame import Frame
from tiles.gltf import (
    FeatureTable,
    GlbBuilder,
    Primitive,
    Property,
    feature_ids,
    property_tables,
    read_glb,
)
from tiles.tileset import check_tileset, walk

BUBENEC = SAMPLES / "gis" / "bubenec.gpkg"
DUPLEX = SAMPLES / "ifc" / "duplex.ifc"


def ingest(store: Store, path: Path, **options: Any) -> None:
    run_ingest(store, path, IngestOptions(**options), SerialExecutor())


def tileset(store: Store, name: str) -> tuple[Path, dict[str, Any]]:
    folder = tiles_dir_of(store.path) / name
    return folder, json.loads((folder / TILESET_JSON).read_text())


def glbs(folder: Path, doc: dict[str, Any]) -> list[tuple[dict[str, Any], bytes]]:
    """Every content tile with its bytes."""
    out = []
    for tile, _ in walk(doc["root"]):
        uri = tile.get("content", {}).get("uri")
        if uri:
            out.append((tile, (folder / uri).read_bytes()))
    return out


def validate(paths: list[Path]) -> None:
    gltf = pytest.importorskip("tests.gltf", reason="the glTF validator harness")
    gltf.assert_valid_glb(paths)


# ---- the glb writer ----------------------------------------------------------------------
def test_glb_round_trip_of_features_and_properties(tmp_path: Path) -> None:
    props = (
        Property("id", "SCALAR", "INT32"),
        Property("name", "STRING"),
        Property("height", "SCALAR", "FLOAT64", no_data=-1.0),
        Property("flag", "BOOLEAN"),
        Property("empty", "STRING"),
    )
    glb = GlbBuilder(translation=(10.0, 20.0, 30.0))
    glb.add_table(
        FeatureTable(
            "thing",
            props,
            {
                "id": [7, 8, 9],
                "name": ["一号楼", "B", ""],
                "height": [12.5, None, 3.0],
                "flag": [True, False, True],
                "empty": ["", "", ""],
            },
            3,
        )
    )
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    glb.add_primitive(
        Primitive(
            positions=pos,
            normals=np.tile([0, 0, 1.0], (4, 1)),
            indices=np.array([[0, 1, 2], [0, 2, 3]]),
            feature_ids=[np.array([0, 0, 1, 2.0])],
            rgba=(1, 0, 0, 0.5),
        )
    )
    data = glb.to_bytes()
    doc, _binary = read_glb(data)
    assert len(data) % 4 == 0 and doc["asset"]["version"] == "2.0"
    assert all(v["byteOffset"] % 8 == 0 for v in doc["bufferViews"])
    # ENU (10, 20, 30) is glTF (10, 30, -20); positions (e, n, u) -> (e, u, -n)
    assert doc["nodes"][0]["translation"] == [10.0, 30.0, -20.0]
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert acc["min"] == [0.0, 0.0, -1.0] and acc["max"] == [1.0, 1.0, 0.0]
    assert doc["materials"][0]["alphaMode"] == "BLEND"
    tables = property_tables(data)["thing"]
    assert tables["id"] == [7, 8, 9]
    assert tables["name"] == ["一号楼", "B", ""]
    assert tables["height"] == [12.5, None, 3.0]
    assert tables["flag"] == [True, False, True]
    assert tables["empty"] == [None, None, None]  # left out: a buffer view is never empty
    assert feature_ids(data)[0][0].tolist() == [0, 0, 1, 2]
    (tmp_path / "t.glb").write_bytes(data)
    validate([tmp_path / "t.glb"])


# ---- blocks ------------------------------------------------------------------------------
def _areas(positions: np.ndarray, indices: np.ndarray) -> np.ndarray:
    tri = positions[indices]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return cross


def test_blocks_cover_footprint_walls_and_roof_outward() -> None:
    courtyard = shapely.Polygon(
        [(0, 0), (20, 0), (20, 10), (0, 10)], [[(5, 3), (5, 7), (15, 7), (15, 3)]]
    )
    ell = shapely.Polygon([(30, 0), (40, 0), (40, 4), (34, 4), (34, 10), (30, 10)])
    fps = np.array([courtyard, ell], dtype=object)
    b = extrude(fps, np.array([100.0, 50.0]), np.array([12.0, np.nan]))
    cross = _areas(b.positions, b.indices)
    area = np.linalg.norm(cross, axis=1) / 2
    up = cross[:, 2] > 1e-9
    for k, (fp, h) in enumerate([(courtyard, 12.0), (ell, UNKNOWN_HEIGHT)]):
        mine = b.feature[b.indices[:, 0]] == k
        assert area[mine & up].sum() == pytest.approx(fp.area)
        assert area[mine & ~up].sum() == pytest.approx(fp.length * h)
    # every face's winding agrees with its normal, and walls face away from the solid
    normals = b.normals[b.indices[:, 0]]
    assert np.all(np.einsum("ij,ij->i", cross, normals) > 0)
    walls = ~up
    mid = b.positions[b.indices[walls]].mean(axis=1)
    probe = mid[:, :2] + normals[walls][:, :2] * 0.01
    inside = shapely.contains_xy(shapely.union_all(fps), probe[:, 0], probe[:, 1])
    assert not inside.any()


# ---- the frame ---------------------------------------------------------------------------
def test_frame_enu_matches_pyproj_and_root_transform() -> None:
    crs = CRS.from_epsg(4550)
    to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    ox, oy = to_xy.transform(122.263, 43.617)
    frame = Frame(crs, (ox, oy))
    assert frame.to_enu(np.array([[ox, oy, 0.0]])) == pytest.approx(np.zeros((1, 3)), abs=1e-6)
    # 5 km east of the origin along the parallel: ENU east ~5 km, and below the tangent plane
    x, y = to_xy.transform(122.263 + 5000 / (111320 * np.cos(np.radians(43.617))), 43.617)
    e, n, u = frame.to_enu(np.array([[x, y, 0.0]]))[0]
    assert e == pytest.approx(5000, abs=15) and abs(n) < 15 and u == pytest.approx(-2.0, abs=0.2)
    # the root transform (column-major) takes ENU back to ECEF
    m = np.array(frame.transform).reshape(4, 4).T
    ecef = Transformer.from_crs(crs.to_3d(), "EPSG:4978", always_xy=True).transform(x, y, 0.0)
    assert (m @ [e, n, u, 1.0])[:3] == pytest.approx(ecef, abs=1e-3)
    # fitted affines (they rotate the normals) are right to a centimetre over a tile
    pts = np.column_stack([x + np.linspace(-200, 200, 9), y + np.linspace(-200, 200, 9)])
    pts = np.column_stack([pts, np.full(9, 150.0)])
    aff = frame.affine(np.array([x - 200, y - 200, 150, x + 200, y + 200, 150]))
    assert np.abs(pts @ aff[:3, :3].T + aff[:3, 3] - frame.to_enu(pts)).max() < 0.01


# ---- the buildings tileset -----------------------------------------------------------------
@pytest.fixture
def prague(make_store: MakeStore) -> Store:
    store = make_store("EPSG:32633")
    ingest(store, BUBENEC)
    return store


def test_bubenec_city_tileset_holds_every_building_once(
    prague: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(city_tiles, "LEAF_WEIGHT", 20.0)
    monkeypatch.setattr(city_tiles, "PARENT_BUILDINGS", 16)
    report = build_tilesets(prague, ["buildings"])["buildings"]
    folder, doc = tileset(prague, "buildings")
    assert check_tileset(folder) == []
    assert doc["asset"]["version"] == "1.1" and len(doc["root"]["transform"]) == 16
    leaves = [(t, g) for t, g in glbs(folder, doc) if not t.get("children")]
    inner = [(t, g) for t, g in glbs(folder, doc) if t.get("children")]
    assert len(leaves) > 4 and inner and report["tiles"] == len(leaves) + len(inner)
    ids = [i for _, g in leaves for i in property_tables(g)["building"]["id"]]
    stored = [r[0] for r in prague.con.execute("SELECT id FROM buildings").fetchall()]
    assert sorted(ids) == sorted(stored)  # each building in exactly one leaf
    for tile, g in inner:
        assert 0 < len(property_tables(g)["building"]["id"]) <= 16
        for child in tile["children"]:
            assert child["geometricError"] < tile["geometricError"]
    # the names and unknown heights travel into the property table
    names = dict(prague.con.execute("SELECT id, name FROM buildings").fetchall())
    for _, g in leaves:
        t = property_tables(g)["building"]
        for i, name, height in zip(t["id"], t["name"], t["height"], strict=True):
            assert (name or None) == (names[i] or None) and height is None
        for ids_ in feature_ids(g):
            assert ids_[0].max() < len(t["id"])
    paths = [folder / t["content"]["uri"] for t, _ in leaves + inner]
    validate(paths)


def test_one_new_building_rewrites_only_its_path_to_the_root(
    prague: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(city_tiles, "LEAF_WEIGHT", 20.0)
    build_tilesets(prague, ["buildings"])
    _folder, doc = tileset(prague, "buildings")
    before = {t["content"]["uri"] for t, _ in walk(doc["root"])}
    # a building added in the middle of the district
    x, y = shapely.centroid(
        shapely.from_wkb(
            prague.con.execute(
                "SELECT ST_AsWKB(ST_Union_Agg(footprint)) FROM buildings"
            ).fetchone()[0]
        )
    ).coords[0]
    t = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon, lat = t.transform(x + 3, y + 3)
    square = shapely.box(lon, lat, lon + 0.0001, lat + 0.0001)
    ingest(prague, write_layer(tmp_path / "new.geojson", [square], height=[20.0]))
    report = build_tilesets(prague, ["buildings"])["buildings"]
    _, doc2 = tileset(prague, "buildings")
    depth = max(d for _, d in walk(doc2["root"]))
    assert 1 <= report["files_written"] <= depth + 1
    assert report["files_reused"] == report["tiles"] - report["files_written"]
    after = {t["content"]["uri"] for t, _ in walk(doc2["root"])}
    assert len(after - before) == report["files_written"]
    # nothing changed: nothing written
    again = build_tilesets(prague, ["buildings"])["buildings"]
    assert again["files_written"] == 0


# ---- IFC models in the city and the BIM tileset --------------------------------------------
@pytest.fixture
def tongliao(store: Store) -> Store:
    ingest(store, DUPLEX, anchor=Anchor.parse("122.2610,43.6200,180,0"))
    return store


def test_ifc_model_in_the_city_and_the_bim_tileset(tongliao: Store) -> None:
    build_tilesets(tongliao, ["buildings", "bim"])
    drawn = dict(
        tongliao.con.execute(
            "SELECT global_id, ifc_class FROM elements e WHERE geometry_status = 'ok' AND "
            "ifc_class NOT IN ('IfcSpace', 'IfcOpeningElement', 'IfcAnnotation') AND "
            "EXISTS (SELECT 1 FROM meshes m WHERE m.owner_id = e.id AND m.owner = 'element')"
        ).fetchall()
    )
    for name, first in (("buildings", "building"), ("bim", "element")):
        folder, doc = tileset(tongliao, name)
        assert check_tileset(folder) == []
        (tile, g) = glbs(folder, doc)[0]
        tables = property_tables(g)
        assert (
            dict(zip(tables["element"]["global_id"], tables["element"]["ifc_class"], strict=True))
            == drawn
        )
        first_set = read_glb(g)[0]["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"][
            "featureIds"
        ][0]
        assert first_set["label"] == first
        assert set(tables["element"]["precast"]) == {"unknown"}
        validate([folder / tile["content"]["uri"]])
    # the model sits where its anchor put it: its box holds the anchor, 180 m up
    frame = Frame(tongliao.crs, tongliao.project_origin)
    x, y = Transformer.from_crs("EPSG:4326", tongliao.crs, always_xy=True).transform(
        122.2610, 43.6200
    )
    e, n, u = frame.to_enu(np.array([[x, y, 180.0]]))[0]
    lo, hi = np.array(doc["root"]["boundingVolume"]["box"][:3]), None
    b = np.array(doc["root"]["boundingVolume"]["box"])
    lo, hi = (
        b[:3] - np.abs(b[3:].reshape(3, 3)).sum(axis=0),
        b[:3] + np.abs(b[3:].reshape(3, 3)).sum(axis=0),
    )
    assert lo[0] - 1 <= e <= hi[0] + 1 and lo[1] - 1 <= n <= hi[1] + 1
    assert lo[2] - 1 <= u <= lo[2] + 2


def test_precast_flags_reach_the_element_features(store: Store, tmp_path: Path) -> None:
    b, storey = storeyed("IFC4")
    wall = b.box("IfcWall", "PC wall", (0, 6, 0), (5, 0.2, 3), storey)
    b.pset(wall, "Pset_ConcreteElementGeneral", {"CastingMethod": "PRECAST"})
    slab = b.box("IfcSlab", "CIP slab", (0, 0, 3), (5, 4, 0.2), storey)
    b.pset(slab, "Pset_ConcreteElementGeneral", {"CastingMethod": "INSITU"})
    col = b.box("IfcColumn", "预制柱", (6, 0, 0), (0.4, 0.4, 3), storey)
    b.pset(col, "构件信息", {"是否预制": "是"})
    path = b.write(tmp_path / "pc.ifc")
    ingest(store, path, anchor=Anchor.parse("122.26,43.62,180,0"))
    build_tilesets(store, ["bim"])
    folder, doc = tileset(store, "bim")
    tables = property_tables(glbs(folder, doc)[0][1])["element"]
    flags = dict(zip(tables["name"], tables["precast"], strict=True))
    assert flags["PC wall"] == "precast" and flags["预制柱"] == "precast"
    assert flags["CIP slab"] == "cast in place"
    assert {flags[n] for n in flags if n not in ("PC wall", "CIP slab", "预制柱")} == {"unknown"}


def test_a_model_waiting_for_placement_is_not_drawn(store: Store) -> None:
    ingest(store, SAMPLES / "ifc" / "IfcOpenHouse.ifc")
    assert build_tilesets(store, ["buildings", "bim"])["buildings"]["skipped"]
    assert not (tiles_dir_of(store.path) / "buildings").exists()


# ---- tile files beside the store ------------------------------------------------------------
def test_a_failed_build_leaves_no_files_and_the_old_tileset(
    prague: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_tilesets(prague, ["buildings"])
    folder = tiles_dir_of(prague.path) / "buildings"
    before = sorted(p.name for p in folder.iterdir())
    rows = prague.con.execute("SELECT * FROM tiles ORDER BY path").fetchall()

    def broken(job: Any) -> bytes:
        raise RuntimeError("disk full")

    monkeypatch.setattr(city_tiles, "encode_tile", broken)
    monkeypatch.setattr(city_tiles, "ENCODING", "changed")  # nothing reusable
    with pytest.raises(RuntimeError):
        build_tilesets(prague, ["buildings"])
    assert sorted(p.name for p in folder.iterdir()) == before
    assert prague.con.execute("SELECT * FROM tiles ORDER BY path").fetchall() == rows


def test_crash_after_commit_and_orphans_are_put_right_at_open(prague: Store) -> None:
    build_tilesets(prague, ["buildings"])
    folder = tiles_dir_of(prague.path) / "buildings"
    good = (folder / TILESET_JSON).read_bytes()
    path = prague.path
    prague.close()
    (folder / TILESET_JSON).write_text("{half")  # a crash between the commit and the rename
    (folder / "0123456789abcdef.glb").write_bytes(b"orphan of a killed build")
    (tiles_dir_of(path) / "gone").mkdir()
    with Store.open(path) as s:
        assert (folder / TILESET_JSON).read_bytes() == good
        assert not (folder / "0123456789abcdef.glb").exists()
        assert not (tiles_dir_of(path) / "gone").exists()
        assert check_tileset(folder) == []
        assert [t["state"] for t in tileset_states(s.con, s.path)] == ["ok"]


def test_store_copied_without_tiles_opens_says_missing_and_tile_rebuilds(
    prague: Store, tmp_path: Path
) -> None:
    build_tilesets(prague, ["buildings"])
    path = prague.path
    prague.close()
    copy = tmp_path / "copy" / "city.duckdb"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    out = subprocess.run(
        [sys.executable, "-m", "cim.cli", "--store", str(copy), "status", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["tilesets"][0]["state"] == "missing"
    assert "tiles_missing" in {a["reason"] for a in doc["attention"]}
    with Store.open(copy) as s:
        with pytest.raises(Exception, match="cim tile"):
            export_tiles(s.con, s.path, tmp_path / "out")
        report = build_tilesets(s, ["buildings"])["buildings"]
        assert report["files_written"] == report["tiles"]
        assert [t["state"] for t in tileset_states(s.con, s.path)] == ["ok"]
        exported = export_tiles(s.con, s.path, tmp_path / "out")
    assert exported[0]["files"] == report["tiles"] + 1
    assert check_tileset(tmp_path / "out" / "buildings") == []


def test_stale_after_an_ingest(prague: Store, tmp_path: Path) -> None:
    build_tilesets(prague, ["buildings"])
    ingest(
        prague, write_layer(tmp_path / "one.geojson", [shapely.box(14.39, 50.1, 14.3901, 50.1001)])
    )
    assert [t["state"] for t in tileset_states(prague.con, prague.path)] == ["stale"]


def test_cli_tile_and_export(tmp_path: Path) -> None:
    store = tmp_path / "c.duckdb"

    def cim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cim.cli", "--store", str(store), *args],
            capture_output=True,
            text=True,
        )

    assert cim("init", "--crs", "EPSG:32633").returncode == 0
    assert cim("ingest", str(BUBENEC)).returncode == 0
    out = cim("tile", "--json", "--workers", "1")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)["tilesets"]
    assert doc["buildings"]["buildings"] == 144 and "skipped" in doc["points"]
    schema = json.loads((Path(__file__).parent.parent / "schemas" / "tile.schema.json").read_text())
    import jsonschema

    jsonschema.validate(json.loads(out.stdout), schema)
    bad = cim("export-tiles", str(tmp_path / "c.duckdb"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    ok = cim("export-tiles", str(tmp_path / "site"))
    assert ok.returncode == 0 and (tmp_path / "site" / "buildings" / TILESET_JSON).is_file()
    empty = tmp_path / "e.duckdb"
    subprocess.run([sys.executable, "-m", "cim.cli", "--store", str(empty), "init"], check=True)
    none = subprocess.run(
        [
            sys.executable,
            "-m",
            "cim.cli",
            "--store",
            str(empty),
            "export-tiles",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert none.returncode != 0 and "cim tile" in none.stderr and "Traceback" not in none.stderr


def test_buildings_on_both_sides_of_the_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cells -1 and 0 share no aligned parent at any level: the tree used to look for one
    forever (a store whose origin lies inside the district, as `make demo` makes)."""
    store = Store.create(tmp_path / "s.duckdb", "EPSG:4550", (122.263, 43.617))
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:4550", always_xy=True).transform(122.263, 43.617)
    boxes = [
        shapely.box(x + dx - 5, y + dy - 5, x + dx + 5, y + dy + 5)
        for dx in (-100, 100)
        for dy in (-70, 70)
    ]
    ingest(store, write_layer(tmp_path / "b.gpkg", boxes, crs="EPSG:4550", height=[10.0] * 4))
    monkeypatch.setattr(city_tiles, "LEAF_WEIGHT", 1.0)
    report = build_tilesets(store, ["buildings"])["buildings"]
    folder, doc = tileset(store, "buildings")
    assert check_tileset(folder) == []
    leaves = [t for t, _ in walk(doc["root"]) if not t.get("children")]
    assert len(leaves) == 4 and report["tiles"] == 5
    store.close()


def test_unknown_ground_is_the_stores_median_in_tiles_and_details(
    tongliao: Store, tmp_path: Path
) -> None:
    """A footprint with no terrain under it stands on the store's median ground level, the same
    in one building's detail as in the city's tiles (the detail used to take 0)."""
    from cim.model.buildings import building_detail, canonical_buildings

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:4550", always_xy=True).transform(
        122.2615, 43.6205
    )
    ingest(
        tongliao,
        write_layer(tmp_path / "one.gpkg", [shapely.box(x, y, x + 10, y + 10)], crs="EPSG:4550"),
    )
    gis_id = tongliao.con.execute(
        "SELECT b.id FROM buildings b JOIN sources s ON s.id = b.source_id WHERE s.kind = 'gis'"
    ).fetchone()[0]
    everyone = canonical_buildings(tongliao)
    k = int(np.flatnonzero(everyone.ids == gis_id)[0])
    detail = building_detail(tongliao, gis_id)
    assert detail is not None and detail["ground_source"] == "neighbours"
    assert detail["ground_z"] == pytest.approx(everyone.ground_z[k]) and detail["ground_z"] > 100
