"""GIS ingest on the real sample layers: counts, CRS, roles, heights, areas, GCJ-02, repair,
failures that leave the store unchanged, and linking of one building known from two sources."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from pyproj import Geod, Transformer

from cim.errors import CrsError, InputFileError
from cim.executor import SerialExecutor
from cim.model.features import features
from cim.model.linking import link_buildings
from cim.store import Store
from ingest import IngestOptions, IngestReport, registry, run_ingest
from ingest.gis import INGESTER, guess_role, map_attributes
from ingest.gis.gcj02 import gcj02_to_wgs84, in_china, wgs84_to_gcj02
from tests.conftest import SAMPLES, MakeStore, snapshot

BUBENEC = SAMPLES / "gis" / "bubenec.gpkg"
DELAWARE = SAMPLES / "gis" / "delaware_buildings.geojson"
LIDARPROD_SHP = SAMPLES / "lidar" / "lidarprod" / "870000_6618000.subset.postIA.shp"
LIDARPROD_LAZ = SAMPLES / "lidar" / "lidarprod" / "870000_6618000.subset.postValidation.laz"
GEOD = Geod(ellps="WGS84")


def ingest(store: Store, path: Path, **options: Any) -> IngestReport:
    return run_ingest(store, path, IngestOptions(**options), SerialExecutor())


def write_layer(
    path: Path,
    geoms: list[Any],
    crs: str | None = "EPSG:4326",
    layer: str | None = None,
    **fields: Any,
) -> Path:
    """A vector file written by pyogrio (GDAL) from shapely geometries and field lists."""
    names = list(fields)
    data = [np.asarray(v) for v in fields.values()]
    types = {shapely.get_type_id(g) for g in geoms if g is not None}
    gtype = {0: "Point", 1: "LineString", 3: "Polygon", 6: "MultiPolygon"}.get(
        types.pop() if len(types) == 1 else -1, "Unknown"
    )
    pyogrio.raw.write(
        str(path),
        geometry=np.asarray(shapely.to_wkb(np.asarray(geoms, dtype=object)), dtype=object),
        field_data=data,
        fields=names,
        crs=crs,
        geometry_type=gtype,
        layer=layer,
        driver=None,
    )
    return path


def geodesic_area(polygon: Any) -> float:
    """Area (m2) on the WGS84 ellipsoid of a lon/lat polygon: exterior minus holes, each ring's
    area taken positive (pyproj adds a hole drawn in the exterior's orientation)."""

    def ring(r: Any) -> float:
        return abs(GEOD.polygon_area_perimeter(*np.asarray(r.coords).T[:2])[0])

    return ring(polygon.exterior) - sum(ring(i) for i in polygon.interiors)


# ---- the protocol ------------------------------------------------------------------------
def test_registered_and_supports(tmp_path: Path) -> None:
    assert any(i.kind == "gis" for i in registry())
    for p in (BUBENEC, DELAWARE, LIDARPROD_SHP):
        assert INGESTER.supports(p)
    other = tmp_path / "config.json"
    other.write_text('{"name": "not geo"}')
    assert not INGESTER.supports(other)
    geo = tmp_path / "layer.json"
    geo.write_text('{"type": "FeatureCollection", "features": []}')
    assert INGESTER.supports(geo)
    city = tmp_path / "model.json"
    city.write_text('{"type": "CityJSON", "version": "2.0"}')
    assert INGESTER.supports(city)
    assert not INGESTER.supports(LIDARPROD_LAZ)
    plain = tmp_path / "table.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    assert not INGESTER.supports(plain)


# ---- the real samples --------------------------------------------------------------------
def test_bubenec_every_layer(make_store: MakeStore) -> None:
    store = make_store("EPSG:32633")
    r = ingest(store, BUBENEC)
    assert (r.format, r.crs) == ("GPKG", "EPSG:3857")
    layers = r.counts["layers"]
    assert {k: (v["role"], v["written"]) for k, v in layers.items()} == {
        "buildings": ("buildings", 144),
        "streets": ("roads", 35),
        "plots": ("landcover", 407),
        "tessellation": ("landcover", 144),
    }
    assert r.counts["buildings"] == 144 and r.counts["roads"] == 35
    assert store.count("buildings", "lod = 'LoD1'") == 144
    # no height attribute: unknown, never 0
    assert store.count("buildings", "height IS NULL AND height_source = 'unknown'") == 144
    assert store.count("features") == 35 + 407 + 144
    assert all("guessed" in w for w in r.warnings if w.startswith("layer"))
    assert sum("role guessed" in w for w in r.warnings) == 4


def test_bubenec_areas_match_geodesic(make_store: MakeStore) -> None:
    """Footprint areas in UTM 33N equal geodesic areas of the file's polygons (EPSG:3857)."""
    store = make_store("EPSG:32633")
    ingest(store, BUBENEC, layer="buildings")
    _, table = pyogrio.read_arrow(BUBENEC, layer="buildings", return_fids=True)
    geoms = shapely.from_wkb(table.column(table.column_names[-1]).to_numpy(zero_copy_only=False))
    to_ll = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    ll = shapely.transform(geoms, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    expected = np.array([geodesic_area(g) for g in ll])
    got = np.array(
        [
            r[0]
            for r in store.con.execute(
                "SELECT ST_Area(footprint) FROM buildings "
                "ORDER BY CAST(split_part(source_ref, ':', 2) AS INTEGER)"
            ).fetchall()
        ]
    )
    # UTM scale factor at 14.4E (CM 15E) is ~0.9996: areas agree within 0.1 %
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_delaware_heights_and_areas(make_store: MakeStore) -> None:
    store = make_store("EPSG:32618")
    r = ingest(store, DELAWARE)
    assert (r.format, r.crs) == ("GeoJSON", "EPSG:4326")
    assert r.counts["buildings"] == 360 and r.counts["heights"] == {"attribute": 360}
    rows = store.con.execute(
        "SELECT height, ST_Area(footprint), attributes FROM buildings "
        "ORDER BY CAST(split_part(source_ref, ':', 2) AS INTEGER)"
    ).fetchall()
    heights = np.array([row[0] for row in rows])
    assert heights.min() == pytest.approx(7.41) and heights.max() == pytest.approx(29.03)
    _, table = pyogrio.read_arrow(DELAWARE, return_fids=True)
    assert heights.tolist() == table.column("height").to_pylist()
    geoms = shapely.from_wkb(table.column(table.column_names[-1]).to_numpy(zero_copy_only=False))
    expected = np.array([geodesic_area(g) for g in geoms])
    np.testing.assert_allclose([row[1] for row in rows], expected, rtol=2e-3)
    # the original attributes are kept
    assert json.loads(rows[0][2]).keys() >= {"ogc_fid", "height"}


def test_lidarprod_footprints_polygonz(make_store: MakeStore) -> None:
    store = make_store("EPSG:2154")
    r = ingest(store, LIDARPROD_SHP)
    assert (r.format, r.crs) == ("ESRI Shapefile", "EPSG:2154")
    assert r.counts["buildings"] == 40
    assert any("role guessed as buildings" in w for w in r.warnings)
    # stored 2D (the file is PolygonZ) and in place
    assert store.count("buildings", "ST_HasZ(footprint)") == 0
    box = store.con.execute(
        "SELECT min(xmin), min(ymin), max(xmax), max(ymax) FROM buildings"
    ).fetchone()
    assert box == pytest.approx(pyogrio.read_info(LIDARPROD_SHP)["total_bounds"])


def test_layer_option_picks_one(make_store: MakeStore) -> None:
    store = make_store("EPSG:32633")
    r = ingest(store, BUBENEC, layer="streets")
    assert r.counts["roads"] == 35 and list(r.counts["layers"]) == ["streets"]
    assert store.count("buildings") == 0 and store.count("features") == 35
    with pytest.raises(InputFileError, match=r"no layer 'nope'.*buildings"):
        ingest(make_store("EPSG:32633"), BUBENEC, layer="nope")


def test_role_option_overrides_guess(make_store: MakeStore) -> None:
    store = make_store("EPSG:32633")
    r = ingest(store, BUBENEC, layer="plots", role="parks")
    assert r.counts["parks"] == 407 and not any("guessed" in w for w in r.warnings)


def test_features_bbox_query(make_store: MakeStore) -> None:
    store = make_store("EPSG:32633")
    ingest(store, BUBENEC)
    roads = features(store, "roads")
    assert len(roads) == 35 and all(f.layer == "streets" for f in roads)
    x0, y0, x1, y1 = shapely.total_bounds(np.array([f.geometry for f in roads]))
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
    inside = features(store, "roads", box)
    brute = [f.id for f in roads if shapely.intersects(f.geometry, shapely.box(*box))]
    assert 0 < len(inside) < 35 and [f.id for f in inside] == brute
    assert len(features(store, "landcover")) == 407 + 144
    # SQL reaches the same rows
    assert store.count("features", "role = 'roads'") == 35


# ---- GCJ-02 ------------------------------------------------------------------------------
#: published pairs (wgsLat, wgsLng, gcjLat, gcjLng): googollee/eviltransform go/transform_test.go
#: (Shanghai, Shenzhen, Beijing), the same vectors its python, php and C# tests use
GCJ_PAIRS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), GCJ_PAIRS)
def test_gcj02_reference_pairs(wlat: float, wlon: float, glat: float, glon: float) -> None:
    x, y = wgs84_to_gcj02(wlon, wlat)
    assert GEOD.inv(x, y, glon, glat)[2] < 1.0
    x, y = gcj02_to_wgs84(glon, glat)
    assert GEOD.inv(x, y, wlon, wlat)[2] < 1.0
    # the offset is real (hundreds of metres), so the test is not vacuous
    assert GEOD.inv(wlon, wlat, glon, glat)[2] > 100


def test_gcj02_round_trip_and_outside_china() -> None:
    lon, lat = np.meshgrid(np.linspace(73.5, 134.5, 60), np.linspace(18.5, 53.5, 40))
    gx, gy = wgs84_to_gcj02(lon.ravel(), lat.ravel())
    wx, wy = gcj02_to_wgs84(gx, gy)
    d = GEOD.inv(wx, wy, lon.ravel(), lat.ravel())[2]
    assert np.max(d) < 0.01  # 1 cm
    assert not in_china(14.4, 50.1)
    assert wgs84_to_gcj02(14.4, 50.1) == (14.4, 50.1)


def test_gcj02_layer_lands_where_wgs84_says(make_store: MakeStore, tmp_path: Path) -> None:
    """A square drawn on a Chinese web map (GCJ-02) in Tongliao lands at its WGS84 place."""
    store = make_store("EPSG:4550")
    lon, lat = 122.2630, 43.6170  # WGS84
    d = 0.0002
    wlon = np.array([lon - d, lon + d, lon + d, lon - d, lon - d])
    wlat = np.array([lat - d, lat - d, lat + d, lat + d, lat - d])
    glon, glat = wgs84_to_gcj02(wlon, wlat)
    path = write_layer(
        tmp_path / "gcj.geojson",
        [shapely.Polygon(np.column_stack([glon, glat]))],
        crs="EPSG:4326",
        height=np.array([12.0]),
    )
    r = ingest(store, path, crs="GCJ02", role="buildings")
    assert r.crs == "GCJ02" and r.counts["buildings"] == 1
    row = store.con.execute(
        "SELECT ST_X(ST_Centroid(footprint)), ST_Y(ST_Centroid(footprint)) FROM buildings"
    ).fetchone()
    assert row is not None
    ex, ey = Transformer.from_crs("EPSG:4326", "EPSG:4550", always_xy=True).transform(lon, lat)
    assert np.hypot(row[0] - ex, row[1] - ey) < 1.0
    # read as plain WGS84, the same file lands hundreds of metres off
    other = make_store("EPSG:4550")
    ingest(other, path, role="buildings")
    row = other.con.execute(
        "SELECT ST_X(ST_Centroid(footprint)), ST_Y(ST_Centroid(footprint)) FROM buildings"
    ).fetchone()
    assert row is not None and np.hypot(row[0] - ex, row[1] - ey) > 100


# ---- CRS ---------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_no_crs_needs_crs_option(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:32633")
    path = write_layer(
        tmp_path / "nocrs.shp",
        [shapely.box(458000, 5551000, 458010, 5551010)],
        crs=None,
        height=np.array([9.0]),
    )
    assert not path.with_suffix(".prj").exists()
    before = snapshot(store)
    with pytest.raises(CrsError, match="has no CRS: pass --crs"):
        ingest(store, path, role="buildings")
    assert snapshot(store) == before
    r = ingest(store, path, role="buildings", crs="EPSG:32633")
    assert r.crs == "EPSG:32633" and r.counts["buildings"] == 1
    area = store.con.execute("SELECT ST_Area(footprint) FROM buildings").fetchone()
    assert area is not None and area[0] == pytest.approx(100.0)


# ---- repair and failures -----------------------------------------------------------------
def test_invalid_polygons_repaired_or_skipped(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:32633")
    x, y = 458000.0, 5551000.0
    bowtie = shapely.Polygon([(x, y), (x + 10, y + 10), (x + 10, y), (x, y + 10), (x, y)])
    flat = shapely.Polygon([(x, y), (x + 5, y), (x + 10, y), (x, y)])  # no area: unrepairable
    good = shapely.box(x + 20, y, x + 30, y + 10)
    assert not shapely.is_valid(bowtie) and not shapely.is_valid(flat)
    path = write_layer(
        tmp_path / "bad.gpkg",
        [bowtie, flat, good],
        crs="EPSG:32633",
        layer="buildings",
        height=np.array([6.0, 6.0, 6.0]),
    )
    r = ingest(store, path)
    assert r.counts["buildings"] == 2
    assert r.counts["repaired"] == 1 and r.counts["skipped"] == 1
    assert any("repaired 1 invalid" in w and "1" in w for w in r.warnings)
    assert any("skipped 1 features: 2 (" in w for w in r.warnings)
    assert store.count("buildings", "NOT ST_IsValid(footprint)") == 0
    area = store.con.execute(
        "SELECT ST_Area(footprint) FROM buildings WHERE source_ref = 'buildings:1'"
    ).fetchone()
    assert area is not None and area[0] == pytest.approx(50.0)  # the two triangles


def test_points_and_null_geometries_skipped_for_buildings(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store("EPSG:32618")
    ring = [[-75.5, 39.1], [-75.4999, 39.1], [-75.4999, 39.1001], [-75.5, 39.1]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"h": 1}, "geometry": None},
            {
                "type": "Feature",
                "properties": {"h": 2},
                "geometry": {"type": "Point", "coordinates": [-75.5, 39.1]},
            },
            {
                "type": "Feature",
                "properties": {"h": 3},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            },
        ],
    }
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(doc))
    r = ingest(store, path, role="buildings")
    assert r.counts["buildings"] == 1 and r.counts["skipped"] == 2
    skipped = next(w for w in r.warnings if "skipped" in w)
    assert "0 (no geometry)" in skipped and "1 (not a polygon" in skipped


def _bad_files(tmp_path: Path) -> list[Path]:
    corrupt = tmp_path / "corrupt.gpkg"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    truncated = tmp_path / "truncated.geojson"
    truncated.write_text(DELAWARE.read_text()[:5000])
    empty = tmp_path / "empty.geojson"
    empty.write_bytes(b"")
    no_features = tmp_path / "none.geojson"
    no_features.write_text('{"type": "FeatureCollection", "features": []}')
    return [corrupt, truncated, empty, no_features]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("which", range(4))
def test_bad_file_clear_error_store_unchanged(
    make_store: MakeStore, tmp_path: Path, which: int
) -> None:
    store = make_store("EPSG:32618")
    ingest(store, DELAWARE)
    before = snapshot(store)
    bad = _bad_files(tmp_path)[which]
    with pytest.raises(InputFileError) as err:
        ingest(store, bad)
    assert bad.name in str(err.value)
    assert snapshot(store) == before


def test_replacing_a_file_replaces_its_features(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:32633")
    path = tmp_path / "roads.geojson"
    line = shapely.LineString([(14.39, 50.10), (14.40, 50.11)])
    write_layer(path, [line, line], name=np.array(["a", "b"]))
    ingest(store, path)
    write_layer(path, [line], name=np.array(["c"]))
    r = ingest(store, path)
    assert r.outcome == "replaced"
    assert [f.name for f in features(store, "roads")] == ["c"]


# ---- roles and attributes ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("layer", "fields", "geometry", "role"),
    [
        ("buildings", [], "Polygon", "buildings"),
        ("streets", [], "LineString", "roads"),
        ("plots", [], "Polygon", "landcover"),
        ("city_parks", [], "Polygon", "parks"),
        ("schools_poi", [], "Point", "pois"),
        ("admin_boundary", [], "Polygon", "boundary"),
        ("建筑物", [], "Polygon", "buildings"),
        ("道路中心线", [], "LineString", "roads"),
        ("公园绿地", [], "Polygon", "parks"),
        ("土地利用现状", [], "Polygon", "landcover"),
        ("医疗设施", [], "Point", "pois"),
        ("行政区划", [], "Polygon", "boundary"),
        ("街道办边界", [], "Polygon", "boundary"),
        ("layer1", ["高度"], "Polygon", "buildings"),
        ("layer1", ["highway"], "LineString", "roads"),
        ("layer1", ["地类"], "Polygon", "landcover"),
        ("layer1", [], "Point", "pois"),
    ],
)
def test_role_guess(layer: str, fields: list[str], geometry: str, role: str) -> None:
    assert guess_role(layer, fields, geometry)[0] == role


def test_attribute_mapping_both_languages() -> None:
    assert map_attributes(["HEIGHT", "Floors", "NAME"]) == {
        "height": "HEIGHT",
        "storeys": "Floors",
        "name": "NAME",
    }
    assert map_attributes(["高度", "层数", "用途", "名称", "建成年代", "星级"]) == {
        "height": "高度",
        "storeys": "层数",
        "use": "用途",
        "name": "名称",
        "year_built": "建成年代",
        "green_star": "星级",
    }


def test_chinese_attributes_and_height_rules(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:4550")
    x, y = 122.26, 43.62
    boxes = [shapely.box(x + i * 0.001, y, x + i * 0.001 + 0.0002, y + 0.0002) for i in range(4)]
    path = write_layer(
        tmp_path / "建筑物.geojson",
        boxes,
        高度=np.array(["24.5米", None, None, "0"], dtype=object),
        层数=np.array([8, 6, None, None], dtype=object),
        用途=np.array(["住宅", "办公", "商业", None], dtype=object),
        名称=np.array(["一号楼", "二号楼", None, None], dtype=object),
        建成年代=np.array(["1998年", "2005", None, None], dtype=object),
        星级=np.array(["二星级", "3", None, None], dtype=object),
    )
    r = ingest(store, path)
    assert r.counts["buildings"] == 4
    assert r.counts["heights"] == {"attribute": 1, "floors": 1, "unknown": 2}
    rows = store.con.execute(
        "SELECT height, height_source, storeys_above, use, name, year_built, green_star, "
        "attributes->>'$.名称' FROM buildings ORDER BY xmin"
    ).fetchall()
    assert rows[0] == (24.5, "attribute", 8, "住宅", "一号楼", 1998, 2, "一号楼")
    assert rows[1] == (18.0, "floors", 6, "办公", "二号楼", 2005, 3, "二号楼")
    assert rows[2][:2] == (None, "unknown") and rows[3][:2] == (None, "unknown")  # "0" is unknown


# ---- other formats -----------------------------------------------------------------------
def _grid(n: int, x0: float = 458000.0, y0: float = 5551000.0) -> Any:
    i = np.arange(n)
    x = x0 + (i % 10) * 20.0
    y = y0 + (i // 10) * 20.0
    return shapely.box(x, y, x + 10, y + 8), np.linspace(5, 50, n)


def test_geoparquet_and_flatgeobuf(make_store: MakeStore, tmp_path: Path) -> None:
    geoms, heights = _grid(30)
    fgb = write_layer(tmp_path / "grid.fgb", list(geoms), crs="EPSG:32633", height=heights)
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": None}},
    }
    table = pa.table({"height": heights, "geometry": shapely.to_wkb(geoms)})
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    parquet = tmp_path / "grid.parquet"
    pq.write_table(table, parquet)
    for path, crs in ((fgb, None), (parquet, "EPSG:32633")):
        store = make_store("EPSG:32633")
        r = ingest(store, path, crs=crs)
        assert r.counts["buildings"] == 30 and r.counts["heights"] == {"attribute": 30}
        total = store.con.execute("SELECT sum(ST_Area(footprint)), max(height) FROM buildings")
        assert total.fetchone() == pytest.approx((30 * 80.0, 50.0))


CUBE_FACES = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]


def cityjson(path: Path, x: float, y: float, size: float, height: float) -> Path:
    """A CityJSON 2.0 file with one LoD2 building (a box) at (x, y), base at z = 100."""
    corners = [(0, 0), (size, 0), (size, size), (0, size)]
    verts = [[int(cx * 1000), int(cy * 1000), 0] for cx, cy in corners]
    verts += [[int(cx * 1000), int(cy * 1000), int(height * 1000)] for cx, cy in corners]
    doc = {
        "type": "CityJSON",
        "version": "2.0",
        "transform": {"scale": [0.001, 0.001, 0.001], "translate": [x, y, 100.0]},
        "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/32633"},
        "CityObjects": {
            "b1": {
                "type": "Building",
                "attributes": {"function": "residential", "yearOfConstruction": 1930},
                "geometry": [
                    {"type": "Solid", "lod": "2.2", "boundaries": [[[f] for f in CUBE_FACES]]}
                ],
            }
        },
        "vertices": verts,
    }
    path.write_text(json.dumps(doc))
    return path


def test_cityjson_building(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:32633")
    path = cityjson(tmp_path / "house.city.json", 458000.0, 5551000.0, 10.0, 12.0)
    r = ingest(store, path)
    assert r.format == "CityJSON 2.0" and r.crs == "EPSG:32633"
    row = store.con.execute(
        "SELECT lod, height, height_source, ground_z, ST_Area(footprint), use, year_built "
        "FROM buildings"
    ).fetchone()
    assert row == pytest.approx(("LoD2", 12.0, "geometry", 100.0, 100.0, "residential", 1930))


# ---- one building, several sources -------------------------------------------------------
def test_iou_links_two_sources(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:32633")
    x, y = 458000.0, 5551000.0
    a = write_layer(
        tmp_path / "a.gpkg",
        [shapely.box(x, y, x + 10, y + 10), shapely.box(x + 50, y, x + 60, y + 10)],
        crs="EPSG:32633",
        layer="buildings",
        height=np.array([10.0, 10.0]),
    )
    # the first overlaps a's first with IoU 0.82; the second touches a's second with IoU 0.1
    b = write_layer(
        tmp_path / "b.gpkg",
        [shapely.box(x + 1, y, x + 11, y + 10), shapely.box(x + 58, y, x + 68, y + 10)],
        crs="EPSG:32633",
        layer="buildings",
        height=np.array([11.0, 11.0]),
    )
    ingest(store, a)
    r = ingest(store, b)
    assert r.counts["linked"] == 1
    rows = store.con.execute("SELECT id, source_id, same_as FROM buildings ORDER BY id").fetchall()
    assert rows == [(1, 1, None), (2, 1, None), (3, 2, 1), (4, 2, None)]
    # an LoD2 model of the same building arrives: it becomes canonical for the whole group
    c = cityjson(tmp_path / "c.city.json", x + 0.5, y, 10.0, 12.0)
    r = ingest(store, c)
    assert r.counts["linked"] == 1
    rows = store.con.execute("SELECT id, same_as FROM buildings ORDER BY id").fetchall()
    assert rows == [(1, 5), (2, None), (3, 5), (4, None), (5, None)]
    # linking again is idempotent
    assert link_buildings(store, [1, 3, 5]) == 3
    assert store.con.execute("SELECT id, same_as FROM buildings ORDER BY id").fetchall() == rows
    # the LoD2 source is replaced by one elsewhere: the LoD1 rows it held are linked again
    cityjson(c, x + 500.0, y, 10.0, 12.0)
    assert ingest(store, c).outcome == "replaced"
    rows = store.con.execute("SELECT id, same_as FROM buildings ORDER BY id").fetchall()
    assert rows == [(1, None), (2, None), (3, 1), (4, None), (6, None)]
    # a building moved away (as `cim place` does) leaves its group
    store.con.execute(
        "UPDATE buildings SET footprint = ST_Translate(footprint, 1000, 0), "
        "xmin = xmin + 1000, xmax = xmax + 1000 WHERE id = 1"
    )
    assert link_buildings(store, [1]) == 0
    assert store.count("buildings", "same_as IS NOT NULL") == 0


def test_replaced_source_leaves_no_dangling_link(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("EPSG:32633")
    x, y = 458000.0, 5551000.0
    a = tmp_path / "a.gpkg"
    write_layer(a, [shapely.box(x, y, x + 10, y + 10)], crs="EPSG:32633", layer="buildings")
    b = write_layer(
        tmp_path / "b.gpkg", [shapely.box(x, y, x + 10, y + 11)], crs="EPSG:32633", layer="bldg"
    )
    ingest(store, a)
    assert ingest(store, b).counts["linked"] == 1
    assert store.count("buildings", "same_as = 1") == 1
    a.unlink()
    write_layer(a, [shapely.LineString([(x, y), (x + 9, y)])], crs="EPSG:32633", layer="roads")
    assert ingest(store, a).outcome == "replaced"
    assert store.con.execute("SELECT id, same_as FROM buildings").fetchall() == [(2, None)]


# ---- LiDAR heights (when the LiDAR ingester is there) ------------------------------------
def test_lidar_heights_for_footprints(make_store: MakeStore) -> None:
    pytest.importorskip("ingest.lidar")
    store = make_store("EPSG:2154")
    ingest(store, LIDARPROD_LAZ)
    r = ingest(store, LIDARPROD_SHP, role="buildings")
    assert r.counts["buildings"] == 40
    heights = r.counts["heights"]
    assert heights.get("lidar", 0) > 0 and sum(heights.values()) == 40
    assert store.count("buildings", "height_source = 'lidar' AND height > 0") == heights["lidar"]


# ---- the command line --------------------------------------------------------------------
def test_cli_ingest_layer_and_role(tmp_path: Path) -> None:
    store = tmp_path / "c.duckdb"
    cim = [sys.executable, "-m", "cim.cli", "--store", str(store)]
    r = subprocess.run([*cim, "init", "--crs", "EPSG:32633"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*cim, "ingest", str(BUBENEC), "--layer", "plots", "--role", "landcover", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)["reports"][0]
    assert report["kind"] == "gis" and report["counts"]["landcover"] == 407
    assert report["crs"] == "EPSG:3857" and report["format"] == "GPKG"
