"""GIS by content, not by suffix: every vector format this GDAL build reads (SpatiaLite, FileGDB,
MapInfo, DXF, GML, KML, CSV, a zipped shapefile ...) ingests with the right counts and
coordinates; CSV takes its CRS from a .prj or --crs; a format whose driver is missing, a folder
that is no dataset and a ZIP of several datasets are refused in one line, the store unchanged."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import CRS, Transformer

from cim.errors import CrsError, InputFileError, UnsupportedFile
from cim.executor import SerialExecutor
from cim.store import Store
from ingest import IngestOptions, IngestReport, choose_ingester, run_ingest
from ingest.gis import INGESTER
from tests.conftest import MakeStore, snapshot

CRS_UTM = "EPSG:32632"
#: three 10 x 8 m footprints in UTM 32N, 20 m apart
BOXES = [shapely.box(500000 + i * 20, 5400000, 500010 + i * 20, 5400008) for i in range(3)]
BOUNDS = (500000.0, 5400000.0, 500050.0, 5400008.0)
HEIGHTS = np.array([6.0, 9.0, 12.0])


def ingest(store: Store, path: Path, **options: Any) -> IngestReport:
    return run_ingest(store, path, IngestOptions(**options), SerialExecutor())


def _lonlat(geoms: list[Any]) -> list[Any]:
    to_wgs84 = Transformer.from_crs(CRS_UTM, "EPSG:4326", always_xy=True)
    return [
        shapely.transform(g, lambda xy: np.column_stack(to_wgs84.transform(*xy.T))) for g in geoms
    ]


def write(path: Path, driver: str, crs: str | None = CRS_UTM, **kw: Any) -> Path:
    """The three footprints, with a height field unless the driver takes none (DXF)."""
    geoms = _lonlat(BOXES) if crs == "EPSG:4326" else BOXES
    fields = {} if driver == "DXF" else {"height": HEIGHTS}
    pyogrio.raw.write(
        str(path),
        geometry=np.asarray(shapely.to_wkb(np.asarray(geoms, dtype=object)), dtype=object),
        field_data=list(fields.values()),
        fields=list(fields),
        crs=crs,
        geometry_type="Polygon",
        driver=driver,
        **kw,
    )
    return path


def _zip(archive: Path, files: list[Path], folder: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for f in files:
            z.write(f, f"{folder}{f.name}")
    return archive


def _shapefile(tmp: Path) -> list[Path]:
    (tmp / "parts").mkdir()
    shp = write(tmp / "parts" / "footprints.shp", "ESRI Shapefile")
    return sorted(shp.parent.glob("footprints.*"))


def _spatialite(tmp: Path) -> Path:
    return write(tmp / "buildings.sqlite", "SQLite", dataset_options={"SPATIALITE": "YES"})


def _csv_wkt(tmp: Path) -> Path:
    path = tmp / "buildings.csv"
    rows = [f'{i},"{g.wkt}",{h}' for i, (g, h) in enumerate(zip(BOXES, HEIGHTS, strict=True))]
    path.write_text("id,WKT,height\n" + "\n".join(rows) + "\n")
    path.with_suffix(".prj").write_text(CRS.from_user_input(CRS_UTM).to_wkt("WKT1_ESRI"))
    return path


#: name -> (the driver it needs, how to make it in a temporary folder, options, bounds tolerance)
FORMATS: dict[str, tuple[str, Callable[[Path], Path], dict[str, str], float]] = {
    "spatialite": ("SQLite", _spatialite, {}, 1e-6),
    "spatialite named .db": (
        "SQLite",
        lambda t: _spatialite(t).rename(t / "kadaster.db"),
        {},
        1e-6,
    ),
    "filegdb folder": ("OpenFileGDB", lambda t: write(t / "city.gdb", "OpenFileGDB"), {}, 1e-6),
    "mapinfo tab": ("MapInfo File", lambda t: write(t / "buildings.tab", "MapInfo File"), {}, 1e-3),
    "mapinfo mif": ("MapInfo File", lambda t: write(t / "buildings.mif", "MapInfo File"), {}, 1e-3),
    "dxf": (
        "DXF",
        lambda t: write(t / "plan.dxf", "DXF", None, layer="entities"),
        {"crs": CRS_UTM},
        1e-6,
    ),
    "gml": ("GML", lambda t: write(t / "buildings.gml", "GML"), {}, 1e-6),
    "kml": ("KML", lambda t: write(t / "buildings.kml", "KML", "EPSG:4326"), {}, 1e-3),
    "geojson named .txt": (
        "GeoJSON",
        lambda t: write(t / "buildings.geojson", "GeoJSON").rename(t / "export.txt"),
        {},
        1e-6,
    ),
    "csv with wkt and .prj": ("CSV", _csv_wkt, {}, 1e-6),
    "zipped shapefile": ("ESRI Shapefile", lambda t: _zip(t / "shp.zip", _shapefile(t)), {}, 1e-6),
    "zipped shapefile in a folder": (
        "ESRI Shapefile",
        lambda t: _zip(t / "download.zip", _shapefile(t), "data/v1/"),
        {},
        1e-6,
    ),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")  # DXF has no CRS
@pytest.mark.parametrize("name", list(FORMATS))
def test_each_gdal_format_ingests(make_store: MakeStore, tmp_path: Path, name: str) -> None:
    driver, make, options, tolerance = FORMATS[name]
    if driver not in pyogrio.list_drivers(read=True):
        pytest.skip(f"this GDAL build has no {driver} driver")
    path = make(tmp_path)
    assert INGESTER.supports(path)
    assert choose_ingester(path).kind == "gis"
    store = make_store(CRS_UTM)
    report = ingest(store, path, role="buildings", **options)
    assert report.kind == "gis" and report.counts["buildings"] == 3
    bounds = store.con.execute(
        "SELECT min(ST_XMin(footprint)), min(ST_YMin(footprint)), max(ST_XMax(footprint)), "
        "max(ST_YMax(footprint)), sum(ST_Area(footprint)) FROM buildings"
    ).fetchone()
    assert bounds is not None
    assert bounds[:4] == pytest.approx(BOUNDS, abs=tolerance)
    assert bounds[4] == pytest.approx(3 * 80.0, abs=0.01)
    if driver != "DXF":  # DXF carries no attribute fields
        heights = store.con.execute("SELECT height FROM buildings ORDER BY height").fetchall()
        assert [h[0] for h in heights] == pytest.approx(HEIGHTS.tolist())
    again = ingest(store, path, role="buildings", **options)
    assert again.outcome == "unchanged"  # a folder hashes like a file


def _csv_lonlat(path: Path, x: str = "lon", y: str = "lat") -> Path:
    pts = Transformer.from_crs(CRS_UTM, "EPSG:4326", always_xy=True)
    lon, lat = pts.transform([500005.0, 500025.0], [5400004.0, 5400004.0])
    path.write_text(
        f"name,{x},{y},类型\n"
        + "".join(
            f"p{i},{a!r},{b!r},school\n" for i, (a, b) in enumerate(zip(lon, lat, strict=True))
        ),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(("x", "y"), [("lon", "lat"), ("X", "Y"), ("经度", "纬度")])
def test_csv_points_crs_from_option_else_clear_error(
    make_store: MakeStore, tmp_path: Path, x: str, y: str
) -> None:
    path = _csv_lonlat(tmp_path / "schools.csv", x, y)
    store = make_store(CRS_UTM)
    before = snapshot(store)
    with pytest.raises(CrsError, match=r"schools\.csv.*has no CRS: pass --crs"):
        ingest(store, path)
    assert snapshot(store) == before
    report = ingest(store, path, crs="EPSG:4326")
    assert report.counts["pois"] == 2
    xy = store.con.execute(
        "SELECT ST_X(geom), ST_Y(geom) FROM features ORDER BY ST_X(geom)"
    ).fetchall()
    assert xy == [
        pytest.approx((500005.0, 5400004.0), abs=1e-3),
        pytest.approx((500025.0, 5400004.0), abs=1e-3),
    ]


def test_csv_named_txt_is_read_as_csv(make_store: MakeStore, tmp_path: Path) -> None:
    path = _csv_lonlat(tmp_path / "schools.txt")
    assert choose_ingester(path).kind == "gis"
    report = ingest(make_store(CRS_UTM), path, crs="EPSG:4326")
    assert report.counts["pois"] == 2 and report.format == "CSV"


def test_cli_csv_without_crs_asks_for_it(tmp_path: Path) -> None:
    path = _csv_lonlat(tmp_path / "schools.csv")
    store = tmp_path / "c.duckdb"
    cim = [sys.executable, "-m", "cim.cli", "--store", str(store)]
    r = subprocess.run([*cim, "init", "--crs", CRS_UTM], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*cim, "ingest", str(path), "--json"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0
    assert r.stderr.startswith("error: ") and "--crs" in r.stderr and "schools.csv" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run(
        [*cim, "ingest", str(path), "--crs", "EPSG:4326"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def test_missing_driver_is_a_clear_error(
    make_store: MakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _spatialite(tmp_path)
    store = make_store(CRS_UTM)
    before = snapshot(store)
    monkeypatch.setattr(
        "ingest.gis.datasets.read_drivers", lambda: frozenset({"GPKG", "ESRI Shapefile"})
    )
    with pytest.raises(
        UnsupportedFile, match=r"buildings\.sqlite: is a SpatiaLite database.*SQLite driver"
    ):
        ingest(store, path)
    assert snapshot(store) == before


def test_a_format_this_gdal_lacks_names_its_driver(make_store: MakeStore, tmp_path: Path) -> None:
    if "PGeo" in pyogrio.list_drivers():
        pytest.skip("this GDAL build reads personal geodatabases")
    path = tmp_path / "parcels.mdb"
    path.write_bytes(b"\x00\x01\x00\x00Standard Jet DB\x00" + bytes(200))
    with pytest.raises(
        UnsupportedFile, match=r"parcels\.mdb: is an ESRI personal geodatabase.*PGeo"
    ):
        ingest(make_store(CRS_UTM), path)


def test_zip_of_several_datasets_and_plain_folders_are_refused(
    make_store: MakeStore, tmp_path: Path
) -> None:
    gpkg = write(tmp_path / "a.gpkg", "GPKG")
    geojson = write(tmp_path / "b.geojson", "GeoJSON")
    several = _zip(tmp_path / "both.zip", [gpkg, geojson])
    store = make_store(CRS_UTM)
    before = snapshot(store)
    with pytest.raises(InputFileError, match=r"both\.zip: the ZIP archive holds several datasets"):
        ingest(store, several)
    folder = tmp_path / "layers"
    folder.mkdir()
    shutil.copy(gpkg, folder)
    with pytest.raises(InputFileError, match=r"layers: is a folder; give the files"):
        ingest(store, folder)
    assert snapshot(store) == before


def _shapefile_part(path: Path) -> None:
    write(path.with_suffix(".shp"), "ESRI Shapefile")


def _sqlite_without_geometry(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (a INTEGER)")
    con.commit()
    con.close()
    return path


def _zip_of_text(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    return path


#: file name, how to make it -> what the refusal says it looks like
REFUSED: list[tuple[str, Callable[[Path], Any], str]] = [
    (
        "report.pdf",
        lambda p: p.write_bytes(b"%PDF-1.7\n" + bytes(100)),
        "looks like a PDF document",
    ),
    ("photo.bin", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50)), "a PNG image"),
    (
        "data.zip",
        _zip_of_text,
        "a ZIP archive without a shapefile or other GIS dataset (it holds readme.txt)",
    ),
    (
        "table.csv",
        lambda p: p.write_text("id,name\n1,a\n"),
        "text that is not CSV with geometry (columns id, name)",
    ),
    ("roads.prj", _shapefile_part, "a part of a shapefile: give its .shp"),
    ("notes.txt", lambda p: p.write_text("hello"), "looks like plain text"),
    ("app.db", _sqlite_without_geometry, "a SQLite database with no table GDAL reads"),
    (
        "fake.laz",
        lambda p: p.write_bytes(b"not a las file"),
        "is named like a LiDAR cloud, but it looks like plain text",
    ),
    (
        "part.step",
        lambda p: p.write_text(
            "ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('AUTOMOTIVE_DESIGN'));\nENDSEC;\n"
        ),
        "a STEP file of schema AUTOMOTIVE_DESIGN, not IFC",
    ),
    (
        "page.xml",
        lambda p: p.write_text("<?xml version='1.0'?><invoice><total>3</total></invoice>"),
        "an XML document (root element <invoice>)",
    ),
    (
        "config.json",
        lambda p: p.write_text('{"name": "not geo"}'),
        "JSON that is neither GeoJSON nor CityJSON",
    ),
]


@pytest.mark.parametrize(("name", "make", "looks"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refusal_says_what_the_file_looks_like(
    tmp_path: Path, name: str, make: Callable[[Path], Any], looks: str
) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(UnsupportedFile) as err:
        choose_ingester(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a file cim can ingest")
    assert looks in message
    assert "an IFC model (.ifc)" in message and "a LiDAR cloud (.las, .laz)" in message
    assert "a GIS file (" in message and "\n" not in message


def test_cityjson_and_its_sequence_by_content(make_store: MakeStore, tmp_path: Path) -> None:
    from tests.test_gis import cityjson

    doc = json.loads(
        cityjson(tmp_path / "a.city.json", 458000.0, 5551000.0, 10.0, 12.0).read_text()
    )
    single = tmp_path / "download.txt"
    single.write_text(json.dumps(doc))
    header = {k: v for k, v in doc.items() if k not in ("CityObjects", "vertices")}
    feature = {"type": "CityJSONFeature", "id": "b1", "CityObjects": doc["CityObjects"]}
    feature["vertices"] = doc["vertices"]
    sequence = tmp_path / "tiles.dat"
    sequence.write_text(
        json.dumps({**header, "CityObjects": {}, "vertices": []})
        + "\n"
        + json.dumps(feature)
        + "\n"
    )
    for path in (single, sequence):
        assert choose_ingester(path).kind == "gis"
        report = ingest(make_store("EPSG:32633"), path)
        assert report.counts["buildings"] == 1, path.name


def test_csv_in_gb18030_is_refused_saying_so(make_store: MakeStore, tmp_path: Path) -> None:
    path = tmp_path / "学校.csv"
    path.write_bytes("编号,经度,纬度,名称\n1,122.26,43.62,第一中学\n".encode("gb18030"))
    store = make_store("EPSG:4550")
    before = snapshot(store)
    with pytest.raises(
        InputFileError, match=r"学校\.csv: the text is not UTF-8 \(it looks like GB18030"
    ):
        ingest(store, path, crs="EPSG:4490")
    assert snapshot(store) == before
