"""The energy analyzer (GB 55015-2021 envelope checks) on a box built here with known windows
and U values, on the real samples against figures computed here from their own quantities,
on a GIS footprint (screening), and the results kept in the store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.element as ue
import ifcopenshell.util.geolocation as ugeo
import ifcopenshell.util.placement as uplace
import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from cim.analyze import ANALYZERS, run_analyzer, stale_counts
from cim.analyze.energy import EnergyAnalyzer
from cim.analyze.energy_rules import load_cities, load_limits
from cim.analyze.envelope import sector
from cim.cli import cli
from cim.executor import SerialExecutor
from cim.model.analyses import stored
from cim.store import Store
from ingest import Anchor, IngestOptions, run_ingest
from ingest.ifc import place
from tests.conftest import SAMPLES
from tests.ifc_models import energy_box

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
#: the box: walls 36 m x 6 m, the roof slab's edges 36 m x 0.2 m, the roof 10 x 8 m; the
#: volume above ground 10 x 8 x 6.2 m
BOX_AREA = 36 * 6 + 36 * 0.2 + 80
BOX_VOLUME = 10 * 8 * 6.2
#: the roof's U from its layers: 1 / (0.11 + 0.04 + 0.2 / 1.74 + 0.15 / 0.04)
ROOF_U = 1 / (0.15 + 0.2 / 1.74 + 0.15 / 0.04)


def _ingest(store: Store, path: Path) -> None:
    run_ingest(store, path, IngestOptions(), SerialExecutor())


def _analyze(store: Store, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = run_analyzer(store, ANALYZERS["energy"](**kw.pop("opts", {})), **kw)
    return out


def _result(store: Store, building_id: int = 1) -> dict[str, Any]:
    row: dict[str, Any] = stored(store, "energy")[f"building:{building_id}"]["result"]
    return row


def _checks(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in r["checks"]}


@pytest.fixture
def tongliao(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "t.duckdb", "EPSG:4550")


def test_climate_zone_of_a_place_is_its_nearest_citys() -> None:
    cities = load_cities()
    # every prefecture-level division of Inner Mongolia: 9 cities and 3 leagues
    assert sum(1 for c in cities.cities if c.province == "Inner Mongolia") == 12
    city, km = cities.nearest(122.27, 43.62)  # central Tongliao
    assert (city.name_zh, city.zone) == ("通辽", "severe_cold_C") and km < 5
    assert cities.nearest(111.7, 40.8)[0].name_en == "Hohhot"
    assert cities.nearest(116.3, 39.9)[0].zone == "cold_B"  # Beijing
    limits = load_limits()
    assert all(not r.verified for r in limits.rows)  # transcribed, not checked: advisory only
    assert {r.check for r in limits.rows} >= {"shape_coefficient", "wwr_north", "k_roof"}


@pytest.mark.parametrize("true_north", [0.0, 40.0])
def test_the_box_gives_exact_figures_and_verdicts(
    tongliao: Store, tmp_path: Path, true_north: float
) -> None:
    store = tongliao
    _ingest(store, energy_box(tmp_path / "box.ifc", true_north_deg=true_north))
    report = _analyze(store)
    assert report["computed"] == 1
    r = _result(store)
    assert r["scope"] == "model" and r["climate"]["zone"] == "severe_cold_C"
    assert r["climate"]["nearest_city"]["city"] == "通辽"
    assert r["building_type"] == {
        "type": "residential",
        "assumed": False,
        "from": "residential 住宅",
    }
    assert r["storeys"]["value"] == 2
    assert r["shape"]["external_area_m2"] == pytest.approx(BOX_AREA, abs=0.1)
    assert r["shape"]["volume_m3"] == pytest.approx(BOX_VOLUME, abs=0.1)
    assert r["shape"]["value"] == pytest.approx(BOX_AREA / BOX_VOLUME, abs=2e-4)
    # the model's faces: +y (north wall) has 3.6 m2 of windows on 60 m2, +x 15 on 48, -y 14.4
    # on 60, -x 2.4 on 48. True north turned 40 degrees anticlockwise from +y puts the faces
    # at azimuths 40, 130, 220, 310 (less the projection's 0.5 degree convergence at Tongliao)
    faces = {"+y": (60.0, 3.6), "+x": (48.0, 15.0), "-y": (60.0, 14.4), "-x": (48.0, 2.4)}
    azimuths = {"+y": 0.0, "+x": 90.0, "-y": 180.0, "-x": 270.0}
    expected: dict[str, list[float]] = {s: [0.0, 0.0] for s in ("north", "east", "south", "west")}
    for face, (wall, glass) in faces.items():
        s = sector(azimuths[face] + true_north)
        expected[s][0] += wall
        expected[s][1] += glass
    for s, (wall, glass) in expected.items():
        f = r["facades"][s]
        assert f["facade_area_m2"] == pytest.approx(wall, abs=0.05), s
        assert f["window_area_m2"] == pytest.approx(glass, abs=0.01), s
        assert f["wwr"] == (None if wall == 0 else pytest.approx(glass / wall, abs=1e-3)), s
    assert {w["area_source"] for w in r["windows"]} == {"opening geometry"}
    assert len(r["windows"]) == 13
    # the checks, with the transcribed (unverified) limits: over a limit is advisory
    c = _checks(r)
    assert c["shape_coefficient"]["limit"] == 0.55  # <= 3 storeys
    assert c["shape_coefficient"]["status"] == "advisory"
    assert c["k_wall"]["value"] == 0.28 and c["k_wall"]["status"] == "pass"
    assert c["k_roof"]["value"] == pytest.approx(ROOF_U, abs=1e-4)
    assert c["k_roof"]["evidence"]["sources"] == {"material layers": 1}
    assert c["k_roof"]["status"] == "advisory" and c["k_roof"]["limit"] == 0.20
    # the highest WWR is 0.3125 (15 / 48): the window limit of 0.30-0.45, <= 3 storeys
    assert c["k_window"]["limit"] == 1.4 and c["k_window"]["status"] == "advisory"
    east = "wwr_east"
    assert c[east]["value"] == pytest.approx(0.3125, abs=1e-3)
    assert c[east]["status"] == "advisory" and c[east]["limit"] == 0.30
    if true_north == 40.0:
        assert "wwr_south" not in c  # no facade faces south
        assert c["wwr_north"]["value"] == pytest.approx(6.0 / 108.0, abs=1e-3)
    assert r["status"] == "advisory"
    assert r["envelope"]["grid_north_deg"] == pytest.approx(-0.525, abs=0.05)


def test_verified_limits_fail_and_missing_u_values_are_unknown(
    tongliao: Store, tmp_path: Path
) -> None:
    store = tongliao
    doc = json.loads((SCHEMAS / "standards" / "gb55015-2021.json").read_text())
    for row in doc["limits"]:
        row["verified"] = True
    checked = tmp_path / "checked.json"
    checked.write_text(json.dumps(doc, ensure_ascii=False))
    _ingest(store, energy_box(tmp_path / "box.ifc"))
    _analyze(store, opts={"standard": str(checked)})
    c = _checks(_result(store))
    assert c["shape_coefficient"]["status"] == "fail"
    assert c["k_roof"]["status"] == "fail" and c["wwr_south"]["status"] == "pass"
    assert _result(store)["status"] == "fail"
    # the same box without any U value: the K checks are unknown, never passed
    other = Store.create(tmp_path / "u.duckdb", "EPSG:4550")
    _ingest(other, energy_box(tmp_path / "bare.ifc", u_values=False))
    _analyze(other, opts={"standard": str(checked)})
    r = _result(other)
    for key in ("k_roof", "k_wall", "k_window"):
        check = _checks(r)[key]
        assert check["status"] == "unknown" and check["value"] is None, key
        assert "no U value" in check["why"]
    assert r["u_values"]["wall"]["without_u"] and r["u_values"]["wall"]["with_u"] == 0
    other.close()


def _external_walls(f: ifcopenshell.file, name: str) -> list[Any]:
    if name == "AC20-FZK-Haus.ifc":  # no IsExternal: ArchiCAD names its outer walls Wand-Ext
        return [w for w in f.by_type("IfcWall") if w.Name.startswith("Wand-Ext")]
    out = []
    for w in f.by_type("IfcWall"):
        ps = ue.get_psets(w)
        outer = ps.get("Pset_WallCommon", {}).get("IsExternal") is True and "Exterior" in w.Name
        if outer and ps["PSet_Revit_Constraints"]["Base Constraint"] != "T/FDN":
            out.append(w)
    return out


def _independent(name: str) -> dict[str, Any]:
    """WWR per orientation, outside area and volume from the model's own quantities: each outer
    wall's gross outer area (ArchiCAD's quantity; Revit: (Length + Width) x height), its
    orientation from its placement and the model's true north, the windows in it by
    OverallWidth x OverallHeight (and the glazed doors: FZK's terrace door, duplex's
    "Single-Glass" doors)."""
    f = ifcopenshell.open(str(SAMPLES / "ifc" / name))
    north = ugeo.get_true_north(f)  # degrees anticlockwise from +y
    walls = _external_walls(f, name)
    places = {w.id(): uplace.get_local_placement(w.ObjectPlacement) for w in walls}
    centre = np.mean([m[:2, 3] for m in places.values()], axis=0)
    facade: dict[str, float] = {}
    glass: dict[str, float] = {}
    for w in walls:
        m, ps = places[w.id()], ue.get_psets(w)
        if name == "AC20-FZK-Haus.ifc":
            area = ps["ArchiCADQuantities"]["Brutto-Wandoberflächenbereich an der Außenseite"]
            length = ps["BaseQuantities"]["Length"]
        else:
            length = ps["PSet_Revit_Dimensions"]["Length"]
            width = ps["PSet_Revit_Type_Construction"]["Width"]
            area = (length + width) * ps["PSet_Revit_Constraints"]["Unconnected Height"]
        axis = m[:2, 0]
        normal = np.array([axis[1], -axis[0]])
        if np.dot(normal, m[:2, 3] + axis * length / 2 - centre) < 0:
            normal = -normal
        s = sector(math.degrees(math.atan2(normal[0], normal[1])) + north)
        facade[s] = facade.get(s, 0.0) + area
        for rel in w.HasOpenings:
            for fill in rel.RelatedOpeningElement.HasFillings:
                e = fill.RelatedBuildingElement
                glazed = any(w in (e.Name or "") for w in ("Terrassen", "Glass"))
                if e.is_a("IfcWindow") or glazed:
                    glass[s] = glass.get(s, 0.0) + e.OverallWidth * e.OverallHeight
    return {"facade": facade, "glass": glass, "file": f}


@pytest.mark.slow
def test_fzk_haus_and_duplex_against_their_own_quantities(tmp_path: Path) -> None:
    found: dict[str, dict[str, Any]] = {}
    for name, crs in (("AC20-FZK-Haus.ifc", "EPSG:25832"), ("duplex.ifc", "EPSG:26916")):
        with Store.create(tmp_path / f"{name}.duckdb", crs) as store:
            _ingest(store, SAMPLES / "ifc" / name)
            _analyze(store)
            found[name] = _result(store)
    for name, r in found.items():
        ind = _independent(name)
        assert r["climate"]["zone"] is None  # Karlsruhe and Chicago: no Chinese zone
        for s, wall in ind["facade"].items():
            wwr = ind["glass"].get(s, 0.0) / wall
            # FZK's two round windows (0.785 m2 openings, 1 x 1 m overall) and duplex's
            # parapets' inner face over the roof (counted as facade) are the differences
            assert r["facades"][s]["wwr"] == pytest.approx(wwr, abs=0.012), (name, s)
            assert r["facades"][s]["facade_area_m2"] == pytest.approx(wall, rel=0.05), (name, s)
    # FZK: walls' gross outer area + the two roof slabs' tops + the eaves' soffits (the roof's
    # plan beyond the 12 x 10 m ground slab, sloped like the roof) over the walls' prism
    # (eaves at 2.7 + 0.673 m, gable to 2.7 + 3.387 m) and the roof slabs' volume
    f = _independent("AC20-FZK-Haus.ifc")["file"]
    q = {s.Name: ue.get_psets(s)["BaseQuantities"] for s in f.by_type("IfcSlab")}
    roof_top = q["Dach-1"]["GrossArea"] + q["Dach-2"]["GrossArea"]
    soffit = (2 * 71.5 - q["Bodenplatte"]["GrossArea"]) * q["Dach-1"]["GrossArea"] / 71.5
    walls = sum(_independent("AC20-FZK-Haus.ifc")["facade"].values())
    area = walls + roof_top + soffit
    volume = 120 * (2.7 + 0.673) + 0.5 * 10 * (3.387 - 0.673) * 12
    volume += q["Dach-1"]["GrossVolume"] + q["Dach-2"]["GrossVolume"]
    fzk = found["AC20-FZK-Haus.ifc"]["shape"]
    assert fzk["external_area_m2"] == pytest.approx(area, rel=0.03)
    assert fzk["volume_m3"] == pytest.approx(volume, rel=0.03)
    assert fzk["value"] == pytest.approx(area / volume, rel=0.04)
    # duplex: the outer walls (parapets included) and the roof over the 8.8 x 17.8 m outline,
    # up to the roof's top (3.1 + 2.9 + its 0.457 m)
    d = _independent("duplex.ifc")
    outline = 8.8 * 17.8
    area = sum(d["facade"].values()) + outline
    volume = outline * (3.1 + 2.9 + 0.457)
    dup = found["duplex.ifc"]["shape"]
    assert dup["external_area_m2"] == pytest.approx(area, rel=0.02)
    assert dup["volume_m3"] == pytest.approx(volume, rel=0.03)
    assert dup["value"] == pytest.approx(area / volume, rel=0.03)
    # duplex's two skylights are in its roof, not in a facade
    assert found["duplex.ifc"]["skylight"]["window_area_m2"] == pytest.approx(2.22, abs=0.02)


def test_a_footprint_gets_the_screening_checks(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    ring = [[122.2400, 43.6500], [122.2404, 43.6500], [122.2404, 43.6502], [122.2400, 43.6502]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "A", "height": 15.0, "floors": 5, "use": "住宅"},
                "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
            }
        ],
    }
    path = tmp_path / "blocks.geojson"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    run_ingest(store, path, IngestOptions(role="buildings"), SerialExecutor())
    _analyze(store)
    (row,) = [v for k, v in stored(store, "energy").items() if k != "city"]
    r = row["result"]
    area, perimeter = store.con.execute(
        "SELECT ST_Area(footprint), ST_Perimeter(footprint) FROM buildings"
    ).fetchone()
    assert r["scope"] == "screening" and r["storeys"]["value"] == 5
    assert r["shape"]["value"] == pytest.approx((perimeter * 15 + area) / (area * 15), abs=1e-4)
    (check,) = r["checks"]
    assert check["check"] == "shape_coefficient" and check["limit"] == 0.30  # >= 4 storeys
    assert check["status"] == ("pass" if check["value"] <= 0.30 else "advisory")
    city = stored(store, "energy")["city"]["result"]
    assert city["buildings"] == 1 and city["by_scope"] == {"screening": {check["status"]: 1}}


def test_a_second_run_recomputes_nothing_and_a_reingest_only_its_building(
    tongliao: Store, tmp_path: Path
) -> None:
    store = tongliao
    a = energy_box(tmp_path / "a.ifc")
    b = energy_box(tmp_path / "b.ifc", true_north_deg=40.0, site_latlon=(43.66, 122.25))
    _ingest(store, a)
    _ingest(store, b)
    first = _analyze(store)
    assert (first["computed"], first["unchanged"]) == (2, 0)
    again = _analyze(store)
    assert (again["computed"], again["unchanged"]) == (0, 2)
    assert stale_counts(store, [EnergyAnalyzer()])["energy"] == {
        "current": 2,
        "stale": 0,
        "missing": 0,
    }
    before = stored(store, "energy")
    b.write_text(b.read_text().replace("'F2'", "'F2 revised'"))
    _ingest(store, b)
    third = _analyze(store)
    assert (third["computed"], third["unchanged"]) == (1, 1)
    after = stored(store, "energy")
    kept = [
        k
        for k in after
        if k != "city" and after[k]["computed_at"] == before.get(k, {}).get("computed_at")
    ]
    assert kept == ["building:1"]
    city = after["city"]["result"]
    assert city["buildings"] == 2 and {c["building_id"] for c in city["retrofit_candidates"]} == {
        int(k.split(":")[1]) for k in after if k != "city"
    }
    assert _analyze(store, everything=True)["computed"] == 2
    # placing a (source 1) again, its +x axis turned to the north: only its building is
    # recomputed, and its faces turn with it (+x to north, +y to west, -y to east, -x to south)
    with store.transaction():
        place(store, 1, Anchor(122.24, 43.65, 0.0, 90.0))
    fourth = _analyze(store)
    assert (fourth["computed"], fourth["unchanged"]) == (1, 1)
    facades = _result(store, 1)["facades"]
    for side, glass in (("north", 15.0), ("west", 3.6), ("east", 14.4), ("south", 2.4)):
        assert facades[side]["window_area_m2"] == pytest.approx(glass, abs=0.01), side


def test_cli_json_zone_and_the_building_report(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    _ingest(store, energy_box(tmp_path / "box.ifc"))
    path = store.path
    store.close()
    runner = CliRunner()
    out = runner.invoke(cli, ["--store", str(path), "analyze", "energy", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, json.loads((SCHEMAS / "analyze.schema.json").read_text()))
    (row,) = doc["analyses"]["energy"]["results"]
    assert row["energy_status"] == "advisory" and row["zone"] == "severe_cold_C"
    one = runner.invoke(
        cli, ["--store", str(path), "analyze", "energy", "--building", "1", "--json"]
    )
    building = json.loads(one.stdout)["analyses"]["energy"]["building"]
    jsonschema.validate(building, json.loads((SCHEMAS / "energy.schema.json").read_text()))
    # the store's own zone: every building recomputed with it, kept until 'auto'
    zoned = runner.invoke(
        cli, ["--store", str(path), "analyze", "energy", "--zone", "cold_A", "--json"]
    )
    (row,) = json.loads(zoned.stdout)["analyses"]["energy"]["results"]
    assert row["zone"] == "cold_A" and json.loads(zoned.stdout)["analyses"]["energy"]["computed"]
    text = runner.invoke(cli, ["--store", str(path), "analyze", "energy", "--building", "1"])
    assert text.exit_code == 0 and "cold_A" in text.output and "wwr_east" in text.output
    back = runner.invoke(
        cli, ["--store", str(path), "analyze", "energy", "--zone", "auto", "--json"]
    )
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["analyses"]["energy"]["results"][0]["zone"] == "severe_cold_C"
    bad = runner.invoke(cli, ["--store", str(path), "analyze", "energy", "--zone", "tropical"])
    assert bad.exit_code != 0 and "unknown climate zone 'tropical'" in bad.output
    assert "Traceback" not in bad.output


def test_the_status_reaches_the_tiles_and_the_building_detail(
    tongliao: Store, tmp_path: Path
) -> None:
    from cim.model.buildings import building_detail
    from cim.tilefiles import tileset_states
    from tests.test_tiles import glbs, tileset
    from tiles.build import build_tilesets
    from tiles.gltf import property_tables

    store = tongliao
    _ingest(store, energy_box(tmp_path / "box.ifc"))
    build_tilesets(store, ["buildings"])
    _analyze(store)
    (state,) = tileset_states(store.con, store.path)
    assert state["state"] == "stale"  # the buildings carry the status: analysing changed it
    build_tilesets(store, ["buildings"])
    folder, doc = tileset(store, "buildings")
    table = property_tables(glbs(folder, doc)[-1][1])["building"]
    assert table["energy_status"] == ["advisory"]
    assert table["shape_coefficient"] == [pytest.approx(BOX_AREA / BOX_VOLUME, abs=2e-4)]
    detail = building_detail(store, 1)
    assert detail is not None
    energy = detail["analyses"]["energy"]
    assert energy["summary"]["energy_status"] == "advisory"
    assert energy["result"]["facades"]["east"]["wwr"] == pytest.approx(0.3125, abs=1e-3)
