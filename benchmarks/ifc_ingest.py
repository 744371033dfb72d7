"""IFC ingest beside the kernel's floor.

For each sample: the full `cim` ingest (open, geometry, properties, quantities, store writes)
beside a bare ifcopenshell geometry iteration of the same file with the same settings (open +
iterate + copy the buffers), each in a fresh process, with peak memory (max RSS). Each process
does its work several times: "cold" is the first run (it pays one-time library set-up: DuckDB's
first Arrow scan, pyproj's database, lazy imports), "warm" the fastest of the 2-5 runs after it,
which is what an operator ingesting many files sees for every file after the first. Also the
default opencascade kernel, with the summed mesh volume of each kernel (they differ where
opencascade's triangles are wound inconsistently). Target: full ingest within 1.5x of the bare
iteration.

    .venv/bin/python benchmarks/ifc_ingest.py [FILES...]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def repeated(work: Any) -> dict[str, float]:
    """The first run ("cold") and the fastest of the warm runs after it: at least two, up to
    five while they take under two seconds in all (the machine is shared and noisy; the
    fastest run is the one least disturbed, for the ingest and the bare iteration alike)."""
    first = work()
    warm = [work(), work()]
    while len(warm) < 5 and sum(w["seconds"] for w in warm) < 2.0:
        warm.append(work())
    best = min(warm, key=lambda w: w["seconds"])
    return {**best, "cold": first["seconds"], "warm_runs": len(warm)}


def bare(path: str, library: str) -> dict[str, float]:
    import multiprocessing

    import ifcopenshell
    import ifcopenshell.geom
    import numpy as np

    from ingest.ifc import _Ingest

    t0 = time.perf_counter()
    model = ifcopenshell.open(path)
    settings = _Ingest._settings()  # the very same settings
    it = ifcopenshell.geom.iterator(
        settings, model, multiprocessing.cpu_count(), geometry_library=library
    )
    volume = 0.0
    n = 0
    if it.initialize():
        while True:
            g = it.get().geometry
            v = np.frombuffer(g.verts_buffer, dtype=np.float64).reshape(-1, 3)
            f = np.frombuffer(g.faces_buffer, dtype=np.int32).reshape(-1, 3)
            tri = v[f]
            volume += abs(
                float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6
            )
            n += 1
            if not it.next():
                break
    return {"seconds": time.perf_counter() - t0, "shapes": n, "volume": volume}


def full(path: str) -> dict[str, float]:
    from cim.executor import SerialExecutor
    from cim.store import Store
    from ingest import IngestOptions, registry, run_ingest

    registry()  # import the ingesters first: the bare run's imports are not timed either
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create(Path(tmp) / "b.duckdb", "EPSG:3857")
        t0 = time.perf_counter()
        report = run_ingest(store, Path(path), IngestOptions(), SerialExecutor())
        seconds = time.perf_counter() - t0
        [(vol,)] = store.con.execute(
            "SELECT sum(volume) FROM elements WHERE json_extract_string(quantity_source, "
            "'$.volume') = 'mesh'"
        ).fetchall()
        store.close()
    return {"seconds": seconds, "shapes": report.counts["meshed"], "volume": vol or 0.0}


def child(mode: str, path: str) -> None:
    out = repeated(lambda: full(path) if mode == "full" else bare(path, mode))
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run(mode: str, path: Path) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    files = [Path(a) for a in argv] or sorted((ROOT / "samples" / "ifc").glob("*.ifc"))
    header = (
        f"{'file':<22}{'ingest s':>9}{'bare s':>8}{'ratio':>7}{'cold':>7}{'occ s':>7}"
        f"{'ingest MB':>10}{'bare MB':>9}  shapes  (mesh volume hybrid / occ, m3)"
    )
    print(header)
    worst = worst_cold = 0.0
    for f in files:
        # two processes of each, interleaved so that a busy spell of the machine hits both
        fulls, bares = [], []
        for _ in range(2):
            fulls.append(run("full", f))
            bares.append(run("hybrid-cgal-simple-opencascade", f))
        best_full = min(fulls, key=lambda d: d["seconds"])
        best_bare = min(bares, key=lambda d: d["seconds"])
        occ = run("opencascade", f)
        ratio = best_full["seconds"] / best_bare["seconds"]
        cold = best_full["cold"] / best_bare["cold"]
        worst = max(worst, ratio)
        worst_cold = max(worst_cold, cold)
        print(
            f"{f.name:<22}{best_full['seconds']:>9.2f}{best_bare['seconds']:>8.2f}{ratio:>7.2f}"
            f"{cold:>7.2f}"
            f"{occ['seconds']:>7.2f}{best_full['peak_mb']:>10.0f}{best_bare['peak_mb']:>9.0f}"
            f"  {int(best_full['shapes']):>5}  ({best_bare['volume']:.2f} / {occ['volume']:.2f})"
        )
    print(
        f"worst ingest/bare ratio: {worst:.2f} warm, {worst_cold:.2f} cold (first file of a "
        f"process); target <= 1.5"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:])
