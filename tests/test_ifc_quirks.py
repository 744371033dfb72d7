"""Authoring tools' quirks: an odd item degrades that item, never the file (issue #22).

Every model is built here (tests/ifc_models.py) with ifcopenshell.api or by editing its STEP
text, as ArchiCAD, Renga and others write them; the real samples go through the same checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import pytest

from cim.executor import SerialExecutor
from cim.store import Store
from ingest import IngestOptions, run_ingest
from ingest.ifc.mesh import GEOMETRY_LIBRARY, geometry_settings
from ingest.ifc.quirks import label, repair
from tests.conftest import SAMPLES
from tests.ifc_models import (
    RENGA_STARRED,
    derived_names_model,
    odd_values_model,
    spaces_model,
    storeyed,
    structure_model,
    unnamed_sets_model,
)

IFC = SAMPLES / "ifc"


def ingest(store: Store, path: Path) -> Any:
    return run_ingest(store, path, IngestOptions(), SerialExecutor())


def _kernel_error(product: Any) -> str | None:
    """The geometry kernel's own verdict on one product (None: it meshes it)."""
    try:
        shape = ifcopenshell.geom.create_shape(
            geometry_settings(),
            product,
            geometry_library=GEOMETRY_LIBRARY,  # type: ignore[arg-type]
        )
    except Exception as exc:
        return str(exc)
    return None if len(shape.geometry.faces) else "no surfaces"


def _keyed(store: Store, sql: str) -> dict[Any, tuple[Any, ...]]:
    """The query's rows by their first column."""
    return {row[0]: tuple(row[1:]) for row in store.con.execute(sql).fetchall()}


def check_products_conserved(store: Store, path: Path, report: Any) -> dict[str, tuple]:
    """Every product with a representation has its row; it is meshed unless the kernel itself
    fails on it (then ``failed``, or ``none`` for a space), with the kernel's reason; the
    counts say so. Returns global id -> (class, status, error, name)."""
    model = ifcopenshell.open(str(path))
    repair(model, path)  # as the ingest reads it
    products = {label(p): p for p in model.by_type("IfcProduct") if p.Representation}
    rows = _keyed(
        store, "SELECT global_id, ifc_class, geometry_status, geometry_error, name FROM elements"
    )
    assert set(products) <= set(rows)
    ok = [g for g in products if rows[g][1] == "ok"]
    for guid, product in products.items():
        _, status, error, _ = rows[guid]
        if status == "ok":
            continue
        assert status == ("none" if product.is_a("IfcSpace") else "failed"), (guid, status)
        assert error and _kernel_error(product) == error, (guid, error)
    assert store.count("meshes", "owner = 'element'") == len(ok)
    counts = report.counts
    assert counts["products"] == len(products) and counts["meshed"] == len(ok)
    failed = [g for g in products if rows[g][1] == "failed"]
    assert counts["failed"] == len(failed)
    return rows


CORPUS: dict[str, Callable[[Path], Path]] = {
    "unnamed_sets_IFC2X3": lambda p: unnamed_sets_model(p, "IFC2X3"),
    "unnamed_sets_IFC4": lambda p: unnamed_sets_model(p, "IFC4"),
    "derived_names_IFC2X3": lambda p: derived_names_model(p, "IFC2X3"),
    "derived_names_IFC4": lambda p: derived_names_model(p, "IFC4"),
    "spaces_IFC2X3": lambda p: spaces_model(p, "IFC2X3"),
    "spaces_IFC4": lambda p: spaces_model(p, "IFC4"),
    "structure_IFC2X3": lambda p: structure_model(p, "IFC2X3"),
    "structure_IFC4": lambda p: structure_model(p, "IFC4"),
    "structure_without_units": lambda p: structure_model(p, "IFC4", units=False),
    "odd_values_IFC4": lambda p: odd_values_model(p, "IFC4"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_model_ingests_with_every_product(tmp_path: Path, name: str) -> None:
    path = CORPUS[name](tmp_path / f"{name}.ifc")
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        rows = check_products_conserved(store, path, report)
        # the kernel fails on nothing in the corpus but the 2D-only space
        assert [r for r in rows.values() if r[1] == "failed"] == []
        assert store.count("buildings") == 1
        # odd items: counted by kind, one warning per kind
        kinds = report.counts.get("odd_items_by_kind", {})
        assert report.counts.get("odd_items", 0) == sum(kinds.values())
        for kind in kinds:
            lines = [w for w in report.warnings if w.startswith(f"{path.name}: {kinds[kind]} ")]
            assert lines, (kind, report.warnings)
        assert len(report.warnings) == len(kinds) + sum("placement" in w for w in report.warnings)


@pytest.mark.parametrize("name", sorted(p.name for p in IFC.glob("*.ifc")))
def test_every_sample_keeps_every_product(tmp_path: Path, name: str) -> None:
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, IFC / name)
        rows = check_products_conserved(store, IFC / name, report)
        failed = [r for r in rows.values() if r[1] == "failed"]
        if failed:  # FZK-Haus's annotations: one line for all of them
            [line] = [w for w in report.warnings if "cannot mesh" in w]
            assert f"{len(failed)} elements" in line and "IfcAnnotation" in line


@pytest.mark.parametrize("schema", ["IFC2X3", "IFC4"])
def test_unnamed_property_sets_are_kept_under_their_global_id(tmp_path: Path, schema: str) -> None:
    # ArchiCAD 9 and 11: `sorted(psets)` met a None name and failed the whole file
    path = unnamed_sets_model(tmp_path / "ac.ifc", schema)
    model = ifcopenshell.open(str(path))
    unnamed = {
        d.GlobalId
        for d in model.by_type("IfcPropertySetDefinition")
        if d.is_a() in ("IfcPropertySet", "IfcElementQuantity") and not d.Name
    }
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        [(psets, qsets, flags)] = store.con.execute(
            "SELECT psets, qsets, flags FROM elements WHERE ifc_class = 'IfcSlab'"
        ).fetchall()
    psets, qsets = json.loads(psets), json.loads(qsets)
    assert json.loads(flags) == {"IsExternal": False, "LoadBearing": True}
    assert {"Layer": "Slab 1"} in psets.values() and {"Zone": "A"} in psets.values()
    assert {"Code": "SL"} in psets.values()  # the type's unnamed set, inherited
    assert qsets["BaseQuantities"] == {"NetVolume": 4.0}
    keys = {k for k in [*psets, *qsets] if k.startswith("(unnamed ")}
    assert keys == {f"(unnamed {g})" for g in unnamed}
    assert report.counts["odd_items_by_kind"] == {"unnamed_set": len(unnamed)}


@pytest.mark.parametrize("schema", ["IFC2X3", "IFC4"])
def test_names_written_as_derived_are_meshed(tmp_path: Path, schema: str) -> None:
    # Renga: `Requested type <string> does not match actual type <derived> at index 2`
    path = derived_names_model(tmp_path / "renga.ifc", schema)
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        rows = store.con.execute(
            "SELECT ifc_class, geometry_status, name FROM elements WHERE name IS NULL"
        ).fetchall()
        relations = store.count("element_relations", "kind = 'hosts'")
    assert sorted(r[0] for r in rows) == sorted(RENGA_STARRED)
    assert {r[1] for r in rows} == {"ok"}
    assert report.counts["failed"] == 0 and relations == 1  # the wall hosts the window
    assert report.counts["odd_items_by_kind"] == {"starred_attribute": len(RENGA_STARRED)}


@pytest.mark.parametrize("schema", ["IFC2X3", "IFC4"])
def test_spaces_are_meshed_or_keep_their_quantities(tmp_path: Path, schema: str) -> None:
    path = spaces_model(tmp_path / "spaces.ifc", schema)
    assert "\\X2\\" in path.read_text()  # the Chinese names are escaped in the file
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        spaces = _keyed(
            store,
            "SELECT name, geometry_status, volume, storey, qsets FROM elements "
            "WHERE ifc_class = 'IfcSpace'",
        )
        [(building, height)] = store.con.execute("SELECT name, height FROM buildings").fetchall()
        [storey] = store.con.execute("SELECT name FROM storeys").fetchall()
    assert building == "通辽大厦" and storey == ("一层",)
    assert set(spaces) == {"卧室", "厨房", "门厅"}
    # the body in the Plan context (passed over by the iterator) is meshed too
    assert spaces["卧室"][0] == spaces["厨房"][0] == "ok"
    assert spaces["厨房"][1] == pytest.approx(12.0 * 2.8)  # its Qto volume
    # the 2D-only hall: no geometry, its quantities kept, never "failed"
    status, _, storey_name, qsets = spaces["门厅"]
    assert status == "none" and storey_name == "一层"
    assert json.loads(qsets)["Qto_SpaceBaseQuantities"]["NetFloorArea"] == 6.0
    assert report.counts["failed"] == 0
    assert report.counts["odd_items_by_kind"] == {"meshed_alone": 1, "space_not_meshed": 1}
    assert height == pytest.approx(3.0)  # the wall's, not the spaces'


@pytest.mark.slow
def test_duplex_spaces_change_no_footprint_or_height(tmp_path: Path) -> None:
    # duplex's 21 spaces are meshed and stored; without them the building is the same
    path = IFC / "duplex.ifc"
    model = ifcopenshell.open(str(path))
    spaces = model.by_type("IfcSpace")
    assert len(spaces) == 21
    for space in spaces:
        space.Representation = None
    bare = tmp_path / "duplex-without-spaces.ifc"
    model.write(str(bare))
    measured = []
    for source in (path, bare):
        with Store.create(tmp_path / f"{source.stem}.duckdb", "EPSG:26916") as store:
            ingest(store, source)
            measured.append(
                store.con.execute(
                    "SELECT ST_AsText(footprint), ground_z, height, storeys_above, "
                    "gross_floor_area FROM buildings"
                ).fetchall()
                + store.con.execute(
                    "SELECT name, height, floor_area, counted FROM storeys ORDER BY name"
                ).fetchall()
            )
            n = store.count(
                "meshes", "owner_id IN (SELECT id FROM elements WHERE ifc_class = 'IfcSpace')"
            )
            assert n == (21 if source == path else 0)
    assert measured[0] == measured[1]


def test_odd_values_are_kept_as_far_as_read(tmp_path: Path) -> None:
    path = odd_values_model(tmp_path / "odd.ifc")
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        [(psets, type_name)] = store.con.execute(
            "SELECT psets, type_name FROM elements WHERE name = 'W0'"
        ).fetchall()
        [(proxy_id,)] = store.con.execute(
            "SELECT global_id FROM elements WHERE name = 'NO-GUID'"
        ).fetchall()
        [(elevation,)] = store.con.execute("SELECT elevation FROM storeys").fetchall()
    odd = json.loads(psets)["Odd"]
    assert odd["Layers"] == ["gypsum", "brick"] and odd["Finish"] == ["Matte"]
    assert odd["Colour"] is None and odd["Plain"] == "yes" and odd["(unnamed)"] == 7.0
    assert odd["Range"]["UpperBoundValue"] == 2.0 and "Empty" not in odd
    assert type_name == "Bare type"  # a type object without property sets
    assert proxy_id.startswith("#") and elevation == 0.0
    assert report.counts["odd_items_by_kind"] == {
        "starred_attribute": 1,
        "missing_global_id": 1,
        "unknown_unit": 1,
        "unreadable_property": 1,
        "unnamed_property": 1,
    }


def test_nested_assemblies_and_mapped_items(tmp_path: Path) -> None:
    path = structure_model(tmp_path / "s.ifc", "IFC4")
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        ingest(store, path)
        storeys = dict(
            store.con.execute(
                "SELECT name, storey FROM elements WHERE ifc_class <> 'IfcWall'"
            ).fetchall()
        )
        aggregates = store.count("element_relations", "kind = 'aggregates'")
        columns = store.con.execute(
            "SELECT geometry_status, volume FROM elements WHERE ifc_class = 'IfcColumn'"
        ).fetchall()
        empty = store.con.execute(
            "SELECT counted, floor_area FROM storeys WHERE name = 'F2 (empty)'"
        ).fetchall()
    # parts of an assembly inside an assembly stand in the outer one's storey
    assert storeys["B0"] == storeys["B1"] == storeys["P"] == storeys["Chord"] == "F1"
    assert storeys["Outside storeys"] is None and storeys["Nowhere"] is None
    assert aggregates == 4
    assert columns == [("ok", pytest.approx(0.27))] * 2  # mapped items
    assert empty == [(False, 0.0)]


@pytest.mark.parametrize(
    "schema,given,year",
    [("IFC4", "2024", 2024), ("IFC2X3", "建于2019年", 2019), ("IFC4", "unknown", None)],
)
def test_the_year_of_construction_is_read(
    store: Store, tmp_path: Path, schema: str, given: str, year: int | None
) -> None:
    b, storey = storeyed(schema)
    b.box("IfcWall", "W", (0.0, 0.0, 0.0), (5.0, 0.2, 3.0), storey)
    b.pset(b.building, "Pset_BuildingCommon", {"YearOfConstruction": given})
    ingest(store, b.write(tmp_path / "m.ifc"))
    assert store.con.execute("SELECT year_built FROM buildings").fetchall() == [(year,)]
