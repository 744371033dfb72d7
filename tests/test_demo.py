"""The sample district and `cim demo`, end to end.

The generator is checked on its own (same seed, same bytes; what each file holds); the demo is
run without its server into a temporary folder, then read through the API in-process: every
generated building is there, the precast tower's assembly rate is the one the generator built
it to have (read from its manifest), the IFC buildings have their energy checks, every
building its rooftop PV, every tileset is sound; a second run changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.element
import laspy
import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cim.analyze import ANALYZERS
from cim.cli import cli
from cim.cli.demo import DemoRun, run_pipeline
from cim.cli.serve import CliPipeline
from cim.executor import SerialExecutor
from cim.store import Store
from cim.tilefiles import TILESETS
from district import generate, read_manifest
from district.lidar import DENSITY
from district.plan import plan
from tiles.tileset import check_tileset, walk
from viewer.app import create_app
from viewer.state import ServerState


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("district")
    generate(folder)
    return folder


def test_the_generator_writes_the_same_bytes_twice(generated: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again")
    first = read_manifest(generated)
    assert again == first
    assert {f["path"] for f in first["files"]} == {p.name for p in generated.iterdir()} - {
        "manifest.json"
    }
    for f in first["files"]:
        data = (generated / f["path"]).read_bytes()
        assert data == (tmp_path / "again" / f["path"]).read_bytes(), f["path"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"]


def test_a_district_is_current_until_a_file_changes(generated: Path, tmp_path: Path) -> None:
    import shutil

    from district import generated as current

    copy = tmp_path / "copy"
    shutil.copytree(generated, copy)
    assert current(copy) == read_manifest(generated)
    laz = copy / "tongliao-survey.laz"
    data = bytearray(laz.read_bytes())
    data[-1] ^= 1  # one bit of the survey: written again by the next run
    laz.write_bytes(bytes(data))
    assert current(copy) is None
    assert current(tmp_path / "nothing") is None


def test_the_district_layers_carry_the_shared_vocabulary(generated: Path) -> None:
    gpkg = generated / "tongliao-district.gpkg"
    layers = {str(n) for n, _ in pyogrio.list_layers(gpkg)}
    assert layers == {"buildings", "roads", "landcover", "parks", "pois", "boundary"}
    meta, _, geoms, values = pyogrio.raw.read(gpkg, layer="buildings")
    fields = dict(zip(meta["fields"], values, strict=True))
    assert 100 <= len(geoms) <= 300
    assert meta["crs"] == "EPSG:4550"
    assert set(fields["use"]) <= {"residential", "public", "school", "commercial", "industrial"}
    assert set(fields["green_star"]) <= {0, 1, 2, 3}
    assert set(fields["ultra_low_energy"]) | set(fields["energy_retrofit"]) <= {0, 1}
    assert len(set(fields["name"])) == len(geoms)  # every building can be found by its name
    assert (fields["height"] >= fields["floors"] * 3.0 - 1e-6).all()
    footprints = shapely.from_wkb(geoms)
    boundary = shapely.from_wkb(pyogrio.raw.read(gpkg, layer="boundary")[2])[0]
    assert shapely.contains(boundary, footprints).all()
    for name, field, allowed in (
        ("roads", "highway", {"primary", "secondary", "tertiary", "residential"}),
        ("landcover", "landcover", {"green", "water", "paved", "bare", "farmland"}),
        ("pois", "amenity", {"kindergarten", "primary_school", "clinic", "grocery"}
         | {"elderly_care", "sports"}),
    ):  # fmt: skip
        meta, _, _, values = pyogrio.raw.read(gpkg, layer=name)
        found = set(dict(zip(meta["fields"], values, strict=True))[field])
        assert found <= allowed and len(found) >= 3, (name, found)


def test_the_survey_samples_ground_and_roofs(generated: Path) -> None:
    las = laspy.read(generated / "tongliao-survey.laz")
    assert las.header.parse_crs().to_epsg() == 4550
    classes = np.asarray(las.classification)
    assert set(np.unique(classes)) == {2, 6}
    district = plan()
    extent = district.lidar_extent
    covered = shapely.union_all(
        [b.geometry for b in district.buildings] + [p.footprint for p in district.plots.values()]
    ).intersection(extent)
    ground_density = (classes == 2).sum() / (extent.area - covered.area)
    assert ground_density == pytest.approx(DENSITY, rel=0.05)
    assert (classes == 6).sum() / covered.area == pytest.approx(DENSITY, rel=0.05)
    # a gabled roof: the points over it rise from the eaves to the ridge
    x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
    gable = next(
        b for b in district.buildings if b.fields["roof"] == "gable" and extent.contains(b.geometry)
    )
    inside = shapely.contains_xy(gable.geometry, x, y) & (classes == 6)
    ridge = 180.0 + gable.fields["height"]
    eaves = 180.0 + gable.fields["floors"] * 3.0
    assert z[inside].max() == pytest.approx(ridge, abs=0.2)
    assert z[inside].min() == pytest.approx(eaves, abs=0.3)


@pytest.mark.parametrize("name", ["precast-tower.ifc", "school.ifc", "public-building.ifc"])
def test_each_model_is_georeferenced_and_has_an_envelope(generated: Path, name: str) -> None:
    model = ifcopenshell.open(str(generated / name))
    assert model.schema == "IFC4"
    (conversion,) = model.by_type("IfcMapConversion")
    assert conversion.TargetCRS.Name == "EPSG:4550"
    assert conversion.OrthogonalHeight == 180.0
    assert model.by_type("IfcSpace") and model.by_type("IfcWindow")
    assert any(s.PredefinedType == "ROOF" for s in model.by_type("IfcSlab"))
    for window in model.by_type("IfcWindow"):
        pset = ifcopenshell.util.element.get_pset(window, "Pset_WindowCommon")
        assert pset["ThermalTransmittance"] > 0
        assert window.FillsVoids  # in an opening of a wall
    walls = [
        ifcopenshell.util.element.get_pset(w, "Pset_WallCommon") for w in model.by_type("IfcWall")
    ]
    assert any(w.get("IsExternal") and w.get("ThermalTransmittance") for w in walls)


# ---- the demo, end to end ------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoRun]:
    """`cim demo --no-serve` into a fresh folder, then the pipeline once more (what the
    second run did)."""
    folder = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(cli, ["demo", "--dir", str(folder), "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "indicators" in result.output  # said present (its table) or missing
    again = DemoRun(folder)
    run_pipeline(again, SerialExecutor()).close()
    return folder, again


@pytest.fixture(scope="module")
def demo(demo_runs: tuple[Path, DemoRun]) -> Path:
    return demo_runs[0]


@pytest.fixture(scope="module")
def client(demo: Path) -> Iterator[TestClient]:
    state = ServerState(Store.open(demo / "tongliao.duckdb"), CliPipeline(), SerialExecutor())
    try:
        with TestClient(create_app(state)) as c:
            yield c
    finally:
        state.close()


def _buildings(client: TestClient) -> list[dict[str, Any]]:
    page = client.get("/api/buildings", params={"limit": 1000}).json()
    assert page["total"] == len(page["items"])
    items: list[dict[str, Any]] = page["items"]
    return items


def _detail(client: TestClient, building_id: int) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/api/buildings/{building_id}").json()
    return found


@pytest.mark.slow
def test_every_generated_building_is_on_the_map(demo: Path, client: TestClient) -> None:
    manifest = read_manifest(demo / "data")
    meta, _, _, values = pyogrio.raw.read(demo / "data" / "tongliao-district.gpkg", "buildings")
    names = set(dict(zip(meta["fields"], values, strict=True))["name"])
    assert len(names) == manifest["buildings"]["gis"]
    served = [b["name"] for b in _buildings(client)]
    assert sorted(served) == sorted(names | set(manifest["buildings"]["ifc"]))


@pytest.mark.slow
def test_the_towers_assembly_rate_is_the_one_it_was_built_to(
    demo: Path, client: TestClient
) -> None:
    tower = read_manifest(demo / "data")["tower"]
    (found,) = client.get("/api/buildings", params={"q": tower["building"]}).json()["items"]
    detail = _detail(client, found["id"])
    assert detail["prefab_rate"] == tower["assembly_rate"]
    assert detail["prefab_grade"] == tower["grade"]


@pytest.mark.slow
def test_the_ifc_buildings_have_energy_checks_and_every_roof_its_pv(
    demo: Path, client: TestClient
) -> None:
    ifc = set(read_manifest(demo / "data")["buildings"]["ifc"])
    for b in _buildings(client):
        analyses = _detail(client, b["id"])["analyses"]
        pv = analyses["pv"]["result"]
        assert pv["facets"] and pv["roof_area_m2"] > 0, b["name"]
        assert sum(f["area_m2"] for f in pv["facets"]) == pytest.approx(pv["roof_area_m2"], 0.01)
        if b["name"] in ifc:
            energy = analyses["energy"]["result"]
            assert energy["scope"] == "model" and energy["checks"], b["name"]
            assert analyses["energy"]["summary"]["energy_status"] is not None


@pytest.mark.slow
def test_every_indicator_has_a_status_when_the_analyzer_exists(client: TestClient) -> None:
    if "indicators" not in ANALYZERS:
        assert client.get("/api/indicators").status_code == 404  # and the demo said so
        return
    from cim.analyze.indicators import load_targets

    areas = client.get("/api/indicators").json()["areas"]
    assert len(areas) == 1 and not areas[0]["stale"]  # the district's boundary layer
    assert areas[0]["boundary"]["buildings"] >= 145
    wanted = {spec["id"] for spec in load_targets().doc["indicators"]}
    rows = {r["id"]: r for r in areas[0]["indicators"]}
    assert set(rows) == wanted
    assert all(r["status"] in ("met", "not_met", "no_data") for r in rows.values())
    # the district has roads, land cover, parks and facilities, and its IFC buildings are new
    # (their YearOfConstruction) and scored by the prefab analyzer: these have figures
    for key in ("road_density", "permeable_share", "park_coverage", "life_circle", "prefab_share"):
        assert rows[key]["status"] != "no_data" and rows[key]["value"] is not None, key


@pytest.mark.slow
def test_every_tileset_is_sound(demo: Path, client: TestClient) -> None:
    sets = client.get("/api/tilesets").json()["tilesets"]
    assert {s["name"] for s in sets} == set(TILESETS) == {"buildings", "bim", "points", "pv"}
    glbs = []
    for s in sets:
        assert s["state"] == "ok"
        folder = demo / "tongliao.duckdb.tiles" / s["name"]
        assert check_tileset(folder) == []
        doc = json.loads((folder / "tileset.json").read_text())
        uris = [t["content"]["uri"] for t, _ in walk(doc["root"]) if "content" in t]
        assert uris
        glbs += [folder / u for u in uris if u.endswith(".glb")]
    gltf = pytest.importorskip("tests.gltf", reason="the glTF validator harness")
    gltf.assert_valid_glb(glbs)


@pytest.mark.slow
def test_a_second_run_reuses_everything(demo_runs: tuple[Path, DemoRun]) -> None:
    _, run = demo_runs
    assert set(run.ingested.values()) == {"unchanged"}
    assert all(r["computed"] == 0 for r in run.analyses.values())
    assert all(t["files_written"] == 0 for t in run.tiles.values())


def test_a_taken_port_is_refused_before_any_work(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["demo", "--dir", str(tmp_path / "d"), "--port", str(port)]
        )
    assert result.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.output and "--port" in result.output
    assert not (tmp_path / "d").exists()
