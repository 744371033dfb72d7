"""The point cloud tileset on real and generated clouds: every store point in exactly one tile,
boxes that hold their points, geometric error shrinking with depth, colours (RGB or the class
palette), class feature ids, external tilesets, the executor giving the same tiles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import laspy
import numpy as np
import pytest
from pyproj import CRS
from scipy.spatial import cKDTree

import tiles.points as tp
from cim.executor import Executor, LocalExecutor, SerialExecutor
from cim.model.points import point_batches
from cim.store import Store
from cim.tilefiles import TilesetWriter, inputs_digest, tiles_dir_of
from ingest import IngestOptions, run_ingest
from tests.conftest import SAMPLES, MakeStore
from tiles.build import build_tilesets
from tiles.context import BuildContext
from tiles.frame import Frame
from tiles.gltf import read_glb
from tiles.points import PALETTE, build_points, morton_codes, partition
from tiles.tileset import Tile, Tileset, check_tileset, walk

LIDAR = SAMPLES / "lidar"
MONTPELLIER = sorted((LIDAR / "montpellier").glob("*.laz"))
LIDARPROD = LIDAR / "lidarprod" / "870000_6618000.subset.postValidation.laz"


# ---- helpers ---------------------------------------------------------------------------
def ingest(store: Store, path: Path) -> None:
    report = run_ingest(store, path, IngestOptions(), SerialExecutor())
    assert report.outcome == "ingested"


def build(
    store: Store, executor: Executor | None = None, **options: Any
) -> tuple[Tileset, Path, dict[str, Any]]:
    """Build and publish the points tileset as ``cim tile`` does; its document, folder, figures."""
    frame = Frame(store.crs, store.project_origin)
    with store.transaction():
        writer = TilesetWriter(store, "points")
        ctx = BuildContext(store, writer, frame, executor, lambda f, m: None)
        built = build_points(ctx, **options)
        assert built is not None
        root, stats = built
        root["transform"] = frame.transform
        doc: Tileset = {
            "asset": {"version": "1.1"},
            "geometricError": root["geometricError"] * 2 or 1.0,
            "root": root,
        }
        writer.finish(dict(doc), stats, inputs_digest(store.con, "points"))
    return doc, writer.folder, stats


def tiles_of(folder: Path, name: str = "tileset.json") -> Iterator[tuple[Tile, int, Path]]:
    """Every tile of a tileset with its depth, through external tilesets."""
    doc = json.loads((folder / name).read_text())
    for tile, depth in walk(doc["root"]):
        uri = tile.get("content", {}).get("uri", "")
        if uri.endswith(".json"):
            for inner, d, _ in tiles_of(folder, uri):
                yield inner, depth + d, folder
        else:
            yield tile, depth, folder


def _accessor(doc: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = {5126: np.float32, 5121: np.uint8}[acc["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
    out = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width, offset=view["byteOffset"])
    return out.reshape(acc["count"], width)


def glb_points(folder: Path) -> dict[str, np.ndarray]:
    """All points of all tiles: ENU (positions + node translation, Y-up back to Z-up), colours,
    feature ids, and the tile depth of each."""
    parts: dict[str, list[np.ndarray]] = {"enu": [], "rgba": [], "ids": [], "depth": []}
    for tile, depth, base in tiles_of(folder):
        doc, binary = read_glb((base / tile["content"]["uri"]).read_bytes())
        node = doc["nodes"][0]
        (prim,) = doc["meshes"][node["mesh"]]["primitives"]
        assert prim["mode"] == 0  # POINTS
        g = _accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
        g += np.asarray(node.get("translation", [0.0, 0.0, 0.0]))
        parts["enu"].append(np.column_stack([g[:, 0], -g[:, 2], g[:, 1]]))
        parts["rgba"].append(_accessor(doc, binary, prim["attributes"]["COLOR_0"]))
        parts["ids"].append(_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"])[:, 0])
        parts["depth"].append(np.full(len(g), depth))
        meta = doc["extensions"]["EXT_structural_metadata"]
        (table,) = meta["propertyTables"]
        assert table["class"] == "point_class"
        assert table["count"] > parts["ids"][-1].max()
        assert set(meta["schema"]["classes"]["point_class"]["properties"]) == {
            "classification",
            "name",
        }
    return {k: np.concatenate(v) for k, v in parts.items()}


def store_points(store: Store) -> dict[str, np.ndarray]:
    frame = Frame(store.crs, store.project_origin)
    enu, cls, rgb = [], [], []
    for part in point_batches(store):
        enu.append(frame.to_enu(np.column_stack([part.x, part.y, part.z])))
        cls.append(part.classification)
        rgb.append(part.rgb if part.rgb is not None else np.zeros((len(part.x), 3), np.uint16))
    return {"enu": np.concatenate(enu), "class": np.concatenate(cls), "rgb": np.concatenate(rgb)}


def match(store: Store, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Any]:
    """The store's points and the tiles' points, and for each tile point the store point at
    the same place (within a millimetre); fails unless they are the same multiset of points."""
    want, got = store_points(store), glb_points(folder)
    assert len(got["enu"]) == len(want["enu"])
    dist, idx = cKDTree(want["enu"]).query(got["enu"], k=1)
    assert float(dist.max()) < 1e-3
    # duplicates: as many tile points at each store position (0.1 mm) as store points there
    key = np.round(want["enu"] * 1e4).astype(np.int64)
    w_keys, w_counts = np.unique(key, axis=0, return_counts=True)
    g_keys, g_counts = np.unique(key[idx], axis=0, return_counts=True)
    assert np.array_equal(w_keys, g_keys) and np.array_equal(w_counts, g_counts)
    return want, got, idx


def geometric_errors_shrink(folder: Path) -> None:
    doc = json.loads((folder / "tileset.json").read_text())

    def visit(tile: Tile, parent: float) -> None:
        error = tile["geometricError"]
        kids = tile.get("children", [])
        uri = tile.get("content", {}).get("uri", "")
        if uri.endswith(".json"):
            inner = json.loads((folder / uri).read_text())
            assert inner["geometricError"] <= error
            visit(inner["root"], parent)
            return
        assert error < parent
        assert (error > 0) == bool(kids), "leaves have 0, parents their grid's spacing"
        for child in kids:
            visit(child, error)

    visit(doc["root"], doc["geometricError"])


def generated_las(path: Path, n: int, seed: int = 1) -> Path:
    """A synthetic 600 m x 400 m cloud in Lambert-93 (no RGB): a rolling ground with noise,
    box buildings and some trees, classes 2/6/3-5/9."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 600, n)
    y = rng.uniform(0, 400, n)
    z = 40 + 3 * np.sin(x / 50) + 2 * np.cos(y / 70) + rng.normal(0, 0.05, n)
    cls = np.full(n, 2, dtype=np.uint8)
    building = (np.mod(x, 60) < 25) & (np.mod(y, 50) < 20)
    z[building] += 12 + np.floor(x[building] / 60)
    cls[building] = 6
    tree = ~building & (rng.random(n) < 0.15)
    z[tree] += rng.uniform(0.5, 15, tree.sum())
    cls[tree] = rng.choice(np.array([3, 4, 5], np.uint8), tree.sum())
    cls[(x > 550) & ~building & ~tree] = 9
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([770000.0, 6277000.0, 0.0])
    header.add_crs(CRS("EPSG:2154"))
    las = laspy.LasData(header)
    las.x, las.y, las.z = x + 770000, y + 6277000, z
    las.classification = cls
    las.write(path)
    return path


# ---- the octree itself ----------------------------------------------------------------
def test_partition_takes_each_point_once_and_one_per_cell() -> None:
    rng = np.random.default_rng(3)
    enu = np.column_stack([rng.uniform(0, 300, 60_000), rng.uniform(0, 200, 60_000)])
    enu = np.column_stack([enu, rng.uniform(0, 5, 60_000)])
    enu[:500] = enu[0]  # duplicates fall to the leaves
    codes, _, _ = morton_codes(enu)
    sorted_codes = np.sort(codes)
    tree = partition(sorted_codes, leaf_points=500)
    assert np.array_equal(np.sort(tree.members), np.arange(len(enu)))
    assert tree.depth.max() >= 3
    for t in range(len(tree)):
        m = tree.members[tree.start[t] : tree.start[t + 1]]
        d = int(tree.depth[t])
        shift = np.uint64(3 * (tp.BITS - d))
        assert np.all(sorted_codes[m] >> shift == tree.node[t])
        is_leaf = not np.any((tree.depth == d + 1) & (tree.node >> np.uint64(3) == tree.node[t]))
        cells = sorted_codes[m] >> np.uint64(3 * (tp.BITS - d - tp.CELL_BITS))
        if not is_leaf:  # a subsample: one point per grid cell
            assert len(np.unique(cells)) == len(m)
        else:  # all that was left, or a subsample that happened to take everything
            assert len(m) <= 500 or d == tp.MAX_DEPTH or len(np.unique(cells)) == len(m)
    # seeded: the same tree again, another with another seed
    again = partition(sorted_codes, leaf_points=500)
    assert np.array_equal(again.members, tree.members)
    other = partition(sorted_codes, leaf_points=500, seed=7)
    assert not np.array_equal(other.members, tree.members)


def test_empty_store_has_no_points_tileset(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    frame = Frame(store.crs, store.project_origin)
    with store.transaction():
        writer = TilesetWriter(store, "points")
        assert build_points(BuildContext(store, writer, frame, None, lambda f, m: None)) is None


# ---- real clouds ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def montpellier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store.create(tmp_path_factory.mktemp("mtp") / "m.duckdb", "EPSG:2154")
    for path in MONTPELLIER:
        ingest(store, path)
    yield store
    store.close()


def test_montpellier_points_conserved_and_boxes_hold(montpellier: Store) -> None:
    stats = build_tilesets(montpellier, ["points"])["points"]  # as `cim tile` does
    folder = tiles_dir_of(montpellier.path) / "points"
    doc = json.loads((folder / "tileset.json").read_text())
    assert stats["points"] == 405_937 == montpellier.count("points")
    assert check_tileset(folder) == []
    want, got, idx = match(montpellier, folder)
    # picking a point gives its class
    assert np.array_equal(got["ids"].astype(np.uint8), want["class"][idx])
    # the IGN files have RGB fields, all 0: the class palette stands in
    assert np.array_equal(got["rgba"][:, :3], PALETTE[want["class"][idx]])
    geometric_errors_shrink(folder)
    assert doc["root"]["refine"] == "ADD"
    assert stats["tiles"] == sum(1 for _ in walk(doc["root"])) and stats["depth"] >= 2
    assert stats["points_per_second"] > 0
    # seeded and content-addressed: building again writes no file
    again = build_tilesets(montpellier, ["points"])["points"]
    assert again["files_written"] == 0 and again["files_reused"] == stats["tiles"]


def test_lidarprod_rgb_scaled_to_8_bits(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    ingest(store, LIDARPROD)
    _, folder, stats = build(store, leaf_points=20_000)
    assert check_tileset(folder) == []
    want, got, idx = match(store, folder)
    assert want["rgb"].max() > 255  # 16-bit colours in the file
    assert np.array_equal(got["rgba"][:, :3], (want["rgb"][idx] // 257).astype(np.uint8))
    assert np.all(got["rgba"][:, 3] == 255)
    # classes 208 and 214 are in this file: the table has a row for every code up to them
    assert np.array_equal(got["ids"].astype(np.int64), want["class"][idx])
    assert stats["depth"] >= 2
    geometric_errors_shrink(folder)


# ---- a generated cloud: deep trees, external tilesets, the executor --------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("gen")
    store = Store.create(folder / "g.duckdb", "EPSG:2154")
    ingest(store, generated_las(folder / "gen.las", 400_000))
    yield store
    store.close()


def test_generated_cloud_deep_octree(generated: Store) -> None:
    _, folder, stats = build(generated, leaf_points=3_000)
    assert stats["depth"] >= 4 and stats["external_tilesets"] == 0
    assert check_tileset(folder) == []
    want, got, idx = match(generated, folder)
    assert np.array_equal(got["rgba"][:, :3], PALETTE[want["class"][idx]])  # no RGB
    geometric_errors_shrink(folder)
    # each level a spatially even subsample: the root's points cover the whole cloud
    root = got["enu"][got["depth"] == 0]
    lo, hi = want["enu"].min(axis=0), want["enu"].max(axis=0)
    assert np.all(root.min(axis=0)[:2] < lo[:2] + 10) and np.all(root.max(axis=0)[:2] > hi[:2] - 10)
    counts = np.bincount(got["depth"])
    assert counts[0] < counts.sum() / 10


def test_generated_cloud_external_tilesets(generated: Store) -> None:
    doc, folder, stats = build(generated, leaf_points=3_000, max_tiles=20)
    assert stats["external_tilesets"] >= 2
    assert sum(1 for _ in walk(doc["root"])) <= 20
    externals = [t for t, _ in walk(doc["root"]) if t["content"]["uri"].endswith(".json")]
    assert externals and all("children" not in t for t in externals)
    assert check_tileset(folder) == []
    match(generated, folder)
    geometric_errors_shrink(folder)


def test_executor_writes_the_same_tiles(generated: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    doc, _, _ = build(generated, leaf_points=20_000)
    monkeypatch.setattr(tp, "PARALLEL_POINTS", 0)
    executor = LocalExecutor(2)
    try:
        doc2, _, stats = build(generated, executor, leaf_points=20_000)
    finally:
        executor.close()
    # content-addressed files: the same names are the same bytes
    assert [t.get("content") for t, _ in walk(doc2["root"])] == [
        t.get("content") for t, _ in walk(doc["root"])
    ]
    assert stats["points"] == 400_000


def test_point_tiles_pass_the_khronos_validator(montpellier: Store, make_store: MakeStore) -> None:
    # TODO(harness): tests/gltf.py comes with branch `harness`; until it is on main this test
    # skips (checked by hand with that branch's validator: 158 point tiles, 0 errors)
    gltf = pytest.importorskip("tests.gltf", reason="TODO: the glTF validator harness")
    gltf.require_validator()
    _, folder, _ = build(montpellier)
    store = make_store("EPSG:2154")
    ingest(store, LIDARPROD)
    _, folder2, _ = build(store, leaf_points=20_000)
    gltf.assert_valid_glb(sorted(folder.glob("*.glb")) + sorted(folder2.glob("*.glb")))
