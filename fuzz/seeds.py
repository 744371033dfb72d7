"""Builds the seed corpus, ``fuzz/corpus/<harness>/``: small files (a few KB) built the way the
tests build theirs, or cut from the samples (a few features or points, never a whole sample).

``python -m fuzz.seeds`` rewrites the folders; the result is committed, so a run of
``make fuzz`` needs nothing but the repository.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import laspy
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely
from pyproj import CRS

from fuzz.gis import STORE_CRSS, SUFFIXES, join_parts
from tests.ifc_models import wall_model
from tests.test_gis import cityjson

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SAMPLES = ROOT / "samples"


def _owner(f: Any) -> Any:
    """The user IFC2X3's owner history needs (ifcopenshell.api asks the caller for one)."""
    found = f.by_type("IfcPersonAndOrganization")
    if found:
        return found[0]
    org = f.createIfcOrganization(Name="cim")
    return f.createIfcPersonAndOrganization(f.createIfcPerson(FamilyName="Seed"), org)


def _application(f: Any) -> Any:
    found = f.by_type("IfcApplication")
    if found:
        return found[0]
    return f.createIfcApplication(_owner(f).TheOrganization, "0.1", "cim fuzz seeds", "cim")


def _ifc(out: Path, tmp: Path) -> None:
    import ifcopenshell.api.owner.settings as owner

    wall_model(out / "wall_ifc4.ifc")
    owner.get_user, owner.get_application = _owner, _application
    wall_model(out / "wall_ifc2x3_mm.ifc", schema="IFC2X3", millimetres=True)
    wall_model(
        out / "wall_map_conversion.ifc",
        map_conversion={"Eastings": 500000.0, "Northings": 4830000.0, "OrthogonalHeight": 0.0},
    )


def _las(path: Path, point_format: int, version: str, crs: str, n: int = 40) -> None:
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([870000.0, 6618000.0, 0.0])
    header.add_crs(CRS.from_user_input(crs))
    rng = np.random.default_rng(point_format)
    las = laspy.LasData(header)
    las.x = 870000.0 + rng.uniform(0, 20, n)
    las.y = 6618000.0 + rng.uniform(0, 20, n)
    las.z = 100.0 + rng.uniform(0, 10, n)
    las.classification = rng.choice([1, 2, 6], n).astype(np.uint8)
    las.intensity = rng.integers(0, 1000, n).astype(np.uint16)
    las.write(str(path))


def _lidar(out: Path, tmp: Path) -> None:
    _las(out / "pf3_wkt.las", 3, "1.2", "EPSG:2154")
    _las(out / "pf3_wkt.laz", 3, "1.2", "EPSG:2154")
    _las(out / "pf6_v14.las", 6, "1.4", "EPSG:2154")
    _las(out / "pf7_v14.laz", 7, "1.4", "EPSG:2154")


def _cityjson(out: Path, tmp: Path) -> None:
    cityjson(out / "box.city.json", 458000.0, 5551000.0, 10.0, 12.0)


def _cut(src: Path, layer: str | None, dst: Path, driver: str, n: int = 4, **options: Any) -> None:
    meta, table = pyogrio.read_arrow(src, layer=layer, max_features=n)
    pyogrio.write_arrow(
        table,
        dst,
        layer=layer or dst.stem,
        driver=driver,
        crs=meta["crs"],
        geometry_type=meta["geometry_type"],
        geometry_name=meta["geometry_name"] or "geometry",
        **options,
    )


def _small_sqlite(path: Path) -> None:
    """SQLite's smallest pages: a GeoPackage of a few features in a few KB, not 100."""
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("PRAGMA page_size = 512")
    con.execute("VACUUM")
    con.close()


def _gis_seed(out: Path, name: str, suffix: str, crs: str, body: bytes) -> None:
    selector = SUFFIXES.index(suffix) | (STORE_CRSS.index(crs) << 4)
    (out / name).write_bytes(bytes([selector]) + body)


def _gis(out: Path, tmp: Path) -> None:
    dover = SAMPLES / "gis" / "delaware_buildings.geojson"
    doc = json.loads(dover.read_text())
    doc["features"] = doc["features"][:4]
    _gis_seed(out, "dover.geojson", ".geojson", "EPSG:32618", json.dumps(doc).encode())
    prague = SAMPLES / "gis" / "bubenec.gpkg"
    layer = str(pyogrio.list_layers(prague)[0][0])
    _cut(prague, layer, tmp / "prague.gpkg", "GPKG", n=2, layer_options={"SPATIAL_INDEX": "NO"})
    _small_sqlite(tmp / "prague.gpkg")
    _gis_seed(out, "prague.gpkg", ".gpkg", "EPSG:32633", (tmp / "prague.gpkg").read_bytes())
    _cut(prague, layer, tmp / "prague.fgb", "FlatGeobuf")
    _gis_seed(out, "prague.fgb", ".fgb", "EPSG:32633", (tmp / "prague.fgb").read_bytes())
    shp = next((SAMPLES / "lidar" / "lidarprod").glob("*.shp"))
    _cut(shp, None, tmp / "footprints.shp", "ESRI Shapefile")
    parts = [(tmp / f"footprints{ext}").read_bytes() for ext in (".shp", ".shx", ".dbf", ".prj")]
    _gis_seed(out, "lidarprod.shp", ".shp", "EPSG:2154", join_parts(parts))
    # GeoParquet: the pyogrio wheel's GDAL has no Parquet driver; written as the spec says
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in doc["features"]])
    table = pa.table({"id": list(range(len(geoms))), "geometry": shapely.to_wkb(geoms)})
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}},
    }
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(table, tmp / "dover.parquet")
    _gis_seed(out, "dover.parquet", ".parquet", "EPSG:32618", (tmp / "dover.parquet").read_bytes())


def _options(out: Path, tmp: Path) -> None:
    texts = {
        "anchor": "122.26,43.62,180,0",
        "anchor_short": "122.26, 43.62",
        "epsg": "EPSG:4550",
        "digits": "32633",
        "proj": "+proj=utm +zone=33 +datum=WGS84 +units=m",
        "wkt": CRS.from_epsg(2154).to_wkt(),
        "gcj": "GCJ02",
    }
    for name, text in texts.items():
        (out / name).write_text(text)


def _gcj02(out: Path, tmp: Path) -> None:
    points = {
        "beijing": [116.397, 39.909],
        "shanghai_tongliao": [121.47, 31.23, 122.26, 43.62],
        "edge_of_box": [72.004, 0.8293, 137.8347, 55.8271],
        "outside": [2.35, 48.85, -74.0, 40.7],
    }
    for name, values in points.items():
        (out / name).write_bytes(np.asarray(values, dtype=np.float64).tobytes())


BUILDERS = {
    "ifc": _ifc,
    "lidar": _lidar,
    "cityjson": _cityjson,
    "gis": _gis,
    "options": _options,
    "gcj02": _gcj02,
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in BUILDERS.items():
            out = CORPUS / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            build(out, Path(tmp))
            sizes = sorted(p.stat().st_size for p in out.iterdir())
            print(f"{name}: {len(sizes)} seeds, {sum(sizes):,} bytes (largest {sizes[-1]:,})")


if __name__ == "__main__":
    main()
