"""The city's buildings tileset: a quadtree over the buildings, REPLACE refinement.

* The quadtree's cells are aligned on a fixed grid from the project origin (``MIN_CELL`` metres
  at the finest level, doubling upwards) and a building belongs to the cell of a point on its
  footprint, so a cell's content depends only on its own buildings: changing one building
  changes the tiles on its path to the root and nothing else (the other tiles' inputs digest the
  same, and their files are reused without being encoded again).
* A cell is a leaf when its buildings weigh at most ``LEAF_WEIGHT`` (an LoD1 block weighs 1, a
  BIM model its triangles / ``TRIANGLES_PER_WEIGHT``). Leaves hold each building's best geometry:
  the elements of its IFC model (feature id sets: building, then element) or its LoD1 block.
* Inner cells hold the ``PARENT_BUILDINGS`` largest buildings below them as simplified LoD1 blocks,
  so the whole city draws from afar; their geometric error is the cell's size / 16 (a 1 km cell
  refines within about 3.5 km at CesiumJS's default screen-space error), leaves' 0.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from cim.model.buildings import Buildings, canonical_buildings
from cim.model.meshes import NOT_DRAWN, element_meshes
from tiles.blocks import UNKNOWN_HEIGHT
from tiles.context import BuildContext
from tiles.encode import TileJob, encode_tile, encoder_version, split_by_colour
from tiles.tileset import Tile, box

#: version of the tiles' encoding: a digest of the encoders' code, so a new version of them
#: re-encodes every tile instead of reusing files it would now write differently
ENCODING = encoder_version()
MIN_CELL = 64.0
LEAF_WEIGHT = 400.0
TRIANGLES_PER_WEIGHT = 200.0
PARENT_BUILDINGS = 256
#: a tileset encodes this many tiles in the executor's workers at once, at least
PARALLEL_FROM = 8


@dataclass
class Node:
    level: int
    ix: int
    iy: int
    members: NDArray[np.int64]  # indices into the buildings
    children: list[Node] = field(default_factory=list)

    @property
    def size(self) -> float:
        return MIN_CELL * 2.0**self.level


@dataclass
class City:
    """The buildings and what the tree needs of them."""

    buildings: Buildings
    digests: list[str]
    weights: NDArray[np.float64]
    bim: NDArray[np.bool_]  # drawn from element meshes
    lo: NDArray[np.float64]  # (n, 3) ENU bounds of each building
    hi: NDArray[np.float64]
    area: NDArray[np.float64]


def build_buildings(ctx: BuildContext) -> tuple[Tile, dict[str, Any]] | None:
    ctx.step(0.0, "reading buildings")
    b = canonical_buildings(ctx.store)
    if len(b) == 0:
        return None
    city = read_city(ctx, b)
    root = _tree(ctx, city)
    jobs: list[tuple[Node, str]] = []
    _collect(root, city, jobs)
    ctx.step(0.1, f"{len(b):,} buildings in {len(jobs):,} tiles")
    uris = _encode(ctx, city, jobs)
    tile = _tile(root, city, uris)
    stats = {
        "buildings": len(b),
        "bim_buildings": int(city.bim.sum()),
        "depth": root.level,
    }
    return tile, stats


# ---- the buildings ---------------------------------------------------------------------
def read_city(ctx: BuildContext, b: Buildings) -> City:
    store = ctx.store
    ids = [int(i) for i in b.ids]
    rows = store.con.execute(
        "SELECT e.building_id, sum(m.n_triangles), min(e.xmin), min(e.ymin), min(e.zmin), "
        "max(e.xmax), max(e.ymax), max(e.zmax), any_value(s.sha256), "
        "any_value(p.matrix::VARCHAR) FROM elements e JOIN meshes m ON m.owner_id = e.id "
        "AND m.owner = 'element' JOIN sources s ON s.id = e.source_id "
        "JOIN placements p ON p.source_id = e.source_id "
        "WHERE e.building_id IS NOT NULL AND e.ifc_class NOT IN (SELECT unnest(?::VARCHAR[])) "
        "GROUP BY e.building_id",
        [list(NOT_DRAWN)],
    ).fetchall()  # every model's buildings (few): a list of many ids is slow to bind
    meshed = {int(r[0]): r for r in rows}
    n = len(b)
    bounds = b.bounds()
    top = b.ground_z + np.where(np.isfinite(b.height) & (b.height > 0), b.height, UNKNOWN_HEIGHT)
    lo3 = np.column_stack([bounds[:, 0], bounds[:, 1], b.ground_z])
    hi3 = np.column_stack([bounds[:, 2], bounds[:, 3], top])
    weights = np.ones(n)
    bim = np.zeros(n, dtype=bool)
    digests = []
    wkb = shapely.to_wkb(b.footprints)
    for i, bid in enumerate(ids):
        h = hashlib.sha256(ENCODING.encode())
        h.update(wkb[i])
        h.update(repr([b.columns[c][i] for c in sorted(b.columns)]).encode())
        h.update(repr((float(b.ground_z[i]), b.source_kinds[i])).encode())
        r = meshed.get(bid)
        if r is not None:
            bim[i] = True
            weights[i] = max(1.0, float(r[1]) / TRIANGLES_PER_WEIGHT)
            lo3[i] = np.minimum(lo3[i], r[2:5])
            hi3[i] = np.maximum(hi3[i], r[5:8])
            h.update(f"{r[8]}{r[9]}".encode())
        digests.append(h.hexdigest())
    lo, hi = _enu_bounds(ctx, lo3, hi3)
    return City(b, digests, weights, bim, lo, hi, shapely.area(b.footprints))


def _enu_bounds(
    ctx: BuildContext, lo3: NDArray[np.float64], hi3: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ENU bounds of boxes given in project coordinates: the ENU corners' extent (the map is
    affine to well under a millimetre over one building)."""
    n = len(lo3)
    corners = np.empty((n, 8, 3))
    for k in range(8):
        pick = [(k >> d) & 1 for d in range(3)]
        corners[:, k] = np.where(pick, hi3, lo3)
    enu = ctx.frame.to_enu(corners.reshape(-1, 3)).reshape(n, 8, 3)
    return enu.min(axis=1) - 0.01, enu.max(axis=1) + 0.01


# ---- the tree ----------------------------------------------------------------------------
def _tree(ctx: BuildContext, city: City) -> Node:
    ox, oy = ctx.store.project_origin
    centres = shapely.get_coordinates(shapely.point_on_surface(city.buildings.footprints))
    ix = np.floor((centres[:, 0] - ox) / MIN_CELL).astype(np.int64)
    iy = np.floor((centres[:, 1] - oy) / MIN_CELL).astype(np.int64)
    # the root sits one level above the first level whose cells span at most two columns and
    # two rows: cells on both sides of the origin (-1 and 0) share no aligned parent at any
    # level, so the root is not a grid cell, its children are
    level = 0
    while np.ptp(ix >> level) > 1 or np.ptp(iy >> level) > 1:
        level += 1
    root = Node(level + 1, 0, 0, np.arange(len(ix)))
    _split(root, ix, iy, city.weights)
    return root


def _split(
    node: Node, ix: NDArray[np.int64], iy: NDArray[np.int64], weights: NDArray[np.float64]
) -> None:
    if node.level == 0 or weights[node.members].sum() <= LEAF_WEIGHT:
        return
    m = node.members
    down = node.level - 1
    cells = np.column_stack([ix[m] >> down, iy[m] >> down])
    keys, which = np.unique(cells, axis=0, return_inverse=True)
    for k, (cx, cy) in enumerate(keys):  # at most 2 x 2 cells
        child = Node(down, int(cx), int(cy), m[which.reshape(-1) == k])
        _split(child, ix, iy, weights)
        node.children.append(child)


def _parent_members(node: Node, city: City) -> NDArray[np.int64]:
    m = node.members
    if len(m) <= PARENT_BUILDINGS:
        return m
    largest = np.argsort(-city.area[m], kind="stable")[:PARENT_BUILDINGS]
    return np.sort(m[largest])


def _collect(node: Node, city: City, out: list[tuple[Node, str]]) -> None:
    """Every tile with its inputs' key (what it draws and how)."""
    leaf = not node.children
    members = node.members if leaf else _parent_members(node, city)
    h = hashlib.sha256(f"{ENCODING}:{'leaf' if leaf else 'inner'}:{node.size}".encode())
    for i in members:
        h.update(city.digests[i].encode())
    out.append((node, h.hexdigest()))
    for child in node.children:
        _collect(child, city, out)


# ---- encoding ----------------------------------------------------------------------------
def _encode(ctx: BuildContext, city: City, jobs: list[tuple[Node, str]]) -> dict[int, str]:
    """Each tile's content file (reused when its key is unchanged), by node id."""
    uris: dict[int, str] = {}
    todo: list[tuple[Node, str]] = []
    for node, key in jobs:
        reused = ctx.writer.reuse(key)
        if reused is not None:
            uris[id(node)] = reused
        else:
            todo.append((node, key))
    ex = ctx.executor
    parallel = ex is not None and ex.workers >= 2 and len(todo) >= PARALLEL_FROM
    work = (_job(ctx, city, node) for node, _ in todo)
    results = ex.map(encode_tile, work) if parallel and ex is not None else map(encode_tile, work)
    for k, ((node, key), glb) in enumerate(zip(todo, results, strict=True)):
        uris[id(node)] = ctx.writer.put(glb, ".glb", input_key=key)
        ctx.step(0.1 + 0.9 * (k + 1) / max(len(todo), 1), f"{k + 1:,}/{len(todo):,} tiles")
    return uris


def _job(ctx: BuildContext, city: City, node: Node) -> TileJob:
    b = city.buildings
    leaf = not node.children
    members = node.members if leaf else _parent_members(node, city)
    lo, hi = city.lo[members].min(axis=0), city.hi[members].max(axis=0)
    translation = tuple(float(round(v)) for v in (lo + hi) / 2)
    bounds = shapely.total_bounds(b.footprints[members])
    columns = building_columns(b, members)
    bim_rows = [k for k, i in enumerate(members) if leaf and city.bim[i]]
    block_rows = [k for k in range(len(members)) if k not in set(bim_rows)]
    sel = members[block_rows]
    job = TileJob(
        crs_wkt=ctx.store.crs.to_wkt(),
        origin=ctx.store.project_origin,
        translation=(translation[0], translation[1], translation[2]),
        rotation_bounds=(bounds[0], bounds[1], 0.0, bounds[2], bounds[3], 0.0),
        buildings=columns,
        blocks=block_rows,
        footprints=b.footprints[sel],
        ground=b.ground_z[sel],
        height=b.height[sel],
        simplify=0.0 if leaf else node.size / 256,
    )
    if bim_rows:
        add_elements(ctx, job, [int(b.ids[members[k]]) for k in bim_rows], bim_rows)
    return job


def add_elements(ctx: BuildContext, job: TileJob, ids: list[int], rows: list[int]) -> None:
    row_of = dict(zip(ids, rows, strict=True))
    cols: dict[str, list[Any]] = {
        "global_id": [],
        "ifc_class": [],
        "name": [],
        "storey": [],
        "building_id": [],
        "precast": [],
    }
    for mesh in element_meshes(ctx.store, building_ids=ids):
        erow = len(cols["global_id"])
        cols["global_id"].append(mesh.global_id)
        cols["ifc_class"].append(mesh.ifc_class)
        cols["name"].append(mesh.name)
        cols["storey"].append(mesh.storey)
        cols["building_id"].append(mesh.building_id if mesh.building_id is not None else -1)
        cols["precast"].append(
            "unknown" if mesh.precast is None else "precast" if mesh.precast else "cast in place"
        )
        brow = row_of[mesh.building_id] if mesh.building_id in row_of else rows[0]
        job.parts += split_by_colour(
            mesh.positions, mesh.normals, mesh.indices, mesh.rgba, brow, erow
        )
    job.elements = cols


def building_columns(b: Buildings, members: NDArray[np.int64]) -> dict[str, list[Any]]:
    def col(name: str, default: Any = None) -> list[Any]:
        values = b.columns[name]
        return [default if values[i] is None else values[i] for i in members]

    return {
        "id": [int(b.ids[i]) for i in members],
        "name": col("name", ""),
        "use": col("use", ""),
        "height": [float(b.height[i]) if math.isfinite(b.height[i]) else -1.0 for i in members],
        "ground_z": [float(b.ground_z[i]) for i in members],
        "floors": col("storeys_above", -1),
        "gross_floor_area": [float(v) for v in col("gross_floor_area", -1.0)],
        "year": col("year_built", -1),
        "green_star": col("green_star", -1),
        "lod": col("lod", ""),
        "source": [b.source_kinds[i] for i in members],
        "height_source": col("height_source", ""),
        "prefab_rate": [float(v) for v in col("prefab_rate", -1.0)],
        "prefab_grade": col("prefab_grade", ""),
        "energy_status": col("energy_status", ""),
        "shape_coefficient": [float(v) for v in col("shape_coefficient", -1.0)],
        "pv_kwp": [float(v) for v in col("pv_kwp", -1.0)],
        "pv_kwh_per_m2": [float(v) for v in col("pv_kwh_per_m2", -1.0)],
    }


def _tile(node: Node, city: City, uris: dict[int, str]) -> Tile:
    children = [_tile(c, city, uris) for c in node.children]
    lo, hi = city.lo[node.members].min(axis=0), city.hi[node.members].max(axis=0)
    tile: Tile = {
        "boundingVolume": box(lo, hi),
        "geometricError": 0.0 if not children else node.size / 16,
        "refine": "REPLACE",
        "content": {"uri": uris[id(node)]},
    }
    if children:
        tile["children"] = children
    return tile
