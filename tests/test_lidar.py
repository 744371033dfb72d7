"""LiDAR ingest on the real sample clouds: conservation, CRS and units, heights, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import laspy
import numpy as np
import pyarrow.compute as pc
import pyogrio
import pytest
import shapely
from pyproj import Transformer

import ingest.lidar as lidar
import ingest.lidar.encode as lidar_encode
import ingest.lidar.ingester as lidar_ingester
from cim.errors import CrsError, InputFileError, StoreError
from cim.executor import Executor, LocalExecutor, SerialExecutor
from cim.model.heights import derive_building_heights
from cim.model.points import DECIMAL, GROUND, points_in_box, points_in_polygon
from cim.model.terrain import ground_elevation
from cim.store import Store
from ingest import IngestOptions, IngestReport, registry, run_ingest
from ingest.lidar.dtm import DtmGrid, GroundGrid, fill_gaps
from ingest.lidar.encode import Part, mm_exact, pack_attributes, pack_rgb
from ingest.lidar.sort import HILBERT, SortGrid, raw_grid, sorted_points
from tests.conftest import SAMPLES, MakeStore, snapshot

LIDAR = SAMPLES / "lidar"
MONTPELLIER = sorted((LIDAR / "montpellier").glob("*.laz"))
LIDARPROD_LAZ = LIDAR / "lidarprod" / "870000_6618000.subset.postValidation.laz"
LIDARPROD_SHP = LIDAR / "lidarprod" / "870000_6618000.subset.postIA.shp"
NEBRASKA = LIDAR / "file_with_both_wkt_and_geotiff_vlrs.las"
AUTZEN = LIDAR / "autzen_trim.laz"
ST_BARTH = LIDAR / "St_Barth_RGAF09_UTM20N_IGN_1988_SB_subset_100m.laz"

#: a project CRS (projected, metres) that suits each sample, and the --crs it needs
CASES = [
    *[(p, "EPSG:2154", None) for p in MONTPELLIER],
    (LIDARPROD_LAZ, "EPSG:2154", None),
    (NEBRASKA, "EPSG:32614", None),
    (AUTZEN, "EPSG:32610", None),
    (ST_BARTH, "EPSG:5490", "EPSG:5490"),
]


def ingest(
    store: Store, path: Path, crs: str | None = None, executor: Executor | None = None
) -> IngestReport:
    return run_ingest(store, path, IngestOptions(crs=crs), executor or SerialExecutor())


def rows_in_row_groups_touching(
    store: Store, xmin: float, ymin: float, xmax: float, ymax: float
) -> int:
    """Rows of the point files' row groups whose x/y min/max box meets the box: what DuckDB
    reads for a box query once it has compared the row groups' statistics (its profile counts
    every row of a Parquet scan as scanned, read or skipped)."""
    files = [
        str(store.points_dir / r[0])
        for r in store.con.execute("SELECT file FROM point_files").fetchall()
    ]
    row = store.con.execute(
        "WITH g AS (SELECT file_name, row_group_id, any_value(row_group_num_rows) AS n, "
        "max(CASE WHEN path_in_schema = 'x' THEN stats_min_value END)::DOUBLE AS x0, "
        "max(CASE WHEN path_in_schema = 'x' THEN stats_max_value END)::DOUBLE AS x1, "
        "max(CASE WHEN path_in_schema = 'y' THEN stats_min_value END)::DOUBLE AS y0, "
        "max(CASE WHEN path_in_schema = 'y' THEN stats_max_value END)::DOUBLE AS y1 "
        "FROM parquet_metadata(?) GROUP BY ALL) "
        "SELECT coalesce(sum(n), 0) FROM g WHERE x0 <= ? AND x1 >= ? AND y0 <= ? AND y1 >= ?",
        [files, xmax, xmin, ymax, ymin],
    ).fetchone()
    assert row is not None
    return int(row[0])


def raw_classes(path: Path) -> dict[str, int]:
    las = laspy.read(path)
    values, counts = np.unique(np.asarray(las.classification), return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def add_gis_source(store: Store) -> int:
    row = store.con.execute(
        "INSERT INTO sources (path, name, kind, sha256, size_bytes, status) "
        "VALUES ('test', 'test', 'gis', 'test', 1, 'ingested') RETURNING id"
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_building(
    store: Store,
    source_id: int,
    footprint: shapely.Geometry,
    height: float | None = None,
    height_source: str | None = None,
) -> int:
    row = store.con.execute(
        "INSERT INTO buildings (source_id, footprint, height, height_source) "
        "VALUES (?, ST_GeomFromText(?), ?, ?) RETURNING id",
        [source_id, shapely.force_2d(footprint).wkt, height, height_source],
    ).fetchone()
    assert row is not None
    return int(row[0])


def lambert93_header(
    point_format: int = 1,
    version: str = "1.2",
    scale: float = 0.01,
    offsets: tuple[float, float, float] = (770000.0, 6277000.0, 0.0),
) -> laspy.LasHeader:
    """A LAS header in EPSG:2154 (Lambert-93) for clouds the tests write."""
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales = np.array([scale, scale, scale])
    header.offsets = np.array(offsets)
    header.add_crs(__import__("pyproj").CRS.from_epsg(2154))
    return header


# ---- protocol ---------------------------------------------------------------------------
def test_registered_and_supports(tmp_path: Path) -> None:
    assert lidar.INGESTER in registry()
    assert lidar.INGESTER.supports(AUTZEN)
    assert lidar.INGESTER.supports(NEBRASKA)
    fake = tmp_path / "fake.laz"
    fake.write_bytes(b"not a las file")
    assert not lidar.INGESTER.supports(fake)
    assert not lidar.INGESTER.supports(LIDARPROD_SHP)


# ---- conservation -----------------------------------------------------------------------
@pytest.mark.parametrize("path,project_crs,crs", CASES, ids=lambda v: getattr(v, "name", None))
def test_point_counts_conserved(
    make_store: MakeStore, path: Path, project_crs: str, crs: str | None
) -> None:
    store = make_store(project_crs)
    with laspy.open(path) as r:
        header_count = r.header.point_count
    report = ingest(store, path, crs)
    assert report.counts["points"] == header_count
    assert report.counts["header_points"] == header_count
    assert store.count("points", "source_id = ?", [report.source_id]) == header_count
    assert report.counts["classes"] == raw_classes(path)
    stored = dict(
        store.con.execute(
            "SELECT classification::VARCHAR, count(*) FROM points GROUP BY 1"
        ).fetchall()
    )
    assert stored == raw_classes(path)
    assert report.format is not None and report.format.startswith("LAS 1.")


def test_rgb_kept_where_present(make_store: MakeStore) -> None:
    store = make_store("EPSG:32610")
    ingest(store, AUTZEN)
    las = laspy.read(AUTZEN)
    row = store.con.execute(
        "SELECT sum(red::BIGINT), sum(green::BIGINT), sum(blue::BIGINT), count(red) FROM points"
    ).fetchone()
    assert row == (
        int(np.asarray(las.red, dtype=np.int64).sum()),
        int(np.asarray(las.green, dtype=np.int64).sum()),
        int(np.asarray(las.blue, dtype=np.int64).sum()),
        len(las.points),
    )
    store2 = make_store("EPSG:5490")
    ingest(store2, ST_BARTH, "EPSG:5490")  # point format 1: no RGB
    assert store2.count("points", "red IS NOT NULL") == 0


# ---- CRS and units ------------------------------------------------------------------------
def test_nebraska_feet_to_metres(make_store: MakeStore) -> None:
    store = make_store("EPSG:32614")
    report = ingest(store, NEBRASKA)
    assert "Nebraska" in (report.crs or "")
    las = laspy.read(NEBRASKA)
    src = las.header.parse_crs()
    t = Transformer.from_crs(src, "EPSG:32614", always_xy=True)
    us_ft = 1200 / 3937
    idx = [0, 1234, 9999, len(las.points) - 1]
    x, y = t.transform(np.asarray(las.x)[idx], np.asarray(las.y)[idx])
    z = np.asarray(las.z)[idx] * us_ft
    for xi, yi, zi in zip(x, y, z, strict=True):
        got = points_in_box(store, xi - 0.002, yi - 0.002, xi + 0.002, yi + 0.002)
        assert got.num_rows >= 1
        assert np.min(np.abs(got["z"].to_numpy() - zi)) < 0.0015
    # the whole cloud: metres (a few hundred metres above sea level, not ~1,400 feet)
    row = store.con.execute("SELECT min(z)::DOUBLE, max(z)::DOUBLE FROM points").fetchone()
    assert row is not None
    zmin, zmax = row
    assert zmin == pytest.approx(float(las.header.mins[2]) * us_ft, abs=0.002)
    assert zmax == pytest.approx(float(las.header.maxs[2]) * us_ft, abs=0.002)
    assert zmax < 500


def test_st_barth_needs_crs(make_store: MakeStore) -> None:
    store = make_store("EPSG:5490")
    before = snapshot(store)
    with pytest.raises(CrsError) as err:
        ingest(store, ST_BARTH)
    assert ST_BARTH.name in str(err.value) and "--crs" in str(err.value)
    assert snapshot(store) == before
    report = ingest(store, ST_BARTH, "EPSG:5490")
    assert report.crs == "EPSG:5490"
    row = store.con.execute(
        "SELECT crs_from, min(x)::DOUBLE, max(x)::DOUBLE FROM lidar_sources, points GROUP BY 1"
    ).fetchone()
    assert row is not None and row[0] == "option"
    assert 515000 <= row[1] <= row[2] <= 515100.001


def test_crs_option_reprojects(make_store: MakeStore) -> None:
    """--crs overrides the file: Montpellier (Lambert-93) into UTM 31N, checked with pyproj."""
    store = make_store("EPSG:32631")
    path = MONTPELLIER[0]
    ingest(store, path, "EPSG:2154")
    las = laspy.read(path)
    t = Transformer.from_crs("EPSG:2154", "EPSG:32631", always_xy=True)
    x, y = t.transform(np.asarray(las.x), np.asarray(las.y))
    row = store.con.execute(
        "SELECT min(x)::DOUBLE, max(x)::DOUBLE, min(y)::DOUBLE, max(y)::DOUBLE, "
        "sum(z)::DOUBLE FROM points"
    ).fetchone()
    assert row is not None
    assert row[:4] == pytest.approx((x.min(), x.max(), y.min(), y.max()), abs=0.001)
    assert row[4] == pytest.approx(float(np.asarray(las.z).sum()), abs=1.0)


# ---- survey tiles ---------------------------------------------------------------------------
def test_montpellier_tiles_one_cloud(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    total = 0
    for path in MONTPELLIER:
        report = ingest(store, path)
        assert report.outcome == "ingested"
        total += report.counts["points"]
    assert store.count("points") == total == 405_937
    assert store.count("lidar_sources") == 6
    # a box across the corner shared by four tiles returns points of all four
    got = points_in_box(store, 770595, 6277545, 770605, 6277555)
    assert len(set(got["source_id"].to_pylist())) == 4
    # the terrain is seamless: defined on both sides of a tile edge, without a step
    a = ground_elevation(store, 770599.7, 6277525.0)
    b = ground_elevation(store, 770600.3, 6277525.0)
    assert a is not None and b is not None and abs(a - b) < 0.5
    assert ground_elevation(store, 0.0, 0.0) is None


def test_box_queries_read_only_the_files_they_need(make_store: MakeStore) -> None:
    """Box and polygon queries and the building heights read the point files whose bounds meet
    their box, not every file: with the other tiles' files gone from disk they still answer,
    the same, while a query over all points fails."""
    store = make_store("EPSG:2154")
    for path in MONTPELLIER:
        ingest(store, path)
    box = (770520.0, 6277520.0, 770530.0, 6277530.0)
    source, params = store.points_from(*box)
    assert source.startswith("points_in(")
    [needed] = params
    assert 1 <= len(needed) < store.count("point_files") == 6
    poly = shapely.box(*box).buffer(-2)
    before = points_in_box(store, *box), points_in_polygon(store, poly)
    assert before[0].num_rows > before[1].num_rows > 0
    gis = add_gis_source(store)
    house = add_building(store, gis, poly)
    for f in store.points_dir.rglob("*.parquet"):
        if f.relative_to(store.points_dir).as_posix() not in needed:
            f.rename(f.with_suffix(".away"))
    after = points_in_box(store, *box), points_in_polygon(store, poly)
    for a, b in zip(before, after, strict=True):
        assert a.sort_by([("x", "ascending"), ("y", "ascending"), ("z", "ascending")]).equals(
            b.sort_by([("x", "ascending"), ("y", "ascending"), ("z", "ascending")])
        )
    assert derive_building_heights(store, [house]) == 1
    assert store.con.execute(
        "SELECT n_points FROM building_heights WHERE building_id = ?", [house]
    ).fetchone() == (int(pc.sum(pc.equal(after[1]["classification"], 6)).as_py()),)
    with pytest.raises(duckdb.IOException):
        store.count("points")
    # a box that meets no file: no rows, no file read
    empty = points_in_box(store, 0, 0, 10, 10)
    assert empty.num_rows == 0 and empty.schema == before[0].schema


def test_replacing_a_file_replaces_its_points(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:2154")
    path = tmp_path / "tile.laz"
    shutil.copy(MONTPELLIER[0], path)
    ingest(store, path)
    shutil.copy(MONTPELLIER[1], path)
    report = ingest(store, path)
    assert report.outcome == "replaced"
    assert store.count("points") == report.counts["points"] == 56_035
    assert store.count("lidar_sources") == 1 and store.count("dtm") == 1
    assert ingest(store, path).outcome == "unchanged"


# ---- queries ----------------------------------------------------------------------------------
def test_points_in_box_matches_brute_force(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    path = MONTPELLIER[2]
    ingest(store, path)
    las = laspy.read(path)
    x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
    cls = np.asarray(las.classification)
    rng = np.random.default_rng(4)
    for classes in (None, [6], [2, 6]):
        pick = int(rng.choice(np.flatnonzero(np.isin(cls, classes or [1, 2, 6]))))
        x0, y0 = float(x[pick]) - 4.005, float(y[pick]) - 3.0  # edges between points (cm grid)
        x1, y1 = x0 + 10, y0 + 7
        m = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        if classes is not None:
            m &= np.isin(cls, classes)
        expected = sorted(zip(np.round(x[m], 3), np.round(y[m], 3), np.round(z[m], 3), strict=True))
        got = points_in_box(store, x0, y0, x1, y1, classes)
        found = sorted(
            zip(
                np.round(got["x"].to_numpy(), 3),
                np.round(got["y"].to_numpy(), 3),
                np.round(got["z"].to_numpy(), 3),
                strict=True,
            )
        )
        assert len(expected) > 0
        assert found == expected


def test_points_in_polygon_matches_shapely(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    path = MONTPELLIER[2]
    ingest(store, path)
    las = laspy.read(path)
    x, y, cls = np.asarray(las.x), np.asarray(las.y), np.asarray(las.classification)
    poly = shapely.Polygon(
        [(770560, 6277510), (770580, 6277512), (770575, 6277530), (770562, 6277525)]
    )
    m = shapely.contains_xy(poly, x, y) & (cls == 6)
    got = points_in_polygon(store, poly.wkt, classes=[6])
    assert got.num_rows == int(m.sum()) > 0


def test_box_query_prunes_row_groups(make_store: MakeStore) -> None:
    """The sort makes each row group a compact patch: a small box reads few rows."""
    store = make_store("EPSG:2154")
    for path in MONTPELLIER:
        ingest(store, path)
    total = store.count("points")
    box = (770520, 6277520, 770525, 6277525)
    inside = store.count(
        "points",
        f"x BETWEEN {box[0]}::{DECIMAL} AND {box[2]}::{DECIMAL} AND "
        f"y BETWEEN {box[1]}::{DECIMAL} AND {box[3]}::{DECIMAL}",
    )
    scanned = rows_in_row_groups_touching(store, *box)
    # each 50 m tile is one file of one row group (under 122,880 points); the box lies in one
    assert total == 405_937 and 0 < inside < scanned <= 84_000


def test_sort_key_follows_a_hilbert_curve() -> None:
    grid = SortGrid.over((0.0, 0.0, 256.0, 256.0))
    x = np.array([0.5, 1.5, 1.5, 0.5, 255.9, -5.0, 300.0])
    y = np.array([0.5, 0.5, 1.5, 1.5, 0.5, -5.0, -5.0])
    keys = grid.key(x, y)
    assert keys[:4].tolist() == [0, 1, 2, 3]  # the first U of the curve
    assert keys[4] == 0xFFFF  # it ends in the other southern corner
    assert keys[5] == 0 and keys[6] == 0xFFFF  # beyond the bounds: clipped to the edge cells
    # from integer millimetres, as the ingester computes them
    assert (grid.key((x * 1000).astype(np.int64), (y * 1000).astype(np.int64), 0.001) == keys).all()
    # every step along the curve goes to a neighbouring cell
    iy, ix = np.unravel_index(np.argsort(HILBERT), (256, 256))
    assert (np.abs(np.diff(iy)) + np.abs(np.diff(ix)) == 1).all()


@pytest.mark.parametrize("scale,offset", [(0.01, 700000.0), (0.001, -12.345), (0.0025, 0.0)])
def test_integer_millimetres_match_float_rounding(scale: float, offset: float) -> None:
    """The exact integer path gives what scaling to metres and rounding gives."""
    raw = np.random.default_rng(7).integers(-(2**31), 2**31 - 1, 100_000, dtype=np.int64)
    expected = np.rint((raw * scale + offset) * 1000.0).astype(np.int64)
    exact = mm_exact(raw.astype(np.int32), scale, offset, 1.0)
    if scale == 0.0025:  # 2.5 mm: not whole millimetres, so the float path is taken
        assert exact is None
    else:
        assert exact is not None and (exact == expected).all()


# ---- building heights -------------------------------------------------------------------------
def lidarprod_footprints() -> list[shapely.Geometry]:
    meta, _, wkb, _ = pyogrio.raw.read(LIDARPROD_SHP)
    assert meta["crs"] == "EPSG:2154"
    return list(shapely.from_wkb(wkb))


def independent_heights(footprint: shapely.Geometry) -> dict[str, float]:
    """Roof percentiles of the raw class-6 points inside the footprint, and the median of
    the raw class-2 points within 3 m around it: laspy + shapely, no store."""
    las = laspy.read(LIDARPROD_LAZ)
    x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
    cls = np.asarray(las.classification)
    fp = shapely.force_2d(footprint)
    inside = shapely.contains_xy(fp, x, y)
    roof = z[inside & (cls == 6)]
    ring = shapely.difference(fp.buffer(3.0), fp)
    ground = z[shapely.contains_xy(ring, x, y) & (cls == 2)]
    return {
        "n": len(roof),
        "p50": float(np.percentile(roof, 50)),
        "p70": float(np.percentile(roof, 70)),
        "p90": float(np.percentile(roof, 90)),
        "max": float(roof.max()),
        "ground": float(np.median(ground)),
    }


def test_lidarprod_building_heights(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    gis = add_gis_source(store)
    footprints = lidarprod_footprints()
    assert len(footprints) == 40
    ids = [add_building(store, gis, fp) for fp in footprints]
    # a height from another source is never overwritten
    kept = add_building(store, gis, footprints[5], height=12.3, height_source="attribute")
    report = ingest(store, LIDARPROD_LAZ)
    # the cloud covers 100 m x 62 m of the 40 footprints' 200 m x 240 m: the ingest derives
    # the heights of the six footprints it overlaps (and the duplicate); five have building
    # points, one has none inside
    assert store.count("building_heights") == 7
    assert report.counts["buildings_with_heights"] == 6
    # all buildings: the others are marked as not covered, not guessed
    assert derive_building_heights(store) == 6
    rows = {
        r[0]: r[1:]
        for r in store.con.execute(
            "SELECT building_id, status, n_points, roof_p50, roof_p70, roof_p90, roof_max, "
            "ground_z, height, density FROM building_heights"
        ).fetchall()
    }
    assert len(rows) == 41
    ok = [bid for bid in ids if rows[bid][0] == "ok"]
    assert len(ok) == 5
    assert rows[kept][0] == "ok"
    statuses = [rows[bid][0] for bid in ids if bid not in ok]
    assert statuses.count("no_points") == 1 and statuses.count("no_coverage") == 34
    for bid in ok:
        want = independent_heights(footprints[ids.index(bid)])
        _, n, p50, p70, p90, pmax, ground, height, density = rows[bid]
        assert n == want["n"]
        assert p50 == pytest.approx(want["p50"], abs=0.002)
        assert p70 == pytest.approx(want["p70"], abs=0.002)
        assert p90 == pytest.approx(want["p90"], abs=0.002)
        assert pmax == pytest.approx(want["max"], abs=0.002)
        assert ground == pytest.approx(want["ground"], abs=0.3)
        assert height == pytest.approx(p70 - ground)
        assert 2.0 < height < 15.0 and density > 5
        b = store.con.execute(
            "SELECT height, height_source, ground_z FROM buildings WHERE id = ?", [bid]
        ).fetchone()
        assert b == (pytest.approx(height), "lidar", pytest.approx(ground))
    assert store.con.execute(
        "SELECT height, height_source FROM buildings WHERE id = ?", [kept]
    ).fetchone() == (12.3, "attribute")
    uncovered = [bid for bid in ids if rows[bid][0] == "no_coverage"]
    assert (
        store.count(
            "buildings", "height IS NOT NULL AND id IN (SELECT unnest(?::BIGINT[]))", [uncovered]
        )
        == 0
    )

    # the public interface other ingesters call for the buildings they add
    new = add_building(store, gis, footprints[ids.index(ok[0])])
    with store.transaction():  # as inside the GIS ingester's transaction
        assert derive_building_heights(store, [new]) == 1
    assert store.con.execute(
        "SELECT height, height_source FROM buildings WHERE id = ?", [new]
    ).fetchone() == (pytest.approx(rows[ok[0]][7]), "lidar")
    assert derive_building_heights(store, []) == 0


def test_autzen_heights_unavailable(make_store: MakeStore) -> None:
    store = make_store("EPSG:32610")
    gis = add_gis_source(store)
    # a footprint in the middle of the cloud (its extent in UTM 10N, computed by pyproj)
    las = laspy.read(AUTZEN)
    t = Transformer.from_crs(las.header.parse_crs(), "EPSG:32610", always_xy=True)
    cx, cy = t.transform(float(np.median(las.x)), float(np.median(las.y)))
    bid = add_building(store, gis, shapely.box(cx - 10, cy - 10, cx + 10, cy + 10))
    report = ingest(store, AUTZEN)
    assert report.counts["building_points"] == 0
    assert any("building heights unavailable" in w for w in report.warnings)
    row = store.con.execute(
        "SELECT status, height FROM building_heights WHERE building_id = ?", [bid]
    ).fetchone()
    assert row == ("no_building_class", None)
    assert store.con.execute("SELECT height FROM buildings WHERE id = ?", [bid]).fetchone() == (
        None,
    )


# ---- failures -----------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_laz_fails_cleanly(make_store: MakeStore, tmp_path: Path, keep: float) -> None:
    store = make_store("EPSG:32610")
    ingest(store, AUTZEN)  # something already in the store
    before = snapshot(store)
    data = AUTZEN.read_bytes()
    bad = tmp_path / "autzen_truncated.laz"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputFileError) as err:
        ingest(store, bad)
    assert bad.name in str(err.value)
    assert snapshot(store) == before


def test_cloud_outside_the_project_crs_area_is_refused(make_store: MakeStore) -> None:
    store = make_store("EPSG:4550")  # Tongliao; Montpellier is in France
    with pytest.raises(CrsError, match="outside the area of the project CRS"):
        ingest(store, MONTPELLIER[0])
    assert store.sources() == [] and store.count("points") == 0


def test_garbage_after_header_fails_cleanly(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:32610")
    before = snapshot(store)
    data = bytearray(AUTZEN.read_bytes())
    with laspy.open(AUTZEN) as r:
        start = r.header.offset_to_point_data
    data[start : start + 4096] = bytes(range(256)) * 16
    data = data[: len(data) // 2]
    bad = tmp_path / "autzen_garbled.laz"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputFileError):
        ingest(store, bad)
    assert snapshot(store) == before


# ---- parallel decode ----------------------------------------------------------------------------
def test_parallel_decode_same_points(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor path (forkserver workers, each seeking its part and writing its file)
    stores the same points as this process alone, in one file per part."""
    serial = make_store("EPSG:2154")
    ingest(serial, LIDARPROD_LAZ)
    monkeypatch.setattr(lidar_ingester, "PARALLEL_MIN_POINTS", 0)
    monkeypatch.setattr(lidar_ingester, "PARALLEL_MIN_WORKERS", 1)
    monkeypatch.setattr(lidar_encode, "PART_RUNS", 1)
    monkeypatch.setattr(lidar_encode, "RUN_POINTS", 20_000)
    monkeypatch.setattr(lidar_encode, "ROW_GROUP", 5_000)
    parallel = make_store("EPSG:2154")
    executor = LocalExecutor(2)
    try:
        report = ingest(parallel, LIDARPROD_LAZ, executor=executor)
    finally:
        executor.close()
    assert report.counts["points"] == 70_840
    files = parallel.con.execute("SELECT file, points FROM point_files ORDER BY file").fetchall()
    assert [n for _, n in files] == [20_000, 20_000, 20_000, 10_840]
    assert all((parallel.points_dir / f).is_file() for f, _ in files)
    assert serial.count("point_files") == 1
    q = (
        "SELECT x, y, z, intensity, classification, return_number, red, point_source_id "
        "FROM points ORDER BY ALL"
    )
    assert serial.con.execute(q).fetchall() == parallel.con.execute(q).fetchall()
    q = "SELECT nx, ny, measured_cells, z FROM dtm"
    assert serial.con.execute(q).fetchall() == parallel.con.execute(q).fetchall()


# ---- sorted runs ------------------------------------------------------------------------------
def test_runs_sorted_and_conserved(tmp_path: Path) -> None:
    """A run's records come out in the Hilbert order of their cells, every record kept whole."""
    las = laspy.read(LIDARPROD_LAZ)
    points = las.points[:30_000]
    grid = raw_grid(las.header)
    out = sorted_points(points, grid)
    keys = grid.key(out.array["X"], out.array["Y"])
    assert (np.diff(keys.astype(np.int64)) >= 0).all()
    assert len(np.unique(keys)) > 1_000  # a real spread of cells, not one
    assert np.array_equal(
        np.sort(out.array, order=["X", "Y", "Z", "gps_time"]),
        np.sort(points.array, order=["X", "Y", "Z", "gps_time"]),
    )


def test_ingest_through_small_runs(make_store: MakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small runs and row groups (a cloud in many) store the same cloud, sorted run by run."""
    monkeypatch.setattr(lidar_encode, "RUN_POINTS", 5_000)
    monkeypatch.setattr(lidar_encode, "ROW_GROUP", 1_000)
    small = make_store("EPSG:2154")
    report = ingest(small, LIDARPROD_LAZ)
    monkeypatch.undo()
    default = make_store("EPSG:2154")
    ingest(default, LIDARPROD_LAZ)
    assert report.counts["points"] == 70_840
    assert small.con.execute("SELECT row_groups FROM point_files").fetchall() == [(14 * 5 + 1,)]
    q = "SELECT count(*), sum(x), sum(y), sum(z), sum(intensity), sum(classification) FROM points"
    assert small.con.execute(q).fetchone() == default.con.execute(q).fetchone()
    q = "SELECT building_id, status, n_points, roof_p70 FROM building_heights ORDER BY 1"
    assert small.con.execute(q).fetchall() == default.con.execute(q).fetchall()
    q = "SELECT nx, ny, measured_cells, z FROM dtm"
    assert small.con.execute(q).fetchall() == default.con.execute(q).fetchall()


@pytest.mark.parametrize(
    ("shape", "gap"),
    [
        ((300, 421), (40, 61)),
        ((400, 400), (100, 201)),
        ((257, 300), (150, 250)),
        ((600, 600), (1, 599)),
    ],
)
def test_gaps_filled_from_the_measured_cells(shape: tuple[int, int], gap: tuple[int, int]) -> None:
    """Gaps of every size (a building, a field, all but a corner far beyond the widest level)
    are filled and measured cells kept. Across a gap in a sloping plane the fill stays within
    the plane's heights around it, is off by less than a fifth of the height the plane gains
    across the gap on average (a weighted mean reaches further into one side near an edge),
    and is close to the plane at the centre of a gap measured all around (a Gaussian-weighted
    mean of a plane about its centre is the plane there; the coarse levels' blocks are not
    centred on it: within 5% of the rise)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    plane = 50.0 + 0.03 * cols - 0.02 * rows
    lo, hi = gap
    known = ~((rows >= lo) & (rows < hi) & (cols >= lo) & (cols < hi))
    grid = np.where(known, plane, np.nan)
    fill_gaps(grid, known.copy())
    assert not np.isnan(grid).any()
    assert np.array_equal(grid[known], plane[known])
    assert plane.min() <= grid.min() and grid.max() <= plane.max()
    error = np.abs(grid - plane)[~known]
    rise = 0.03 * (hi - lo)
    assert error.mean() < 0.2 * rise and error.max() <= 0.5 * rise + 1e-9
    if (hi - lo) % 2 and hi < min(shape) - (hi - lo):  # a centre cell, measured all around
        mid = (lo + hi) // 2
        assert grid[mid, mid] == pytest.approx(plane[mid, mid], abs=0.05 * rise)


def test_a_single_measured_cell_fills_the_grid() -> None:
    grid = np.full((200, 300), np.nan)
    known = np.zeros(grid.shape, dtype=bool)
    grid[5, 7], known[5, 7] = 12.5, True
    fill_gaps(grid, known)
    assert np.allclose(grid, 12.5, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scattered", [False, True])
def test_ground_grid_sums_each_cell(scattered: bool) -> None:
    """Ground points summed per DTM cell where each chunk is decoded, over the window of cells
    the chunk touches (a strip) or, for points scattered over the cloud, the whole grid, equal
    a plain per-point sum; points outside the grid count in its edge cells."""
    grid = DtmGrid.over(700000.0, 6600000.0, 700499.5, 6600299.5)
    assert (grid.nx, grid.ny, grid.res) == (500, 300, 1.0)
    rng = np.random.default_rng(3)
    ground = GroundGrid(grid)
    expected_sum = np.zeros((grid.ny, grid.nx))
    expected_count = np.zeros((grid.ny, grid.nx), dtype=np.int64)
    for k in range(4):
        n = 20_000
        if scattered:  # anywhere, and some beyond the grid
            x = rng.integers(-5_000, 505_000, n)
            y = rng.integers(-5_000, 305_000, n)
        else:  # a 40 m strip
            x = rng.integers(100_000 * k, 100_000 * k + 40_000, n)
            y = rng.integers(0, 300_000, n)
        z = rng.integers(40_000, 60_000, n)
        classification = np.where(rng.random(n) < 0.6, GROUND, 1).astype(np.uint8)
        g = classification == GROUND
        patch = grid.accumulate(x[g] + 700_000_000, y[g] + 6_600_000_000, z[g])
        assert patch is not None
        assert (patch.total is None) == scattered  # which way it went
        ground.add(Part(None, n, 1, np.zeros(256), np.zeros(3), np.zeros(3), [patch]))
        col = np.clip(x[g] // 1000, 0, grid.nx - 1)
        row = np.clip(y[g] // 1000, 0, grid.ny - 1)
        np.add.at(expected_sum, (row, col), z[g] / 1000.0)
        np.add.at(expected_count, (row, col), 1)
    assert np.array_equal(ground.count, expected_count)
    np.testing.assert_allclose(ground.sum, expected_sum, rtol=1e-12)


def write_strips(path: Path, n: int, wrong_bounds: bool = False, shuffle: bool = False) -> None:
    """A LAS cloud in flight-strip order (100 m strips swept south to north), 16 points/m2,
    or in random order."""
    side = float(np.sqrt(n / 16.0))
    header = lambert93_header(offsets=(700000.0, 6600000.0, 0.0))
    rng = np.random.default_rng(5)
    idx = rng.permutation(n) if shuffle else np.arange(n)
    per_strip = int(np.ceil(n / np.ceil(side / 100.0)))
    pts = laspy.ScaleAwarePointRecord.zeros(n, header=header)
    pts.x = np.minimum(700000.0 + (idx // per_strip) * 100.0 + rng.random(n) * 100.0, 700000 + side)
    pts.y = 6600000.0 + (idx % per_strip) / per_strip * side
    pts.z = 50.0 + rng.random(n)
    pts.classification = np.full(n, 2, dtype=np.uint8)
    with laspy.open(path, mode="w", header=header) as writer:
        writer.write_points(pts)
    if wrong_bounds:  # LAS 1.2 header: max x, min x, max y, min y (doubles) from byte 179
        with path.open("r+b") as f:
            f.seek(179)
            f.write(np.array([700010.0, 700000.0, 6600010.0, 6600000.0], "<f8").tobytes())


def test_box_query_prunes_row_groups_of_a_cloud_in_random_order(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Points in random order, sorted run by run: a 5 m box reads a few of the 25 row groups
    (unsorted, every row group would span the whole cloud and all would be read)."""
    monkeypatch.setattr(lidar_encode, "RUN_POINTS", 1_500_000)
    path = tmp_path / "shuffled.las"
    write_strips(path, 3_000_000, shuffle=True)
    store = make_store("EPSG:2154")
    ingest(store, path)
    scanned = [
        rows_in_row_groups_touching(store, x, y, x + 5, y + 5)
        for x, y in [(700100, 6600100), (700300, 6600050), (700217, 6600333)]
    ]
    # two runs, each along a Hilbert curve: one or two row groups per run
    # (measured 2-3.5 row groups; 4-6.3 when the runs were in Z order)
    assert all(0 < s <= 4 * 122_880 for s in scanned), scanned


def test_points_outside_the_header_bounds(make_store: MakeStore, tmp_path: Path) -> None:
    """A header whose bounds are too small: every point is kept, the DTM is said to be cut."""
    path = tmp_path / "wrong_bounds.las"
    write_strips(path, 20_000, wrong_bounds=True)
    store = make_store("EPSG:2154")
    report = ingest(store, path)
    assert report.counts["points"] == store.count("points") == 20_000
    assert any("outside the bounds in the file's header" in w for w in report.warnings)


def test_replacing_a_cloud_refreshes_heights(make_store: MakeStore, tmp_path: Path) -> None:
    """Heights from a cloud that is replaced by one elsewhere are withdrawn, not left stale."""
    store = make_store("EPSG:2154")
    gis = add_gis_source(store)
    ids = [add_building(store, gis, fp) for fp in lidarprod_footprints()]
    path = tmp_path / "cloud.laz"
    shutil.copy(LIDARPROD_LAZ, path)
    assert ingest(store, path).counts["buildings_with_heights"] == 5
    assert store.count("buildings", "height_source = 'lidar'") == 5
    shutil.copy(MONTPELLIER[0], path)  # same path, other bytes, 100 km away
    report = ingest(store, path)
    assert report.outcome == "replaced"
    assert store.count("buildings", "height_source = 'lidar'") == 0
    assert store.count("buildings", "height IS NOT NULL") == 0
    statuses = store.con.execute(
        "SELECT DISTINCT status FROM building_heights WHERE building_id IN "
        "(SELECT unnest(?::BIGINT[]))",
        [ids],
    ).fetchall()
    assert statuses == [("no_coverage",)]


# ---- the command line ---------------------------------------------------------------------------
def test_cli_ingest_laz(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cim.cli import cli

    store = str(tmp_path / "cli.duckdb")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store, "init", "--crs", "EPSG:5490"]).exit_code == 0
    failed = runner.invoke(cli, ["--store", store, "ingest", str(ST_BARTH)])
    assert failed.exit_code != 0
    assert "--crs" in failed.output and ST_BARTH.name in failed.output
    ok = runner.invoke(
        cli, ["--store", store, "ingest", "--json", "--crs", "EPSG:5490", str(ST_BARTH)]
    )
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["reports"][0]["counts"]["points"] == 249_120
    assert doc["reports"][0]["format"] == "LAS 1.2 PF1 (LAZ)"
    status = runner.invoke(cli, ["--store", store, "status", "--json"])
    assert json.loads(status.stdout)["counts"]["points"] == 249_120


def test_a_cloud_without_points_is_refused(make_store: MakeStore, tmp_path: Path) -> None:
    from pyproj import CRS

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.add_crs(CRS.from_epsg(2154))
    path = tmp_path / "zero.las"
    laspy.LasData(header).write(str(path))
    store = make_store("EPSG:2154")
    with pytest.raises(InputFileError, match=r"zero\.las: the header says the cloud has no points"):
        ingest(store, path)
    assert store.sources() == []


def test_points_of_an_older_store_are_packed_by_the_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cim.store as store_mod

    real = store_mod._schema_files
    monkeypatch.setattr(
        store_mod, "_schema_files", lambda: (real()[0], [m for m in real()[1] if m[0] <= 4])
    )
    path = tmp_path / "old.duckdb"
    rows = [  # the old points table's columns, RGB and not, the largest values of each field
        (
            1,
            Decimal("770000.125"),
            Decimal("6277000.5"),
            Decimal("-3.25"),
            6,
            65535,
            15,
            15,
            65535,
            0,
            1234,
            65535,
        ),
        (
            1,
            Decimal("770001.000"),
            Decimal("6277001.0"),
            Decimal("12.0"),
            2,
            7,
            1,
            2,
            None,
            None,
            None,
            3,
        ),
    ]
    with Store.create(path, "EPSG:2154") as old:
        assert old.schema_version == 4
        old.con.executemany("INSERT INTO points VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    monkeypatch.setattr(store_mod, "_schema_files", real)
    with Store.open(path) as store:
        assert store.schema_version >= 5
        got = store.con.execute("SELECT * FROM points").fetchall()
        assert got == rows  # the view reads as the table did, in the same order
        packed = store.con.execute("SELECT attributes, rgb FROM point_rows").fetchall()
        assert packed[0] == (
            pack_attributes(*(np.array([v]) for v in (65535, 15, 15, 65535)))[0],
            pack_rgb(np.array([65535]), np.array([0]), np.array([1234]))[0],
        )
        assert packed[1][1] is None
        with store.transaction():
            store.delete_source(1)  # the view is not a table to delete from
        assert store.count("points") == 0


@pytest.mark.parametrize("compressed", [False, True], ids=["las", "laz"])
@pytest.mark.parametrize("point_format", range(11))
def test_every_point_format_keeps_every_attribute(
    make_store: MakeStore, tmp_path: Path, point_format: int, compressed: bool
) -> None:
    # LAS 1.2 holds formats 0-3, 1.3 adds the waveform formats 4-5, 1.4 adds 6-10
    version = "1.2" if point_format <= 3 else "1.3" if point_format <= 5 else "1.4"
    header = lambert93_header(point_format, version, scale=0.001)
    rng = np.random.default_rng(point_format)
    n = 2_000
    pts = laspy.ScaleAwarePointRecord.zeros(n, header=header)
    pts.x = 770000.0 + rng.integers(0, 50_000, n) / 1000.0
    pts.y = 6277000.0 + rng.integers(0, 50_000, n) / 1000.0
    pts.z = rng.integers(-5_000, 60_000, n) / 1000.0
    top_class, top_return = (31, 7) if point_format <= 5 else (255, 15)
    pts.classification = rng.integers(0, top_class + 1, n)
    pts.intensity = rng.integers(0, 65536, n)
    pts.number_of_returns = rng.integers(1, top_return + 1, n)
    pts.return_number = np.minimum(rng.integers(1, top_return + 1, n), pts.number_of_returns)
    pts.point_source_id = rng.integers(0, 65536, n)
    has_rgb = point_format in (2, 3, 5, 7, 8, 10)
    if has_rgb:
        for c in ("red", "green", "blue"):
            setattr(pts, c, rng.integers(0, 65536, n))
    path = tmp_path / f"pf{point_format}.{'laz' if compressed else 'las'}"
    with laspy.open(path, mode="w", header=header, do_compress=compressed) as writer:
        writer.write_points(pts)

    store = make_store("EPSG:2154")
    report = ingest(store, path)
    assert report.counts["points"] == n
    got = store.con.execute(
        "SELECT x::DOUBLE, y::DOUBLE, z::DOUBLE, classification, intensity, return_number, "
        "number_of_returns, point_source_id, red, green, blue FROM points ORDER BY x, y, z"
    ).fetchall()
    cols = [np.asarray(pts[c]) for c in ("classification", "intensity", "return_number")]
    cols += [np.asarray(pts[c]) for c in ("number_of_returns", "point_source_id")]
    rgb = [np.asarray(pts[c]) if has_rgb else [None] * n for c in ("red", "green", "blue")]
    want = sorted(
        zip(
            np.round(np.asarray(pts.x), 3).tolist(),
            np.round(np.asarray(pts.y), 3).tolist(),
            np.round(np.asarray(pts.z), 3).tolist(),
            *[np.asarray(c).tolist() for c in cols],
            *[list(c) if has_rgb else c for c in rgb],
            strict=True,
        ),
        key=lambda r: (r[0], r[1], r[2]),
    )
    assert got == [tuple(int(v) if isinstance(v, np.integer) else v for v in r) for r in want]


def _write_cloud(path: Path, xyz: np.ndarray, classes: np.ndarray) -> None:
    header = lambert93_header()
    pts = laspy.ScaleAwarePointRecord.zeros(len(xyz), header=header)
    pts.x, pts.y, pts.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    pts.classification = classes
    with laspy.open(path, mode="w", header=header) as writer:
        writer.write_points(pts)


def test_overlapping_clouds_take_the_ground_where_it_was_measured(
    make_store: MakeStore, tmp_path: Path
) -> None:
    # strip A measured the ground (z 10) along the south of a 100 m square, and one stray
    # point in the far corner stretches its terrain model over the whole square, filled in;
    # strip B, ingested after it, measured a terrace (z 30) in the north with a building on it
    x0, y0 = 770000.0, 6277000.0
    g = np.mgrid[0:100:0.5, 0:20:0.5].reshape(2, -1).T
    a = np.column_stack([x0 + g[:, 0], y0 + g[:, 1], np.full(len(g), 10.0)])
    a = np.vstack([a, [[x0 + 99.9, y0 + 99.9, 10.0]]])
    g = np.mgrid[0:100:0.5, 60:100:0.5].reshape(2, -1).T
    b = np.column_stack([x0 + g[:, 0], y0 + g[:, 1], np.full(len(g), 30.0)])
    roof = (b[:, 0] >= x0 + 45) & (b[:, 0] < x0 + 55) & (b[:, 1] >= y0 + 75) & (b[:, 1] < y0 + 85)
    b[roof, 2] = 42.0
    _write_cloud(tmp_path / "a.las", a, np.full(len(a), 2))
    _write_cloud(tmp_path / "b.las", b, np.where(roof, 6, 2))
    store = make_store("EPSG:2154")
    gis = add_gis_source(store)
    house = add_building(store, gis, shapely.box(x0 + 45, y0 + 75, x0 + 55, y0 + 85))
    ingest(store, tmp_path / "a.las")
    ingest(store, tmp_path / "b.las")
    # A's filled-in cells there say about 10; B measured 30
    assert ground_elevation(store, x0 + 50, y0 + 95) == pytest.approx(30.0, abs=0.01)
    assert ground_elevation(store, x0 + 50, y0 + 5) == pytest.approx(10.0, abs=0.01)
    [(status, ground, height)] = store.con.execute(
        "SELECT status, ground_z, height FROM building_heights WHERE building_id = ?", [house]
    ).fetchall()
    assert status == "ok"
    assert ground == pytest.approx(30.0, abs=0.05) and height == pytest.approx(12.0, abs=0.05)
    measured = store.con.execute(
        "SELECT measured_cells, nx * ny FROM dtm ORDER BY source_id"
    ).fetchall()
    assert measured[0][0] < measured[0][1] / 3  # A's model is mostly filled in


# ---- point files -------------------------------------------------------------------------------
def _parquet_files(store: Store) -> list[Path]:
    return sorted(store.points_dir.rglob("*.parquet"))


def test_a_failed_ingest_leaves_no_point_file(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point files are written before the commit; a failure after them removes them."""
    store = make_store("EPSG:2154")
    before = snapshot(store)

    def broken(*args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(lidar_ingester, "derive_building_heights", broken)
    with pytest.raises(Exception, match="boom"):
        ingest(store, LIDARPROD_LAZ)
    assert _parquet_files(store) == []
    assert snapshot(store) == before
    assert store.count("points") == 0


def test_a_source_s_point_files_go_only_when_its_deletion_commits(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    sid = ingest(store, LIDARPROD_LAZ).source_id
    files = _parquet_files(store)
    assert len(files) == 1 and files[0].parent.name == f"source_id={sid}"
    with pytest.raises(RuntimeError), store.transaction():
        store.delete_source(sid)
        assert store.count("points") == 0
        raise RuntimeError("changed my mind")
    assert _parquet_files(store) == files and store.count("points") == 70_840
    with store.transaction():
        store.delete_source(sid)
    assert _parquet_files(store) == [] and store.count("points") == 0
    # ingested again: a new file, and the same points
    ingest(store, LIDARPROD_LAZ)
    assert store.count("points") == 70_840 and len(_parquet_files(store)) == 1


def test_orphan_point_files_of_dead_processes_are_removed_at_open(tmp_path: Path) -> None:
    """A process killed mid-ingest leaves files no row names: the next open removes them,
    but not those of a process still running (another ingest) nor the store's own."""
    import subprocess
    import sys

    path = tmp_path / "s.duckdb"
    with Store.create(path, "EPSG:2154") as store:
        ingest(store, LIDARPROD_LAZ)
        kept = _parquet_files(store)
        folder = store.points_dir / "source_id=9"
    folder.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = folder / f"00000-p{int(dead.stdout)}-0123456789ab.parquet"
    orphan.write_bytes(b"half a file")
    alive = folder / f"00001-p{os.getppid()}-0123456789ab.parquet"
    alive.write_bytes(b"being written")
    with Store.open(path) as store:
        assert not orphan.exists() and alive.exists()
        assert _parquet_files(store) == sorted([*kept, alive])
        assert store.count("points") == 70_840


def test_the_store_can_move_with_its_point_files(tmp_path: Path) -> None:
    """Point files are named relative to the store: store and folder moved together read the
    same (the view resolves them through the store's own folder)."""
    path = tmp_path / "a" / "s.duckdb"
    path.parent.mkdir()
    with Store.create(path, "EPSG:2154") as store:
        ingest(store, LIDARPROD_LAZ)
    moved = tmp_path / "b"
    shutil.move(path.parent, moved)
    with Store.open(moved / "s.duckdb") as store:
        assert store.count("points", "classification = 6") == raw_classes(LIDARPROD_LAZ)["6"]


def test_a_store_copied_without_its_point_files_is_refused_clearly(tmp_path: Path) -> None:
    """A store file copied without its points folder, or missing one file of it, is refused at
    open with what to do (before, `cim status` died on DuckDB's "No files found"); the CLI
    says it in one line, without a traceback, and the store itself is not touched."""
    path = tmp_path / "a" / "s.duckdb"
    path.parent.mkdir()
    with Store.create(path, "EPSG:2154") as store:
        ingest(store, LIDARPROD_LAZ)
        [(name,)] = store.con.execute("SELECT file FROM point_files").fetchall()
    copy = tmp_path / "b" / "s.duckdb"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    with pytest.raises(StoreError, match=r"1 of its 1 point files are missing .*copy or move"):
        Store.open(copy)
    result = subprocess.run(
        [sys.executable, "-m", "cim.cli", "--store", str(copy), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "point files are missing" in result.stderr and "Traceback" not in result.stderr
    # the original opens; without one of its files it is refused too, and opens once it is back
    moved = path.parent / "moved.parquet"
    (store.points_dir / name).rename(moved)
    with pytest.raises(StoreError, match=name):
        Store.open(path)
    moved.rename(store.points_dir / name)
    with Store.open(path) as again:
        assert again.count("points") == 70_840
