"""GIS ingest speed: features/s for 100,000 generated footprints and for the real sample layers.

Each run is a full ``run_ingest`` into a fresh store (sha256, one transaction, reading,
reprojection, validity check, attribute mapping, bulk insert, linking), timed end to end.

    .venv/bin/python benchmarks/gis_ingest.py [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely
from pyproj import CRS, Transformer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cim.executor import SerialExecutor  # noqa: E402
from cim.store import Store  # noqa: E402
from ingest import IngestOptions, run_ingest  # noqa: E402

SAMPLES = ROOT / "samples"
TARGET = 20_000  # features/s


def footprints(n: int, seed: int = 5) -> tuple[np.ndarray, dict[str, Any]]:
    """n random non-overlapping rectangles (one per 25 m grid cell) in EPSG:32633 near Prague,
    with heights, floor counts, names and uses."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    x0 = 455000.0 + (i % side) * 25.0 + rng.uniform(0, 5, n)
    y0 = 5545000.0 + (i // side) * 25.0 + rng.uniform(0, 5, n)
    w = rng.uniform(6, 19, n)
    h = rng.uniform(6, 19, n)
    geoms = shapely.box(x0, y0, x0 + w, y0 + h)
    fields = {
        "height": np.round(rng.uniform(3, 80, n), 2),
        "floors": rng.integers(1, 25, n).astype(np.int32),
        "name": np.array([f"b{k}" for k in range(n)], dtype=object),
        "use": rng.choice(np.array(["residential", "office", "retail"], dtype=object), n),
    }
    return geoms, fields


def write_gpkg(path: Path, geoms: np.ndarray, fields: dict[str, Any], crs: str) -> None:
    pyogrio.raw.write(
        str(path),
        geometry=shapely.to_wkb(geoms),
        field_data=list(fields.values()),
        fields=list(fields),
        crs=crs,
        geometry_type="Polygon",
        layer="buildings",
        driver="GPKG",
    )


def write_geoparquet(
    path: Path, geoms: np.ndarray, fields: dict[str, Any], epsg: int = 32633
) -> None:
    """Polygons and their fields as GeoParquet 1.1 (WKB) in ``epsg``."""
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "crs": CRS.from_epsg(epsg).to_json_dict(),
            }
        },
    }
    table = pa.table({**fields, "geometry": shapely.to_wkb(geoms)})
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), path)


def run(
    path: Path, store_crs: str, tmp: Path, before: Path | None = None, **options: Any
) -> tuple[int, float, int]:
    """Ingest ``path`` into a fresh store (after ``before``, untimed); features, seconds, links."""
    store_path = tmp / f"bench_{path.stem}_{len(list(tmp.iterdir()))}.duckdb"
    store = Store.create(store_path, store_crs)
    try:
        if before is not None:
            run_ingest(store, before, IngestOptions(), SerialExecutor())
        t0 = time.perf_counter()
        report = run_ingest(store, path, IngestOptions(**options), SerialExecutor())
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    n = sum(v["written"] for v in report.counts["layers"].values())
    return n, seconds, int(report.counts.get("linked", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    rows: list[tuple[str, int, float, int]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # warm-up (imports, PROJ database, DuckDB extension), not timed
        run(SAMPLES / "gis" / "delaware_buildings.geojson", "EPSG:32618", tmp)
        geoms, fields = footprints(args.n)
        to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
        ll = shapely.transform(
            geoms, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1]))
        )
        cases = [
            ("generated GPKG, EPSG:32633 (no reprojection)", "gen_utm.gpkg", geoms, "gpkg"),
            ("generated GPKG, EPSG:4326 -> EPSG:32633", "gen_ll.gpkg", ll, "gpkg"),
            ("generated GeoParquet, EPSG:32633", "gen.parquet", geoms, "parquet"),
        ]
        for label, name, g, kind in cases:
            path = tmp / name
            if kind == "gpkg":
                crs = "EPSG:32633" if g is geoms else "EPSG:4326"
                write_gpkg(path, g, fields, crs)
            else:
                write_geoparquet(path, g, fields)
            n, s, linked = run(path, "EPSG:32633", tmp)
            rows.append((label, n, s, linked))
        # a second source of the same buildings, shifted 1 m: every footprint is linked
        shifted = tmp / "gen_shifted.gpkg"
        write_gpkg(shifted, shapely.transform(geoms, lambda xy: xy + 1.0), fields, "EPSG:32633")
        n, s, linked = run(shifted, "EPSG:32633", tmp, before=tmp / "gen_utm.gpkg")
        rows.append(("generated GPKG, 2nd source over the 1st (IoU link)", n, s, linked))
        real: list[tuple[str, Path, str, dict[str, Any]]] = [
            ("bubenec.gpkg (4 layers)", SAMPLES / "gis" / "bubenec.gpkg", "EPSG:32633", {}),
            (
                "delaware_buildings.geojson",
                SAMPLES / "gis" / "delaware_buildings.geojson",
                "EPSG:32618",
                {},
            ),
            (
                "lidarprod footprints (.shp)",
                SAMPLES / "lidar" / "lidarprod" / "870000_6618000.subset.postIA.shp",
                "EPSG:2154",
                {"role": "buildings"},
            ),
        ]
        for label, path, crs, opts in real:
            n, s, linked = run(path, crs, tmp, **opts)
            rows.append((label, n, s, linked))
    print(f"{'file':52} {'features':>9} {'linked':>7} {'seconds':>8} {'features/s':>11}")
    for label, n, s, linked in rows:
        print(f"{label:52} {n:9d} {linked:7d} {s:8.3f} {n / s:11,.0f}")
    generated = [n / s for label, n, s, _ in rows if label.startswith("generated")]
    verdict = "meets" if min(generated) >= TARGET else "MISSES"
    print(
        f"generated footprints: {min(generated):,.0f}-{max(generated):,.0f} features/s, "
        f"{verdict} the target of {TARGET:,} features/s"
    )


if __name__ == "__main__":
    main()
