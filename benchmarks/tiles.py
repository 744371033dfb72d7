"""3D Tiles throughput: point clouds, 100,000 LoD1 buildings and the sample IFC models, each
beside its peer in the same run.

1. ``points``: LAS/LAZ -> point tileset. The six Montpellier LAZ tiles (406k points) and a
   generated LAS cloud (``--points``, default 5M): ``cim init``, ``cim ingest``, ``cim tile
   --tileset points`` as the operator runs them (separate processes, wall clock), beside
   ``py3dtiles convert --jobs 2`` of the same files. Tiling alone is the tile command's own
   figure (its build, without the process start); ingest + tile is the wall clock of both
   commands, which is what ``py3dtiles convert`` does in one. Target: ingest + tile at least
   3x py3dtiles.
2. ``buildings``: ``--buildings`` (default 100,000) generated LoD1 footprints (rectangles and
   L-shapes in superblocks north-east of Tongliao's centre, EPSG:4550, with heights) in a
   GeoParquet file, ingested, then ``build_tilesets(store, ['buildings'], executor)`` with the
   local executor (one worker per core, started before the clock): buildings/s, bytes,
   bytes/building. Then one building added (a second file) and one building's height changed,
   each followed by an incremental rebuild (files written against the tileset's files). Then
   the same build again in this process only (no executor) with timers around its stages,
   each stage's time exclusive of the stages it calls; ``--cprofile`` adds cProfile's top
   functions. Target: 5,000 buildings/s (pg2b3dm publishes about 1,400/s on a server).
3. ``ifc``: each sample IFC -> ``cim ingest --anchor`` -> ``cim tile --tileset bim`` (wall
   clock of both commands) beside ``py3dtiles convert model.ifc``. Target: faster on every
   file, and no file fails.

py3dtiles runs from its own virtual environment, made on first use in
``benchmarks/.venv-py3dtiles`` (gitignored; ``--py3dtiles-venv`` puts it elsewhere) with
``py3dtiles[ifc]`` and ``laspy[laszip]``, never lazrs: py3dtiles 12.1.1 hangs on LAZ with RGB
when lazrs decodes (DESIGN.md, known traps).

    .venv/bin/python benchmarks/tiles.py [--parts points,buildings,ifc] [--points 5e6]
        [--buildings 100000] [--no-montpellier] [--cprofile] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# this script's folder is not a place to import from: its name would hide the `tiles` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "samples"
CIM = Path(sys.executable).with_name("cim")
DEFAULT_VENV = ROOT / "benchmarks" / ".venv-py3dtiles"
PY3DTILES_PACKAGES = ["py3dtiles[ifc]", "laspy[laszip]"]
#: py3dtiles' options for the LiDAR files: Lambert-93 in, ECEF out, glTF content as ours
SRS = ["--srs_in", "2154", "--srs_out", "4978", "--spec-version", "1.1"]

POINTS_TARGET = 3.0  # x py3dtiles
BUILDINGS_TARGET = 5_000  # buildings/s
PG2B3DM = 1_400  # buildings/s, published
TONGLIAO = (122.26, 43.62)
#: where each sample model goes in the Tongliao store (as `make demo` places them)
IFC_ANCHORS = {
    "AC20-FZK-Haus.ifc": "122.2600,43.6200,180,0",
    "duplex.ifc": "122.2610,43.6200,180,0",
    "LargeBuilding.ifc": "122.2625,43.6200,180,0",
    "TallBuilding.ifc": "122.2640,43.6200,180,90",
    "IfcOpenHouse.ifc": "122.2650,43.6190,180,0",
}


def load() -> str:
    """The machine's load (it is shared): figures move with it."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min: {five:.1f}) on {os.cpu_count()} cores"


# ---- processes ------------------------------------------------------------------------------
def timed(cmd: list[str | Path], timeout: float = 900) -> tuple[float, int, str, str]:
    """Run ``cmd``: wall seconds, exit code, stdout, stderr."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        return time.perf_counter() - t0, -9, out, f"timed out after {timeout:.0f} s"
    return time.perf_counter() - t0, p.returncode, p.stdout, p.stderr


def cim(store: Path, *args: str | Path) -> tuple[float, dict[str, Any]]:
    """``cim --store STORE ARGS [--json]``: wall seconds and its JSON document (``init``
    prints none)."""
    as_json = args[0] != "init"
    seconds, code, out, err = timed([CIM, "--store", store, *args, *(["--json"] * as_json)])
    if code != 0:
        raise SystemExit(f"cim {' '.join(map(str, args))} failed ({code}): {last_line(err)}")
    doc: dict[str, Any] = json.loads(out) if as_json else {}
    return seconds, doc


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no message)"


def py3dtiles(venv: Path) -> tuple[Path | None, str]:
    """py3dtiles in its own venv, made on first use; (executable, versions) or (None, why)."""
    exe = venv / "bin" / "py3dtiles"
    pip = venv / "bin" / "pip"
    if not exe.exists():
        print(f"installing {' '.join(PY3DTILES_PACKAGES)} in {venv} (first use) ...", flush=True)
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        p = subprocess.run(
            [str(pip), "install", "-q", "--disable-pip-version-check", *PY3DTILES_PACKAGES],
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode != 0 or not exe.exists():
            return None, f"pip install failed: {last_line(p.stderr)}"
    listed = subprocess.run(
        [str(pip), "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    versions = {d["name"].lower(): d["version"] for d in json.loads(listed.stdout or "[]")}
    if "lazrs" in versions:  # the known trap: it hangs on LAZ with RGB
        subprocess.run([str(pip), "uninstall", "-q", "-y", "lazrs"], check=False)
    names = ("py3dtiles", "laspy", "laszip", "ifcopenshell")
    return exe, ", ".join(f"{n} {versions[n]}" for n in names if n in versions)


# ---- 1. points --------------------------------------------------------------------------------
def part_points(args: argparse.Namespace, tmp: Path, peer: Path | None) -> None:
    print(f"\n== 1. LAS/LAZ -> point tileset ({load()})", flush=True)
    if importlib.util.find_spec("tiles.points") is None:
        print("points tileset: not built yet (tiles/points.py is not on this branch); skipped")
        return
    cases: list[tuple[str, list[Path]]] = []
    if not args.no_montpellier:
        files = sorted((SAMPLES / "lidar" / "montpellier").glob("*.laz"))
        cases.append((f"Montpellier, {len(files)} LAZ", files))
    if args.points > 0:
        spec = importlib.util.spec_from_file_location(
            "lidar_ingest", ROOT / "benchmarks" / "lidar_ingest.py"
        )
        assert spec is not None and spec.loader is not None
        lidar_ingest = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lidar_ingest)
        generate = lidar_ingest.generate

        n = int(args.points)
        path = tmp / f"generated_{n}.las"
        t0 = time.perf_counter()
        generate(path, n, laz=False)
        print(
            f"generated {path.name}: {n:,} points, RGB, EPSG:2154, "
            f"{path.stat().st_size / 2**20:,.0f} MB in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        cases.append((f"generated LAS, {n / 1e6:g}M", [path]))
    print(
        f"{'cloud':24} {'points':>10}  {'cim tile alone':>22}  {'cim ingest + tile':>22}  "
        f"{'py3dtiles --jobs 2':>22}  {'ratio':>6}  target >= {POINTS_TARGET:g}x"
    )
    for k, (label, files) in enumerate(cases):
        store = tmp / f"points_{k}.duckdb"
        cim(store, "init", "--crs", "EPSG:2154")
        s_ingest, ingested = cim(store, "ingest", *files)
        n = sum(int(r["counts"].get("points", 0)) for r in ingested["reports"])
        s_tile, tiled = cim(store, "tile", "--tileset", "points")
        r = tiled["tilesets"]["points"]
        build = float(r["seconds"])
        both = s_ingest + s_tile
        peer_text, ratio_text, verdict = "(no py3dtiles)", "", ""
        if peer is not None:
            out = tmp / f"py3dtiles_points_{k}"
            s_peer, code, _, err = timed(
                [peer, "convert", "--out", out, "--overwrite", "--jobs", "2", *SRS, *files]
            )
            if code == 0 and (out / "tileset.json").exists():
                peer_text = f"{n / s_peer / 1e6:5.2f} M/s ({s_peer:6.1f} s)"
                ratio = s_peer / both
                ratio_text = f"{ratio:5.1f}x"
                verdict = "met" if ratio >= POINTS_TARGET else "NOT MET"
            else:
                peer_text = f"failed: {last_line(err)}"
            shutil.rmtree(out, ignore_errors=True)
        print(
            f"{label:24} {n:>10,}  {n / build / 1e6:5.2f} M/s ({build:6.1f} s)  "
            f"{n / both / 1e6:5.2f} M/s ({both:6.1f} s)  {peer_text:>22}  {ratio_text:>6}  "
            f"{verdict}",
            flush=True,
        )
        print(
            f"{'':24} {r['tiles']:,} tiles, {r['bytes'] / 1e6:,.1f} MB "
            f"({r['bytes'] / max(n, 1):.1f} bytes a point); ingest {s_ingest:.1f} s, "
            f"tile command {s_tile:.1f} s (wall, each with its process start)",
            flush=True,
        )


# ---- 2. buildings -------------------------------------------------------------------------------
def city(n: int, seed: int = 23) -> tuple[np.ndarray, dict[str, Any], tuple[float, float]]:
    """``n`` footprints in EPSG:4550 north-east of Tongliao's centre: superblocks of 5 x 4
    parcels of 40 m (200 m x 160 m) between 30 m streets, each block of one kind (villas,
    slabs, towers, commercial L-shapes) and turned by a few degrees; one building a parcel,
    its size and place in the parcel varied. Returns the footprints, their attributes and a
    point in a street."""
    import shapely
    from pyproj import Transformer

    rng = np.random.default_rng(seed)
    x0, y0 = Transformer.from_crs("EPSG:4490", "EPSG:4550", always_xy=True).transform(*TONGLIAO)
    per_block = 20
    blocks = -(-n // per_block)
    side = int(np.ceil(np.sqrt(blocks)))
    pitch_x, pitch_y, parcel = 230.0, 190.0, 40.0
    i = np.arange(n)
    b = i // per_block
    p = i % per_block
    # the city lies north-east of the store's origin (Tongliao): one straddling the origin
    # never finishes tiles.buildings._tree (cells -1 and 0 share no ancestor: -1 >> k == -1)
    bx = x0 + 150.0 + (b % side) * pitch_x
    by = y0 + 130.0 + (b // side) * pitch_y
    kind = rng.choice(4, size=blocks, p=[0.3, 0.4, 0.15, 0.15])[b]  # villa slab tower comm.
    turn = np.radians(rng.uniform(-8, 8, blocks))[b]
    cx = (p % 5 + 0.5) * parcel - 100.0  # parcel centre, block frame
    cy = (p // 5 + 0.5) * parcel - 80.0
    lo = np.array([[8, 7], [24, 10], [18, 18], [20, 20]], dtype=float)[kind]
    hi = np.array([[16, 13], [36, 14], [28, 28], [36, 36]], dtype=float)[kind]
    w = rng.uniform(lo[:, 0], hi[:, 0])
    d = rng.uniform(lo[:, 1], hi[:, 1])
    cx += rng.uniform(-1, 1, n) * (parcel - w) / 2 * 0.8
    cy += rng.uniform(-1, 1, n) * (parcel - d) / 2 * 0.8
    # an L: the outline of a w x d box without its top-right corner (legs t wide); a
    # rectangle: the same seven vertices with the notch folded onto the corner (dropped below)
    t = np.minimum(w, d) * rng.uniform(0.35, 0.6, n)
    ell = (kind == 3) | ((kind == 0) & (rng.random(n) < 0.3))
    tu, tv = np.where(ell, t, w), np.where(ell, t, d)
    zero = np.zeros(n)
    u = np.stack([zero, w, w, tu, tu, zero, zero], axis=1) - w[:, None] / 2
    v = np.stack([zero, zero, tv, tv, d, d, zero], axis=1) - d[:, None] / 2
    px, py = cx[:, None] + u, cy[:, None] + v
    c, s = np.cos(turn)[:, None], np.sin(turn)[:, None]
    xs = bx[:, None] + px * c - py * s
    ys = by[:, None] + px * s + py * c
    geoms = shapely.make_valid(shapely.polygons(np.stack([xs, ys], axis=2)))
    geoms = shapely.normalize(shapely.simplify(geoms, 0.0))  # drop the repeated vertices
    floors = np.select(
        [kind == 0, kind == 1, kind == 2],
        [rng.integers(2, 4, n), rng.integers(6, 19, n), rng.integers(18, 34, n)],
        rng.integers(2, 7, n),
    )
    use = np.array(["residential", "residential", "residential", "commercial"], dtype=object)
    fields = {
        "height": np.round(floors * rng.uniform(2.9, 3.3, n), 1),
        "floors": floors.astype(np.int32),
        "name": np.array([f"bldg {k}" for k in range(n)], dtype=object),
        "use": use[kind],
    }
    street = (float(bx[0] + 100.0 + 15.0), float(by[0]))  # between the first two blocks
    return geoms, fields, street


def write_geoparquet(path: Path, geoms: np.ndarray, fields: dict[str, Any]) -> None:
    """GeoParquet in EPSG:4550, written by the GIS benchmark's writer (loaded by its path: this
    script keeps its own folder off sys.path)."""
    spec = importlib.util.spec_from_file_location(
        "gis_ingest", ROOT / "benchmarks" / "gis_ingest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_geoparquet(path, geoms, fields, epsg=4550)


class Timers:
    """Wall time of wrapped functions, each exclusive of the wrapped functions it calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._stack: list[float] = []
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed_call(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            self._stack.append(0.0)
            try:
                return fn(*a, **k)
            finally:
                elapsed = time.perf_counter() - t0
                inner = self._stack.pop()
                self.seconds[label] += elapsed - inner
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1] += elapsed

        self._undo.append((owner, name, fn))
        setattr(owner, name, timed_call)

    def undo(self) -> None:
        for owner, name, fn in reversed(self._undo):
            setattr(owner, name, fn)
        self._undo.clear()


@contextlib.contextmanager
def stage_timers() -> Iterator[Timers]:
    import cim.tilefiles
    import tiles.build
    import tiles.buildings
    import tiles.encode
    import tiles.frame
    import tiles.gltf

    t = Timers()
    b, e = tiles.buildings, tiles.encode
    for owner, name, label in [
        (b, "canonical_buildings", "reading buildings (model.buildings.canonical_buildings)"),
        (b, "read_city", "digests + bounds (tiles.buildings.read_city, without to_enu)"),
        (b, "_tree", "quadtree (tiles.buildings._tree)"),
        (b, "_collect", "tile keys (tiles.buildings._collect)"),
        (b, "_job", "tile jobs (tiles.buildings._job, without columns)"),
        (b, "building_columns", "attribute columns (tiles.buildings.building_columns)"),
        (b, "encode_tile", "encode_tile, the rest (tables, per-tile set-up)"),
        (e, "extrude", "extrusion (tiles.blocks.extrude)"),
        (tiles.frame.Frame, "to_enu", "ENU transform (tiles.frame.Frame.to_enu)"),
        (tiles.frame.Frame, "affine", "normals' affine fit (Frame.affine)"),
        (e, "rotate", "normals (tiles.frame.rotate)"),
        (tiles.gltf.GlbBuilder, "add_primitive", "glb encoding (GlbBuilder.add_primitive)"),
        (tiles.gltf.GlbBuilder, "add_table", "glb encoding (GlbBuilder.add_table)"),
        (tiles.gltf.GlbBuilder, "to_bytes", "glb encoding (GlbBuilder.to_bytes)"),
        (cim.tilefiles.TilesetWriter, "reuse", "reuse look-ups (TilesetWriter.reuse)"),
        (cim.tilefiles.TilesetWriter, "put", "writing files (TilesetWriter.put)"),
        (cim.tilefiles.TilesetWriter, "finish", "tileset.json + rows (TilesetWriter.finish)"),
        (tiles.build, "check_tileset", "structural checks (tiles.tileset.check_tileset)"),
        (tiles.build, "inputs_digest", "inputs digest (cim.tilefiles.inputs_digest)"),
    ]:
        t.wrap(owner, name, label)
    try:
        yield t
    finally:
        t.undo()


def part_buildings(args: argparse.Namespace, tmp: Path) -> None:
    import shapely

    from cim.executor import LocalExecutor
    from cim.store import Store
    from ingest import IngestOptions, run_ingest
    from tiles.build import build_tilesets

    n = args.buildings
    print(f"\n== 2. {n:,} LoD1 buildings -> buildings tileset ({load()})", flush=True)
    t0 = time.perf_counter()
    geoms, fields, street = city(n)
    path = tmp / "city.parquet"
    write_geoparquet(path, geoms, fields)
    ells = int((shapely.get_num_coordinates(geoms) > 5).sum())
    print(
        f"generated {n:,} footprints ({ells:,} L-shapes) in EPSG:4550 north-east of "
        "Tongliao's centre, "
        f"{shapely.total_bounds(geoms)[2] - shapely.total_bounds(geoms)[0]:,.0f} m x "
        f"{shapely.total_bounds(geoms)[3] - shapely.total_bounds(geoms)[1]:,.0f} m, "
        f"{path.stat().st_size / 2**20:.1f} MB GeoParquet in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    options = IngestOptions(role="buildings")
    executor = LocalExecutor()
    executor.start(["tiles.encode", "tiles.buildings"])
    list(executor.map(len, [[1]] * executor.workers))  # workers up before any clock
    try:
        store = Store.create(tmp / "city.duckdb", "EPSG:4550", origin=TONGLIAO)
        t0 = time.perf_counter()
        run_ingest(store, path, options, executor)
        s_ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = build_tilesets(store, ["buildings"], executor)["buildings"]
        s_build = time.perf_counter() - t0
        rate = n / s_build
        verdict = "met" if rate >= BUILDINGS_TARGET else "NOT MET"
        print(
            f"ingest (GeoParquet -> store): {s_ingest:.1f} s, {n / s_ingest:,.0f} buildings/s "
            "(not part of the tiling figure)"
        )
        print(
            f"full build, {executor.workers} workers: {s_build:.1f} s, {rate:,.0f} buildings/s"
            f"  (target {BUILDINGS_TARGET:,}/s: {verdict}; pg2b3dm publishes ~{PG2B3DM:,}/s, "
            f"ratio {rate / PG2B3DM:.1f}x)"
        )
        print(
            f"  {full['tiles']:,} tiles (depth {full['depth']}), {full['bytes'] / 1e6:,.1f} MB, "
            f"{full['bytes'] / n:,.0f} bytes/building over all levels",
            flush=True,
        )
        # one more building: a second file with one footprint in a street
        one = tmp / "one_more.parquet"
        sx, sy = street
        write_geoparquet(
            one,
            np.array([shapely.box(sx - 6, sy - 5, sx + 6, sy + 5)]),
            {k: v[:1] for k, v in fields.items()},
        )
        run_ingest(store, one, options, executor)
        incremental(store, executor, n + 1, "one building added (a second file)")
        with store.transaction():
            store.con.execute(
                "UPDATE buildings SET height = height + 3 WHERE id = (SELECT min(id) FROM "
                "buildings WHERE id > (SELECT max(id) / 2 FROM buildings))"
            )
        incremental(store, executor, n + 1, "one building 3 m taller (height changed)")
        store.close()
    finally:
        executor.close()

    # where the time goes: the same build in this process, a fresh store (nothing to reuse)
    store = Store.create(tmp / "city_profiled.duckdb", "EPSG:4550", origin=TONGLIAO)
    from cim.executor import SerialExecutor

    run_ingest(store, path, options, SerialExecutor())
    with stage_timers() as timers:
        t0 = time.perf_counter()
        build_tilesets(store, ["buildings"], None)
        total = time.perf_counter() - t0
    print(
        f"where the time goes: the same build in one process (no workers): {total:.1f} s, "
        f"{n / total:,.0f} buildings/s; each stage without the stages it calls:"
    )
    rows = sorted(timers.seconds.items(), key=lambda kv: -kv[1])
    for label, s in rows:
        print(
            f"  {s:7.2f} s {100 * s / total:5.1f}%  {label}  ({timers.calls[label]:,} calls, "
            f"{1e6 * s / n:,.0f} us/building)"
        )
    rest = total - sum(timers.seconds.values())
    print(f"  {rest:7.2f} s {100 * rest / total:5.1f}%  everything else (transaction, commit ...)")
    if args.cprofile:
        import cProfile
        import pstats

        store.close()
        store = Store.create(tmp / "city_cprofile.duckdb", "EPSG:4550", origin=TONGLIAO)
        run_ingest(store, path, options, SerialExecutor())
        prof = cProfile.Profile()
        prof.enable()
        build_tilesets(store, ["buildings"], None)
        prof.disable()
        print("cProfile of the same build (top 25 by own time; cProfile slows it down):")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    store.close()


def incremental(store: Any, executor: Any, n: int, what: str) -> None:
    from tiles.build import build_tilesets

    t0 = time.perf_counter()
    r = build_tilesets(store, ["buildings"], executor)["buildings"]
    s = time.perf_counter() - t0
    print(
        f"incremental rebuild, {what}: {s:.1f} s, {r['files_written']:,} files written of "
        f"{r['tiles']:,} ({r['files_reused']:,} reused), {n:,} buildings",
        flush=True,
    )


# ---- 3. IFC -> BIM tileset ----------------------------------------------------------------------
def ifc_ours(f: Path, store: Path) -> dict[str, Any]:
    """``cim init`` (not timed), ``cim ingest --anchor``, ``cim tile --tileset bim``."""
    cim(store, "init", "--crs", "EPSG:4550", "--origin", "122.2630,43.6170")
    anchor = IFC_ANCHORS.get(f.name, "122.2630,43.6180,180,0")
    s_ingest, ingested = cim(store, "ingest", f, "--anchor", anchor)
    s_tile, tiled = cim(store, "tile", "--tileset", "bim")
    report = ingested["reports"][0]
    bim = tiled["tilesets"]["bim"]
    return {
        "seconds": s_ingest + s_tile,
        "ingest": s_ingest,
        "tile": s_tile,
        "work": float(report["seconds"]) + float(bim["seconds"]),
        "elements": int(bim.get("elements_encoded", 0)),
        "failed_products": int(report["counts"].get("failed", 0)),
        "bytes": int(bim["bytes"]),
    }


def ifc_peer(f: Path, out: Path, peer: Path) -> dict[str, Any]:
    seconds, code, _, err = timed(
        [peer, "convert", "--out", out, "--overwrite", "--jobs", "2", f], timeout=600
    )
    ok = code == 0 and (out / "tileset.json").exists()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if ok else 0
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "error": None if ok else f"{code}: {last_line(err)}", "bytes": size}


def part_ifc(args: argparse.Namespace, tmp: Path, peer: Path | None) -> None:
    print(f"\n== 3. sample IFC -> store -> BIM tileset ({load()})", flush=True)
    print(
        f"fastest of {args.runs} run(s) each, both sides interleaved; cim: `cim ingest --anchor` "
        "+ `cim tile --tileset bim`, wall clock of the two commands (in brackets: their own "
        "figures, without process and worker starts)"
    )
    print(
        f"{'model':22} {'MB':>4} {'elements':>8}  {'cim ingest':>10} {'cim tile':>8} "
        f"{'cim total':>17}  {'py3dtiles':>9}  {'ratio':>5}  target: faster, none fails"
    )
    files = [Path(f) for f in args.ifc] or sorted((SAMPLES / "ifc").glob("*.ifc"))
    faster = failed = 0
    for k, f in enumerate(files):
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for run in range(args.runs):
            ours.append(ifc_ours(f, tmp / f"ifc_{k}_{run}.duckdb"))
            if peer is not None:
                theirs.append(ifc_peer(f, tmp / f"py3dtiles_ifc_{k}", peer))
        best = min(ours, key=lambda r: r["seconds"])
        peer_text, ratio_text = "(none)", ""
        done = [r for r in theirs if r["error"] is None]
        if done:
            best_peer = min(done, key=lambda r: r["seconds"])
            peer_text = f"{best_peer['seconds']:7.1f} s"
            ratio_text = f"{best_peer['seconds'] / best['seconds']:4.1f}x"
            faster += best_peer["seconds"] > best["seconds"]
        elif theirs:
            failed += 1
            peer_text = f"FAILED ({theirs[0]['error']})"
        failures = best["failed_products"]
        note = f"  ({failures} products not meshed, recorded)" if failures else ""
        print(
            f"{f.name:22} {f.stat().st_size / 2**20:4.1f} {best['elements']:8,}  "
            f"{best['ingest']:8.1f} s {best['tile']:6.1f} s {best['seconds']:6.1f} s "
            f"({best['work']:4.1f} s)  {peer_text:>9}  {ratio_text:>5}{note}",
            flush=True,
        )
    if peer is not None:
        print(
            f"cim (ingest + tile, two commands, wall) faster than py3dtiles on {faster} of "
            f"{len(files)} files; py3dtiles failed on {failed}; cim failed on none "
            f"({'met' if faster == len(files) else 'NOT MET'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", default="points,buildings,ifc", help="comma-separated: points,buildings,ifc"
    )
    parser.add_argument("--points", type=float, default=5e6, help="generated cloud (0: none)")
    parser.add_argument("--no-montpellier", action="store_true", help="skip the sample LAZ")
    parser.add_argument("--buildings", type=int, default=100_000, help="generated buildings")
    parser.add_argument("--cprofile", action="store_true", help="cProfile the buildings build")
    parser.add_argument("--ifc", nargs="*", default=[], help="IFC files (default: samples)")
    parser.add_argument("--runs", type=int, default=2, help="IFC: fastest of this many runs")
    parser.add_argument("--no-peer", action="store_true", help="do not run py3dtiles")
    parser.add_argument("--py3dtiles-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--tmp", help="folder for generated data, stores and tiles")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"points", "buildings", "ifc"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    print(f"cores: {os.cpu_count()}, {load()}")
    peer: Path | None = None
    if not args.no_peer and parts & {"points", "ifc"}:
        peer, versions = py3dtiles(args.py3dtiles_venv)
        print(f"peer: {versions}" if peer else f"peer: py3dtiles unavailable ({versions})")
        if peer is not None:  # warm the peer's and our imports (disk cache), untimed
            timed([peer, "--help"])
    timed([CIM, "--help"])
    if args.tmp:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="cim-tiles-bench-") as d:
        tmp = Path(d)
        if "points" in parts:
            part_points(args, tmp, peer)
        if "buildings" in parts:
            part_buildings(args, tmp)
        if "ifc" in parts:
            part_ifc(args, tmp, peer)
    print(f"\nbenchmark: {time.perf_counter() - started:.0f} s, {load()}")


if __name__ == "__main__":
    main()
