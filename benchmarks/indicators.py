"""City health check throughput: a generated grid town, `cim analyze indicators` on it.

A town of ``--blocks`` x ``--blocks`` blocks of 200 m (default 10: 2 x 2 km), each with 8 homes
of 20 x 20 m (about 800 homes at the default), line roads between the blocks and a road polygon
in every fourth, green land cover in every third block, a park in every fifth, and the six
facility types scattered (one POI per block), written as one GeoPackage (EPSG:32651) and
ingested; then ``run_analyzer`` with the indicators analyzer in this process: the time of the
whole area (road density with the centrelines, land cover overlay, park distances, the life
circle over the road network for the six types) and of a second run (nothing to recompute).

    .venv/bin/python benchmarks/indicators.py [--blocks 10] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio
import shapely

CRS = "EPSG:32651"
X0, Y0 = 420000.0, 4830000.0
BLOCK = 200.0
KINDS = ["kindergarten", "primary_school", "clinic", "grocery", "elderly_care", "sports"]


def _write(path: Path, layer: str, geoms: list[shapely.Geometry], **fields: list[object]) -> None:
    pyogrio.raw.write(
        str(path),
        geometry=np.asarray(shapely.to_wkb(np.asarray(geoms, dtype=object)), dtype=object),
        field_data=[np.asarray(v) for v in fields.values()],
        fields=list(fields),
        crs=CRS,
        geometry_type=geoms[0].geom_type,
        layer=layer,
    )


def town(path: Path, n: int) -> int:
    rng = np.random.default_rng(28)
    size = n * BLOCK
    lines = [
        shapely.LineString([(X0, Y0 + k * BLOCK), (X0 + size, Y0 + k * BLOCK)])
        for k in range(n + 1)
    ] + [
        shapely.LineString([(X0 + k * BLOCK, Y0), (X0 + k * BLOCK, Y0 + size)])
        for k in range(n + 1)
    ]
    _write(path, "roads", lines, highway=["residential"] * len(lines))
    homes, polys, green, parks, pois, kinds = [], [], [], [], [], []
    for i in range(n):
        for j in range(n):
            x, y = X0 + i * BLOCK, Y0 + j * BLOCK
            for k in range(8):
                hx, hy = x + 20 + (k % 4) * 42, y + 30 + (k // 4) * 110
                homes.append(shapely.box(hx, hy, hx + 20, hy + 20))
            if (i + j) % 4 == 0:
                polys.append(shapely.box(x + 6, y + 94, x + BLOCK - 6, y + 106))
            if (i + j) % 3 == 0:
                green.append(shapely.box(x + 20, y + 60, x + 180, y + 90))
            if (i * n + j) % 5 == 0:
                parks.append(shapely.box(x + 20, y + 160, x + 120, y + 190))
            pois.append(shapely.Point(x + rng.uniform(10, 190), y + rng.uniform(10, 190)))
            kinds.append(KINDS[int(rng.integers(len(KINDS)))])
    _write(path, "road_areas", polys, highway=["tertiary"] * len(polys))
    _write(path, "landcover", green, landcover=["green"] * len(green))
    _write(path, "parks", parks, name=[f"park {k}" for k in range(len(parks))])
    _write(path, "pois", pois, amenity=kinds)
    _write(path, "boundary", [shapely.box(X0, Y0, X0 + size, Y0 + size)], name=["town"])
    floors = rng.choice([3, 6, 11, 18, 24], len(homes)).tolist()
    years = rng.integers(1980, 2025, len(homes)).tolist()
    _write(path, "buildings", homes, use=["residential"] * len(homes), floors=floors, year=years)
    return len(homes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()

    from cim.analyze import ANALYZERS, run_analyzer
    from cim.executor import SerialExecutor
    from cim.store import Store
    from ingest import IngestOptions, run_ingest

    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        tmp = Path(d)
        homes = town(tmp / "town.gpkg", args.blocks)
        store = Store.create(tmp / "town.duckdb", CRS)
        run_ingest(store, tmp / "town.gpkg", IngestOptions(), SerialExecutor())
        t0 = time.perf_counter()
        report = run_analyzer(store, ANALYZERS["indicators"](store=store))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_analyzer(store, ANALYZERS["indicators"](store=store))
        second = time.perf_counter() - t0
        store.close()
    one, five, _ = os.getloadavg()
    print(
        f"{args.blocks}x{args.blocks} blocks, {homes} homes: first run {first:.1f} s "
        f"({report['computed']} area), second {second:.2f} s ({again['computed']} computed); "
        f"{os.cpu_count()} cores, load {one:.1f} / {five:.1f}"
    )


if __name__ == "__main__":
    main()
