"""The city health check (`cim analyze indicators`) on a grid city built here, whose road
lengths, land-cover areas, parks and facilities are known, and on the Bubenec sample streets.

The grid city (EPSG:32651, the square 0..1000 m of the boundary):
- line roads (residential, 12 m) along x = 100, 500, 900 and y = 100, 500, 900, all running past
  the boundary except x = 500, which stops at y = 500 (the river below y = 900 has no bridge
  there); a road polygon 12 m wide along y = 300 from x = 500 to 900: 5.5 + 0.4 km of centreline;
- land cover: green 200 x 200, the river (water) 788 x 20, parks 0.5 ha and 2 ha, paved the rest;
- six homes of 20 x 20 m, a school, and facilities at known places.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from pyproj import Transformer

from cim.analyze import ANALYZERS, run_analyzer
from cim.analyze.indicators import IndicatorsAnalyzer, load_targets
from cim.analyze.urban import Network, centreline
from cim.cli import cli
from cim.errors import InputFileError
from cim.executor import SerialExecutor
from cim.model.analyses import stored
from cim.store import Store
from ingest import IngestOptions, run_ingest
from tests.conftest import SAMPLES, MakeStore, snapshot
from tests.test_cli import validate_against
from tests.test_gis import write_layer

CRS = "EPSG:32651"
X0, Y0 = 420000.0, 4830000.0
BUBENEC = SAMPLES / "gis" / "bubenec.gpkg"


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def line(*pts: tuple[float, float]) -> shapely.LineString:
    return shapely.LineString([(X0 + x, Y0 + y) for x, y in pts])


def point(x: float, y: float) -> shapely.Point:
    return shapely.Point(X0 + x, Y0 + y)


#: name, use, (x, y) of the lower-left corner, floors, year, green star (-1 unknown),
#: ultra-low-energy, retrofit
HOMES = [
    ("H1", "residential", (150, 150), 6, 2022, 2, 0, 0),
    ("H2", "residential", (300, 150), 3, 2010, -1, 0, 1),
    ("H3", "residential", (700, 150), 20, 2022, 0, 0, 0),
    ("H4", "residential", (150, 600), 9, 2023, -1, 0, 0),
    ("H5", "residential", (520, 620), 5, 2024, 1, 1, 0),
    ("H6", "residential", (400, 800), 6, 1995, -1, 0, 1),
    ("school", "school", (750, 750), 3, 2022, 3, 1, 0),
]
FACILITIES = [
    ("kindergarten", (470, 860)),
    ("primary_school", (480, 480)),
    ("clinic", (500, 100)),
    ("grocery", (160, 200)),
    ("elderly_care", (420, 780)),
    ("sports", (880, 880)),
]
GREEN = (200, 200, 400, 400)
RIVER = (106, 690, 894, 710)
PARKS = [("small", (600, 550, 700, 600)), ("big", (150, 750, 350, 850))]


def grid_city(path: Path, *, landcover: bool = True, pois: bool = True, roads: bool = True) -> Path:
    """The grid city as one GeoPackage (layers roads, landcover, parks, pois, boundary,
    buildings), in the project CRS."""
    if roads:
        lines = [line((-200, y), (1200, y)) for y in (100, 500, 900)]
        lines += [line((x, -200), (x, 1200)) for x in (100, 900)]
        lines += [line((500, -200), (500, 500))]
        write_layer(path, lines, CRS, "roads", highway=np.array(["residential"] * len(lines)))
        area = [box(500, 294, 900, 306)]
        write_layer(path, area, CRS, "road_areas", highway=np.array(["tertiary"]))
    if landcover:
        open_ = [box(*GREEN), box(*RIVER), *(box(*b) for _, b in PARKS)]
        paved = shapely.difference(box(0, 0, 1000, 1000), shapely.union_all(open_))
        write_layer(
            path,
            [box(*GREEN), box(*RIVER), paved],
            CRS,
            "landcover",
            landcover=np.array(["green", "water", "paved"]),
        )
    write_layer(
        path, [box(*b) for _, b in PARKS], CRS, "parks", name=np.array([n for n, _ in PARKS])
    )
    if pois:
        write_layer(
            path,
            [point(*p) for _, p in FACILITIES],
            CRS,
            "pois",
            amenity=np.array([k for k, _ in FACILITIES]),
        )
    write_layer(path, [box(0, 0, 1000, 1000)], CRS, "boundary", name=np.array(["grid town"]))
    cols = list(zip(*HOMES, strict=True))
    write_layer(
        path,
        [box(x, y, x + 20, y + 20) for x, y in cols[2]],
        CRS,
        "buildings",
        name=np.array(cols[0]),
        use=np.array(cols[1]),
        floors=np.array(cols[3]),
        year=np.array(cols[4]),
        green_star=np.array(cols[5]),
        ultra_low_energy=np.array(cols[6]),
        energy_retrofit=np.array(cols[7]),
    )
    return path


def ingest(store: Store, path: Path, **options: Any) -> None:
    run_ingest(store, path, IngestOptions(**options), SerialExecutor())


def indicators(store: Store) -> dict[str, Any]:
    report = run_analyzer(store, ANALYZERS["indicators"](store=store))
    assert not report["failed"], report["failed"]
    return report


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in result["indicators"]}


@pytest.fixture
def town(make_store: MakeStore, tmp_path: Path) -> Store:
    store = make_store(CRS)
    ingest(store, grid_city(tmp_path / "town.gpkg"))
    return store


def names_of(store: Store) -> dict[int, str]:
    return {int(i): n for i, n in store.con.execute("SELECT id, name FROM buildings").fetchall()}


def test_grid_city_exact_figures(town: Store) -> None:
    report = indicators(town)
    assert (report["subjects"], report["computed"]) == (1, 1)
    result = stored(town, "indicators")[report["results"][0]["subject"]]["result"]
    validate_against(result, "indicators.schema.json")
    got = by_id(result)
    names = names_of(town)
    # 3 x 1000 m across, 2 x 1000 m up, 500 m of the road that stops at the river, 400 m of
    # the road polygon's centreline: 5.9 km in 1 km2
    assert got["road_density"]["value"] == pytest.approx(5.9, abs=1e-6)
    assert got["road_density"]["evidence"]["from_polygons_km"] == pytest.approx(0.4, abs=1e-6)
    assert got["road_density"]["status"] == "not_met"
    # green 40000 + river 15760 + parks 5000 + 20000 m2, nothing unknown
    perm = got["permeable_share"]
    assert perm["value"] == pytest.approx(80760 / 1e6)
    assert perm["evidence"]["unknown_m2"] == 0 and perm["status"] == "not_met"
    # H4 (130 m from the big park), H5 (63 m from the small one), H6 (50 m from the big one)
    park = got["park_coverage"]
    assert park["value"] == pytest.approx(0.5)
    assert {names[i] for i in park["map"]["layers"][0]["building_ids"]} == {"H1", "H2", "H3"}
    # the kindergarten is 238 m from H5 in a straight line, but the river has no bridge on
    # x = 500: walking, it is 1370 m away; H6 walks 90 + 60 + 40 = 190 m
    kg = got["life_circle"]["evidence"]["types"]["kindergarten"]
    assert (kg["covered"], kg["straight_line_covered"]) == (1, 2)
    assert {names[i] for i in kg["not_covered"]} == {"H1", "H2", "H3", "H4", "H5"}
    assert got["life_circle"]["evidence"]["network"] is True
    shares = [t["share"] for t in got["life_circle"]["evidence"]["types"].values()]
    assert got["life_circle"]["value"] == pytest.approx(min(shares), abs=1e-4)
    # H3 has 20 floors; new homes H1 (6 x 400), H3 (20 x 400), H4 (9 x 400), H5 (5 x 400)
    assert got["homes_over_18_floors"]["value"] == 1
    assert [names[i] for i in got["homes_over_18_floors"]["evidence"]["over_18_new"]] == ["H3"]
    assert got["low_rise_share"]["value"] == pytest.approx(4400 / 16000)
    # new and rated: H1 (2), H3 (0), H5 (1), the school (3); H4 unknown
    assert got["green_star_share"]["value"] == pytest.approx(0.75)
    assert got["green_star_share"]["status"] == "met"
    assert got["ultra_low_energy_area"]["value"] == pytest.approx(2000 + 1200)
    assert got["retrofit_area"]["value"] == pytest.approx(1200 + 2400)
    # nothing scored by the prefab or PV analyzers: no data, never 0
    for key in ("prefab_share", "pv_renewable_share"):
        assert got[key]["status"] == "no_data" and got[key]["value"] is None
    assert "cim analyze prefab" in got["prefab_share"]["why_no_data"]
    assert result["counts"] == {"met": 1, "not_met": 8, "no_data": 2}


def test_network_distance_takes_the_detour() -> None:
    """Two roads with no link between them: the straight line is short, the walk is not."""
    lines = np.array(
        [
            shapely.LineString([(0, 0), (1000, 0)]),
            shapely.LineString([(1000, 0), (1000, 100), (0, 100)]),
        ],
        dtype=object,
    )
    net = Network.of(lines)
    dist, o_snap, t_snap = net.distances(np.array([[10.0, 90.0]]), np.array([[10.0, 10.0]]), 1e9)
    assert o_snap[0] == pytest.approx(10) and t_snap[0] == pytest.approx(10)
    assert dist[0] == pytest.approx(10 + 990 + 100 + 990 + 10)
    # on one segment they reach each other along it
    dist, _, _ = net.distances(np.array([[10.0, 5.0]]), np.array([[60.0, 5.0]]), 1e9)
    assert dist[0] == pytest.approx(60)


def test_centreline_of_road_polygons() -> None:
    assert centreline(shapely.box(0, 0, 200, 12)).length == pytest.approx(200, abs=1e-6)
    cross = shapely.union(shapely.box(0, 0, 300, 20), shapely.box(140, -200, 160, 200))
    assert centreline(cross).length == pytest.approx(700, abs=1e-6)


def test_missing_data_is_no_data(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store(CRS)
    ingest(store, grid_city(tmp_path / "bare.gpkg", landcover=False, pois=False))
    got = by_id(stored(store, "indicators").get("x", {}).get("result") or {"indicators": []})
    assert got == {}
    report = indicators(store)
    result = stored(store, "indicators")[report["results"][0]["subject"]]["result"]
    got = by_id(result)
    assert got["life_circle"]["status"] == "no_data"
    assert "POI" in got["life_circle"]["why_no_data"]
    perm = got["permeable_share"]
    assert perm["status"] == "no_data" and "no known land cover" in perm["why_no_data"]
    assert got["road_density"]["status"] == "not_met"


def test_without_roads_the_life_circle_is_straight_line(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store(CRS)
    ingest(store, grid_city(tmp_path / "noroads.gpkg", roads=False))
    report = indicators(store)
    got = by_id(stored(store, "indicators")[report["results"][0]["subject"]]["result"])
    life = got["life_circle"]
    assert life["evidence"]["network"] is False
    assert any("straight-line" in m and "no roads" in m for m in life["method"])
    kg = life["evidence"]["types"]["kindergarten"]
    assert kg["covered"] == kg["straight_line_covered"] == 2  # H5 and H6
    assert got["road_density"]["status"] == "no_data"
    assert got["road_density"]["why_no_data"] == "no road layer in the store"


def test_kept_results_and_what_a_reingest_recomputes(town: Store, tmp_path: Path) -> None:
    far = tmp_path / "far.gpkg"
    write_layer(far, [box(5000, 0, 6000, 1000)], CRS, "boundary", name=np.array(["far"]))
    write_layer(far, [box(5100, 100, 5120, 120)], CRS, "buildings", floors=np.array([3]))
    ingest(town, far)
    first = indicators(town)
    assert (first["subjects"], first["computed"]) == (2, 2)

    def fingerprints() -> dict[str, str]:
        rows = stored(town, "indicators").values()
        return {r["result"]["boundary"]["name"]: r["fingerprint"] for r in rows}

    assert indicators(town)["computed"] == 0
    before = fingerprints()
    # the far area's file changes: only its boundary is measured again
    write_layer(far, [box(5000, 0, 6000, 1000)], CRS, "boundary", name=np.array(["far"]))
    write_layer(far, [box(5200, 100, 5220, 120)], CRS, "buildings", floors=np.array([4]))
    ingest(town, far)
    third = indicators(town)
    # (the far boundary is a new feature of the re-ingested file: a new subject; the old row
    # went with the old source's rows)
    assert (third["computed"], third["unchanged"]) == (1, 1)
    after = fingerprints()
    assert after["grid town"] == before["grid town"] and after["far"] != before["far"]
    # a building of the town moved (as `cim place` moves a model): the town only
    town.con.execute(
        "UPDATE buildings SET xmin = xmin + 5, xmax = xmax + 5, "
        "footprint = ST_Translate(footprint, 5, 0) WHERE name = 'H1'"
    )
    moved = indicators(town)
    assert (moved["computed"], moved["unchanged"]) == (1, 1)
    assert fingerprints()["far"] == after["far"]


def test_prefab_and_pv_results_are_read_and_make_it_stale(town: Store) -> None:
    """The prefab and PV analyzers' stored results (written here as they would be) count, and
    a change in them makes the indicators stale."""
    indicators(town)
    ids = {n: i for i, n in names_of(town).items()}

    def keep(analyzer: str, name: str, summary: dict[str, Any], fp: str) -> None:
        town.con.execute(
            "INSERT OR REPLACE INTO analyses (analyzer, subject, building_id, source_id, "
            "fingerprint, rules, summary, result) VALUES (?, ?, ?, 1, ?, 'test', ?, '{}')",
            [analyzer, f"building:{ids[name]}", ids[name], fp, json.dumps(summary)],
        )

    keep("prefab", "H1", {"prefabricated": True}, "a")
    keep("prefab", "H4", {"prefabricated": False}, "a")
    keep("pv", "H1", {"pv_kwh": 48000.0}, "a")
    keep("pv", "H2", {"pv_kwh": 12000.0}, "a")
    report = indicators(town)
    assert report["computed"] == 1
    got = by_id(stored(town, "indicators")[report["results"][0]["subject"]]["result"])
    # new and scored: H1 (6 x 400 m2, prefabricated), H4 (9 x 400 m2): 2400 / 6000
    assert got["prefab_share"]["value"] == pytest.approx(2400 / 6000)
    assert got["prefab_share"]["status"] == "met"
    assert len(got["prefab_share"]["evidence"]["unknown"]) == 3  # H3, H5, the school
    # 60,000 kWh over (2400 + 1200 m2) x 40 kWh/m2
    assert got["pv_renewable_share"]["value"] == pytest.approx(60000 / (3600 * 40))
    assert indicators(town)["computed"] == 0
    keep("pv", "H2", {"pv_kwh": 6000.0}, "b")  # a PV result recomputed
    assert indicators(town)["computed"] == 1


def test_no_boundary_uses_the_hull_of_the_buildings(make_store: MakeStore) -> None:
    """Bubenec (streets, buildings, plots): the road density against a calculation of its own
    from the file (pyogrio + pyproj + shapely, none of the analyzer's code)."""
    store = make_store("EPSG:32633")
    ingest(store, BUBENEC)
    report = indicators(store)
    assert [r["subject"] for r in report["results"]] == ["builtup"]
    result = stored(store, "indicators")["builtup"]["result"]
    assert result["boundary"]["origin"] == "convex hull of the buildings"
    assert "convex hull" in result["boundary"]["note"]
    to_utm = Transformer.from_crs("EPSG:3857", "EPSG:32633", always_xy=True)

    def read(layer: str) -> Any:
        _, _, wkb, _ = pyogrio.raw.read(BUBENEC, layer=layer)
        g = shapely.from_wkb(wkb)
        return shapely.transform(
            g, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1]))
        )

    hull = shapely.convex_hull(shapely.union_all(read("buildings")))
    km = shapely.length(shapely.intersection(read("streets"), hull)).sum() / 1000
    expected = km / (hull.area / 1e6)
    got = by_id(result)["road_density"]
    assert got["value"] == pytest.approx(expected, rel=1e-3)
    assert got["evidence"]["polygon_roads"] == 0


def test_targets_file_and_cli(town: Store, tmp_path: Path) -> None:
    path = str(town.path)
    town.close()
    runner = CliRunner()
    r = runner.invoke(cli, ["--store", path, "analyze", "indicators"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "建成区路网密度" in r.output and "road network density" in r.output
    doc = json.loads(
        runner.invoke(cli, ["--store", path, "analyze", "indicators", "--json"]).stdout
    )
    validate_against(doc, "analyze.schema.json")
    assert doc["analyses"]["indicators"]["computed"] == 0
    # another city's file, with a lower road density target: remembered by the store
    other = json.loads(load_targets().path.read_text(encoding="utf-8"))
    other["id"] = "other-city"
    other["indicators"][0]["target"]["value"] = 5.0
    mine = tmp_path / "other.json"
    mine.write_text(json.dumps(other, ensure_ascii=False), encoding="utf-8")
    r = runner.invoke(cli, ["--store", path, "analyze", "indicators", "--targets", str(mine)])
    assert r.exit_code == 0, r.output
    again = Store.open(Path(path))
    try:
        row = next(iter(stored(again, "indicators").values()))
        assert row["result"]["targets"]["id"] == "other-city"
        assert by_id(row["result"])["road_density"]["status"] == "met"
        assert IndicatorsAnalyzer().targets.doc["id"] == "tongliao-2025-targets"
        assert ANALYZERS["indicators"](store=again).targets.doc["id"] == "other-city"
        before = snapshot(again)
    finally:
        again.close()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x"}), encoding="utf-8")
    r = runner.invoke(cli, ["--store", path, "analyze", "indicators", "--targets", str(bad)])
    assert r.exit_code != 0 and "bad.json" in r.output
    with pytest.raises(InputFileError, match=r"bad\.json"):
        load_targets(bad)
    r = runner.invoke(cli, ["--store", path, "analyze", "indicators", "--boundary", "999"])
    assert r.exit_code != 0 and "boundary 999" in r.output
    r = runner.invoke(cli, ["--store", path, "analyze", "pv", "--targets", str(mine)])
    assert r.exit_code != 0 and "--targets" in r.output
    after = Store.open(Path(path))
    try:
        assert snapshot(after) == before
    finally:
        after.close()


def test_api_indicators(town: Store, tmp_path: Path) -> None:
    from tests.test_viewer_api import serve

    path = town.path
    town.close()
    with serve(path) as client:
        r = client.get("/api/indicators")
        assert r.status_code == 404 and "cim analyze indicators" in r.text
        assert client.get("/api/analyses").json() == {"analyses": {}}
    again = Store.open(path)
    try:
        indicators(again)
    finally:
        again.close()
    with serve(path) as client:
        assert client.get("/api/analyses").json() == {"analyses": {"indicators": 1}}
        doc = client.get("/api/indicators").json()
        (area,) = doc["areas"]
        validate_against(area, "indicators.schema.json")
        assert area["stale"] is False and area["boundary"]["name"] == "grid town"
        fid = int(area["subject"].split(":")[1])
        assert client.get(f"/api/indicators?boundary={fid}").json() == doc
        r = client.get("/api/indicators?boundary=999")
        assert r.status_code == 404 and "boundary 999" in r.text
    # a building more: the stored result is stale until the next run
    extra = tmp_path / "extra.gpkg"
    write_layer(extra, [box(600, 400, 620, 420)], CRS, "buildings", use=np.array(["residential"]))
    again = Store.open(path)
    try:
        ingest(again, extra)
    finally:
        again.close()
    with serve(path) as client:
        assert client.get("/api/indicators").json()["areas"][0]["stale"] is True
