"""IFC ingest on the real samples and on models built with ifcopenshell.api."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api.pset
import ifcopenshell.util.geolocation as ugeo
import numpy as np
import pytest
import shapely
from pyproj import Transformer

import ingest.ifc.ingester as ingester_mod
from cim.errors import InputFileError, UnsupportedFile, UsageError
from cim.executor import SerialExecutor
from cim.status import status_document
from cim.store import Store
from ingest import Anchor, IngestError, IngestOptions, run_ingest
from ingest.ifc import place
from ingest.ifc.elements import ElementWriter
from ingest.ifc.properties import PropertyReader, jsonable
from tests.conftest import SAMPLES, snapshot
from tests.ifc_models import to_rigid_operation, wall_model

IFC = SAMPLES / "ifc"

#: a projected CRS around each sample's RefLatitude/RefLongitude
SAMPLE_CRS = {
    "AC20-FZK-Haus.ifc": "EPSG:25832",  # Karlsruhe, UTM 32N
    "duplex.ifc": "EPSG:26916",  # Chicago, UTM 16N
    "LargeBuilding.ifc": "EPSG:26919",  # Boston (Revit's default site), UTM 19N
    "TallBuilding.ifc": "EPSG:26919",
    "IfcOpenHouse.ifc": "EPSG:4550",  # no georeference
}


def ingest(store: Store, path: Path, **options: object) -> object:
    return run_ingest(store, path, IngestOptions(**options), SerialExecutor())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(SAMPLE_CRS))
def test_every_sample_ingests_and_products_are_conserved(tmp_path: Path, name: str) -> None:
    path = IFC / name
    model = ifcopenshell.open(str(path))
    expected = {p.GlobalId for p in model.by_type("IfcProduct") if p.Representation is not None}
    with Store.create(tmp_path / "s.duckdb", SAMPLE_CRS[name]) as store:
        report = ingest(store, path)
        rows = store.con.execute(
            "SELECT global_id, geometry_status, geometry_error FROM elements "
            "WHERE geometry_status <> 'none'"
        ).fetchall()
        assert {r[0] for r in rows} == expected and len(rows) == len(expected)
        ok = [r for r in rows if r[1] == "ok"]
        failed = [r for r in rows if r[1] == "failed"]
        assert len(ok) + len(failed) == len(expected)
        assert all(r[2] for r in failed)  # each failure carries its reason
        assert store.count("meshes", "owner = 'element'") == len(ok)
        counts = report.counts  # type: ignore[attr-defined]
        assert counts["products"] == len(expected)
        assert counts["meshed"] == len(ok) and counts["failed"] == len(failed)
        # every mesh decodes to consistent arrays, indices in range, normals unit length
        for nv, nt, pos, nor, idx in store.con.execute(
            "SELECT n_vertices, n_triangles, positions, normals, indices FROM meshes LIMIT 40"
        ).fetchall():
            p = np.frombuffer(pos, np.float32)
            n = np.frombuffer(nor, np.float32).reshape(-1, 3)
            i = np.frombuffer(idx, np.uint32)
            assert len(p) == nv * 3 and len(n) == nv and len(i) == nt * 3
            assert i.max() < nv
            assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-3)
        [(n_buildings, area)] = store.con.execute(
            "SELECT count(*), sum(ST_Area(footprint)) FROM buildings"
        ).fetchall()
        assert n_buildings >= 1 and area > 10


def test_fzk_haus_lands_at_its_ref_lat_lon(tmp_path: Path) -> None:
    path = IFC / "AC20-FZK-Haus.ifc"
    model = ifcopenshell.open(str(path))
    site = model.by_type("IfcSite")[0]
    lat, lon = ugeo.dms2dd(*site.RefLatitude), ugeo.dms2dd(*site.RefLongitude)
    with Store.create(tmp_path / "s.duckdb", "EPSG:25832") as store:
        report = ingest(store, path)
        assert report.status == "ingested"  # type: ignore[attr-defined]
        [(method, matrix)] = store.con.execute("SELECT method, matrix FROM placements").fetchall()
        assert method == "site_reflatlon"
        m = np.array(matrix).reshape(4, 4)
        ex, ny = Transformer.from_crs(4326, 25832, always_xy=True).transform(lon, lat)
        # the site's origin (the model's origin here) goes to RefLatitude/RefLongitude/RefElevation
        x, y, z = m[:3, 3]
        assert math.hypot(x - ex, y - ny) < 0.01
        assert z == pytest.approx(float(site.RefElevation), abs=0.01)
        [(cx, cy, ground, height, above)] = store.con.execute(
            "SELECT ST_X(ST_Centroid(footprint)), ST_Y(ST_Centroid(footprint)), ground_z, height, "
            "storeys_above FROM buildings"
        ).fetchall()
        assert math.hypot(cx - ex, cy - ny) < 30  # the house stands around its site origin
        assert ground == pytest.approx(110.0, abs=0.5)
        assert 5 < height < 12 and above == 2


@pytest.mark.parametrize(
    ("name", "above", "below", "not_counted"),
    [
        # a foundation level 1.25 m high, and a "Roof" level of 0.63 m parapets
        ("duplex.ifc", 2, 0, {"T/FDN": 1.25, "Roof": 0.63}),
        # Revit's "Level 6" holds only the roof (an IfcRoof of slabs)
        ("TallBuilding.ifc", 4, 0, {"Level 6": 0.4}),
        ("AC20-FZK-Haus.ifc", 2, 0, {}),  # the attic is a floor: 3.6 m under the ridge
    ],
)
def test_storeys_count_as_floors_as_gb_50096_counts_them(
    tmp_path: Path, name: str, above: int, below: int, not_counted: dict[str, float]
) -> None:
    with Store.create(tmp_path / "s.duckdb", SAMPLE_CRS[name]) as store:
        ingest(store, IFC / name)
        [(n_above, n_below, gfa)] = store.con.execute(
            "SELECT storeys_above, storeys_below, gross_floor_area FROM buildings"
        ).fetchall()
        rows = store.con.execute(
            "SELECT name, height, floor_area, counted, above_ground FROM storeys"
        ).fetchall()
    assert (n_above, n_below) == (above, below)
    assert {r[0]: pytest.approx(r[1], abs=0.01) for r in rows if not r[3]} == not_counted
    counted_above = sum(r[2] for r in rows if r[3] and r[4])
    if name != "AC20-FZK-Haus.ifc":  # FZK's area comes from its Qto
        assert gfa == pytest.approx(counted_above)


def _hand_map_conversion(
    x: float, y: float, e0: float, n0: float, theta: float
) -> tuple[float, float]:
    return (
        e0 + x * math.cos(theta) - y * math.sin(theta),
        n0 + x * math.sin(theta) + y * math.cos(theta),
    )


@pytest.mark.parametrize(
    ("schema", "millimetres"), [("IFC4", False), ("IFC4", True), ("IFC4X3", False)]
)
def test_map_conversion_lands_within_a_centimetre(
    tmp_path: Path, schema: str, millimetres: bool
) -> None:
    theta = math.radians(30)
    e0, n0, h0 = 500100.0, 4830200.0, 180.0
    path = wall_model(
        tmp_path / "w.ifc",
        length=5.0,
        height=3.0,
        thickness=0.2,
        wall_at=(10.0, 20.0, 0.0),
        millimetres=millimetres,
        schema=schema,
        map_conversion={
            "Eastings": e0,
            "Northings": n0,
            "OrthogonalHeight": h0,
            "XAxisAbscissa": math.cos(theta),
            "XAxisOrdinate": math.sin(theta),
            "Scale": 0.001 if millimetres else 1.0,
        },
    )
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        ingest(store, path)
        [box] = store.con.execute(
            "SELECT xmin, ymin, zmin, xmax, ymax, zmax FROM elements"
        ).fetchall()
        corners = [
            _hand_map_conversion(x, y, e0, n0, theta) for x in (10.0, 15.0) for y in (20.0, 20.2)
        ]
        xs, ys = zip(*corners, strict=True)
        expected = (min(xs), min(ys), h0, max(xs), max(ys), h0 + 3.0)
        assert np.allclose(box, expected, atol=0.01), (box, expected)
        [(method,)] = store.con.execute("SELECT method FROM placements").fetchall()
        assert method == "map_conversion"


def test_ifc4x3_rigid_operation(tmp_path: Path) -> None:
    path = wall_model(
        tmp_path / "w.ifc",
        schema="IFC4X3",
        wall_at=(10.0, 20.0, 0.0),
        map_conversion={"Eastings": 0.0, "Northings": 0.0, "OrthogonalHeight": 0.0},
    )
    to_rigid_operation(path, 500100.0, 4830200.0, 180.0)
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        ingest(store, path)
        [(method,)] = store.con.execute("SELECT method FROM placements").fetchall()
        [box] = store.con.execute("SELECT xmin, ymin, zmin FROM elements").fetchall()
    assert method == "rigid_operation"
    assert np.allclose(box, (500110.0, 4830220.0, 180.0), atol=0.01)


@pytest.mark.parametrize(
    "name", ["EPSG:4550", "EPSG 4550", "CGCS2000 / 3-degree Gauss-Kruger CM 123E"]
)
def test_projected_crs_by_code_or_by_name(tmp_path: Path, name: str) -> None:
    path = wall_model(
        tmp_path / "w.ifc",
        crs_name=name,
        map_conversion={"Eastings": 500000.0, "Northings": 4830000.0, "OrthogonalHeight": 0.0},
    )
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        ingest(store, path)
        [(x, y)] = store.con.execute("SELECT xmin, ymin FROM elements").fetchall()
    assert (x, y) == pytest.approx((500000.0, 4830000.0), abs=0.01)


def test_map_conversion_into_another_project_crs(tmp_path: Path) -> None:
    """Map CRS EPSG:4550 (CM 123E), store in EPSG:4549 (CM 120E): pyproj does the hop."""
    e0, n0 = 400000.0, 4830000.0
    path = wall_model(
        tmp_path / "w.ifc",
        map_conversion={
            "Eastings": e0,
            "Northings": n0,
            "OrthogonalHeight": 0.0,
            "XAxisAbscissa": 1.0,
            "XAxisOrdinate": 0.0,
        },
    )
    with Store.create(tmp_path / "s.duckdb", "EPSG:4549") as store:
        ingest(store, path)
        [(x, y)] = store.con.execute("SELECT xmin, ymin FROM elements").fetchall()
    ex, ey = Transformer.from_crs(4550, 4549, always_xy=True).transform(e0, n0)
    assert math.hypot(x - ex, y - ey) < 0.01


def test_wall_quantities_from_the_mesh_within_one_percent(tmp_path: Path) -> None:
    length, height, thickness = 7.3, 2.9, 0.24
    path = wall_model(tmp_path / "w.ifc", length=length, height=height, thickness=thickness)
    with Store.create(tmp_path / "s.duckdb") as store:
        ingest(store, path)
        [row] = store.con.execute(
            "SELECT volume, surface_area, projected_area, height, quantity_source, is_external, "
            "load_bearing, thermal_transmittance, type_name, psets FROM elements"
        ).fetchall()
    volume, area, projected, h, qsource, external, bearing, u_value, type_name, psets = row
    assert volume == pytest.approx(length * height * thickness, rel=0.01)
    expected_area = 2 * (length * height + length * thickness + height * thickness)
    assert area == pytest.approx(expected_area, rel=0.01)
    assert projected == pytest.approx(length * thickness, rel=0.01)
    assert h == pytest.approx(height, rel=0.01)
    assert json.loads(qsource)["volume"] == "mesh"
    # flags inherited from the type object, merged with the occurrence's own
    assert external is True and bearing is True and u_value == pytest.approx(0.35)
    assert type_name == "EXT-200"
    assert json.loads(psets)["Pset_WallCommon"]["IsExternal"] is True


def test_quantities_come_from_qto_sets_when_present(tmp_path: Path) -> None:
    with Store.create(tmp_path / "s.duckdb", "EPSG:25832") as store:
        ingest(store, IFC / "AC20-FZK-Haus.ifc")
        rows = store.con.execute(
            "SELECT volume, quantity_source, qsets FROM elements "
            "WHERE json_extract_string(quantity_source, '$.volume') LIKE 'qto:%'"
        ).fetchall()
    assert len(rows) > 20
    for volume, qsource, qsets in rows:
        qname, quantity = json.loads(qsource)["volume"][4:].split(".")
        assert volume == pytest.approx(json.loads(qsets)[qname][quantity])


@pytest.mark.parametrize("factor", [1.03, 1000.0])
def test_a_qto_in_the_wrong_unit_gives_way_to_the_mesh(tmp_path: Path, factor: float) -> None:
    """Revit writes some volumes as m2 x mm: a Qto 1000x the shape's is not taken, and said."""
    length, height, thickness = 6.0, 3.0, 0.25
    true_volume = length * height * thickness
    path = wall_model(tmp_path / "w.ifc", length=length, height=height, thickness=thickness)
    model = ifcopenshell.open(path)
    [wall] = model.by_type("IfcWall")
    qto = ifcopenshell.api.pset.add_qto(model, product=wall, name="Qto_WallBaseQuantities")
    ifcopenshell.api.pset.edit_qto(model, qto=qto, properties={"NetVolume": true_volume * factor})
    model.write(str(path))
    with Store.create(tmp_path / "s.duckdb") as store:
        warnings = ingest(store, path).warnings  # type: ignore[attr-defined]
        [(volume, qsource)] = store.con.execute(
            "SELECT volume, quantity_source FROM elements"
        ).fetchall()
    source = json.loads(qsource)["volume"]
    if factor < 10:
        assert volume == pytest.approx(true_volume * factor)
        assert source == "qto:Qto_WallBaseQuantities.NetVolume"
        assert not any("Qto" in w for w in warnings)
    else:
        assert volume == pytest.approx(true_volume, rel=0.01)
        assert source == "mesh (qto:Qto_WallBaseQuantities.NetVolume = 4500 implausible)"
        assert any("1 x Qto_WallBaseQuantities.NetVolume" in w for w in warnings)


def test_flags_from_the_file(tmp_path: Path) -> None:
    with Store.create(tmp_path / "s.duckdb", "EPSG:26919") as store:
        duplex = ingest(store, IFC / "duplex.ifc").source_id  # type: ignore[attr-defined]
        large = ingest(store, IFC / "LargeBuilding.ifc").source_id  # type: ignore[attr-defined]

        def count(source: int, where: str) -> int:
            return store.count("elements", f"source_id = ? AND {where}", [source])

        # the files' own Pset_WallCommon.IsExternal and Pset_WindowCommon.ThermalTransmittance
        assert count(duplex, "ifc_class LIKE 'IfcWall%' AND is_external") == 23
        assert count(large, "ifc_class LIKE 'IfcWall%' AND is_external") == 18
        assert count(large, "ifc_class = 'IfcWindow' AND thermal_transmittance > 0") == 42


def test_fzk_windows_are_hosted_by_walls(tmp_path: Path) -> None:
    with Store.create(tmp_path / "s.duckdb", "EPSG:25832") as store:
        ingest(store, IFC / "AC20-FZK-Haus.ifc")
        hosted = store.con.execute(
            "SELECT w.ifc_class, count(*) FROM element_relations r "
            "JOIN elements w ON w.global_id = r.related_guid AND w.source_id = r.source_id "
            "JOIN elements h ON h.global_id = r.relating_guid AND h.source_id = r.source_id "
            "WHERE r.kind = 'hosts' AND h.ifc_class LIKE 'IfcWall%' GROUP BY 1"
        ).fetchall()
    assert dict(hosted)["IfcWindow"] == 11


def test_unplaced_model_is_flagged_then_placed_without_reparsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, IFC / "IfcOpenHouse.ifc")
        assert report.status == "needs_placement"  # type: ignore[attr-defined]
        doc = status_document(store)
        assert [a["reason"] for a in doc["attention"]] == ["needs_placement"]
        assert f"cim place {report.source_id}" in doc["attention"][0]["message"]  # type: ignore[attr-defined]
        before = store.con.execute("SELECT count(*), sum(volume) FROM elements").fetchone()

        def no_parsing(*a: object, **k: object) -> None:
            raise AssertionError("place must not re-read the file")

        monkeypatch.setattr(ifcopenshell, "open", no_parsing)
        lon, lat = 122.26, 43.62
        with store.transaction():
            out = place(store, report.source_id, Anchor(lon, lat, 180.0, 0.0))  # type: ignore[attr-defined]
        assert out["elements"] == 17
        ex, ny = Transformer.from_crs(4326, 4550, always_xy=True).transform(lon, lat)
        [(cx, cy, ground)] = store.con.execute(
            "SELECT ST_X(ST_Centroid(footprint)), ST_Y(ST_Centroid(footprint)), ground_z "
            "FROM buildings"
        ).fetchall()
        assert math.hypot(cx - ex, cy - ny) < 30 and ground == pytest.approx(180.0, abs=1)
        [(xmin, xmax)] = store.con.execute("SELECT min(xmin), max(xmax) FROM elements").fetchall()
        assert xmin < ex + 30 and xmax > ex - 30
        assert store.source(report.source_id).status == "ingested"  # type: ignore[attr-defined]
        assert status_document(store)["attention"] == []
        assert store.con.execute("SELECT count(*), sum(volume) FROM elements").fetchone() == before


def test_anchor_overrides_a_wrong_georeference(tmp_path: Path) -> None:
    lon, lat, rot = 122.26, 43.62, 30.0
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        # LargeBuilding carries Revit's default site (Boston), outside EPSG:4550
        plain = ingest(store, IFC / "TallBuilding.ifc")
        assert plain.status == "needs_placement"  # type: ignore[attr-defined]
        assert any("Boston" in w for w in plain.warnings)  # type: ignore[attr-defined]
        report = ingest(store, IFC / "LargeBuilding.ifc", anchor=Anchor(lon, lat, 200.0, rot))
        assert report.status == "ingested"  # type: ignore[attr-defined]
        [(m,)] = store.con.execute(
            "SELECT matrix FROM placements WHERE source_id = ?",
            [report.source_id],  # type: ignore[attr-defined]
        ).fetchall()
    m = np.array(m).reshape(4, 4)
    ex, ny = Transformer.from_crs(4326, 4550, always_xy=True).transform(lon, lat)
    assert math.hypot(m[0, 3] - ex, m[1, 3] - ny) < 0.01 and m[2, 3] == pytest.approx(200.0)
    # the model's +x axis turned 30 degrees counter-clockwise from (true) east: check the
    # direction against true north computed by pyproj (grid convergence included)
    gx = np.degrees(np.arctan2(m[1, 0], m[0, 0]))
    t = Transformer.from_crs(4326, 4550, always_xy=True)
    nx, nn = t.transform(lon, lat + 0.001)
    north = np.degrees(np.arctan2(nn - ny, nx - ex))  # direction of true north on the grid
    assert gx == pytest.approx(north - 90 + rot, abs=0.01)


def test_bad_anchor_is_a_usage_error() -> None:
    for text in ("1000,43", "a,b", "1", "1,2,3,4,5"):
        with pytest.raises(UsageError, match="--anchor"):
            Anchor.parse(text)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, type[Exception], str]]:
    source = (IFC / "IfcOpenHouse.ifc").read_bytes()
    truncated = tmp_path / "truncated.ifc"
    truncated.write_bytes((IFC / "duplex.ifc").read_bytes()[:300_000])
    garbage = tmp_path / "garbage.ifc"
    garbage.write_bytes(b"\x00\x01 this is not a model \xff" * 100)
    empty = tmp_path / "empty.ifc"
    empty.write_bytes(b"")
    rc2 = tmp_path / "rc2.ifc"
    rc2.write_bytes(source.replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA(('IFC4X3_RC2'))"))
    assert b"IFC4X3_RC2" in rc2.read_bytes()
    return {
        "truncated": (truncated, InputFileError, "truncated"),
        "garbage": (garbage, InputFileError, "not an IFC file"),
        "empty": (empty, InputFileError, "empty"),
        "rc2": (rc2, UnsupportedFile, "IFC4X3_RC2"),
    }


def test_bad_files_give_a_clear_error_and_leave_the_store_unchanged(tmp_path: Path) -> None:
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        ingest(store, IFC / "IfcOpenHouse.ifc")
        before = snapshot(store)
        for _, (path, error, text) in _bad_files(tmp_path).items():
            with pytest.raises(error, match=text) as info:
                ingest(store, path)
            assert str(path) in str(info.value)
            assert snapshot(store) == before


@pytest.mark.slow
def test_bad_files_on_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = tmp_path / "s.duckdb"
    Store.create(store).close()
    for _, (path, _, text) in _bad_files(tmp_path).items():
        r = subprocess.run(
            [sys.executable, "-m", "cim.cli", "--store", str(store), "ingest", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2, r.stderr
        [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
        assert str(path) in line and text in line
        assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_failure_halfway_rolls_back_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.create(tmp_path / "s.duckdb", "EPSG:25832") as store:
        ingest(store, IFC / "AC20-FZK-Haus.ifc")
        before = snapshot(store)

        def broken(self: object, *args: object) -> None:
            raise RuntimeError("disk full while writing meshes")

        # elements and buildings are already written when meshes fail
        monkeypatch.setattr(ElementWriter, "write_meshes", broken)
        with pytest.raises(IngestError, match="disk full"):
            ingest(store, IFC / "IfcOpenHouse.ifc")
        assert snapshot(store) == before


def test_changed_model_replaces_its_rows(tmp_path: Path) -> None:
    path = wall_model(tmp_path / "w.ifc", length=4.0)
    with Store.create(tmp_path / "s.duckdb") as store:
        first = ingest(store, path)
        wall_model(path, length=6.0)
        second = ingest(store, path)
        assert second.outcome == "replaced"  # type: ignore[attr-defined]
        assert store.count("elements") == 1 and store.count("buildings") == 1
        [(vol,)] = store.con.execute("SELECT volume FROM elements").fetchall()
        assert vol == pytest.approx(6.0 * 3.0 * 0.2, rel=0.01)
        assert store.count("elements", "source_id = ?", [first.source_id]) == 0  # type: ignore[attr-defined]


def test_unknown_map_crs_name_waits_for_placement(tmp_path: Path) -> None:
    """A georeference degrades, never fails (#22): an unknown CRS name is said, not refused."""
    path = wall_model(
        tmp_path / "w.ifc",
        crs_name="My Local Grid",
        map_conversion={"Eastings": 1.0, "Northings": 2.0, "OrthogonalHeight": 0.0},
    )
    with Store.create(tmp_path / "s.duckdb") as store:
        report = ingest(store, path)
    assert report.status == "needs_placement"  # type: ignore[attr-defined]
    assert any("'My Local Grid'" in w for w in report.warnings)  # type: ignore[attr-defined]


def test_footprint_is_the_outline_of_the_walls(tmp_path: Path) -> None:
    path = wall_model(tmp_path / "w.ifc", length=8.0, thickness=0.3)
    with Store.create(tmp_path / "s.duckdb") as store:
        ingest(store, path)
        [(wkb, gfa, h)] = store.con.execute(
            "SELECT ST_AsWKB(footprint), gross_floor_area, height FROM buildings"
        ).fetchall()
    footprint = shapely.from_wkb(bytes(wkb))
    assert footprint.area == pytest.approx(8.0 * 0.3, rel=0.01)
    assert gfa == pytest.approx(8.0 * 0.3, rel=0.01) and h == pytest.approx(3.0, rel=0.01)


@pytest.mark.parametrize("where", ["pool", "dask"])
@pytest.mark.slow
def test_workers_mesh_the_same_as_the_kernel_in_process(tmp_path: Path, where: str) -> None:
    """The local pool's workers (the CLI's default) and a Dask cluster's mesh chunks of the
    products, each parsing the file once; the rows equal an ingest in one process."""
    from distributed import LocalCluster

    from cim.executor import DaskExecutor, LocalExecutor

    path = IFC / "AC20-FZK-Haus.ifc"
    query = (
        "SELECT e.global_id, e.geometry_status, e.geometry_error, e.volume, e.surface_area, "
        "e.projected_area, e.xmin, e.ymin, e.zmax, e.psets, e.qsets, e.materials, "
        "m.n_vertices, m.positions, m.indices, m.normals, m.materials "
        "FROM elements e LEFT JOIN meshes m ON m.owner_id = e.id ORDER BY e.global_id"
    )
    footprint = "SELECT ST_AsText(footprint), gross_floor_area, storeys_above FROM buildings"
    with Store.create(tmp_path / "local.duckdb", "EPSG:25832") as store:
        run_ingest(store, path, IngestOptions(), SerialExecutor())
        local = store.con.execute(query).fetchall()
        local_fp = store.con.execute(footprint).fetchall()
    with contextlib.ExitStack() as stack:
        if where == "dask":
            cluster = stack.enter_context(
                LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
            )
            executor: Any = DaskExecutor(cluster)
        else:
            executor = LocalExecutor(2)
        stack.callback(executor.close)
        with Store.create(tmp_path / "workers.duckdb", "EPSG:25832") as store:
            run_ingest(store, path, IngestOptions(), executor)
            remote = store.con.execute(query).fetchall()
            remote_fp = store.con.execute(footprint).fetchall()
        # again, with the workers' parsed model kept from the first time
        with Store.create(tmp_path / "again.duckdb", "EPSG:25832") as store:
            run_ingest(store, path, IngestOptions(), executor)
            again = store.con.execute(query).fetchall()
    assert len(local) == len(remote) == 121
    assert again == remote
    # quantities agree to rounding: each side takes a repeated shape's from whichever copy of
    # it its own meshing met first (MeshStats)
    for a, b in zip(local, remote, strict=True):
        assert [pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for v in a] == list(b)
    assert local_fp == remote_fp


def test_workers_that_would_not_fit_in_memory_leave_the_meshing_to_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker parses the model: when the workers would need more than half the free
    memory, the model is meshed in the ingesting process, with the same rows, and says so."""
    from types import SimpleNamespace

    from cim.executor import LocalExecutor

    path = IFC / "TallBuilding.ifc"
    query = "SELECT global_id, volume, projected_area, xmin, zmax FROM elements ORDER BY 1"
    with Store.create(tmp_path / "serial.duckdb", "EPSG:3857") as store:
        run_ingest(store, path, IngestOptions(), SerialExecutor())
        expected = store.con.execute(query).fetchall()

    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the workers were used")

    # 2 workers x (12 x 0.6 MB + 256 MB) = 0.53 GB: within half of 2 GB, not of 0.8 GB
    for free, pooled in ((2 * 2**30, True), (0.8 * 2**30, False)):
        monkeypatch.setattr(
            ingester_mod.psutil, "virtual_memory", lambda free=free: SimpleNamespace(available=free)
        )
        executor = LocalExecutor(2)
        used: list[Any] = []

        def counted(*args: Any, _map: Any = executor.map, _used: Any = used, **kw: Any) -> Any:
            _used.append(args)
            return _map(*args, **kw)

        monkeypatch.setattr(executor, "map", counted if pooled else no_pool)
        try:
            with Store.create(tmp_path / f"{free}.duckdb", "EPSG:3857") as store:
                report = run_ingest(store, path, IngestOptions(), executor)
                got = store.con.execute(query).fetchall()
            # to rounding: a repeated shape's quantities come from whichever copy was met first
            assert [list(row) for row in got] == [
                [pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for v in row]
                for row in expected
            ]
        finally:
            executor.close()
        said = [w for w in report.warnings if "meshed in one process" in w]
        assert bool(said) != pooled, report.warnings
        assert bool(used) == pooled


def test_a_worker_dying_while_meshing_degrades_to_one_by_one(tmp_path: Path) -> None:
    from concurrent.futures.process import BrokenProcessPool

    class DyingPool:
        """The local pool as it is when a worker is killed (the kernel crashed on an element,
        or the machine ran out of memory): the first chunk is taken, then the pool breaks."""

        workers = 2
        distributed = False

        def map(self, fn: Any, items: Any, *, window: int | None = None) -> Any:
            next(iter(items))
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")

        def start(self, modules: Any = ()) -> None:
            pass

        def close(self) -> None:
            pass

    path = IFC / "TallBuilding.ifc"
    counts = []
    for executor in (DyingPool(), SerialExecutor()):
        with Store.create(tmp_path / f"{type(executor).__name__}.duckdb", "EPSG:25832") as s:
            report = run_ingest(s, path, IngestOptions(), executor)  # type: ignore[arg-type]
            assert report.outcome == "ingested"
            counts.append(
                s.con.execute(
                    "SELECT geometry_status, count(*), round(sum(volume), 3) FROM elements "
                    "GROUP BY ALL ORDER BY ALL"
                ).fetchall()
            )
            died = [w for w in report.warnings if "a worker process died" in w]
            assert bool(died) == isinstance(executor, DyingPool), report.warnings
    assert counts[0] == counts[1]  # every element meshed as without the pool


def test_assembly_parts_are_related_and_inherit_the_storey(tmp_path: Path) -> None:
    import ifcopenshell.api.aggregate
    import ifcopenshell.api.context
    import ifcopenshell.api.geometry
    import ifcopenshell.api.pset
    import ifcopenshell.api.root
    import ifcopenshell.api.spatial

    path = wall_model(tmp_path / "a.ifc")
    f = ifcopenshell.open(str(path))
    body = next(c for c in f.by_type("IfcGeometricRepresentationSubContext"))
    storey = f.by_type("IfcBuildingStorey")[0]
    assembly = ifcopenshell.api.root.create_entity(f, ifc_class="IfcElementAssembly", name="PC-1")
    ifcopenshell.api.geometry.edit_object_placement(f, product=assembly)
    ifcopenshell.api.spatial.assign_container(f, products=[assembly], relating_structure=storey)
    tekla = ifcopenshell.api.pset.add_pset(f, product=assembly, name="Tekla Assembly")
    ifcopenshell.api.pset.edit_pset(f, pset=tekla, properties={"Cast unit type": "Prefab"})
    parts = []
    for i in range(2):
        beam = ifcopenshell.api.root.create_entity(f, ifc_class="IfcBeam", name=f"B{i}")
        m = np.eye(4)
        m[:3, 3] = (0.0, 2.0 + i, 3.0)
        ifcopenshell.api.geometry.edit_object_placement(f, product=beam, matrix=m)
        rep = ifcopenshell.api.geometry.add_wall_representation(
            f, context=body, length=4.0, height=0.5, thickness=0.3
        )
        ifcopenshell.api.geometry.assign_representation(f, product=beam, representation=rep)
        parts.append(beam)
    ifcopenshell.api.aggregate.assign_object(f, products=parts, relating_object=assembly)
    f.write(str(path))
    with Store.create(tmp_path / "s.duckdb") as store:
        ingest(store, path)
        rels = store.con.execute(
            "SELECT r.relating_guid, e.name FROM element_relations r "
            "JOIN elements e ON e.global_id = r.related_guid WHERE r.kind = 'aggregates'"
        ).fetchall()
        beams = store.con.execute(
            "SELECT storey, building_id IS NOT NULL, volume FROM elements "
            "WHERE ifc_class = 'IfcBeam'"
        ).fetchall()
        [(psets,)] = store.con.execute(
            "SELECT psets FROM elements WHERE ifc_class = 'IfcElementAssembly'"
        ).fetchall()
    assert sorted(name for _, name in rels) == ["B0", "B1"]
    assert {guid for guid, _ in rels} == {assembly.GlobalId}
    assert [(b[0], b[1]) for b in beams] == [("F1", True), ("F1", True)]
    assert all(b[2] == pytest.approx(4.0 * 0.5 * 0.3, rel=0.01) for b in beams)
    assert json.loads(psets)["Tekla Assembly"]["Cast unit type"] == "Prefab"


def test_lidar_roofs_for_an_ifc_building_keep_the_model_height(tmp_path: Path) -> None:
    laz = SAMPLES / "lidar" / "lidarprod" / "870000_6618000.subset.postValidation.laz"
    with Store.create(tmp_path / "s.duckdb", "EPSG:2154") as store:
        run_ingest(store, laz, IngestOptions(), SerialExecutor())
        # the 8 m cell with the most building points: put an 8 x 8 m IFC block over it
        [(cx, cy)] = store.con.execute(
            "SELECT floor(x / 8) * 8, floor(y / 8) * 8 FROM points WHERE classification = 6 "
            "GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1"
        ).fetchall()
        path = wall_model(
            tmp_path / "block.ifc",
            length=8.0,
            thickness=8.0,
            height=3.0,
            map_conversion={"Eastings": float(cx), "Northings": float(cy), "OrthogonalHeight": 0.0},
            crs_name="EPSG:2154",
        )
        ingest(store, path)
        [(status, n, p70, height, source)] = store.con.execute(
            "SELECT h.status, h.n_points, h.roof_p70, b.height, b.height_source "
            "FROM buildings b JOIN building_heights h ON h.building_id = b.id"
        ).fetchall()
    assert status == "ok" and n > 20 and p70 is not None
    assert source == "ifc" and height == pytest.approx(3.0, rel=0.01)


def test_union_of_triangles_matches_geos() -> None:
    """The Clipper union behind projected areas and outlines against shapely's union_all:
    overlapping triangles, a square ring with a hole, an island in the hole, far coordinates."""
    from ingest.ifc.mesh import union_of_triangles

    rng = np.random.default_rng(3)
    soup = rng.uniform(0, 10, size=(300, 3, 2))
    ring = []
    for x0, y0, x1, y1 in [(0, 0, 9, 3), (0, 6, 9, 9), (0, 3, 3, 6), (6, 3, 9, 6), (4, 4, 5, 5)]:
        ring += [[(x0, y0), (x1, y0), (x1, y1)], [(x0, y0), (x1, y1), (x0, y1)]]
    far = soup[:50] + np.array([500000.0, 4830000.0])
    for tris in (soup, np.array(ring, dtype=float), far):
        ours = union_of_triangles(tris)
        geos = shapely.union_all(shapely.polygons(tris))
        assert ours.is_valid
        assert ours.area == pytest.approx(geos.area, rel=1e-6)
        assert shapely.symmetric_difference(ours, geos).area < 1e-6 * geos.area
    with_hole = union_of_triangles(np.array(ring, dtype=float))
    assert with_hole.area == pytest.approx(81 - 9 + 1)  # 9x9 square, 3x3 hole, 1x1 island


def _box_mesh(lo: tuple[float, float, float], size: float, drop_top: bool = False) -> object:
    """A cube as the kernel gives it: one vertex per face corner, faces wound outwards."""
    from ingest.ifc import MeshData

    corners = np.array(
        [[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], dtype=np.float64
    )
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    if drop_top:
        quads.remove((4, 5, 7, 6))
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    verts = (corners[np.array(tris).ravel()] * size + np.array(lo)).astype(np.float64)
    faces = np.arange(len(verts), dtype=np.uint32).reshape(-1, 3)
    return MeshData(verts, np.zeros_like(verts, np.float32), faces, np.zeros(len(faces)), [])


def test_mesh_volume_only_for_closed_surfaces_and_exact_far_from_the_origin() -> None:
    from ingest.ifc.mesh import mesh_stats

    # a 2 m cube at UTM-like coordinates: 8 m3 to the micro-cubic-metre
    stats, _ = mesh_stats(_box_mesh((500_000.0, 4_830_000.0, 120.0), 2.0))  # type: ignore[arg-type]
    assert stats["volume"] == pytest.approx(8.0, abs=1e-6)
    assert stats["surface_area"] == pytest.approx(24.0)
    assert stats["projected_area"] == pytest.approx(4.0)
    # the same cube without its top is no solid: its "volume" would depend on the origin
    for lo in ((0.0, 0.0, 0.0), (500_000.0, 4_830_000.0, 120.0)):
        open_stats, _ = mesh_stats(_box_mesh(lo, 2.0, drop_top=True))  # type: ignore[arg-type]
        assert "volume" not in open_stats
        assert open_stats["surface_area"] == pytest.approx(20.0)
        assert open_stats["projected_area"] == pytest.approx(4.0)


def test_translated_copies_reuse_quantities_and_move_the_outline() -> None:
    from ingest.ifc.mesh import MeshStats, mesh_stats

    stats = MeshStats()
    first, first_outline = stats(_box_mesh((10.0, 20.0, 0.0), 2.0))  # type: ignore[arg-type]
    copy = _box_mesh((510.0, 4020.0, 3.0), 2.0)  # the same box elsewhere
    again, outline = stats(copy)  # type: ignore[arg-type]
    assert again == first and again is not first
    fresh, fresh_outline = mesh_stats(copy)  # type: ignore[arg-type]
    assert again == pytest.approx(fresh)
    assert outline is not None and fresh_outline is not None
    assert outline.bounds == pytest.approx(fresh_outline.bounds)  # moved with the copy
    assert first_outline is not None and first_outline.bounds == pytest.approx((10, 20, 12, 22))
    bigger, _ = stats(_box_mesh((10.0, 20.0, 0.0), 3.0))  # type: ignore[arg-type]
    assert bigger["volume"] == pytest.approx(27.0)  # another shape is computed, not reused
    as_terrain, _ = stats(_box_mesh((10.0, 20.0, 0.0), 2.0), terrain=True)  # type: ignore[arg-type]
    assert as_terrain["projected_area"] == pytest.approx(4.0)


def test_open_meshes_get_no_volume_on_a_real_model(tmp_path: Path) -> None:
    # LargeBuilding's Revit RPC trees are crossed open surfaces: their summed "volume" was
    # 2,000 m3, and different for each copy of the same tree depending on where it stood
    with Store.create(tmp_path / "s.duckdb", "EPSG:26919") as store:
        ingest(store, IFC / "LargeBuilding.ifc")
        trees = store.con.execute(
            "SELECT volume, quantity_source ->> 'volume', surface_area FROM elements "
            "WHERE name LIKE 'M_RPC Tree%'"
        ).fetchall()
        assert len(trees) == 11
        assert {t[:2] for t in trees} == {(None, "none (the mesh is not closed)")}
        assert len({round(t[2], 6) for t in trees}) == 1  # the same tree, the same area
        walls = store.con.execute(
            "SELECT count(*) FROM elements WHERE ifc_class = 'IfcWallStandardCase' AND volume > 0"
        ).fetchone()
        assert walls == (18,)


def test_a_model_without_geometry_is_refused(tmp_path: Path) -> None:
    import ifcopenshell.api.project
    import ifcopenshell.api.root
    import ifcopenshell.api.unit

    model = ifcopenshell.api.project.create_file(version="IFC4")
    ifcopenshell.api.root.create_entity(model, ifc_class="IfcProject", name="Empty")
    ifcopenshell.api.unit.assign_unit(model)
    path = tmp_path / "empty_project.ifc"
    model.write(str(path))
    with Store.create(tmp_path / "s.duckdb") as store:
        with pytest.raises(InputFileError, match=r"empty_project\.ifc: no element with geometry"):
            ingest(store, path)
        assert store.sources() == []


def test_crs_and_gis_options_do_not_apply_to_ifc(tmp_path: Path) -> None:
    with Store.create(tmp_path / "s.duckdb") as store:
        for options in ({"crs": "EPSG:4326"}, {"layer": "x"}, {"role": "roads"}):
            with pytest.raises(UsageError, match="is an IFC model, and"):
                ingest(store, IFC / "IfcOpenHouse.ifc", **options)
        assert store.sources() == []


def test_ifc_building_over_a_gis_footprint_is_linked_and_canonical(tmp_path: Path) -> None:
    """A footprint from GIS and an IFC model of the same building become one building, the
    BIM row canonical (IFC > LoD2 > LoD1)."""
    shp = SAMPLES / "lidar" / "lidarprod" / "870000_6618000.subset.postIA.shp"
    with Store.create(tmp_path / "s.duckdb", "EPSG:2154") as store:
        run_ingest(store, shp, IngestOptions(role="buildings"), SerialExecutor())
        # the most rectangular footprint: its bounding box is nearly the footprint itself
        [(gis_id, x0, y0, x1, y1)] = store.con.execute(
            "SELECT id, xmin, ymin, xmax, ymax FROM buildings "
            "ORDER BY ST_Area(footprint) / ((xmax - xmin) * (ymax - ymin)) DESC LIMIT 1"
        ).fetchall()
        path = wall_model(
            tmp_path / "same.ifc",
            length=x1 - x0,
            thickness=y1 - y0,
            height=6.0,
            map_conversion={"Eastings": x0, "Northings": y0, "OrthogonalHeight": 0.0},
            crs_name="EPSG:2154",
        )
        report = ingest(store, path)
        assert report.counts["linked"] == 1  # type: ignore[attr-defined]
        rows = dict(
            store.con.execute(
                "SELECT lod, same_as FROM buildings WHERE id = ? OR source_id = ?",
                [gis_id, report.source_id],  # type: ignore[attr-defined]
            ).fetchall()
        )
        [(bim_id,)] = store.con.execute("SELECT id FROM buildings WHERE lod = 'BIM'").fetchall()
    assert rows["BIM"] is None  # canonical
    assert rows["LoD1"] == bim_id


def _get_psets_reference(product: object) -> dict[str, object]:
    """ifcopenshell's own reading of an occurrence's sets, as the ingest stores them."""
    import ifcopenshell.util.element as uel

    return {
        name: jsonable(values)
        for name, values in uel.get_psets(product, should_inherit=False).items()
    }


@pytest.mark.parametrize("name", sorted(SAMPLE_CRS))
def test_property_sets_read_as_ifcopenshell_reads_them(name: str) -> None:
    # the ingest reads sets from one pass over the relations, with a fast path for single
    # values and simple quantities; every product of every sample must get what get_psets gives
    model = ifcopenshell.open(str(IFC / name))
    reader = PropertyReader(model)
    products = [p for p in model.by_type("IfcProduct") if p.Representation]
    n_sets = 0
    for product in products:
        ours = {k: v for k, (_, v) in reader.occurrence_sets(product).items()}
        assert ours == _get_psets_reference(product), product
        n_sets += len(ours)
    if name != "IfcOpenHouse.ifc":  # the one sample nearly without sets
        assert n_sets > len(products)


def test_shared_and_non_simple_property_sets(tmp_path: Path) -> None:
    path = wall_model(tmp_path / "w.ifc")
    model = ifcopenshell.open(str(path))
    wall = model.by_type("IfcWall")[0]
    twin = ifcopenshell.api.root.copy_class(model, product=wall)
    shared = ifcopenshell.api.pset.add_pset(model, product=wall, name="Shared")
    ifcopenshell.api.pset.edit_pset(model, pset=shared, properties={"Code": "A-1", "Area": 2.5})
    model.by_type("IfcRelDefinesByProperties")[-1].RelatedObjects = [wall, twin]
    # an enumerated value and a complex quantity take ifcopenshell's general reader
    enum = model.createIfcPropertyEnumeratedValue(
        "Finish", None, [model.createIfcLabel("Matte"), model.createIfcLabel("Raw")]
    )
    pset = model.createIfcPropertySet(ifcopenshell.guid.new(), None, "Pset_Custom", None, [enum])
    length = model.createIfcQuantityLength("Part", None, None, 1.5)
    complex_q = model.createIfcPhysicalComplexQuantity("Layer", None, [length], "Layer", None, None)
    qto = model.createIfcElementQuantity(
        ifcopenshell.guid.new(), None, "Qto_Custom", None, None, [complex_q]
    )
    for definition in (pset, qto):
        model.createIfcRelDefinesByProperties(
            ifcopenshell.guid.new(), None, None, None, [twin], definition
        )
    reader = PropertyReader(model)
    for product in (wall, twin):
        sets = reader.occurrence_sets(product)
        assert {k: v for k, (_, v) in sets.items()} == _get_psets_reference(product)
        assert sets["Shared"] == (False, {"Code": "A-1", "Area": 2.5})
    sets = reader.occurrence_sets(twin)
    assert sets["Pset_Custom"] == (False, {"Finish": ["Matte", "Raw"]})
    assert sets["Qto_Custom"][0] is True
    assert sets["Qto_Custom"][1]["Layer"]["properties"] == {"Part": 1.5}


def test_template_placeholder_is_no_building_name(tmp_path: Path) -> None:
    from ingest.ifc.buildings import building_name

    assert building_name("// BUILDING/NAME //") is None  # Revit's project information
    assert building_name("Default Building") is None
    assert building_name("  ") is None
    assert building_name("Block A") == "Block A"
    assert building_name("FZK-Haus") == "FZK-Haus"
    with Store.create(tmp_path / "s.duckdb", SAMPLE_CRS["TallBuilding.ifc"]) as store:
        ingest(store, IFC / "TallBuilding.ifc")
        [(name, given)] = store.con.execute(
            "SELECT name, attributes ->> 'ifc_name' FROM buildings"
        ).fetchall()
    assert name is None and given == "// BUILDING/NAME //"
