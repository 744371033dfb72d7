"""Georeferencing degrades, never fails: models georeferenced in a CRS PROJ can only
approximate here, or in a geographic CRS, or outside the store's area (issue #22).

Each model is built with ifcopenshell.api (``tests/ifc_models.py``), its coordinate operation
edited by hand where the api has none (IfcRigidOperation, IfcGeographicCRS). Positions are
checked against pyproj computations that take another path than the ingest (PROJ's own choice
of operation at transform time; geodesics on the ellipsoid instead of a local projection).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.geolocation as ugeo
import numpy as np
import pytest
from pyproj import CRS, Geod, Transformer
from pyproj.transformer import AreaOfInterest, TransformerGroup

from cim.executor import SerialExecutor
from cim.store import Store
from ingest import IngestOptions, run_ingest
from tests.ifc_models import to_rigid_operation, wall_model

#: the wall of ``wall_model(wall_at=(10, 20, 0))``: 5 m along x, 0.2 m thick, 3 m high
WALL_XY = [(x, y) for x in (10.0, 15.0) for y in (20.0, 20.2)]


def ingest(store: Store, path: Path) -> Any:
    return run_ingest(store, path, IngestOptions(), SerialExecutor())


def placed(store: Store) -> tuple[tuple[float, ...], str, dict[str, Any]]:
    """The wall's box in the project CRS, the placement's method and its params."""
    [box] = store.con.execute("SELECT xmin, ymin, zmin, xmax, ymax, zmax FROM elements").fetchall()
    [(method, params)] = store.con.execute("SELECT method, params FROM placements").fetchall()
    return box, method, json.loads(params)


def box_of(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    xs, ys = zip(*points, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def projected_model(tmp_path: Path, crs: str, e0: float, n0: float) -> Path:
    return wall_model(
        tmp_path / "w.ifc",
        wall_at=(10.0, 20.0, 0.0),
        crs_name=crs,
        map_conversion={"Eastings": e0, "Northings": n0, "OrthogonalHeight": 100.0},
    )


def rigid_model(tmp_path: Path, crs: str, first: float, second: float, height: float) -> Path:
    """IFC4X3: an IfcRigidOperation from the model to the geographic CRS ``crs``, the model's
    origin at (first, second) in the CRS's axis order, in degrees."""
    path = wall_model(
        tmp_path / "w.ifc",
        schema="IFC4X3",
        wall_at=(10.0, 20.0, 0.0),
        map_conversion={"Eastings": 0.0, "Northings": 0.0, "OrthogonalHeight": 0.0},
    )
    return to_rigid_operation(path, first, second, height, geographic_crs=crs)


def geodesic_corners(
    lon: float, lat: float, ellps: str, geo: int, project: str
) -> list[tuple[float, float]]:
    """The wall's corners in the project CRS: metres east/north of the origin walked along
    geodesics (not through a projection, as the ingest does), then PROJ's own choice."""
    geod = Geod(ellps=ellps)
    out = Transformer.from_crs(geo, project, always_xy=True)
    corners = []
    for x, y in WALL_XY:
        lo, la, _ = geod.fwd(lon, lat, math.degrees(math.atan2(x, y)), math.hypot(x, y))
        corners.append(out.transform(lo, la))
    return corners


def test_gauss_kruger_zone_3_into_utm_32n_uses_the_best_available_transformation(
    tmp_path: Path,
) -> None:
    """DHDN / GK zone 3 in Karlsruhe: PROJ's best operation to ETRS89 needs a grid not installed
    here; the next one is used, and recorded with its stated accuracy."""
    e0, n0 = 3457000.0, 5428000.0
    path = projected_model(tmp_path, "EPSG:31467", e0, n0)
    with Store.create(tmp_path / "s.duckdb", "EPSG:25832") as store:
        report = ingest(store, path)
        box, method, params = placed(store)
    assert report.status == "ingested" and method == "map_conversion"
    accuracy = params["transformation_accuracy_m"]
    assert "DHDN to ETRS89" in params["transformation"] and 0 < accuracy <= 3
    assert params["transformation_proj"].startswith("proj=pipeline")
    group = TransformerGroup(
        31467, 25832, always_xy=True, area_of_interest=AreaOfInterest(8.3, 48.9, 8.5, 49.1)
    )
    if not group.best_available:  # no grid is installed here: the fallback is said
        assert params["missing_grids"] and params["best_transformation"]
        assert params["best_transformation_accuracy_m"] < accuracy
        [line] = [w for w in report.warnings if "not installed" in w]
        assert params["missing_grids"][0] in line and f"stated accuracy {accuracy:g} m" in line
    expected = box_of(
        [
            Transformer.from_crs(31467, 25832, always_xy=True).transform(e0 + x, n0 + y)
            for x, y in WALL_XY
        ]
    )
    got = (box[0], box[1], box[3], box[4])
    assert np.allclose(got, expected, atol=accuracy), (got, expected)
    assert box[2] == pytest.approx(100.0, abs=0.01)


@pytest.mark.parametrize(
    ("crs", "datum"), [("EPSG:2438", "Beijing 1954"), ("EPSG:2386", "Xian 1980")]
)
def test_old_chinese_datums_into_cgcs2000_are_placed_by_a_ballpark_that_says_so(
    tmp_path: Path, crs: str, datum: str
) -> None:
    """Beijing 1954 / Xian 1980 GK CM 123E (Tongliao) into CGCS2000: PROJ has no datum shift
    here, only a ballpark of unknown accuracy, and the source says so."""
    e0, n0 = 440270.0, 4831950.0
    path = projected_model(tmp_path, crs, e0, n0)
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        box, method, params = placed(store)
    assert report.status == "ingested" and method == "map_conversion"
    assert "Ballpark" in params["transformation"]
    assert params["transformation_accuracy_m"] is None
    [line] = [w for w in report.warnings if "ballpark" in w]
    assert datum in line and "China 2000" in line
    out = Transformer.from_crs(crs, "EPSG:4550", always_xy=True)
    expected = box_of([out.transform(e0 + x, n0 + y) for x, y in WALL_XY])
    assert np.allclose((box[0], box[1], box[3], box[4]), expected, atol=0.01)


@pytest.mark.parametrize(
    ("geo", "ellps", "lat", "lon", "store_crs"),
    [
        (4258, "GRS80", 52.5163, 13.3777, "EPSG:25833"),  # Berlin, UTM 33N
        (4258, "GRS80", 52.5163, 13.3777, "EPSG:3857"),  # Berlin, Web Mercator
        (4490, "GRS80", 43.62, 122.26, "EPSG:4550"),  # Tongliao, CGCS2000 GK CM 123E
    ],
)
def test_rigid_operation_to_a_geographic_crs(
    tmp_path: Path, geo: int, ellps: str, lat: float, lon: float, store_crs: str
) -> None:
    """IfcRigidOperation to EPSG:4258 / 4490: latitude first, as EPSG orders their axes."""
    path = rigid_model(tmp_path, f"EPSG:{geo}", lat, lon, 34.0)
    with Store.create(tmp_path / "s.duckdb", store_crs) as store:
        report = ingest(store, path)
        box, method, params = placed(store)
    assert report.status == "ingested" and method == "rigid_operation"
    assert params["map_crs"] == f"EPSG:{geo}"
    assert (params["lon"], params["lat"]) == (lon, lat)
    expected = box_of(geodesic_corners(lon, lat, ellps, geo, store_crs))
    stated = params.get("transformation_accuracy_m") or 0.0
    assert np.allclose((box[0], box[1], box[3], box[4]), expected, atol=0.01 + stated)
    assert box[2] == pytest.approx(34.0, abs=0.01) and box[5] == pytest.approx(37.0, abs=0.01)


def test_geographic_coordinates_in_the_other_order_are_read_so_with_a_warning(
    tmp_path: Path,
) -> None:
    """EPSG:4326 is latitude first; an exporter that writes longitude first still lands in
    Tongliao (122.26E lies beyond any latitude), and the warning says how it was read."""
    path = rigid_model(tmp_path, "EPSG:4326", 122.26, 43.62, 0.0)
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        _, _, params = placed(store)
    assert report.status == "ingested"
    assert (params["lon"], params["lat"]) == (122.26, 43.62)
    assert any("other way round" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("store_crs", "make"),
    [
        # a Tongliao model (CGCS2000 GK) into a store in Germany
        ("EPSG:25832", lambda p: projected_model(p, "EPSG:4550", 440270.0, 4831950.0)),
        # a rigid operation to Berlin (ETRS89 degrees) into a Tongliao store
        ("EPSG:4550", lambda p: rigid_model(p, "EPSG:4258", 52.5163, 13.3777, 34.0)),
    ],
)
def test_georeference_outside_the_store_area_needs_placement(
    tmp_path: Path, store_crs: str, make: Any
) -> None:
    path = make(tmp_path)
    with Store.create(tmp_path / "s.duckdb", store_crs) as store:
        report = ingest(store, path)
        box, method, params = placed(store)
        origin = store.project_origin
        [(crs,)] = store.con.execute("SELECT crs FROM sources").fetchall()
    assert report.status == "needs_placement" and method == "none" and crs is None
    assert "map_lon" in params and "map_lat" in params
    [line] = [w for w in report.warnings if "outside the area" in w]
    assert "placed at the project origin" in line and "anchor" in line
    assert math.hypot(box[0] - origin[0] - 10.0, box[1] - origin[1] - 20.0) < 0.01


def test_an_unknown_map_crs_gives_way_to_the_site(tmp_path: Path) -> None:
    """A CRS name PROJ does not know is not a failure: the site's RefLatitude/RefLongitude
    place the model, and the warnings say why the conversion was not used."""
    path = wall_model(
        tmp_path / "w.ifc",
        crs_name="Local grid of the site office",
        map_conversion={"Eastings": 1000.0, "Northings": 2000.0, "OrthogonalHeight": 0.0},
    )
    model = ifcopenshell.open(str(path))
    [site] = model.by_type("IfcSite")
    site.RefLatitude = ugeo.dd2dms(43.62, use_us=True)
    site.RefLongitude = ugeo.dd2dms(122.26, use_us=True)
    model.write(str(path))
    with Store.create(tmp_path / "s.duckdb", "EPSG:4550") as store:
        report = ingest(store, path)
        _, method, _ = placed(store)
    assert report.status == "ingested" and method == "site_reflatlon"
    assert any("does not know" in w and "Local grid" in w for w in report.warnings)


def test_no_usable_transformation_needs_placement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where PROJ has no usable operation at all (here: every candidate refused), the model
    waits at the project origin instead of failing the file."""
    import cim.georef

    monkeypatch.setattr(cim.georef, "best_transformation", lambda *a, **k: None)
    path = projected_model(tmp_path, "EPSG:31467", 3457000.0, 5428000.0)
    with Store.create(tmp_path / "s.duckdb", "EPSG:25832") as store:
        report = ingest(store, path)
        _, method, params = placed(store)
    assert report.status == "needs_placement" and method == "none"
    assert params["map_crs"] == "EPSG:31467"
    assert any("no transformation" in w for w in report.warnings)


def test_transformation_recorded_in_the_params_is_the_one_that_places(tmp_path: Path) -> None:
    """The recorded PROJ pipeline, run on its own, gives the placed position."""
    e0, n0 = 3457000.0, 5428000.0
    path = projected_model(tmp_path, "EPSG:31467", e0, n0)
    with Store.create(tmp_path / "s.duckdb", "EPSG:25832") as store:
        ingest(store, path)
        box, _, params = placed(store)
    pipeline = Transformer.from_pipeline(params["transformation_proj"])
    # easting first, as the ingest runs it (the CRSs' own axis order is northing first)
    pts = [pipeline.transform(e0 + x, n0 + y) for x, y in WALL_XY]
    assert np.allclose((box[0], box[1], box[3], box[4]), box_of(pts), atol=0.001)
    assert CRS.from_user_input(params["map_crs"]).to_epsg() == 31467
