"""A store for the server's tests, built once per session: Bubenec's footprints (EPSG:32633), the
duplex model placed beside them with an anchor, IfcOpenHouse waiting for placement, the
buildings and BIM tilesets, and an operator's and two designers' tokens."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pyproj import Transformer

from cim.executor import SerialExecutor
from cim.store import Store
from cim.tokens import create_token
from ingest import Anchor, IngestOptions, run_ingest
from tests.conftest import SAMPLES
from tests.ifc_models import wall_model
from tiles.build import build_tilesets

BUBENEC = SAMPLES / "gis" / "bubenec.gpkg"
DUPLEX = SAMPLES / "ifc" / "duplex.ifc"
OPEN_HOUSE = SAMPLES / "ifc" / "IfcOpenHouse.ifc"
CRS = "EPSG:32633"


@dataclass(frozen=True)
class City:
    folder: Path
    operator: str
    designer: str
    other_designer: str
    #: an empty spot east of the city (EPSG:32633 metres) where uploaded models go
    free_spot: tuple[float, float]

    @property
    def path(self) -> Path:
        return self.folder / "city.duckdb"

    def copy_to(self, folder: Path) -> Path:
        """The store and its folders copied (a store moves with its folders)."""
        shutil.copytree(self.folder, folder, dirs_exist_ok=True)
        return folder / "city.duckdb"


def build_city(folder: Path) -> City:
    folder.mkdir(parents=True, exist_ok=True)
    store = Store.create(folder / "city.duckdb", CRS)
    try:
        run_ingest(store, BUBENEC, IngestOptions(), SerialExecutor())
        row = store.con.execute("SELECT max(xmax), avg(ymin) FROM buildings").fetchone()
        assert row is not None
        east, north = float(row[0]) + 150.0, float(row[1])
        lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(east, north)
        anchor = Anchor.parse(f"{lon:.6f},{lat:.6f},200,0")
        run_ingest(store, DUPLEX, IngestOptions(anchor=anchor), SerialExecutor())
        run_ingest(store, OPEN_HOUSE, IngestOptions(), SerialExecutor())  # no georeference
        build_tilesets(store, ["buildings", "bim"])
        _, operator = create_token(store, "operator", "ops")
        _, designer = create_token(store, "designer", "anna")
        _, other = create_token(store, "designer", "bo")
    finally:
        store.close()
    return City(folder, operator, designer, other, (east + 150.0, north))


def upload_model(folder: Path, city: City, name: str = "pavilion.ifc", length: float = 8.0) -> Path:
    """A small IFC model georeferenced (IfcMapConversion, EPSG:32633) to the city's free spot:
    one wall ``length`` by 6 m (a revision of the model: another length)."""
    e, n = city.free_spot
    folder.mkdir(parents=True, exist_ok=True)
    return wall_model(
        folder / name,
        length=length,
        thickness=6.0,
        crs_name=CRS,
        map_conversion={"Eastings": e, "Northings": n, "OrthogonalHeight": 200.0},
    )
