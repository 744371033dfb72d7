"""LoD1 blocks: footprints extruded from their ground level to their height, for many buildings
at once (NumPy over all the rings' edges; shapely's constrained Delaunay triangulation for the
roofs, which keeps holes and concave outlines right).

Walls get flat normals (four vertices a wall quad), roofs point up; the floor is not drawn (it
is never seen from above ground). A building whose height is unknown is drawn one storey high
(``UNKNOWN_HEIGHT``): its height property says it is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

#: metres drawn for a building of unknown height (one storey)
UNKNOWN_HEIGHT = 3.0


@dataclass
class Blocks:
    """Triangles of many blocks in project coordinates, with the index of the building each
    vertex belongs to."""

    positions: NDArray[np.float64]  # (n, 3)
    normals: NDArray[np.float64]  # (n, 3) project axes
    indices: NDArray[np.uint32]  # (m, 3)
    feature: NDArray[np.int64]  # (n,) index into the buildings given


def _empty() -> Blocks:
    return Blocks(
        np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3), np.uint32), np.zeros(0, np.int64)
    )


def extrude(
    footprints: NDArray[np.object_],
    ground: NDArray[np.float64],
    height: NDArray[np.float64],
    simplify: float = 0.0,
) -> Blocks:
    """Blocks of the footprints (shapely polygons, project CRS) from ``ground`` up by
    ``height`` (NaN: ``UNKNOWN_HEIGHT``); ``simplify`` (metres) thins the outlines first."""
    if len(footprints) == 0:
        return _empty()
    geoms = footprints
    if simplify > 0:
        simplified = shapely.simplify(geoms, simplify, preserve_topology=True)
        # an outline simplified away keeps its own shape
        geoms = np.where(shapely.is_empty(simplified), geoms, simplified)
    geoms = shapely.orient_polygons(geoms, exterior_cw=False)
    top = ground + np.where(np.isfinite(height) & (height > 0), height, UNKNOWN_HEIGHT)
    polys, owner = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(polys) & (shapely.area(polys) > 0)
    polys, owner = polys[keep], owner[keep]
    if len(polys) == 0:
        return _empty()
    walls = _walls(polys, owner, ground, top)
    roofs = _roofs(polys, owner, top)
    offset = len(walls.positions)
    return Blocks(
        positions=np.vstack([walls.positions, roofs.positions]),
        normals=np.vstack([walls.normals, roofs.normals]),
        indices=np.vstack([walls.indices, roofs.indices + offset]).astype(np.uint32),
        feature=np.concatenate([walls.feature, roofs.feature]),
    )


def _walls(
    polys: NDArray[np.object_],
    owner: NDArray[np.int64],
    ground: NDArray[np.float64],
    top: NDArray[np.float64],
) -> Blocks:
    rings, ring_poly = shapely.get_rings(polys, return_index=True)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    # an edge joins consecutive coordinates of the same (closed) ring
    same = ring[:-1] == ring[1:]
    a, b = coords[:-1][same], coords[1:][same]
    building = owner[ring_poly[ring[:-1][same]]]
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    ok = length > 1e-6
    a, b, d, length, building = a[ok], b[ok], d[ok], length[ok], building[ok]
    e = len(a)
    z0, z1 = ground[building], top[building]
    pos = np.empty((e, 4, 3))
    pos[:, 0, :2], pos[:, 0, 2] = a, z0
    pos[:, 1, :2], pos[:, 1, 2] = b, z0
    pos[:, 2, :2], pos[:, 2, 2] = b, z1
    pos[:, 3, :2], pos[:, 3, 2] = a, z1
    normal = np.column_stack([d[:, 1] / length, -d[:, 0] / length, np.zeros(e)])
    base = (np.arange(e) * 4)[:, None]
    tris = np.hstack([base + np.array([0, 1, 2]), base + np.array([0, 2, 3])]).reshape(-1, 3)
    return Blocks(
        positions=pos.reshape(-1, 3),
        normals=np.repeat(normal, 4, axis=0),
        indices=tris.astype(np.uint32),
        feature=np.repeat(building, 4),
    )


def _roofs(
    polys: NDArray[np.object_], owner: NDArray[np.int64], top: NDArray[np.float64]
) -> Blocks:
    triangulated = shapely.constrained_delaunay_triangles(polys)
    tris, which = shapely.get_parts(triangulated, return_index=True)
    if len(tris) == 0:
        return _empty()
    coords = shapely.get_coordinates(shapely.get_exterior_ring(tris)).reshape(-1, 4, 2)[:, :3]
    # upward faces: counter-clockwise seen from above
    cross = (coords[:, 1, 0] - coords[:, 0, 0]) * (coords[:, 2, 1] - coords[:, 0, 1]) - (
        coords[:, 1, 1] - coords[:, 0, 1]
    ) * (coords[:, 2, 0] - coords[:, 0, 0])
    flip = cross < 0
    coords[flip] = coords[flip][:, ::-1]
    building = owner[which]
    t = len(coords)
    pos = np.empty((t, 3, 3))
    pos[:, :, :2] = coords
    pos[:, :, 2] = top[building][:, None]
    return Blocks(
        positions=pos.reshape(-1, 3),
        normals=np.tile([0.0, 0.0, 1.0], (t * 3, 1)),
        indices=np.arange(t * 3, dtype=np.uint32).reshape(-1, 3),
        feature=np.repeat(building, 3),
    )
