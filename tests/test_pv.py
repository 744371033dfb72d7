"""The rooftop PV analyzer: the yield at Tongliao against published figures, the usable-area
rules, shadows from a tall neighbour against a hand calculation, results kept in the store."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from pyproj import Transformer

from cim.analyze import ANALYZERS, run_analyzer, stale_counts
from cim.analyze.pv import PvAnalyzer, _facet_yield, load_rules
from cim.analyze.roofs import Facet, apply_rules, flat_roof, triangle_facets
from cim.analyze.shading import SunBins
from cim.analyze.solar import FacetSky, site_weather
from cim.cli import cli
from cim.executor import SerialExecutor
from cim.model.analyses import stored
from cim.store import Store
from ingest import IngestOptions, run_ingest
from tests.test_cli import validate_against
from tests.test_gis import write_layer

#: Tongliao (the brief's site), and its place in the project CRS
LON, LAT = 122.3, 43.6
X0, Y0 = Transformer.from_crs("EPSG:4326", "EPSG:4550", always_xy=True).transform(LON, LAT)


@pytest.fixture(scope="module")
def sky() -> FacetSky:
    rules = load_rules()
    return FacetSky(site_weather(LAT, LON, 180.0, rules.doc["climate"]))


def _pitched(tilt: float, azimuth: float, width: float = 10.0, depth: float = 8.0) -> Facet:
    """A plane roof facet built from two triangles, facing ``azimuth`` at ``tilt``."""
    t, a = np.radians(tilt), np.radians(azimuth)
    down = np.array([np.sin(a), np.cos(a), 0.0])  # the way the facet faces
    along = np.array([np.cos(a), -np.sin(a), 0.0])
    slope = -down * np.cos(t) + np.array([0.0, 0.0, np.sin(t)])  # up the roof
    o = np.array([X0, Y0, 10.0])
    v = np.array([o, o + along * width, o + along * width + slope * depth, o + slope * depth])
    faces = np.array([[0, 2, 1], [0, 3, 2]])
    [facet] = triangle_facets(v, faces, ["roof"], np.zeros(2, dtype=np.int64))
    return facet


def _yield(sky: FacetSky, facet: Facet, lit: float = 1.0) -> dict[str, Any]:
    rules = load_rules()
    apply_rules([facet], rules.doc["usable"])
    w = sky.weather
    bins = SunBins.of(w.sun_vectors(), w.sun_up, 4.0, 2.0)
    return _facet_yield(
        facet, np.full(len(bins.directions), lit), sky, w, bins, rules.doc["system"]
    )


def test_south_30_at_tongliao_gives_the_published_yield_and_flat_less(sky: FacetSky) -> None:
    """Tongliao lies in China's 'very rich' solar class B (annual global horizontal
    irradiation 1,400-1,750 kWh/m2, GB/T 31155-2014); the Global Solar Atlas (World Bank /
    Solargis) maps its specific PV output at roughly 1,400-1,600 kWh/kWp for an optimally
    tilted system. These figures are quoted from memory of those sources, not checked here
    against the data sets (the rules file marks its climate row verified: false), so the
    test takes the wider 1,300-1,650 kWh/kWp."""
    w = sky.weather
    assert 1400 <= w.annual_ghi() <= 1750
    facet = _pitched(30.0, 180.0)
    assert facet.tilt == pytest.approx(30.0, abs=0.01)
    assert facet.azimuth == pytest.approx(180.0, abs=0.01)
    assert facet.area == pytest.approx(80.0, rel=1e-6)
    tilted = _yield(sky, facet)
    assert 1300 <= tilted["kwh_per_kwp"] <= 1650
    assert tilted["shading_loss"] == 0.0
    # the usable area: 10 x 8 less a 0.5 m strip along every edge
    assert tilted["kwp"] == pytest.approx(9 * 7 * 0.2, rel=1e-6)
    # plane-of-array light on 30 degrees south is more than on the horizontal
    flat = _yield(sky, flat_roof(shapely.box(0, 0, 10, 8), 10.0))
    # on the horizontal: the global irradiation less the reflection loss of the direct light
    assert 0.96 * w.annual_ghi() < flat["poa_kwh_m2"] <= w.annual_ghi()
    assert flat["kwh_per_kwp"] < tilted["kwh_per_kwp"] * 0.9
    east = _yield(sky, _pitched(30.0, 90.0))
    assert flat["kwh_per_kwp"] * 0.85 < east["kwh_per_kwp"] < tilted["kwh_per_kwp"]


TOWER_ROOF_WKT = (
    "POLYGON ((-3.0000000000582077 -1.5000000158324838, -3.0000000000582077 -0.75000001583248"
    "38, -3.0000000000582077 -1.5832483768833305e-8, -3.0000000000582077 -1.5832483768463135e"
    "-8, -3.0000000000582077 0.7499999841675162, -3.0000000000582077 1.4999999841675162, -3.0"
    "000000000582077 2.2499999841675162, -3.0000000000582077 2.9999999841675162, -2.250000000"
    "0582077 2.9999999841675162, -1.5000000000582077 2.9999999841675162, -0.7500000000582077 "
    "2.9999999841675162, -5.820766091346741e-11 2.9999999841675162, 0.7499999999417923 2.9999"
    "999841675162, 1.4999999999417923 2.9999999841675162, 2.2499999999417923 2.99999998416751"
    "62, 2.9999999999417923 2.9999999841675162, 2.9999999999417923 2.2499999841675162, 2.9999"
    "999999417923 1.4999999841675162, 2.9999999999417923 0.7499999841675162, 2.99999999994179"
    "23 -1.5832483768463135e-8, 2.9999999999417923 -0.7500000158324838, 2.9999999999417923 -1"
    ".5000000158324838, 2.9999999999417923 -2.2500000158324838, 2.9999999999417923 -3.0000000"
    "14901161, 2.249999999941793 -3.000000014901161, 2.2499999999417923 -3.0000000149011607, "
    "2.249999999941792 -3.000000014901161, 1.4999999999417928 -3.000000014901161, 1.499999999"
    "9417923 -3.0000000149011607, 1.499999999941792 -3.000000014901161, 0.7499999999417923 -3"
    ".000000014901161, -5.820766072838252e-11 -3.000000014901161, -5.820766091346741e-11 -3.0"
    "00000014901161, -0.7500000000582077 -3.000000014901161, -1.5000000000582072 -3.000000014"
    "901161, -1.5000000000582077 -3.0000000149011607, -1.500000000058208 -3.000000014901161, "
    "-2.250000000058207 -3.000000014901161, -2.2500000000582077 -3.0000000149011607, -2.25000"
    "0000058208 -3.000000014901161, -3.0000000000582077 -3.000000014901161, -3.00000000005820"
    "77 -2.2500000158324838, -3.0000000000582077 -1.5000000158324838))"
)


def test_usable_area_rules() -> None:
    rules = load_rules().doc["usable"]
    steep = _pitched(65.0, 180.0)
    north = _pitched(30.0, 10.0)
    north_flatish = _pitched(8.0, 0.0)
    small = _pitched(20.0, 180.0, width=3.0, depth=2.5)
    good = _pitched(20.0, 200.0)
    apply_rules([steep, north, north_flatish, small, good], rules)
    assert steep.excluded == "max-tilt"
    assert north.excluded == "north-facing"
    assert north_flatish.excluded is None
    assert small.excluded == "min-area"  # 2 x 1.5 m2 after the setback
    assert good.usable_area == pytest.approx(9 * 7, rel=1e-6)
    # a setback around an L-shaped flat roof: every edge moves in by 0.5 m
    ell = shapely.Polygon([(0, 0), (20, 0), (20, 10), (10, 10), (10, 20), (0, 20)])
    roof = flat_roof(ell, 6.0)
    apply_rules([roof], rules)
    assert roof.usable_area == pytest.approx(ell.buffer(-0.5, join_style="mitre").area)
    # the roof of the demo's tower merged from metre triangles: collinear vertices and some a
    # hundredth of a micrometre apart gave GEOS's mitre join NaNs to warn of
    merged = shapely.from_wkt(TOWER_ROOF_WKT)
    facet = flat_roof(merged, 27.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_rules([facet], rules)
    assert facet.usable_area == pytest.approx(5.0 * 5.0, rel=1e-6)  # 6 x 6 m less 0.5 m a side


# -- a city built in the test ----------------------------------------------------------------


def _ingest(store: Store, path: Path) -> None:
    run_ingest(store, path, IngestOptions(role="buildings"), SerialExecutor())


def _layer(path: Path, boxes: list[tuple[float, float, float, float, float]]) -> Path:
    """Buildings (x, y, width, depth, height) relative to the site, in EPSG:4550."""
    geoms = [shapely.box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + d) for x, y, w, d, _ in boxes]
    heights = np.array([h for *_, h in boxes], dtype=np.float64)
    return write_layer(path, geoms, crs="EPSG:4550", height=heights)


@pytest.fixture
def tongliao(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "t.duckdb", "EPSG:4550")


def _by_height(store: Store) -> dict[float, dict[str, Any]]:
    rows = stored(store, "pv")
    out = {}
    for bid, h in store.con.execute("SELECT id, height FROM buildings").fetchall():
        out.setdefault(float(h), []).append(rows[f"building:{bid}"]["result"])
    return out  # type: ignore[return-value]


def _in_box(p: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Slab test: which rays (points p, directions d, both (n, 3)) enter the box lo..hi."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - p) / d
        t2 = (hi - p) / d
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    hit: np.ndarray = (far >= np.maximum(near, 0.0)) & np.isfinite(far)
    return hit


def test_a_tall_neighbour_shades_as_computed_by_hand(tongliao: Store, tmp_path: Path) -> None:
    """A 3 m house 2 m north of a 60 m slab loses its winter sun; the share of the direct
    light it loses matches a hand calculation (every hour of the year, no bins, a 0.25 m grid
    over the usable roof, the slab as a box) within 10%. A house walled in by four 60 m slabs
    keeps only the diffuse light of the patch of sky it sees."""
    store = tongliao
    layer = _layer(
        tmp_path / "city.geojson",
        [
            (0, 0, 10, 10, 3.0),  # the house
            (-45, -14, 100, 12, 60.0),  # the slab south of it
            (300, 0, 10, 10, 3.0),  # the same house in the open
            # a house walled in on every side, 1 m from it
            (600, 0, 8, 8, 3.0),
            (589, -11, 30, 10, 60.0),
            (589, 9, 30, 10, 60.0),
            (589, -1, 10, 10, 60.0),
            (609, -1, 10, 10, 60.0),
        ],
    )
    _ingest(store, layer)
    analyzer = PvAnalyzer()
    report = run_analyzer(store, analyzer)
    assert report["computed"] == 8
    houses = {
        int(min(p[0] for p in r["facets"][0]["outline"][0]) - X0): r for r in _by_height(store)[3.0]
    }
    near, open_, walled = houses[0], houses[300], houses[600]
    f_open, f_near, f_wall = open_["facets"][0], near["facets"][0], walled["facets"][0]
    assert f_open["shading_loss"] == 0.0
    assert f_near["kwh_per_year"] < f_open["kwh_per_year"] * 0.9
    assert near["shading_loss"] == pytest.approx(f_near["shading_loss"])
    # the hand calculation
    sky, weather, _ = analyzer._sky_now(store)
    light = sky.light(0.0, 180.0)
    g = np.arange(0.5 + 0.125, 9.5, 0.25)
    gx, gy = np.meshgrid(g, g)
    pts = np.column_stack([X0 + gx.ravel(), Y0 + gy.ravel(), np.full(gx.size, 3.05)])
    lo, hi = np.array([X0 - 45, Y0 - 14, 0.0]), np.array([X0 + 55, Y0 - 2, 60.0])
    sun = weather.sun_vectors()
    shaded = np.zeros(len(sun))
    for h in np.flatnonzero(light.beam > 0):
        d = np.broadcast_to(sun[h], pts.shape)
        shaded[h] = _in_box(pts, d, lo, hi).mean()
    hand_hours = float(shaded[light.beam > 0].sum())
    hand_beam_lost = float((light.beam * shaded).sum() / 1000.0)
    # what the near house loses of the direct light (its diffuse loss apart: the slab hides
    # part of its sky too)
    diffuse_lost = f_near["diffuse_kwh_m2"] - f_near["diffuse_seen_kwh_m2"]
    lost = f_near["poa_unshaded_kwh_m2"] - f_near["poa_kwh_m2"] - diffuse_lost
    assert hand_hours > 500  # the slab matters
    assert f_near["shaded_sun_hours"] == pytest.approx(hand_hours, rel=0.10)
    assert lost == pytest.approx(hand_beam_lost, rel=0.10)
    # the slab is (nearly) an endless wall rising 57 m above the roof, 7 m from the roof's
    # middle: it hides (1 - cos a) / 2 of a horizontal roof's sky, a its angle of elevation
    a = np.arctan(57.0 / 7.0)
    assert f_open["sky_view"] == 1.0
    assert f_near["sky_view"] == pytest.approx(1.0 - (1.0 - np.cos(a)) / 2.0, abs=0.04)
    # walled in: only diffuse light is left, and the walls hide most of the sky
    assert f_wall["poa_kwh_m2"] == pytest.approx(f_wall["diffuse_seen_kwh_m2"], rel=0.01)
    assert f_wall["sky_view"] < 0.3
    assert f_wall["shaded_sun_hours"] == pytest.approx(f_wall["sun_hours"], rel=0.01)
    assert f_wall["shading_loss"] > 0.3


def test_a_second_run_recomputes_nothing_and_a_change_only_what_it_shades(
    tongliao: Store, tmp_path: Path
) -> None:
    store = tongliao
    a = _layer(tmp_path / "a.geojson", [(0, 0, 10, 10, 6.0), (20, 0, 10, 10, 9.0)])
    b = _layer(tmp_path / "b.geojson", [(2000, 0, 12, 12, 12.0)])
    _ingest(store, a)
    _ingest(store, b)
    first = run_analyzer(store, ANALYZERS["pv"]())
    assert (first["computed"], first["unchanged"]) == (3, 0)
    again = run_analyzer(store, ANALYZERS["pv"]())
    assert (again["computed"], again["unchanged"]) == (0, 3)
    assert stale_counts(store, [ANALYZERS["pv"]()])["pv"] == {
        "current": 3,
        "stale": 0,
        "missing": 0,
    }
    # b is re-ingested with another height: only its building is recomputed
    _layer(b, [(2000, 0, 12, 12, 15.0)])
    _ingest(store, b)
    third = run_analyzer(store, ANALYZERS["pv"]())
    assert (third["computed"], third["unchanged"]) == (1, 2)
    # a new building next to a's first one: it and the two buildings of a within the shading
    # radius are recomputed, b's is not
    c = _layer(tmp_path / "c.geojson", [(0, -30, 10, 10, 40.0)])
    _ingest(store, c)
    fourth = run_analyzer(store, ANALYZERS["pv"]())
    assert (fourth["computed"], fourth["unchanged"]) == (3, 1)
    city = stored(store, "pv")["city"]["result"]
    assert city["buildings"] == 4
    total = sum(r["pv_kwh"] for r in fourth["results"])
    assert city["mwh_per_year"] == pytest.approx(total / 1000.0, abs=0.1)
    assert run_analyzer(store, ANALYZERS["pv"](), everything=True)["computed"] == 4


def test_cli_json_follows_the_schemas(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    _ingest(store, _layer(tmp_path / "a.geojson", [(0, 0, 10, 10, 6.0), (0, 30, 3, 2, 6.0)]))
    path = str(store.path)
    store.close()
    runner = CliRunner()
    r = runner.invoke(cli, ["--store", path, "analyze", "pv", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    validate_against(doc, "analyze.schema.json")
    assert doc["analyses"]["pv"]["computed"] == 2
    r = runner.invoke(cli, ["--store", path, "analyze", "pv", "--building", "2", "--json"])
    one = json.loads(r.stdout)["analyses"]["pv"]["building"]
    validate_against(one, "pv.schema.json")
    assert one["facets"][0]["excluded_by"]["rule"] == "min-area"
    r = runner.invoke(cli, ["--store", path, "analyze", "pv", "--building", "1"])
    assert r.exit_code == 0 and "kWh/kWp" in r.output
    bad = tmp_path / "weather.epw"
    bad.write_text("not a weather file\n")
    r = runner.invoke(cli, ["--store", path, "analyze", "pv", "--weather", str(bad)])
    assert r.exit_code != 0 and "weather.epw" in r.output


@pytest.mark.parametrize("rotation", [0.0, 90.0])
def test_the_fzk_house_gable_roof_from_ifc(tongliao: Store, rotation: float) -> None:
    """AC20-FZK-Haus (KIT) has a 30-degree gable roof of two IfcSlab ROOF halves, the ridge
    along the model's x axis. Turned by the anchor's rotation, the halves face south and north
    (0) or east and west (90); the north half is left out, the others are used with the
    setback, and the south half yields what the unshaded 30-degree south facet does."""
    from ingest import Anchor
    from tests.conftest import SAMPLES

    opts = IngestOptions(anchor=Anchor(LON, LAT, 180.0, rotation))
    run_ingest(tongliao, SAMPLES / "ifc" / "AC20-FZK-Haus.ifc", opts, SerialExecutor())
    run_analyzer(tongliao, PvAnalyzer())
    [row] = [r for k, r in stored(tongliao, "pv").items() if k != "city"]
    r = row["result"]
    assert r["roof_source"] == "ifc"
    halves = sorted(r["facets"], key=lambda f: f["azimuth_deg"])
    assert len(halves) == 2
    for f in halves:
        assert f["tilt_deg"] == pytest.approx(30.0, abs=0.5)
        assert f["area_m2"] == pytest.approx(halves[0]["area_m2"], rel=0.01)
        assert len(f["elements"]) >= 1  # the roof slab's GlobalId is the evidence
    if rotation == 0.0:
        north, south = halves
        assert north["azimuth_deg"] == pytest.approx(0.0, abs=1.0)
        assert north["excluded_by"]["rule"] == "north-facing"
        assert south["azimuth_deg"] == pytest.approx(180.0, abs=1.0)
        assert 1300 <= south["kwh_per_kwp"] <= 1650 and south["shading_loss"] < 0.01
    else:
        east, west = halves
        assert east["azimuth_deg"] == pytest.approx(90.0, abs=1.0)
        assert west["azimuth_deg"] == pytest.approx(270.0, abs=1.0)
        assert east["usable"] and west["usable"]


def test_the_potential_reaches_the_tiles_and_the_detail(tongliao: Store, tmp_path: Path) -> None:
    from cim.model.buildings import building_detail
    from cim.tilefiles import tileset_states
    from tests.test_tiles import glbs, tileset
    from tiles.build import build_tilesets
    from tiles.gltf import property_tables

    store = tongliao
    _ingest(store, _layer(tmp_path / "a.geojson", [(0, 0, 10, 10, 6.0)]))
    build_tilesets(store, ["buildings"])
    run_analyzer(store, PvAnalyzer())
    (state,) = tileset_states(store.con, store.path)
    assert state["state"] == "stale"  # the buildings carry the potential
    build_tilesets(store, ["buildings"])
    folder, doc = tileset(store, "buildings")
    table = property_tables(glbs(folder, doc)[-1][1])["building"]
    detail = building_detail(store, 1)
    assert detail is not None
    pv = detail["analyses"]["pv"]
    assert table["pv_kwp"] == [pv["summary"]["pv_kwp"]] == [pytest.approx(81 * 0.2)]
    assert table["pv_kwh_per_m2"] == [pv["summary"]["pv_kwh_per_m2"]]
    assert 150 < table["pv_kwh_per_m2"][0] < 250  # an unshaded flat roof, 81 of 100 m2 used


def test_the_numpy_ray_engine_agrees_with_embree() -> None:
    """The fallback without embreex answers as Embree does on a box and random rays."""
    from cim.analyze.shading import extrude, intersector, ray_engine

    if ray_engine() != "embree":
        pytest.skip("embreex is not installed")
    v, f = extrude(shapely.box(0, 0, 10, 4), 0.0, 20.0)
    rng = np.random.default_rng(7)
    origins = np.column_stack(
        [rng.uniform(-20, 30, 4000), rng.uniform(-20, 24, 4000), rng.uniform(0.1, 25, 4000)]
    )
    d = rng.normal(size=(4000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    fast = intersector(v, f, "embree").intersects_any(origins, d)
    slow = intersector(v, f, "numpy").intersects_any(origins, d)
    assert 0.05 < fast.mean() < 0.95
    assert (fast == slow).mean() > 0.999  # rays grazing an edge may differ


def test_lidar_facets_have_the_tilts_of_planes_fitted_here(tmp_path: Path) -> None:
    """The lidarprod sample (IGN LiDAR HD tile with its BD TOPO footprints): the roof facets
    found by RANSAC on each footprint's class-6 points have the tilt and azimuth of a plane
    fitted here by ordinary least squares (z = ax + by + c) to the points inside each facet's
    outline, half a metre in from its edges."""
    from cim.model.points import BUILDING, points_in_polygon
    from tests.conftest import SAMPLES

    store = Store.create(tmp_path / "lp.duckdb", "EPSG:2154")
    folder = SAMPLES / "lidar" / "lidarprod"
    for path in [*folder.glob("*.shp"), *folder.glob("*.laz")]:
        run_ingest(store, path, IngestOptions(), SerialExecutor())
    run_analyzer(store, PvAnalyzer())
    rows = [r["result"] for k, r in stored(store, "pv").items() if k != "city"]
    facets = [(r, f) for r in rows if r["roof_source"] == "lidar" for f in r["facets"]]
    big = [(r, f) for r, f in facets if f["area_m2"] >= 40]
    assert len(big) >= 3
    for r, f in big:
        assert 0 <= f["tilt_deg"] <= 60
        ring = shapely.Polygon([p[:2] for p in f["outline"][0]]).buffer(-0.5)
        table = points_in_polygon(store, ring, classes=[BUILDING])
        x, y, z = (table.column(c).to_numpy().astype(float) for c in ("x", "y", "z"))
        assert len(x) >= 20
        x, y = x - x.mean(), y - y.mean()  # Lambert-93 metres are too large for lstsq as they are
        (a, b, _), *_ = np.linalg.lstsq(np.column_stack([x, y, np.ones_like(x)]), z, rcond=None)
        tilt = np.degrees(np.arctan(np.hypot(a, b)))
        assert f["tilt_deg"] == pytest.approx(tilt, abs=3.0), r["building_id"]
        if tilt > 5:
            azimuth = np.degrees(np.arctan2(-a, -b)) % 360.0  # downhill
            off = abs((f["azimuth_deg"] - azimuth + 180.0) % 360.0 - 180.0)
            assert off < 5.0, r["building_id"]


def test_point_facets_find_a_gable_roof_and_its_chimney() -> None:
    """A synthetic gable roof (two 35-degree halves, 12 x 5 m each, 10 points/m2, 3 cm noise)
    with a 1 x 1 m chimney standing 1.5 m out of the south half: two facets with the roof's
    tilts and azimuths, and the chimney (grown by half a metre) kept out of the usable area."""
    from cim.analyze.roofs import point_facets

    rng = np.random.default_rng(3)
    t = np.tan(np.radians(35.0))
    x = rng.uniform(0, 12, 1200)
    ys = rng.uniform(0, 5, 600)  # south half: from the eave at y = 0 up to the ridge at y = 5
    yn = rng.uniform(5, 10, 600)
    z = np.concatenate([ys * t, (10 - yn) * t]) + rng.normal(0, 0.03, 1200)
    roof = np.column_stack([x, np.concatenate([ys, yn]), z])
    cx, cy = rng.uniform(5, 6, 40), rng.uniform(2, 3, 40)
    chimney = np.column_stack([cx, cy, cy * t + 1.5])
    footprint = shapely.box(0, 0, 12, 10)
    facets = point_facets(np.vstack([roof, chimney]), footprint)
    assert len(facets) == 2
    south, north = sorted(facets, key=lambda f: abs(f.azimuth - 180.0))
    for f in facets:
        assert f.tilt == pytest.approx(35.0, abs=1.0)
        assert f.area == pytest.approx(12 * 5 / np.cos(np.radians(35.0)), rel=0.12)
    assert south.azimuth == pytest.approx(180.0, abs=2.0)
    assert min(north.azimuth, 360 - north.azimuth) < 2.0
    assert north.obstacles is None
    assert south.obstacles is not None
    assert 1.5 < south.obstacles.area < 5.0  # 1 m2 grown by 0.5 m: about 4 m2 on the slope
    apply_rules(facets, load_rules().doc["usable"])
    assert south.usable is not None and not south.usable.contains(
        shapely.Point(*south.obstacles.representative_point().coords[0])
    )


def _write_epw(path: Path, sky: FacetSky) -> Path:
    """An EPW file of the site's year (the weather the analyzer builds by itself), in the
    format pvlib's reader takes: eight header lines, then 8,760 hour-ending rows."""
    w = sky.weather
    head = [
        f"LOCATION,Tongliao,NM,CHN,test,000000,{LAT},{LON},8.0,180.0",
        "DESIGN CONDITIONS,0",
        "TYPICAL/EXTREME PERIODS,0",
        "GROUND TEMPERATURES,0",
        "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
        "COMMENTS 1,written by tests/test_pv.py",
        "COMMENTS 2,",
        "DATA PERIODS,1,1,Data,Sunday, 1/ 1,12/31",
    ]
    rows = []
    for k in range(8760):
        t = w.times[k]
        rows.append(
            f"2023,{t.month},{t.day},{t.hour + 1},0,?,{w.temp_air[k]:.1f},-5.0,50,99000,0,0,0,"
            f"{w.ghi[k]:.1f},{w.dni[k]:.1f},{w.dhi[k]:.1f},0,0,0,0,180,{w.wind_speed[k]:.1f},"
            "5,5,20,77777,9,999999999,10,0.1,0,88,0.2,0,0"
        )
    path.write_text("\n".join(head + rows) + "\n")
    return path


def test_a_weather_file_is_read_and_makes_results_stale(
    tongliao: Store, tmp_path: Path, sky: FacetSky
) -> None:
    store = tongliao
    _ingest(store, _layer(tmp_path / "a.geojson", [(0, 0, 10, 10, 6.0)]))
    first = run_analyzer(store, ANALYZERS["pv"]())
    epw = _write_epw(tmp_path / "tongliao.epw", sky)
    second = run_analyzer(store, ANALYZERS["pv"](weather=epw))
    assert second["computed"] == 1  # another weather: recomputed
    r = stored(store, "pv")["building:1"]["result"]
    assert r["weather"]["kind"] == "weather file" and r["weather"]["verified"] is True
    assert r["weather"]["annual_ghi_kwh_m2"] == pytest.approx(sky.weather.annual_ghi(), rel=1e-3)
    # the same year read back from the file gives the same yield
    before = first["results"][0]["pv_kwh_per_kwp"]
    assert second["results"][0]["pv_kwh_per_kwp"] == pytest.approx(before, rel=0.002)
    assert run_analyzer(store, ANALYZERS["pv"](weather=epw))["computed"] == 0


def test_montpellier_roof_points_give_facets_with_fitted_tilts(tmp_path: Path) -> None:
    """The Montpellier sample has no footprints: its class-6 points are grouped here into
    buildings (touching 1 m cells), each group's convex hull standing in for a footprint; the
    facets RANSAC finds in the larger groups have the tilts of least-squares planes fitted here
    to the points inside each facet, half a metre in from its edges."""
    from scipy import ndimage

    from cim.analyze.roofs import point_facets
    from cim.model.points import BUILDING, point_batches
    from tests.conftest import SAMPLES

    store = Store.create(tmp_path / "mp.duckdb", "EPSG:2154")
    for path in sorted((SAMPLES / "lidar" / "montpellier").glob("*.laz")):
        run_ingest(store, path, IngestOptions(), SerialExecutor())
    parts = [
        np.column_stack([b.x, b.y, b.z])[b.classification == BUILDING] for b in point_batches(store)
    ]
    xyz = np.vstack(parts)
    cells = np.floor((xyz[:, :2] - xyz[:, :2].min(axis=0)) / 1.0).astype(int)
    grid = np.zeros(tuple(cells.max(axis=0) + 1), dtype=bool)
    grid[cells[:, 0], cells[:, 1]] = True
    labels, _ = ndimage.label(grid, structure=np.ones((3, 3)))
    lab = labels[cells[:, 0], cells[:, 1]]
    sizes = np.bincount(lab)
    checked = 0
    for group in np.argsort(-sizes)[:6]:
        pts = xyz[lab == group]
        if group == 0 or len(pts) < 500:
            continue
        footprint = shapely.MultiPoint(pts[:, :2]).convex_hull
        for f in point_facets(pts, footprint):
            if f.area < 30:
                continue
            assert 0 <= f.tilt <= 60
            ring = shapely.Polygon([p[:2] for p in f.outline_3d()[0]]).buffer(-0.5)
            inside = shapely.contains_xy(ring, pts[:, 0], pts[:, 1])
            on = pts[inside]
            on = on[np.abs((on - f.origin) @ f.normal) < 0.5]  # not a higher part above it
            if len(on) < 30:
                continue
            x, y = on[:, 0] - on[:, 0].mean(), on[:, 1] - on[:, 1].mean()
            (a, b, _), *_ = np.linalg.lstsq(
                np.column_stack([x, y, np.ones_like(x)]), on[:, 2], rcond=None
            )
            assert f.tilt == pytest.approx(np.degrees(np.arctan(np.hypot(a, b))), abs=3.0)
            checked += 1
    assert checked >= 3


def _ground_cloud(path: Path, ridge: tuple[float, float, float] | None) -> Path:
    """Ground points (class 2) every metre around the site, flat at z 0 but for an east-west
    ridge (y from, y to, height) relative to the site, in EPSG:4550."""
    import laspy

    gx, gy = np.meshgrid(np.arange(-120.0, 130.0), np.arange(-120.0, 80.0))
    z = np.zeros(gx.shape)
    if ridge is not None:
        y0, y1, h = ridge
        z[(gy >= y0) & (gy <= y1)] = h
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([round(X0), round(Y0), 0.0])
    header.add_crs(__import__("pyproj").CRS.from_epsg(4550))
    las = laspy.LasData(header)
    las.x, las.y, las.z = X0 + gx.ravel(), Y0 + gy.ravel(), z.ravel()
    las.classification = np.full(gx.size, 2, dtype=np.uint8)
    las.write(str(path))
    return path


def test_a_ridge_in_the_terrain_shades_like_a_block_of_its_shape(tmp_path: Path) -> None:
    """The terrain from LiDAR casts shadows: a 30 m ridge 20 m south of a 3 m house takes
    its winter sun as a 30 m block of the ridge's shape does; flat ground takes nothing."""
    house = (0, 0, 10, 10, 3.0)
    losses = {}
    for case in ("ridge", "block", "flat"):
        store = Store.create(tmp_path / f"{case}.duckdb", "EPSG:4550")
        boxes = [house] + ([(-120, -40, 250, 20, 30.0)] if case == "block" else [])
        _ingest(store, _layer(tmp_path / f"{case}.geojson", boxes))
        if case != "block":
            ridge = (-40.0, -20.0, 30.0) if case == "ridge" else None
            cloud = _ground_cloud(tmp_path / f"{case}.las", ridge)
            run_ingest(store, cloud, IngestOptions(), SerialExecutor())
        run_analyzer(store, PvAnalyzer())
        bid = store.con.execute("SELECT id FROM buildings WHERE height = 3.0").fetchone()
        assert bid is not None
        facet = stored(store, "pv")[f"building:{bid[0]}"]["result"]["facets"][0]
        assert facet["outline"][0][0][2] == pytest.approx(3.0, abs=0.1)  # ground at z 0
        losses[case] = facet["shaded_sun_hours"]
        store.close()
    assert losses["flat"] == 0
    assert losses["block"] > 300
    assert losses["ridge"] == pytest.approx(losses["block"], rel=0.15)
