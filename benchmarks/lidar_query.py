"""Point queries on a large store: "points in this box" and "class-6 points inside this
footprint" at random places of a synthetic survey delivered as LAS tiles (default 100 million
points in 16 tiles, generated here as in lidar_ingest.py) and ingested into one store.

Printed: the ingest (points/s, store size), then for each query its latency over ``--queries``
random places (median and 95th percentile, after one warm-up query) and the points returned.
The box query also runs through the ``points`` view, which reads every point file's footer,
to show what reading only the files whose bounds meet the box (Store.points_from) saves.
Usage::

    .venv/bin/python benchmarks/lidar_query.py                      # 100M points, 16 tiles
    .venv/bin/python benchmarks/lidar_query.py --points 2e7 --tiles 4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lidar_ingest import generate  # noqa: E402  (this folder is on sys.path as the script's)

ORIGIN = (700000.0, 6600000.0)
BUILDING_GRID = 60.0  # generate(): 20 m x 20 m buildings at 20-40 m of every 60 m cell


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"median {np.median(ms):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=float, default=1e8, help="points in the survey")
    parser.add_argument("--tiles", type=int, default=16, help="tiles (a square number)")
    parser.add_argument("--queries", type=int, default=50, help="random places per query")
    parser.add_argument("--box", type=float, default=50.0, help="side of the box query (m)")
    parser.add_argument("--tmp", help="folder for the tiles and the store")
    args = parser.parse_args()
    per_side = math.isqrt(args.tiles)
    if per_side * per_side != args.tiles:
        raise SystemExit(f"--tiles {args.tiles}: give a square number (4, 9, 16 ...)")
    n_tile = int(args.points) // args.tiles
    side = math.sqrt(n_tile / 16.0)  # generate(): 16 points/m2
    if args.tmp:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)

    import scipy.ndimage  # noqa: F401 - as `cim ingest` imports it once

    from cim.executor import SerialExecutor, get_executor
    from cim.model.points import points_in_box, points_in_polygon
    from cim.store import Store
    from ingest import IngestOptions, registry, run_ingest

    registry()
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="cim-lidar-query-") as tmp:
        t0 = time.perf_counter()
        tiles = []
        for i in range(args.tiles):
            origin = (ORIGIN[0] + (i % per_side) * side, ORIGIN[1] + (i // per_side) * side)
            path = Path(tmp) / f"tile_{i:03d}.las"
            generate(path, n_tile, False, origin=origin, seed=i)
            tiles.append(path)
        print(
            f"generated {args.tiles} tiles of {n_tile:,} points ({side:.0f} m square) "
            f"in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        store_path = Path(tmp) / "survey.duckdb"
        store = Store.create(store_path, "EPSG:2154")
        executor = get_executor(None, None)
        executor.start(["ingest.lidar.encode"])
        try:
            t0 = time.perf_counter()
            for path in tiles:
                run_ingest(store, path, IngestOptions(), executor)
            seconds = time.perf_counter() - t0
        finally:
            executor.close()
        total = store.count("points")
        size = store_path.stat().st_size + sum(
            f.stat().st_size for f in store.points_dir.rglob("*.parquet")
        )
        print(
            f"ingested {total:,} points in {seconds:.1f} s ({total / seconds / 1e6:.2f} M/s), "
            f"{store.count('point_files')} point files, store {size / 2**30:.2f} GB "
            f"({size / total:.1f} B/pt)",
            flush=True,
        )

        extent = per_side * side
        b = args.box

        def box_at() -> tuple[float, float, float, float]:
            x0 = ORIGIN[0] + float(rng.uniform(0, extent - b))
            y0 = ORIGIN[1] + float(rng.uniform(0, extent - b))
            return x0, y0, x0 + b, y0 + b

        def footprint_at() -> shapely.Geometry:
            cells = int(extent // BUILDING_GRID)
            i, j = (int(v) for v in rng.integers(0, cells, 2))
            x0 = ORIGIN[0] + i * BUILDING_GRID + 20
            y0 = ORIGIN[1] + j * BUILDING_GRID + 20
            # a footprint a little inside the roof, turned 10 degrees
            return shapely.affinity.rotate(shapely.box(x0 + 2, y0 + 2, x0 + 18, y0 + 18), 10)

        def every_file(*_: float) -> tuple[str, list[object]]:
            return "points", []

        def box_through_points() -> int:
            # the same query, with the FROM item of a store that does not choose files
            with mock.patch.object(store, "points_from", every_file):
                return points_in_box(store, *box_at()).num_rows

        files = store.count("point_files")
        cases = {
            f"points in a {b:.0f} m box": lambda: points_in_box(store, *box_at()).num_rows,
            f"the same through `points` (every one of {files} files)": box_through_points,
            "class-6 points in a footprint": lambda: (
                points_in_polygon(store, footprint_at(), classes=[6]).num_rows
            ),
        }
        for name, run in cases.items():
            rng = np.random.default_rng(7)  # every query at the same places
            run()  # warm-up
            times, rows = [], []
            for _ in range(args.queries):
                t0 = time.perf_counter()
                rows.append(run())
                times.append(time.perf_counter() - t0)
            assert min(rows) > 0, name
            print(
                f"{name:58s} {percentiles(times)}  ({int(np.median(rows)):,} points)",
                flush=True,
            )

        # the survey's building footprints arrive afterwards, as a GIS layer: the ingest gives
        # each one its roof height from the points (one spatial join over the files it needs)
        cells = int(extent // BUILDING_GRID)
        footprints, expected = [], []
        for i in range(cells):
            for j in range(cells):
                x0 = ORIGIN[0] + i * BUILDING_GRID + 20
                y0 = ORIGIN[1] + j * BUILDING_GRID + 20
                footprints.append(shapely.box(x0, y0, x0 + 20, y0 + 20))
                # generate(): a building's height above the ground around it
                expected.append(6.0 + 24.0 * ((i * 7 + math.floor(y0 / 60.0)) % 5) / 4)
        layer = Path(tmp) / "footprints.geojson"
        layer.write_text(
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [
                        {
                            "type": "Feature",
                            "properties": {"ref": k},
                            "geometry": shapely.geometry.mapping(f),
                        }
                        for k, f in enumerate(footprints)
                    ],
                }
            )
        )
        t0 = time.perf_counter()
        report = run_ingest(
            store, layer, IngestOptions(crs="EPSG:2154", role="buildings"), SerialExecutor()
        )
        seconds = time.perf_counter() - t0
        heights = dict(
            store.con.execute(
                "SELECT b.attributes->>'ref', h.height FROM buildings b "
                "JOIN building_heights h ON h.building_id = b.id WHERE h.status = 'ok'"
            ).fetchall()
        )
        error = np.array([abs(heights[str(k)] - e) for k, e in enumerate(expected)])
        print(
            f"{len(footprints):,} footprints ingested in {seconds:.2f} s "
            f"({report.counts.get('buildings', 0):,} buildings, {len(heights):,} with LiDAR roof "
            f"heights); height error against the generated buildings: median "
            f"{np.median(error):.3f} m, max {error.max():.3f} m",
            flush=True,
        )
        store.close()


if __name__ == "__main__":
    main()
