"""The outer envelope of a modelled building, from its element meshes.

GB 55015-2021 measures the envelope from outside: the shape coefficient (体形系数) is the
surface in contact with outdoor air over the volume it encloses, the window-to-wall ratio
(窗墙面积比) is per orientation the window openings over the gross facade.

Method (``measure_envelope``):

1. The envelope's solids are the meshes of the walls, curtain walls and their panels, slabs,
   roofs, windows, doors, columns and the opening elements. An opening stands for the window
   or door in it (the caller leaves those out), filled flush with its wall: the facade is
   measured gross, openings not deducted, the reveals are not outside surface, and of an
   opening deeper than its wall only its outer face counts. Each element's solid is
   rasterised, filled, into a voxel grid (``pitch``: 0.1 m for a house, coarser for a large
   building so the grid stays under ``MAX_CELLS``), closed by one voxel (gaps of up to two
   voxels between elements are sealed), and the outside air is flood-filled from the grid's
   border. What the air does not reach is the enclosed building.
2. Each triangle of those meshes (cut into pieces no longer than ``PIECE`` voxels) is outside
   surface where a probe a little way along its normal lands in outside air (the meshes are
   closed solids wound outward, as the ingest's kernel makes them). The surface is counted
   from the model's own triangles, so sloped roofs and diagonal walls keep their true areas
   (voxels would staircase them); the grid only says which side of a surface is outside.
3. Below the ground level (the building's ground_z, else its lowest point) nothing is in
   contact with outdoor air: pieces are clipped at it, and faces looking up or down less than
   ``GROUND_CONTACT`` above it rest on the ground. Faces steeper than 60 degrees are walls,
   those facing up are roofs, those facing down floors over outdoor air (or eaves' soffits).
4. The enclosed volume above ground is the flux of (0, 0, z - ground) through the outside
   surface, which needs only the surfaces that face up or down; the voxel count gives a second
   estimate, kept in the evidence (it errs outward by about half a voxel over the surface).

Walls with outside air on both faces (parapets above the roof, garden walls, fins) enclose
nothing: ``Envelope.envelope_only`` leaves them out of the areas (their volume stays: the flux
needs every face).

Limits, said in every report: roof overhangs, balconies and canopies that are modelled as part
of the roof or slabs count as envelope (their top, edges and soffits), since nothing in a model
says which volume is heated; gaps wider than two voxels in the envelope (a model without
windows in its openings is fine, openings fill them) let outside air in and the spaces behind
them count as outside; a face against an element thinner than one and a half voxels (a 0.15 m
membrane in a house) may be taken as outside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cim.model.meshes import ElementMesh

#: classes whose meshes make the envelope's solids
ENVELOPE_CLASSES = (
    "IfcWall",
    "IfcWallStandardCase",
    "IfcWallElementedCase",
    "IfcCurtainWall",
    "IfcPlate",
    "IfcSlab",
    "IfcSlabStandardCase",
    "IfcSlabElementedCase",
    "IfcRoof",
    "IfcWindow",
    "IfcWindowStandardCase",
    "IfcDoor",
    "IfcDoorStandardCase",
    "IfcColumn",
    "IfcColumnStandardCase",
    "IfcOpeningElement",
    "IfcOpeningStandardCase",
)
_OPENINGS = ("IfcOpeningElement", "IfcOpeningStandardCase")
_WALL_CLASSES = ("IfcWall", "IfcWallStandardCase", "IfcWallElementedCase")
#: grid cells at most (a finer pitch for small buildings, never under MIN_PITCH)
MAX_CELLS = 4_000_000
MIN_PITCH = 0.1
#: the longest edge of a piece of surface tested on its own (voxels): a piece half outside
#: counts whole or not at all, so edges where elements meet are as good as half a piece
PIECE = 2.0
#: voxels by which gaps between elements are closed before the outside air is filled in
CLOSING = 1
#: |nz| at most for a wall (a face steeper than 60 degrees)
WALL_NZ = 0.5
#: a face looking up or down less than this above the ground lies on it (a floor finish on the
#: slab on grade, a porch on grade): in contact with the ground, not envelope (m)
GROUND_CONTACT = 0.3
#: classes whose outside walls make the gross facade of the window-to-wall ratio
FACADE_CLASSES = (
    "IfcWall",
    "IfcWallStandardCase",
    "IfcWallElementedCase",
    "IfcCurtainWall",
    "IfcPlate",
    "IfcWindow",
    "IfcWindowStandardCase",
    "IfcDoor",
    "IfcDoorStandardCase",
    "IfcColumn",
    "IfcColumnStandardCase",
    "IfcOpeningElement",
    "IfcOpeningStandardCase",
)


@dataclass
class Envelope:
    """The outside surface as pieces (area m2, unit outward normal, centroid z, element id),
    and the enclosed volume above ground."""

    pitch: float
    ground_z: float
    area: NDArray[np.float64]
    normal: NDArray[np.float64]
    z: NDArray[np.float64]
    element: NDArray[np.int64]
    volume_flux: float  # m3 above ground, from the outside surface
    volume_voxels: float  # m3 above ground, from the enclosed cells
    cells: int
    notes: list[str] = field(default_factory=list)
    free_standing: set[int] = field(default_factory=set)  # parapets, garden walls, fins

    def envelope_only(self) -> Envelope:
        """The pieces that enclose the building: without walls that have outside air on both
        faces (parapets, fins, garden walls), which enclose nothing. The volume is the same
        (it needs every face)."""
        keep = ~np.isin(self.element, list(self.free_standing))
        return Envelope(
            pitch=self.pitch,
            ground_z=self.ground_z,
            area=self.area[keep],
            normal=self.normal[keep],
            z=self.z[keep],
            element=self.element[keep],
            volume_flux=self.volume_flux,
            volume_voxels=self.volume_voxels,
            cells=self.cells,
            notes=self.notes,
            free_standing=self.free_standing,
        )

    @property
    def volume(self) -> float:
        return self.volume_flux

    def kinds(self) -> NDArray[np.str_]:
        nz = self.normal[:, 2]
        out: NDArray[np.str_] = np.where(
            np.abs(nz) <= WALL_NZ, "wall", np.where(nz > 0, "roof", "floor")
        )
        return out

    def exposed(self) -> set[int]:
        return {int(e) for e in np.unique(self.element)}


def surface_kind(normal: NDArray[np.float64]) -> str:
    nz = float(normal[2])
    if abs(nz) <= WALL_NZ:
        return "wall"
    return "roof" if nz > 0 else "floor"


def _pitch(lo: NDArray[np.float64], hi: NDArray[np.float64]) -> float:
    extent = np.maximum(hi - lo, MIN_PITCH) + 6 * MIN_PITCH
    pitch = (float(np.prod(extent)) / MAX_CELLS) ** (1 / 3)
    return float(max(MIN_PITCH, math.ceil(pitch * 100) / 100))


def _split(
    tris: NDArray[np.float64], max_edge: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Triangles (n, 3, 3) cut into pieces with edges at most ``max_edge``; with the index of
    the triangle each piece came from."""
    src = np.arange(len(tris))
    out_t, out_s = [], []
    for _ in range(24):
        if len(tris) == 0:
            break
        edges = np.stack(
            [
                np.linalg.norm(tris[:, 1] - tris[:, 0], axis=1),
                np.linalg.norm(tris[:, 2] - tris[:, 1], axis=1),
                np.linalg.norm(tris[:, 0] - tris[:, 2], axis=1),
            ],
            axis=1,
        )
        small = edges.max(axis=1) <= max_edge
        out_t.append(tris[small])
        out_s.append(src[small])
        big, bs = tris[~small], src[~small]
        a, b, c = big[:, 0], big[:, 1], big[:, 2]
        ab, bc, ca = (a + b) / 2, (b + c) / 2, (c + a) / 2
        tris = np.concatenate(
            [
                np.stack([a, ab, ca], 1),
                np.stack([ab, b, bc], 1),
                np.stack([ca, bc, c], 1),
                np.stack([ab, bc, ca], 1),
            ]
        )
        src = np.concatenate([bs, bs, bs, bs])
    if len(tris):
        out_t.append(tris)
        out_s.append(src)
    return np.concatenate(out_t), np.concatenate(out_s)


def _surface_points(tris: NDArray[np.float64], step: float) -> NDArray[np.float64]:
    """Points on the triangles no more than ``step`` apart: lines parallel to each triangle's
    longest edge, ``step`` apart, each sampled every ``step`` (thin slivers cost few)."""
    e = np.stack([tris[:, (k + 1) % 3] - tris[:, k] for k in range(3)], axis=1)
    longest = np.argmax(np.linalg.norm(e, axis=2), axis=1)
    rows = np.arange(len(tris))
    p0 = tris[rows, longest]
    p1 = tris[rows, (longest + 1) % 3]
    p2 = tris[rows, (longest + 2) % 3]
    base = p1 - p0
    base_len = np.linalg.norm(base, axis=1)
    height = np.linalg.norm(np.cross(base, p2 - p0), axis=1) / np.maximum(base_len, 1e-12)
    m = np.ceil(height / step).astype(np.int64) + 1  # lines per triangle
    tri_of_line = np.repeat(rows, m)
    first = np.cumsum(m) - m
    t = (np.arange(int(m.sum())) - np.repeat(first, m)) / np.maximum(np.repeat(m, m) - 1, 1)
    a = p0[tri_of_line] + t[:, None] * (p2 - p0)[tri_of_line]
    b = p1[tri_of_line] + t[:, None] * (p2 - p1)[tri_of_line]
    n = np.ceil(np.linalg.norm(b - a, axis=1) / step).astype(np.int64) + 1
    line_of_point = np.repeat(np.arange(len(a)), n)
    first_p = np.cumsum(n) - n
    s = (np.arange(int(n.sum())) - np.repeat(first_p, n)) / np.maximum(np.repeat(n, n) - 1, 1)
    out: NDArray[np.float64] = a[line_of_point] + s[:, None] * (b - a)[line_of_point]
    return out


def _rasterise(
    parts: list[NDArray[np.float64]],
    lo: NDArray[np.float64],
    pitch: float,
    shape: tuple[int, ...],
) -> NDArray[np.bool_]:
    """The cells inside the elements' solids: each element's surface (points sampled under
    half a cell apart) with what it encloses filled, so a face against another element is
    covered by it however thin the grid finds it."""
    from scipy import ndimage

    grid = np.zeros(shape, dtype=bool)
    top = np.array(shape) - 1
    for tris in parts:
        pts = _surface_points(tris, pitch / 2)
        idx = np.clip(np.floor((pts - lo) / pitch).astype(np.int64), 0, top)
        i0, i1 = idx.min(axis=0), idx.max(axis=0) + 1
        local = np.zeros(tuple(int(v) for v in i1 - i0), dtype=bool)
        rel = idx - i0
        local[rel[:, 0], rel[:, 1], rel[:, 2]] = True
        if min(local.shape) > 2:
            local = ndimage.binary_fill_holes(local)
        grid[i0[0] : i1[0], i0[1] : i1[1], i0[2] : i1[2]] |= local
    return grid


def _clip_above(tri: NDArray[np.float64], z0: float) -> list[NDArray[np.float64]]:
    """The part of a triangle above z = z0, as triangles."""
    pts = list(tri)
    out: list[NDArray[np.float64]] = []
    n = len(pts)
    for i in range(n):
        p, q = pts[i], pts[(i + 1) % n]
        pin, qin = p[2] >= z0, q[2] >= z0
        if pin:
            out.append(p)
        if pin != qin:
            t = (z0 - p[2]) / (q[2] - p[2])
            out.append(p + t * (q - p))
    if len(out) < 3:
        return []
    return [np.array([out[0], out[k], out[k + 1]]) for k in range(1, len(out) - 1)]


def measure_envelope(meshes: list[ElementMesh], ground_z: float | None) -> Envelope | None:
    """The outside surface and enclosed volume of one building's envelope meshes (see the
    module's docstring); None when there is nothing to measure."""
    from scipy import ndimage

    parts = [m for m in meshes if m.ifc_class in ENVELOPE_CLASSES and len(m.indices)]
    if not parts:
        return None
    tris_by = [m.positions[m.indices.astype(np.int64)] for m in parts]
    owner = np.concatenate(
        [np.full(len(t), m.element_id, dtype=np.int64) for m, t in zip(parts, tris_by, strict=True)]
    )
    tris = np.concatenate(tris_by)
    lo_all, hi_all = tris.reshape(-1, 3).min(axis=0), tris.reshape(-1, 3).max(axis=0)
    pitch = _pitch(lo_all, hi_all)
    lo = lo_all - 3 * pitch
    shape = tuple(int(v) for v in np.ceil((hi_all + 3 * pitch - lo) / pitch).astype(int) + 1)
    solid = _rasterise(tris_by, lo, pitch, shape)
    closed = ndimage.binary_dilation(solid, iterations=CLOSING) if CLOSING else solid
    labels, _ = ndimage.label(~closed)
    border = np.unique(
        np.concatenate(
            [
                labels[0].ravel(),
                labels[-1].ravel(),
                labels[:, 0].ravel(),
                labels[:, -1].ravel(),
                labels[:, :, 0].ravel(),
                labels[:, :, -1].ravel(),
            ]
        )
    )
    outside = np.isin(labels, border[border > 0])
    if CLOSING:
        # back into the corners the closing filled, through air only (never through a wall)
        outside = ndimage.binary_dilation(outside, iterations=CLOSING + 2, mask=~solid)
    ground = float(ground_z) if ground_z is not None else float(lo_all[2])
    notes = []
    if ground_z is None:
        notes.append("ground level unknown: the building's lowest point taken")
    # enclosed cells above ground, for the second estimate
    k0 = int(np.clip(np.floor((ground - lo[2]) / pitch), 0, shape[2]))
    volume_voxels = float((~outside[:, :, k0:]).sum()) * pitch**3

    pieces_t, src = _split(tris, PIECE * pitch)
    v0, v1, v2 = pieces_t[:, 0], pieces_t[:, 1], pieces_t[:, 2]
    cross = np.cross(v1 - v0, v2 - v0)
    area2 = np.linalg.norm(cross, axis=1)
    ok = area2 > 1e-12
    normal = np.zeros_like(cross)
    normal[ok] = cross[ok] / area2[ok, None]
    centre = pieces_t.mean(axis=1)
    limit = np.array(shape) - 1

    def air(points: NDArray[np.float64]) -> NDArray[np.bool_]:
        idx = np.clip(np.floor((points - lo) / pitch).astype(np.int64), 0, limit)
        out: NDArray[np.bool_] = outside[idx[:, 0], idx[:, 1], idx[:, 2]]
        return out

    # the meshes are solids wound outward: a face's outside is on its normal's side (probing
    # behind a face would cross a thin element and find the air on its other side)
    front = np.zeros(len(centre), dtype=bool)
    for d in (0.75, 1.5):  # the second is past the face's own cell wherever the face lies
        front |= air(centre + normal * d * pitch)
    idx = np.flatnonzero(ok & front)
    tri, nrm, own = pieces_t[idx], normal[idx], owner[src[idx]]
    zmin, zmax = tri[:, :, 2].min(axis=1), tri[:, :, 2].max(axis=1)
    above = zmin >= ground
    cut = (zmin < ground) & (zmax > ground)
    kept_t, kept_n, kept_o = [tri[above]], [nrm[above]], [own[above]]
    for i in np.flatnonzero(cut):
        for t in _clip_above(tri[i], ground):
            kept_t.append(t[None])
            kept_n.append(nrm[i][None])
            kept_o.append(own[i : i + 1])
    tri, nrm, own = np.concatenate(kept_t), np.concatenate(kept_n), np.concatenate(kept_o)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    zc = tri[:, :, 2].mean(axis=1)
    flux = float((area * nrm[:, 2] * (zc - ground)).sum())
    # faces lying flat less than GROUND_CONTACT above the ground (a floor finish on the slab
    # on grade, a porch or terrace on grade) are ground, not envelope
    keep = (area > 1e-9) & ~((np.abs(nrm[:, 2]) > WALL_NZ) & (zc < ground + GROUND_CONTACT))
    keep &= _flush_openings(own, nrm, area, {m.element_id for m in parts if m.ifc_class in
                                            _OPENINGS})  # fmt: skip
    return Envelope(
        free_standing=_free_standing(own[keep], nrm[keep], area[keep], parts),
        pitch=pitch,
        ground_z=ground,
        area=area[keep],
        normal=nrm[keep],
        z=zc[keep],
        element=own[keep],
        volume_flux=flux,
        volume_voxels=volume_voxels,
        cells=int(np.prod(shape)),
        notes=notes,
    )


def _flush_openings(
    owner: NDArray[np.int64],
    normal: NDArray[np.float64],
    area: NDArray[np.float64],
    openings: set[int],
) -> NDArray[np.bool_]:
    """An opening stands for the window or door in it, flush with its wall: only its face
    looking the way most of it looks counts (exporters make openings deeper than their wall:
    the strips around the part that stands out are not envelope)."""
    keep = np.ones(len(owner), dtype=bool)
    for eid, m in groups(owner).items():
        if eid not in openings:
            continue
        main = normal[m][np.argmax(area[m])]
        keep[m] = normal[m] @ main > math.cos(math.radians(30))
    return keep


def groups(owner: NDArray[np.int64]) -> dict[int, NDArray[np.int64]]:
    """Element id -> the indices of its pieces (one sort, not a mask per element)."""
    if len(owner) == 0:  # np.split of nothing still gives one (empty) part
        return {}
    order = np.argsort(owner, kind="stable")
    ids, starts = np.unique(owner[order], return_index=True)
    return {int(e): part for e, part in zip(ids, np.split(order, starts[1:]), strict=True)}


def _free_standing(
    owner: NDArray[np.int64],
    normal: NDArray[np.float64],
    area: NDArray[np.float64],
    parts: list[ElementMesh],
) -> set[int]:
    """Walls with outside air on both faces: a parapet above the roof, a garden wall."""
    out = set()
    walls = {m.element_id for m in parts if m.ifc_class in _WALL_CLASSES}
    for eid, idx in groups(owner).items():
        if eid not in walls:
            continue
        mine = idx[np.abs(normal[idx, 2]) <= WALL_NZ]
        if not len(mine):
            continue
        n, a = normal[mine], area[mine]
        main = n[np.argmax(a)]
        front = float(a[n @ main > 0.7].sum())
        back = float(a[n @ main < -0.7].sum())
        if front > 0.5 and back > 0.2 * front:
            out.add(eid)
    return out


def azimuth(normal: NDArray[np.float64], grid_north: float) -> float:
    """Degrees clockwise from true north of a horizontal direction given in the project CRS
    (``grid_north``: the true azimuth of the CRS's +y at the building)."""
    a = math.degrees(math.atan2(float(normal[0]), float(normal[1]))) + grid_north
    return a % 360.0


def azimuths(normals: NDArray[np.float64], grid_north: float) -> NDArray[np.float64]:
    """``azimuth`` of many directions at once."""
    out: NDArray[np.float64] = (
        np.degrees(np.arctan2(normals[:, 0], normals[:, 1])) + grid_north
    ) % 360.0
    return out


def sectors(az: NDArray[np.float64]) -> NDArray[np.str_]:
    """``sector`` of many azimuths at once."""
    a = az % 360.0
    out: NDArray[np.str_] = np.where(
        (a > 300.0) | (a < 60.0),
        "north",
        np.where((a > 150.0) & (a < 210.0), "south", np.where(a <= 150.0, "east", "west")),
    )
    return out


def sector(az: float) -> str:
    """The orientation as GB 55015-2021 (and GB 50189) define it: north from north-east 60 to
    north-west 60 degrees; south from south-east 30 to south-west 30; east and west the rest
    (from 30 degrees north of east or west, inclusive, to 60 degrees south, inclusive)."""
    a = az % 360.0
    if a > 300.0 or a < 60.0:
        return "north"
    if 150.0 < a < 210.0:
        return "south"
    return "east" if a <= 150.0 else "west"


def summarise(values: dict[str, Any]) -> dict[str, Any]:
    """Rounded for a report."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}
