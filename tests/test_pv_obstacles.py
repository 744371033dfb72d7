"""IFC elements standing on a roof take their place (and a clearance) from the usable PV area
(#27: "IFC elements on the roof"), in a model built here with ifcopenshell.api."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import shapely

from cim.analyze import run_analyzer
from cim.analyze.pv import PvAnalyzer, load_rules
from cim.analyze.roofs import CLEARANCE
from cim.executor import SerialExecutor
from cim.model.analyses import stored
from cim.store import Store
from ingest import Anchor, IngestOptions, run_ingest
from tests.ifc_models import ModelBuilder
from tests.test_pv import LAT, LON

#: the roof: 12 x 10 m, its top 3.3 m up
W, D, TOP = 12.0, 10.0, 3.3


def _house(path: Path, on_roof: list[tuple[str, tuple[float, ...], tuple[float, ...]]]) -> Path:
    """A one-storey box house with a flat IfcRoof and ``on_roof`` elements (class, corner,
    size) standing on it."""
    b = ModelBuilder("IFC4", building="Roof test")
    storey = b.storey("F1", 0.0)
    for k, (at, size) in enumerate(
        [
            ((0.0, 0.0), (W, 0.25)),
            ((0.0, D - 0.25), (W, 0.25)),
            ((0.0, 0.25), (0.25, D - 0.5)),
            ((W - 0.25, 0.25), (0.25, D - 0.5)),
        ]
    ):
        b.box("IfcWall", f"W{k}", (*at, 0.0), (*size, 3.0), storey)
    b.box("IfcRoof", "Roof", (0.0, 0.0, 3.0), (W, D, TOP - 3.0), storey)
    for k, (cls, at, size) in enumerate(on_roof):
        b.box(cls, f"{cls} {k}", at, size, storey)
    return b.write(path)


def _facet(tmp_path: Path, on_roof: list[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = Store.create(tmp_path / "roof.duckdb", "EPSG:4550", origin=(LON, LAT))
    try:
        model = _house(tmp_path / "house.ifc", on_roof)
        opts = IngestOptions(anchor=Anchor(LON, LAT, 180.0, 0.0))
        run_ingest(store, model, opts, SerialExecutor())
        run_analyzer(store, PvAnalyzer())
        [row] = [r for k, r in stored(store, "pv").items() if k != "city"]
        ids = dict(store.con.execute("SELECT name, global_id FROM elements").fetchall())
    finally:
        store.close()
    [facet] = [f for f in row["result"]["facets"] if f["tilt_deg"] < 1 and f["area_m2"] > 50]
    return facet, ids


def test_a_proxy_and_a_railing_on_the_roof_take_their_place_and_a_clearance(
    tmp_path: Path,
) -> None:
    setback = float(load_rules().rule("edge-setback")["setback_m"])
    bare, _ = _facet(tmp_path / "bare", [])
    # the bare roof: the whole rectangle less the setback strip along its edges
    assert bare["area_m2"] == pytest.approx(W * D, rel=0.01)
    assert bare["usable_area_m2"] == pytest.approx((W - 2 * setback) * (D - 2 * setback), rel=0.01)
    assert bare["obstacle_area_m2"] == 0.0 and bare["obstacle_elements"] == []
    # a 2 x 2 x 1.2 m unit west of the middle and a 1.1 m railing, 5 cm thick, 5 m long, in
    # the east part
    plant = ("IfcBuildingElementProxy", (3.0, 4.0, TOP), (2.0, 2.0, 1.2))
    rail = ("IfcRailing", (9.0, 1.0, TOP), (0.05, 5.0, 1.1))
    busy, ids = _facet(tmp_path / "busy", [plant, rail])
    assert sorted(busy["obstacle_elements"]) == sorted(
        [ids["IfcBuildingElementProxy 0"], ids["IfcRailing 1"]]
    )
    # computed here without the analyzer's code: each obstacle's footprint grown by the
    # clearance (a rounded rectangle: its area in closed form), then by the setback, which
    # rounds it further (an offset of an offset: grown by their sum)
    grow = CLEARANCE + setback
    unit = (2.0 + 2 * grow) * (2.0 + 2 * grow) - (4 - math.pi) * grow**2
    inner = shapely.box(setback, setback, W - setback, D - setback)
    railing = shapely.box(9.0, 1.0, 9.05, 6.0).buffer(grow)
    expected = inner.area - unit - inner.intersection(railing).area
    assert busy["usable_area_m2"] == pytest.approx(expected, rel=0.02)
    assert busy["usable_area_m2"] < bare["usable_area_m2"] - 20
    # the roof lost the unit and the railing with their clearance: the unit's footprint is
    # cut from the outline (the sky check: nothing seen above it), the rest is obstacle area
    lost = bare["area_m2"] - busy["area_m2"] + busy["obstacle_area_m2"]
    assert busy["obstacle_area_m2"] > 0
    assert lost == pytest.approx(
        (2 + 2 * CLEARANCE) ** 2
        - (4 - math.pi) * CLEARANCE**2
        + shapely.box(9.0, 1.0, 9.05, 6.0).buffer(CLEARANCE).area,
        rel=0.03,
    )
    # the usable outline the tiles draw has the unit's hole
    [polygon] = busy["usable_outline"]
    assert len(polygon) >= 2  # its exterior and the hole of the unit
