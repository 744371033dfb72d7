"""A small Tongliao city for the page's browser tests, and the real app serving it.

``build_city`` makes a store in EPSG:4550 around (122.263, 43.617): two sample IFC models and a
precast tower (scored by the prefab analyzer with its declaration)
among a street grid of footprints (with names, uses, floors and years), a road network, parks,
land cover, facilities and a district boundary, tiled. ``AppServer`` runs the app of `cim serve`
(``viewer.app.create_app`` over a ``ServerState`` with the CLI's pipeline) under uvicorn in a
thread on a free port of 127.0.0.1. ``upload_model`` writes a small IFC4 building georeferenced
by an IfcMapConversion in EPSG:4550 next to the district, for the upload form.

    python -m tests.page_city /tmp/city.duckdb 8765   # serve it by hand (prints the tokens)
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from cim.analyze import ANALYZERS, run_analyzer
from cim.analyze.prefab import declare
from cim.store import Store
from ingest import Anchor
from tests.conftest import SAMPLES
from tests.ifc_models import TOWER_DECLARATION, ModelBuilder, precast_tower
from tests.test_gis import write_layer
from tests.test_tiles import ingest

ORIGIN = (122.263, 43.617)
CENTRE = (122.2617, 43.6200)
TO_XY = Transformer.from_crs("EPSG:4326", "EPSG:4550", always_xy=True)
USES = ["住宅", "商业", "办公", "学校", "医院"]


def district(
    store: Store, work: Path, attributes: Callable[[np.random.Generator], dict[str, Any]]
) -> None:
    """Two sample models at Tongliao (duplex, LargeBuilding) among the footprints of a street
    grid around them (named 楼 1, 楼 2 ...), each footprint with the ``attributes`` drawn for it
    (after its width and depth, from one generator seeded 7)."""
    ingest(store, SAMPLES / "ifc" / "duplex.ifc", anchor=Anchor.parse("122.2610,43.6200,180,0"))
    ingest(
        store, SAMPLES / "ifc" / "LargeBuilding.ifc", anchor=Anchor.parse("122.2625,43.6200,180,0")
    )
    cx, cy = TO_XY.transform(*CENTRE)
    rng = np.random.default_rng(7)
    boxes: list[Any] = []
    columns: dict[str, list[Any]] = {"name": []}
    for i in range(-4, 5):
        for j in range(-3, 4):
            x, y = cx + i * 45.0, cy + j * 40.0
            if abs(x - cx) < 110 and abs(y - cy) < 35:
                continue  # where the models stand
            w, d = rng.uniform(14, 30), rng.uniform(10, 22)
            boxes.append(shapely.box(x - w / 2, y - d / 2, x + w / 2, y + d / 2))
            for key, value in attributes(rng).items():
                columns.setdefault(key, []).append(value)
            columns["name"].append(f"楼 {len(boxes)}")
    write_layer(work / "district.gpkg", boxes, crs="EPSG:4550", **columns)
    ingest(store, work / "district.gpkg", role="buildings")


def build_city(path: Path, *, gis: bool = True, analyses: tuple[str, ...] = ()) -> Store:
    """The store described above, tiled (buildings, bim); the caller owns it. ``analyses``:
    analyzers run after prefab (``pv`` adds the PV facet tileset)."""
    from tiles.build import build_tilesets

    store = Store.create(path, "EPSG:4550", origin=ORIGIN)
    work = path.with_name(path.stem + ".layers")
    work.mkdir(exist_ok=True)
    cx, cy = TO_XY.transform(*CENTRE)

    def attributes(rng: np.random.Generator) -> dict[str, Any]:
        n = int(rng.choice([3, 6, 11, 18]))
        use = USES[int(rng.integers(len(USES)))]
        return {"floors": n, "height": n * 3.0, "use": use, "year": int(rng.integers(1975, 2024))}

    district(store, work, attributes)
    if gis:
        _gis_layers(store, work, cx, cy)
    # a precast tower with its declaration, scored by the prefab analyzer before tiling
    tower = precast_tower(work / "precast-tower.ifc", "chinese", origin=(cx + 5.0, cy - 30.0))
    ingest(store, tower)
    declaration = work / "precast-tower.prefab.json"
    declaration.write_text(json.dumps(TOWER_DECLARATION, ensure_ascii=False))
    with store.transaction():
        declare(store, declaration)
    run_analyzer(store, ANALYZERS["prefab"]())
    for name in analyses:
        run_analyzer(store, ANALYZERS[name]())
    build_tilesets(store, ["buildings", "bim", *(["pv"] if "pv" in analyses else [])])
    return store


def _gis_layers(store: Store, work: Path, cx: float, cy: float) -> None:
    roads = [
        shapely.LineString([(cx - 220, cy + k * 40 + 20), (cx + 220, cy + k * 40 + 20)])
        for k in range(-4, 4)
    ] + [
        shapely.LineString([(cx + k * 45 + 22.5, cy - 160), (cx + k * 45 + 22.5, cy + 160)])
        for k in range(-5, 5)
    ]
    write_layer(
        work / "roads.gpkg",
        roads,
        crs="EPSG:4550",
        name=[f"路 {i + 1}" for i in range(len(roads))],
        kind=["primary" if i % 3 == 0 else "residential" for i in range(len(roads))],
    )
    ingest(store, work / "roads.gpkg", role="roads")
    parks = [shapely.box(cx + 230, cy - 100, cx + 330, cy + 60)]
    write_layer(work / "parks.gpkg", parks, crs="EPSG:4550", name=["西拉木伦公园"])
    ingest(store, work / "parks.gpkg", role="parks")
    land = [
        shapely.box(cx - 360, cy - 180, cx - 240, cy + 180),
        shapely.box(cx - 220, cy - 260, cx + 220, cy - 180),
    ]
    write_layer(
        work / "landcover.gpkg", land, crs="EPSG:4550", kind=["farmland", "grass"], name=["", ""]
    )
    ingest(store, work / "landcover.gpkg", role="landcover")
    pois = [shapely.Point(cx + 30, cy - 120), shapely.Point(cx - 150, cy + 100)]
    write_layer(
        work / "pois.gpkg",
        pois,
        crs="EPSG:4550",
        name=["社区卫生服务中心", "第五小学"],
        kind=["clinic", "school"],
    )
    ingest(store, work / "pois.gpkg", role="pois")
    boundary = [shapely.box(cx - 380, cy - 280, cx + 350, cy + 200)]
    write_layer(work / "boundary.gpkg", boundary, crs="EPSG:4550", name=["科尔沁区示范片区"])
    ingest(store, work / "boundary.gpkg", role="boundary")


def upload_model(path: Path, name: str = "Upload Tower", at: tuple[float, float] = (0, 0)) -> Path:
    """An IFC4 building of three storeys (slabs and four walls each), 18 x 12 m, georeferenced
    by an IfcMapConversion to EPSG:4550 with its corner at ``at`` metres east/north of the
    district's south-east corner."""
    import ifcopenshell.api.georeference

    cx, cy = TO_XY.transform(*CENTRE)
    e0, n0 = cx + 240.0 + at[0], cy + 90.0 + at[1]
    b = ModelBuilder("IFC4", building=name)
    for k in range(3):
        z = 3.2 * k
        storey = b.storey(f"F{k + 1}", z)
        b.box("IfcSlab", f"S{k + 1}", (0.0, 0.0, z), (18.0, 12.0, 0.2), storey)
        for w, (at_xy, size) in enumerate(
            [
                ((0.0, 0.0), (18.0, 0.25)),
                ((0.0, 11.75), (18.0, 0.25)),
                ((0.0, 0.25), (0.25, 11.5)),
                ((17.75, 0.25), (0.25, 11.5)),
            ]
        ):
            b.box("IfcWall", f"W{k + 1}.{w}", (*at_xy, z + 0.2), (*size, 3.0), storey)
    b.box("IfcRoof", "R", (0.0, 0.0, 9.6), (18.0, 12.0, 0.3), b.storey("Roof", 9.6))
    f = b.file
    ifcopenshell.api.georeference.add_georeferencing(f, name="EPSG:4550")
    ifcopenshell.api.georeference.edit_georeferencing(
        f,
        coordinate_operation={"Eastings": e0, "Northings": n0, "OrthogonalHeight": 180.0},
        projected_crs={"Name": "EPSG:4550"},
    )
    return b.write(path)


def free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class AppServer:
    """The app of `cim serve` over ``store`` under uvicorn, in a thread, on a free port."""

    def __init__(self, store: Store, port: int = 0) -> None:
        import uvicorn

        from cim.cli.serve import CliPipeline
        from cim.executor import SerialExecutor
        from viewer.app import create_app
        from viewer.http import CoalescingHttpToolsProtocol
        from viewer.state import ServerState

        self.state = ServerState(store=store, pipeline=CliPipeline(), executor=SerialExecutor())
        self.sock = free_socket(port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.state.publish(self.url)
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            access_log=False,
            http=CoalescingHttpToolsProtocol,  # as `cim serve` runs it
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.05)
        return self

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows read on a cursor of the test's own (never the writer's connection)."""
        cur = self.state.store.con.cursor()
        try:
            return cur.execute(sql, params or []).fetchall()
        finally:
            cur.close()

    def close(self) -> None:
        """Stops uvicorn, then the state (waits for a running job; closes the store)."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        self.state.close()


def main(argv: list[str]) -> None:
    from cim.tokens import create_token

    path = Path(argv[0])
    store = Store.open(path) if path.exists() else build_city(path)
    _, designer = create_token(store, "designer", "dev designer")
    _, op = create_token(store, "operator", "dev operator")
    server = AppServer(store, int(argv[1]) if len(argv) > 1 else 0).start()
    print(server.url, "designer:", designer, "operator:", op, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main(sys.argv[1:])
