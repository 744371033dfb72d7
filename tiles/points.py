"""The point cloud tileset: an octree of glTF POINTS over every point of the store.

Refinement is ADD: each point lies in exactly one tile. A node holds a spatially even subsample
of what lies below it (one point per cell of a grid of ``GRID``\\ :sup:`3` cells over the node,
the point of the lowest seeded random priority in each cell), and a node whose remaining points
are at most ``leaf_points`` is a leaf that holds them all. A node's geometric error is its
grid's spacing (leaves 0), which halves with each level.

How it is built, without a Python loop per point:

1. The points are read in batches of up to 1 M points of one point file
   (``cim.model.points.point_batches``) into preallocated arrays: ENU metres (``to_enu``: a
   quadratic fitted to exact transforms, checked on each batch's own points), class, colour.
   Memory: about 100 bytes a point at the peak (the arrays of the cloud are 29).
2. Each point gets a 63-bit Morton code of its position quantised to 2**21 steps over the
   cloud's bounding cube, and the codes are sorted once. The points of an octree node at depth
   d are then a contiguous run of codes sharing their top 3d bits, and a grid cell of that node
   is the node at depth d + 7: every level is a ``>>`` of the sorted codes, run boundaries and a
   ``minimum.reduceat`` of the priorities.
3. Each tile is encoded (``encode_tile``: positions float32 relative to the centre of the
   tile's points, COLOR_0, the class code as feature id with a ``point_class`` property table)
   in this process or by the executor, and written through the ``TilesetWriter`` as it comes.
4. Bounding boxes are those of each tile's points, grown to hold its children; beyond
   ``max_tiles`` tiles in one document, subtrees go to external tileset files.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from cim.model.points import ASPRS_CLASSES, point_batches, point_files
from tiles.context import BuildContext
from tiles.frame import to_enu_fitted
from tiles.gltf import FeatureTable, GlbBuilder, Primitive, Property
from tiles.tileset import Tile, Tileset, box

#: a node with at most this many points left is a leaf holding them all
LEAF_POINTS = 100_000
#: log2 of a node's sampling grid: one point per cell of 1/128 of the node's edge
CELL_BITS = 7
GRID = 1 << CELL_BITS
#: bits of each axis in the Morton codes
BITS = 21
#: the deepest level: its cells would be finer than the quantisation, so it is a leaf
MAX_DEPTH = BITS - CELL_BITS
#: tiles in one tileset document before subtrees go to external tileset files
MAX_TILES = 2_000
#: clouds smaller than this are encoded in this process even when an executor is given:
#: encoding is mostly copying arrays, and shipping them to a worker costs as much (5 M points
#: on 2 busy cores: 2.1-3.3 s in process, 4.2-4.8 s through a pool of 2)
PARALLEL_POINTS = 50_000_000

_GREY = (170, 170, 170)
#: colours of the ASPRS classes when a cloud has no RGB; every other class is grey
CLASS_COLOURS = {
    0: (150, 150, 150),
    1: _GREY,
    2: (150, 110, 70),  # ground: brown
    3: (170, 215, 120),  # low vegetation
    4: (100, 175, 70),  # medium vegetation
    5: (35, 120, 40),  # high vegetation
    6: (235, 95, 45),  # building: red-orange
    7: (90, 90, 90),  # low noise
    9: (45, 110, 220),  # water: blue
    10: (120, 100, 130),  # rail
    11: (110, 110, 110),  # road
    17: (200, 180, 140),  # bridge deck
    18: (90, 90, 90),  # high noise
}
PALETTE = np.array([CLASS_COLOURS.get(c, _GREY) for c in range(256)], dtype=np.uint8)


@dataclass
class Cloud:
    """Every point of the store: ENU metres, class, colour (uint8; ``has_rgb`` False where the
    point's source has none)."""

    enu: np.ndarray
    classification: np.ndarray
    rgb: np.ndarray
    has_rgb: np.ndarray

    def __len__(self) -> int:
        return len(self.classification)


def read_cloud(ctx: BuildContext, share: float = 0.4) -> Cloud | None:
    """All points of the store into preallocated arrays, one point file at a time. A source's
    colours are 16-bit when any of its values is above 255 (divided by 257), else 8-bit; a
    source whose colours are all 0 (LAS formats with RGB fields nobody filled, as in the IGN
    samples) counts as having none, and gets the class palette."""
    files = point_files(ctx.store)
    n = sum(count for _, _, count in files)
    if n == 0:
        return None
    enu = np.empty((n, 3), dtype=np.float64)
    classification = np.empty(n, dtype=np.uint8)
    rgb16 = np.zeros((n, 3), dtype=np.uint16)
    ranges: dict[int, list[tuple[int, int]]] = {}
    top: dict[int, int] = {}
    at = 0
    for part in point_batches(ctx.store, [f for f, _, _ in files]):
        m = len(part.x)
        if at + m > n:
            raise RuntimeError(f"point file {part.file} holds more points than point_files says")
        enu[at : at + m] = to_enu_fitted(ctx.frame, np.column_stack([part.x, part.y, part.z]))
        classification[at : at + m] = part.classification
        if part.rgb is not None and m:
            rgb16[at : at + m] = part.rgb
            ranges.setdefault(part.source_id, []).append((at, at + m))
            top[part.source_id] = max(top.get(part.source_id, 0), int(part.rgb.max()))
        at += m
        ctx.step(share * at / n, f"read {at:,} of {n:,} points")
    rgb = np.zeros((at, 3), dtype=np.uint8)
    has_rgb = np.zeros(at, dtype=bool)
    for source, spans in ranges.items():
        for a, b in spans:
            has_rgb[a:b] = top[source] > 0
            rgb[a:b] = rgb16[a:b] // 257 if top[source] > 255 else rgb16[a:b]
    return Cloud(enu[:at], classification[:at], rgb, has_rgb)


# ---- the octree ------------------------------------------------------------------------
def _spread_bits(v: int) -> int:
    return sum(((v >> i) & 1) << (3 * i) for i in range(CELL_BITS))


#: the 7 bits of a byte spread to every third bit, to build Morton codes 7 bits at a time
_SPREAD7 = np.array([_spread_bits(v) for v in range(1 << CELL_BITS)], dtype=np.uint64)


def _spread(q: np.ndarray) -> np.ndarray:
    """The 21 low bits of each value spread to every third bit (a Morton code's one axis)."""
    out = _SPREAD7[q & 127]
    out |= _SPREAD7[(q >> 7) & 127] << np.uint64(21)
    out |= _SPREAD7[(q >> 14) & 127] << np.uint64(42)
    return out


def morton_codes(enu: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Each point's Morton code in the cloud's bounding cube, the cube's low corner and edge."""
    lo = enu.min(axis=0)
    edge = float(max((enu.max(axis=0) - lo).max(), 1e-3)) * (1 + 1e-9)
    steps = 1 << BITS
    codes = np.zeros(len(enu), dtype=np.uint64)
    for axis in range(3):
        q = ((enu[:, axis] - lo[axis]) * (steps / edge)).astype(np.int64)  # >= 0: floor
        np.clip(q, 0, steps - 1, out=q)
        codes |= _spread(q) << np.uint64(axis)
    return codes, lo, edge


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted array starts."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))


def index_type(n: int) -> type[np.unsignedinteger[Any]] | type[np.signedinteger[Any]]:
    """The narrowest type for indices of n points (4 bytes a point below 4 billion)."""
    return np.uint32 if n < (1 << 32) else np.int64


@dataclass
class Octree:
    """The tiles: tile t holds the sorted points ``members[start[t]:start[t + 1]]``; it is node
    ``node[t]`` (a Morton prefix) at depth ``depth[t]``."""

    members: np.ndarray
    start: np.ndarray
    depth: np.ndarray
    node: np.ndarray

    def __len__(self) -> int:
        return len(self.depth)


def partition(sorted_codes: np.ndarray, leaf_points: int = LEAF_POINTS, seed: int = 0) -> Octree:
    """Assign each point (by its index in ``sorted_codes``) to exactly one octree node: level by
    level, a node with at most ``leaf_points`` remaining points takes them all, a larger one
    takes the point of lowest random priority in each of its grid cells."""
    n = len(sorted_codes)
    priority = np.random.default_rng(seed).integers(0, 1 << 32, n, dtype=np.uint32)
    remaining = np.arange(n, dtype=index_type(n))
    members: list[np.ndarray] = []
    depths: list[np.ndarray] = []
    nodes: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    for d in range(MAX_DEPTH + 1):
        if len(remaining) == 0:
            break
        codes = sorted_codes[remaining]
        node = codes >> np.uint64(3 * (BITS - d))
        first = _run_starts(node)
        counts = np.diff(np.append(first, len(node)))
        take = np.repeat((counts <= leaf_points) | (d == MAX_DEPTH), counts)
        inner = np.flatnonzero(~take)
        if len(inner):
            cell = codes[inner] >> np.uint64(3 * (BITS - d - CELL_BITS))
            cell_first = _run_starts(cell)
            cell_counts = np.diff(np.append(cell_first, len(cell)))
            p = priority[remaining[inner]]
            lowest = np.minimum.reduceat(p, cell_first)
            pick = np.flatnonzero(p == np.repeat(lowest, cell_counts))
            if len(pick) > len(cell_first):  # equal priorities: the first of each cell
                pick = pick[_run_starts(cell[pick])]
            take[inner[pick]] = True
        chosen_nodes = node[take]
        tile_first = _run_starts(chosen_nodes)
        members.append(remaining[take])
        nodes.append(chosen_nodes[tile_first])
        sizes.append(np.diff(np.append(tile_first, len(chosen_nodes))))
        depths.append(np.full(len(tile_first), d, dtype=np.int64))
        remaining = remaining[~take]
    return Octree(
        np.concatenate(members) if members else np.zeros(0, dtype=index_type(n)),
        np.concatenate([[0], np.cumsum(np.concatenate(sizes))]),
        np.concatenate(depths),
        np.concatenate(nodes),
    )


# ---- content ---------------------------------------------------------------------------
@dataclass
class TileContent:
    """What one tile's glb is made of (picklable: it may go to a worker)."""

    translation: tuple[float, float, float]
    positions: np.ndarray  # (n, 3) ENU metres relative to the translation
    colors: np.ndarray  # (n, 3|4) uint8
    classes: np.ndarray  # (n,) uint8


def class_table(top: int) -> FeatureTable:
    """The ``point_class`` property table: one row per ASPRS code 0..top."""
    codes = np.arange(top + 1, dtype=np.int32)
    return FeatureTable(
        "point_class",
        [
            Property("classification", "SCALAR", "INT32", "ASPRS class code"),
            Property("name", "STRING", description="ASPRS class name"),
        ],
        {
            "classification": codes,
            "name": [ASPRS_CLASSES.get(int(c), f"class {int(c)}") for c in codes],
        },
        count=top + 1,
        description="a LiDAR point's ASPRS classification",
    )


def encode_tile(item: TileContent) -> bytes:
    """One tile's glb: a POINTS primitive whose feature ids are the class codes."""
    builder = GlbBuilder(item.translation)
    builder.add_table(class_table(int(item.classes.max()) if len(item.classes) else 0))
    builder.add_primitive(
        Primitive(
            item.positions,
            colors=item.colors,
            feature_ids=[item.classes.astype(np.float32)],
        )
    )
    return builder.to_bytes()


def _contents(
    cloud: Cloud, order: np.ndarray, tree: Octree, bounds: np.ndarray
) -> Iterator[TileContent]:
    """Each tile's content, in tile order; ``bounds[t]`` gets the tile's (lo, hi) ENU. Arrays
    are made as the glb writer keeps them (positions float64, colours RGBA, ids float32), so it
    copies them no more."""
    for t in range(len(tree)):
        idx = order[tree.members[tree.start[t] : tree.start[t + 1]]]
        pos = cloud.enu[idx]
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        bounds[t, 0], bounds[t, 1] = lo, hi
        centre = np.round((lo + hi) / 2, 3)
        pos -= centre
        classes = cloud.classification[idx]
        colours = np.full((len(idx), 4), 255, dtype=np.uint8)
        colours[:, :3] = cloud.rgb[idx]
        plain = ~cloud.has_rgb[idx]
        if plain.any():
            colours[plain, :3] = PALETTE[classes[plain]]
        yield TileContent(
            (float(centre[0]), float(centre[1]), float(centre[2])), pos, colours, classes
        )


# ---- the tileset documents ---------------------------------------------------------------
def _tiles(tree: Octree, bounds: np.ndarray, uris: list[str], edge: float) -> Tile:
    """The tile hierarchy (root first); boxes grown bottom-up to hold the children."""
    index = {
        (int(d), int(c)): t
        for t, (d, c) in enumerate(zip(tree.depth.tolist(), tree.node.tolist(), strict=True))
    }
    lo, hi = bounds[:, 0].copy(), bounds[:, 1].copy()
    children: dict[int, list[int]] = {}
    for t in np.argsort(-tree.depth, kind="stable"):
        d, c = int(tree.depth[t]), int(tree.node[t])
        if d == 0:
            continue
        p = index[(d - 1, c >> 3)]
        lo[p] = np.minimum(lo[p], lo[t])
        hi[p] = np.maximum(hi[p], hi[t])
        children.setdefault(p, []).append(int(t))

    def tile(t: int) -> Tile:
        spacing = edge / (1 << int(tree.depth[t])) / GRID
        out: Tile = {
            "boundingVolume": box(lo[t], hi[t]),
            "geometricError": round(spacing, 4) if t in children else 0.0,
            "content": {"uri": uris[t]},
        }
        kids = sorted(children.get(t, []), key=lambda k: int(tree.node[k]))
        if kids:
            out["children"] = [tile(k) for k in kids]
        return out

    root: Tile = tile(index[(0, 0)])
    root["refine"] = "ADD"
    return root


def _split(ctx: BuildContext, root: Tile, max_tiles: int) -> tuple[Tile, int]:
    """Keep about ``max_tiles`` tiles of ``root``'s tree in its document, breadth first (the
    root's children always); each tile whose children would not fit becomes a stub pointing
    to an external tileset file whose root is that tile. Returns the root and the number of
    external files written."""
    count = 1
    queue: deque[Tile] = deque([root])
    stubs: list[Tile] = []
    while queue:
        t = queue.popleft()
        kids = t.get("children", [])
        if not kids:
            continue
        if t is root or count + len(kids) <= max_tiles:
            count += len(kids)
            queue.extend(kids)
        else:
            stubs.append(t)
    written = 0
    for stub in stubs:
        inner, more = _split(ctx, cast(Tile, dict(stub)), max_tiles)
        inner["refine"] = "ADD"
        doc: Tileset = {
            "asset": {"version": "1.1", "generator": "cim-pipeline"},
            "geometricError": inner["geometricError"],
            "root": inner,
        }
        written += 1 + more
        stub.pop("children", None)
        stub["content"] = {"uri": ctx.writer.put(_json(doc), suffix=".json")}
    return root, written


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


# ---- the builder -----------------------------------------------------------------------
class _Clock:
    """Wall and CPU seconds of each phase of a build (the CPU time of this process only)."""

    def __init__(self) -> None:
        self.started = self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.phases: dict[str, dict[str, float]] = {}

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = {"wall": round(wall - self.wall, 3), "cpu": round(cpu - self.cpu, 3)}
        self.wall, self.cpu = wall, cpu

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started

    @property
    def cpu_total(self) -> float:
        return round(sum(p["cpu"] for p in self.phases.values()), 3)


def build_points(
    ctx: BuildContext,
    *,
    leaf_points: int = LEAF_POINTS,
    max_tiles: int = MAX_TILES,
    seed: int = 0,
) -> tuple[Tile, dict[str, Any]] | None:
    """The point cloud tileset of every point in the store (see the module's docstring), or
    None when the store has no points."""
    clock = _Clock()
    cloud = read_cloud(ctx)
    if cloud is None:
        return None
    n = len(cloud)
    clock.lap("read")

    codes, _, edge = morton_codes(cloud.enu)
    order = np.argsort(codes).astype(index_type(n))
    sorted_codes = codes[order]
    del codes
    clock.lap("sort")
    tree = partition(sorted_codes, leaf_points, seed)
    del sorted_codes
    clock.lap("octree")
    ctx.step(0.5, f"octree of {len(tree):,} tiles")

    bounds = np.zeros((len(tree), 2, 3))
    items = _contents(cloud, order, tree, bounds)
    parallel = ctx.executor is not None and ctx.executor.workers > 1 and n >= PARALLEL_POINTS
    glbs = (
        ctx.executor.map(encode_tile, items)
        if parallel and ctx.executor
        else map(encode_tile, items)
    )
    uris: list[str] = []
    for k, data in enumerate(glbs):
        uris.append(ctx.writer.put(data, suffix=".glb"))
        ctx.step(0.5 + 0.5 * (k + 1) / len(tree), f"tile {k + 1:,} of {len(tree):,}")
    clock.lap("encode_write")

    root = _tiles(tree, bounds, uris, edge)
    external = 0
    if len(tree) > max_tiles:
        root, external = _split(ctx, root, max_tiles)
    clock.lap("documents")
    seconds = clock.total
    return root, {
        "points": n,
        "tiles": len(tree),
        "external_tilesets": external,
        "depth": int(tree.depth.max()) + 1,
        "points_per_second": round(n / seconds) if seconds > 0 else None,
        "seconds": round(seconds, 3),
        "cpu_seconds": clock.cpu_total,
        "encoded_in_workers": parallel,
        "phases": clock.phases,
    }
