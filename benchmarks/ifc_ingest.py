"""IFC ingest beside the kernel's floor.

For each sample: the full `cim` ingest (open, geometry, properties, quantities, store writes)
beside a bare ifcopenshell geometry iteration of the same file with the same settings (open +
iterate with one thread per core + copy the buffers), each in a fresh process, with peak
memory (max RSS). The ingest runs as `cim ingest` does: its executor's workers (one per core)
mesh chunks of the products while the ingesting process reads the properties; the workers are
started first, as the CLI starts them, and their start is reported apart (``--workers 1``
meshes in the ingesting process instead). Each process
does its work several times: "cold" is the first run (it pays one-time library set-up: DuckDB's
first Arrow scan, pyproj's database, lazy imports), "warm" the fastest of the 2-5 runs after it,
which is what an operator ingesting many files sees for every file after the first. Also the
default opencascade kernel, with the summed mesh volume of each kernel (they differ where
opencascade's triangles are wound inconsistently). Target: full ingest within 1.5x of the bare
iteration.

    .venv/bin/python benchmarks/ifc_ingest.py [FILES...] [--tower STOREYS] [--workers N]
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

    from ingest.ifc.mesh import geometry_settings

    t0 = time.perf_counter()
    model = ifcopenshell.open(path)
    settings = geometry_settings()  # the very same settings
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


def full(path: str, executor: Any) -> dict[str, float]:
    from cim.store import Store
    from ingest import IngestOptions, registry, run_ingest

    registry()  # import the ingesters first: the bare run's imports are not timed either
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create(Path(tmp) / "b.duckdb", "EPSG:3857")
        t0 = time.perf_counter()
        report = run_ingest(store, Path(path), IngestOptions(), executor)
        seconds = time.perf_counter() - t0
        [(vol,)] = store.con.execute(
            "SELECT sum(volume) FROM elements WHERE json_extract_string(quantity_source, "
            "'$.volume') = 'mesh'"
        ).fetchall()
        store.close()
    return {"seconds": seconds, "shapes": report.counts["meshed"], "volume": vol or 0.0}


def child(mode: str, path: str, once: bool = False, workers: int | None = None) -> None:
    executor: Any = None
    pool_seconds = 0.0
    if mode == "full":
        from cim.executor import get_executor
        from ingest.ifc import INGESTER

        # as `cim ingest` does: the executor (one worker per core unless --workers), started
        # at the beginning of the command; its start is paid once per command, reported apart
        t0 = time.perf_counter()
        executor = get_executor(None, workers)
        executor.start([INGESTER.worker_module])  # what the workers run
        list(executor.map(abs, range(2 * executor.workers)))  # every worker up
        pool_seconds = time.perf_counter() - t0

    def work() -> dict[str, float]:
        return full(path, executor) if mode == "full" else bare(path, mode)

    if once:  # a large model: one run, its time is what counts
        first = work()
        out = {**first, "cold": first["seconds"], "warm_runs": 0}
    else:
        out = repeated(work)
    out["worker_mb"] = 0.0
    if executor is not None:
        out["workers"] = executor.workers
        out["worker_mb"] = max((_peak_mb(pid) for pid in _worker_pids(executor)), default=0.0)
        executor.close()
    out["pool_seconds"] = pool_seconds
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _worker_pids(executor: Any) -> list[int]:
    """The local pool's worker processes (children of the forkserver, not of this process, so
    RUSAGE_CHILDREN does not see them)."""
    pool = getattr(executor, "_pool", None)
    return list(getattr(pool, "_processes", {}) or {})


def _peak_mb(pid: int) -> float:
    """A live process's peak resident set (Linux VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(mode: str, path: Path, once: bool = False, workers: int | None = None) -> dict[str, float]:
    extra = [*(["--once"] if once else []), *([f"--workers={workers}"] if workers else [])]
    r = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path), *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def tower(path: Path, storeys: int, walls: int = 100) -> int:
    """An IFC4 tower of ``storeys`` storeys, each a square ring of ``walls`` 4 m walls with a
    window in an opening through each, and a slab: how the ingest scales with a model's size
    (the samples are small). Returns the number of products."""
    import ifcopenshell.api.aggregate
    import ifcopenshell.api.context
    import ifcopenshell.api.feature
    import ifcopenshell.api.geometry
    import ifcopenshell.api.project
    import ifcopenshell.api.pset
    import ifcopenshell.api.root
    import ifcopenshell.api.spatial
    import ifcopenshell.api.type
    import ifcopenshell.api.unit
    import numpy as np

    api = ifcopenshell.api
    f = api.project.create_file(version="IFC4")
    project = api.root.create_entity(f, ifc_class="IfcProject", name="Tower")
    api.unit.assign_unit(f)
    model = api.context.add_context(f, context_type="Model")
    body = api.context.add_context(
        f, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=model
    )
    site = api.root.create_entity(f, ifc_class="IfcSite", name="Site")
    building = api.root.create_entity(f, ifc_class="IfcBuilding", name="Tower")
    api.aggregate.assign_object(f, products=[site], relating_object=project)
    api.aggregate.assign_object(f, products=[building], relating_object=site)
    for p in (site, building):
        api.geometry.edit_object_placement(f, product=p)
    wall_type = api.root.create_entity(f, ifc_class="IfcWallType", name="EXT-250")
    pset = api.pset.add_pset(f, product=wall_type, name="Pset_WallCommon")
    api.pset.edit_pset(f, pset=pset, properties={"IsExternal": True, "ThermalTransmittance": 0.3})
    wall_rep = api.geometry.add_wall_representation(
        f, context=body, length=4.0, height=3.0, thickness=0.25
    )
    hole_rep = api.geometry.add_wall_representation(
        f, context=body, length=1.2, height=1.4, thickness=0.6
    )
    window_rep = api.geometry.add_wall_representation(
        f, context=body, length=1.2, height=1.4, thickness=0.1
    )
    side = walls // 4
    span = 4.0 * side
    turns = [np.eye(3), np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])]
    turns += [turns[1] @ turns[1], turns[1] @ turns[1] @ turns[1]]
    n = 0
    for s in range(storeys):
        z = 3.0 * s
        storey = api.root.create_entity(f, ifc_class="IfcBuildingStorey", name=f"L{s + 1}")
        storey.Elevation = z
        api.aggregate.assign_object(f, products=[storey], relating_object=building)
        api.geometry.edit_object_placement(f, product=storey, matrix=_at(np.eye(3), (0, 0, z)))
        ring = []
        for i in range(4 * side):
            k, j = divmod(i, side)
            start = [(4.0 * j, 0), (span, 4.0 * j), (span - 4.0 * j, span), (0, span - 4.0 * j)][k]
            m = _at(turns[k], (*start, z))
            wall = api.root.create_entity(f, ifc_class="IfcWall", name=f"W{s + 1}-{i}")
            api.geometry.edit_object_placement(f, product=wall, matrix=m)
            api.geometry.assign_representation(f, product=wall, representation=wall_rep)
            hole = api.root.create_entity(f, ifc_class="IfcOpeningElement")
            api.geometry.edit_object_placement(f, product=hole, matrix=_shift(m, (1.4, -0.2, 0.9)))
            api.geometry.assign_representation(f, product=hole, representation=hole_rep)
            api.feature.add_feature(f, feature=hole, element=wall)
            window = api.root.create_entity(f, ifc_class="IfcWindow", name=f"Win{s + 1}-{i}")
            api.geometry.edit_object_placement(
                f, product=window, matrix=_shift(m, (1.4, 0.07, 0.9))
            )
            api.geometry.assign_representation(f, product=window, representation=window_rep)
            api.feature.add_filling(f, opening=hole, element=window)
            api.spatial.assign_container(f, products=[wall, window], relating_structure=storey)
            ring.append(wall)
            n += 3
        api.type.assign_type(f, related_objects=ring, relating_type=wall_type)
        slab = api.root.create_entity(f, ifc_class="IfcSlab", name=f"S{s + 1}")
        api.geometry.edit_object_placement(f, product=slab, matrix=_at(np.eye(3), (0, 0, z - 0.2)))
        outline = [(0.0, 0.0), (span, 0.0), (span, span), (0.0, span)]
        slab_rep = api.geometry.add_slab_representation(
            f, context=body, depth=0.2, polyline=outline
        )
        api.geometry.assign_representation(f, product=slab, representation=slab_rep)
        api.spatial.assign_container(f, products=[slab], relating_structure=storey)
        n += 1
    f.write(str(path))
    return n


def _at(rotation: Any, origin: Any) -> Any:
    import numpy as np

    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = origin
    return m


def _shift(m: Any, local: Any) -> Any:
    import numpy as np

    out = m.copy()
    out[:3, 3] = m[:3, 3] + m[:3, :3] @ np.asarray(local, dtype=float)
    return out


def _workers_mb(result: dict[str, float]) -> str:
    """Memory of the workers beside the ingesting process: their number x the largest one."""
    n = int(result.get("workers", 1))
    return f"{n}x{result['worker_mb']:.0f}" if n > 1 else "-"


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="IFC files (default: the samples)")
    parser.add_argument(
        "--tower",
        type=int,
        metavar="STOREYS",
        help="also a generated tower of STOREYS x 301 products, ingested once (how it scales)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="the ingest's executor workers, as `cim ingest --workers` (default: one per core; "
        "1 meshes in the ingesting process)",
    )
    args = parser.parse_args(argv)
    files = args.files or sorted((ROOT / "samples" / "ifc").glob("*.ifc"))
    header = (
        f"{'file':<22}{'ingest s':>9}{'bare s':>8}{'ratio':>7}{'cold':>7}{'occ s':>7}"
        f"{'ingest MB':>10}{'+workers':>9}{'bare MB':>8}  shapes  (mesh volume hybrid / occ, m3)"
    )
    print(header)
    worst = worst_cold = 0.0
    pool = []
    for f in files:
        # two processes of each, interleaved so that a busy spell of the machine hits both
        fulls, bares = [], []
        for _ in range(2):
            fulls.append(run("full", f, workers=args.workers))
            bares.append(run("hybrid-cgal-simple-opencascade", f))
        pool.extend((d["pool_seconds"], d["workers"]) for d in fulls)
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
            f"{occ['seconds']:>7.2f}{best_full['peak_mb']:>10.0f}{_workers_mb(best_full):>9}"
            f"{best_bare['peak_mb']:>8.0f}"
            f"  {int(best_full['shapes']):>5}  ({best_bare['volume']:.2f} / {occ['volume']:.2f})"
        )
    print(
        f"worst ingest/bare ratio: {worst:.2f} warm, {worst_cold:.2f} cold (first file of a "
        f"process); target <= 1.5"
    )
    if pool:
        starts = [sec for sec, _ in pool]
        print(
            f"executor: {pool[0][1]} worker(s); starting them took {min(starts):.2f}-"
            f"{max(starts):.2f} s, once per `cim ingest` (overlapping its imports), not timed "
            f"above"
        )
    if args.tower:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"tower_{args.tower}.ifc"
            t0 = time.perf_counter()
            n = tower(path, args.tower)
            size, took = path.stat().st_size / 1e6, time.perf_counter() - t0
            print(f"generated {path.name}: {n:,} products, {size:.1f} MB in {took:.0f} s")
            one_full = run("full", path, once=True, workers=args.workers)
            one_bare = run("hybrid-cgal-simple-opencascade", path, once=True)
            print(
                f"{path.name:<22}{one_full['seconds']:>9.2f}{one_bare['seconds']:>8.2f}"
                f"{one_full['seconds'] / one_bare['seconds']:>7.2f}  (one run each)"
                f"{one_full['peak_mb']:>10.0f}{_workers_mb(one_full):>9}{one_bare['peak_mb']:>8.0f}"
                f"  {int(one_full['shapes']):>5}"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        flags = sys.argv[4:]
        n = next((int(a.split("=")[1]) for a in flags if a.startswith("--workers=")), None)
        child(sys.argv[2], sys.argv[3], once="--once" in flags, workers=n)
    else:
        main(sys.argv[1:])
