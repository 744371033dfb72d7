"""Rooftop PV throughput: a generated district with shading, and rays/s with and without Embree.

1. ``--buildings`` (default 1,000) generated LoD1 footprints (the tiles benchmark's district:
   rectangles and L-shapes in superblocks north-east of Tongliao's centre, EPSG:4550, with
   heights) are ingested, then ``cim analyze pv`` runs on all of them in this process
   (``run_analyzer`` with the pv analyzer: facets, the site's year of weather, shading rays
   against the buildings within the radius, PVWatts, the write): buildings/s and the time
   spent casting rays. Target: the 1,000-building district in under 2 minutes. Then again
   (``--all``) with the shading rays on a pool of ``--workers`` processes (default 2).
2. The same rays through trimesh's numpy engine (no embreex) for the first ``--numpy``
   buildings (default 20; it is about 150x slower): rays/s beside Embree's on the same buildings.

    .venv/bin/python benchmarks/pv.py [--buildings 1000] [--workers 2] [--numpy 20] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 120.0


def _tiles_benchmark() -> ModuleType:
    """The tiles benchmark's district generator (loaded by path: benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("bench_tiles", ROOT / "benchmarks" / "tiles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load {one:.1f} / {five:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--buildings", type=int, default=1000)
    parser.add_argument("--numpy", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()

    from cim.analyze import run_analyzer
    from cim.analyze.pv import PvAnalyzer
    from cim.analyze.shading import ray_engine
    from cim.executor import LocalExecutor, SerialExecutor
    from cim.store import Store
    from ingest import IngestOptions, run_ingest

    bench = _tiles_benchmark()
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        tmp = Path(d)
        n = args.buildings
        print(f"== 1. {n:,} LoD1 buildings -> cim analyze pv ({_load()})", flush=True)
        geoms, fields, _ = bench.city(n)
        path = tmp / "district.parquet"
        bench.write_geoparquet(path, geoms, fields)
        store = Store.create(tmp / "d.duckdb", "EPSG:4550", origin=bench.TONGLIAO)
        run_ingest(store, path, IngestOptions(role="buildings"), SerialExecutor())
        t0 = time.perf_counter()
        analyzer = PvAnalyzer()
        report = run_analyzer(store, analyzer)
        seconds = time.perf_counter() - t0
        verdict = "met" if seconds <= TARGET_SECONDS else "NOT MET"
        city = report["city"]
        print(
            f"{report['computed']:,} buildings in {seconds:.1f} s: "
            f"{report['computed'] / seconds:,.1f} buildings/s (target: the district in "
            f"{TARGET_SECONDS:.0f} s: {verdict}); engine {ray_engine()}",
            flush=True,
        )
        print(
            f"rays: {analyzer.rays:,} in {analyzer.ray_seconds:.2f} s "
            f"({analyzer.rays / max(analyzer.ray_seconds, 1e-9) / 1e6:.2f} M rays/s); "
            f"sun bins {len(analyzer._bins.directions) if analyzer._bins else 0}",
            flush=True,
        )
        print(
            f"district: {city['usable_area_m2']:,.0f} m2 usable roof, {city['kwp']:,.0f} kWp, "
            f"{city['mwh_per_year']:,.0f} MWh/yr, {city['kwh_per_kwp']} kWh/kWp",
            flush=True,
        )
        pool = LocalExecutor(args.workers)
        t0 = time.perf_counter()
        fanned = run_analyzer(store, PvAnalyzer(), everything=True, executor=pool)
        pooled = time.perf_counter() - t0
        pool.close()
        print(
            f"again with the rays on {args.workers} workers: {fanned['computed']:,} buildings "
            f"in {pooled:.1f} s ({seconds / pooled:.2f}x) ({_load()})",
            flush=True,
        )
        t0 = time.perf_counter()
        again = run_analyzer(store, PvAnalyzer())
        print(
            f"second run: {again['computed']} recomputed, {again['unchanged']:,} unchanged in "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )

        k = min(args.numpy, n)
        print(f"\n== 2. rays/s, Embree vs numpy, on the first {k} buildings", flush=True)
        ids = [s.building_id for s in PvAnalyzer().subjects(store)][:k]
        for engine in ("embree", "numpy"):
            if engine == "embree" and ray_engine() != "embree":
                print("embree: embreex is not installed", flush=True)
                continue
            a = PvAnalyzer(engine=engine)
            subjects = {s.building_id: s for s in a.subjects(store)}
            t0 = time.perf_counter()
            for bid in ids:
                a.compute(store, subjects[bid])
            print(
                f"{engine}: {a.rays:,} rays in {a.ray_seconds:.2f} s "
                f"({a.rays / max(a.ray_seconds, 1e-9) / 1e6:.3f} M rays/s); "
                f"{k} buildings in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        store.close()


if __name__ == "__main__":
    main()
