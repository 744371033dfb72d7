"""Roof facets: planar pieces of roof with a tilt, an azimuth, an outline and an area.

From an LoD1 footprint (a flat roof: the footprint at ground + height) or from an IFC model's
meshes (the upward faces of IfcRoof / IfcSlab ROOF elements, else of every element, that see
the sky: nothing of the model above them), grouped into planes by normal and offset and split
into connected pieces. Each facet carries its outline in its own plane's coordinates, so the
usable-area rules (``usable``) and the sample points of the shading rays work the same way on
a flat roof and on a pitched one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

F64 = NDArray[np.float64]
UP = np.array([0.0, 0.0, 1.0])
#: triangles steeper than this are walls, not roof (degrees)
MAX_ROOF_TILT = 80.0
#: normals within this angle (degrees) and planes within this offset (m) are one facet
PLANE_ANGLE = 5.0
PLANE_OFFSET = 0.25
#: sample points and sky rays start this far above the facet (m)
LIFT = 0.05


@dataclass(eq=False)
class Facet:
    source: str  # lod1 | ifc
    normal: F64  # unit, upward
    origin: F64  # a point of the plane (project CRS)
    outline: Any  # shapely (Multi)Polygon in the plane's (u, v) coordinates, metres
    elements: list[str] = field(default_factory=list)  # IFC GlobalIds
    usable: Any = None  # the outline after the rules (None: not usable)
    excluded: str | None = None  # the rule that left it out
    sample_count: int = 0  # shading rays' start points
    sky_view: float = 1.0  # share of the sky's diffuse light the buildings around leave
    obstacles: Any = None  # parts of the outline under obstacles (LiDAR points, IFC elements)
    blockers: list[str] = field(default_factory=list)  # GlobalIds of IFC elements on it

    @property
    def tilt(self) -> float:
        return float(np.degrees(np.arccos(np.clip(self.normal[2], -1.0, 1.0))))

    @property
    def azimuth(self) -> float:
        """Degrees clockwise from north the facet faces (180 for a flat one)."""
        if self.tilt < 0.05:
            return 180.0
        return float(np.degrees(np.arctan2(self.normal[0], self.normal[1])) % 360.0)

    @property
    def area(self) -> float:
        return float(self.outline.area)

    @property
    def usable_area(self) -> float:
        return 0.0 if self.usable is None else float(self.usable.area)

    def axes(self) -> tuple[F64, F64]:
        return plane_axes(self.normal)

    def to_3d(self, uv: F64) -> F64:
        u, v = self.axes()
        out: F64 = self.origin + uv[:, :1] * u + uv[:, 1:2] * v
        return out

    def samples(self, count: int, min_spacing: float) -> F64:
        """Up to about ``count`` points (project CRS) on a grid over the usable outline,
        lifted a little off the plane."""
        shape = self.usable if self.usable is not None else self.outline
        if shape.is_empty:
            return np.empty((0, 3))
        step = max(min_spacing, float(np.sqrt(shape.area / max(count, 1))))
        x0, y0, x1, y1 = shape.bounds
        xs = np.arange(x0 + step / 2, x1, step)
        ys = np.arange(y0 + step / 2, y1, step)
        mx, my = np.meshgrid(xs, ys)
        gx, gy = mx.ravel(), my.ravel()
        inside = shapely.contains_xy(shape, gx, gy)
        uv = np.column_stack([gx[inside], gy[inside]])
        if len(uv) == 0:
            p = shape.representative_point()
            uv = np.array([[p.x, p.y]])
        return self.to_3d(uv) + self.normal * LIFT

    def outline_3d(self) -> list[list[list[float]]]:
        """The outline's exterior ring(s) in the project CRS (for reports and the viewer)."""
        polys = getattr(self.outline, "geoms", [self.outline])
        rings = []
        for p in polys:
            xyz = self.to_3d(np.asarray(p.exterior.coords)[:, :2])
            rings.append([[round(float(c), 3) for c in pt] for pt in xyz])
        return rings

    def usable_3d(self) -> list[list[list[list[float]]]]:
        """The usable part (after setback and obstacles) as polygons, each its exterior ring
        then its holes, in the project CRS: what the PV facet tiles colour."""
        if self.usable is None or self.usable.is_empty:
            return []
        polys = getattr(self.usable, "geoms", [self.usable])
        out = []
        for p in polys:
            if not isinstance(p, shapely.Polygon) or p.is_empty:
                continue
            rings = []
            for ring in (p.exterior, *p.interiors):
                xyz = self.to_3d(np.asarray(ring.coords)[:, :2])
                rings.append([[round(float(c), 3) for c in pt] for pt in xyz])
            out.append(rings)
        return out


def plane_axes(normal: F64) -> tuple[F64, F64]:
    """Two unit axes of the plane: u horizontal (along the contour), v up the slope."""
    h = np.cross(UP, normal)
    if np.linalg.norm(h) < 1e-9:
        return np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    u = h / np.linalg.norm(h)
    v = np.cross(normal, u)
    return u, v / np.linalg.norm(v)


def flat_roof(footprint: Any, top_z: float) -> Facet:
    """The LoD1 roof: the footprint at ``top_z``; plane coordinates are x, y less the
    centroid's (so the outline keeps its shape)."""
    c = footprint.centroid
    origin = np.array([c.x, c.y, top_z])
    outline = shapely.affinity.translate(shapely.force_2d(footprint), -c.x, -c.y)
    return Facet(source="lod1", normal=UP.copy(), origin=origin, outline=outline)


def triangle_facets(
    vertices: F64, faces: NDArray[np.int64], owners: list[str], face_owner: NDArray[np.int64]
) -> list[Facet]:
    """Facets from triangles (project CRS): upward ones grouped by plane, then split into
    connected pieces."""
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    double = np.linalg.norm(cross, axis=1)
    ok = double > 1e-6
    normal = np.zeros_like(cross)
    normal[ok] = cross[ok] / double[ok, None]
    keep = ok & (normal[:, 2] > np.cos(np.radians(MAX_ROOF_TILT)))
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return []
    order = idx[np.argsort(-double[idx])]
    centroids = tri.mean(axis=1)
    offset = np.einsum("ij,ij->i", normal, centroids)
    groups: list[list[int]] = []
    g_normal: list[F64] = []
    g_offset: list[float] = []
    cos_tol = np.cos(np.radians(PLANE_ANGLE))
    for t in order:
        if g_normal:
            same_dir = np.asarray(g_normal) @ normal[t] > cos_tol
            same_off = np.abs(np.asarray(g_offset) - offset[t]) < PLANE_OFFSET
            match = np.flatnonzero(same_dir & same_off)
            if len(match):
                groups[int(match[0])].append(int(t))
                continue
        groups.append([int(t)])
        g_normal.append(normal[t])
        g_offset.append(float(offset[t]))
    out: list[Facet] = []
    for members in groups:
        w = double[members]
        mean_n = (normal[members] * w[:, None]).sum(axis=0)
        mean_n /= np.linalg.norm(mean_n)
        origin = (centroids[members] * w[:, None]).sum(axis=0) / w.sum()
        u, v = plane_axes(mean_n)
        rel = tri[members] - origin
        uv = np.stack([rel @ u, rel @ v], axis=-1)
        polys = shapely.polygons(uv)
        # grown and shrunk by a millimetre: triangles that touch merge, the area stays
        merged = shapely.union_all(shapely.buffer(polys, 1e-3, join_style="mitre"))
        merged = shapely.buffer(merged, -1e-3, join_style="mitre")
        for piece in getattr(merged, "geoms", [merged]):
            if piece.is_empty or piece.area < 1e-3:
                continue
            hit = shapely.intersects(polys, piece)
            names = sorted({owners[int(face_owner[members[i]])] for i in np.flatnonzero(hit)})
            out.append(
                Facet(source="ifc", normal=mean_n, origin=origin, outline=piece, elements=names)
            )
    return out


def apply_rules(facets: list[Facet], rules: list[dict[str, Any]]) -> None:
    """The usable part of each facet by the rules file's ``usable`` rows, in their order: the
    first rule a facet fails leaves it out and is named."""
    by_id = {r["id"]: r for r in rules}
    for f in facets:
        f.usable, f.excluded = None, None
        tilt, az = f.tilt, f.azimuth
        r = by_id.get("max-tilt")
        if r and tilt > float(r["max_tilt_deg"]):
            f.excluded = "max-tilt"
            continue
        r = by_id.get("north-facing")
        if r and tilt > float(r["max_tilt_deg"]):
            off_north = min(az, 360.0 - az)
            if off_north <= float(r["north_sector_deg"]):
                f.excluded = "north-facing"
                continue
        r = by_id.get("edge-setback")
        shape = f.outline if f.obstacles is None else f.outline.difference(f.obstacles)
        if r and float(r["setback_m"]) > 0:
            # the outline's collinear and nearly coincident vertices (metre triangles of a
            # mesh merged) go first: GEOS's mitre joins divide by their zero-length edges
            shape = shape.simplify(1e-4).buffer(-float(r["setback_m"]), join_style="mitre")
        r = by_id.get("min-area")
        if shape.is_empty or (r and shape.area < float(r["min_area_m2"])):
            f.excluded = "min-area"
            continue
        f.usable = shape


#: RANSAC on roof points: a point within this distance (m) of a plane is on it
RANSAC_DISTANCE = 0.15
RANSAC_TRIALS = 300
#: a plane needs this many points (and this share of the roof's points) to be a facet
MIN_PLANE_POINTS = 30
MIN_PLANE_SHARE = 0.05
MAX_PLANES = 8


def fit_plane(xyz: F64) -> tuple[F64, F64]:
    """Least-squares plane through points: (unit normal, upward; centroid)."""
    c = xyz.mean(axis=0)
    _, _, vt = np.linalg.svd(xyz - c, full_matrices=False)
    n = vt[-1]
    n = n if n[2] >= 0 else -n
    return n / np.linalg.norm(n), c


def point_facets(xyz: F64, footprint: Any, seed: int = 0) -> list[Facet]:
    """Facets from a roof's points (LiDAR class 6 inside a footprint): planes found one after
    another by RANSAC (the plane with most points within ``RANSAC_DISTANCE``, refitted by least
    squares) and kept to its largest patch of touching cells, each outlined by the concave hull
    of its points in its own plane, clipped to the footprint's outline raised onto the plane."""
    rng = np.random.default_rng(seed)
    left = xyz
    out: list[Facet] = []
    need = max(MIN_PLANE_POINTS, int(MIN_PLANE_SHARE * len(xyz)))
    while len(left) >= need and len(out) < MAX_PLANES:
        # planes are tried and scored on at most a few thousand of the points
        probe = left if len(left) <= 4000 else left[rng.choice(len(left), 4000, replace=False)]
        picks = rng.integers(0, len(probe), size=(RANSAC_TRIALS, 3))
        a, b, c = probe[picks[:, 0]], probe[picks[:, 1]], probe[picks[:, 2]]
        normals = np.cross(b - a, c - a)
        length = np.linalg.norm(normals, axis=1)
        ok = length > 1e-6
        normals[ok] /= length[ok, None]
        upright = ok & (np.abs(normals[:, 2]) > np.cos(np.radians(MAX_ROOF_TILT)))
        if not upright.any():
            break
        normals, a = normals[upright], a[upright]
        offsets = np.einsum("tk,tk->t", normals, a)[:, None]
        dist = np.abs(np.einsum("tk,nk->tn", normals, probe) - offsets)
        counts = (dist < RANSAC_DISTANCE).sum(axis=1)
        best = int(np.argmax(counts))
        if counts[best] * len(left) / len(probe) < need:
            break
        n, centre = normals[best], a[best]
        inliers = np.abs((left - centre) @ n) < RANSAC_DISTANCE
        n, centre = fit_plane(left[inliers])
        inliers = np.abs((left - centre) @ n) < RANSAC_DISTANCE
        inliers &= _largest_patch(left, inliers, n, centre)
        if inliers.sum() < MIN_PLANE_POINTS:
            # the plane's points are scattered: leave them, try the next plane
            left = left[~(np.abs((left - centre) @ n) < RANSAC_DISTANCE)]
            continue
        n, centre = fit_plane(left[inliers])
        pts = left[inliers]
        left = left[~inliers]
        if n[2] < np.cos(np.radians(MAX_ROOF_TILT)):
            continue
        u, v = plane_axes(n)
        uv = np.column_stack([(pts - centre) @ u, (pts - centre) @ v])
        outline = shapely.concave_hull(shapely.MultiPoint(uv), ratio=HULL_RATIO)
        # clipped to the footprint raised onto the plane (x, y give z on it, then u, v)
        ring = np.asarray(shapely.force_2d(footprint).exterior.coords)[:, :2]
        z = centre[2] - ((ring[:, 0] - centre[0]) * n[0] + (ring[:, 1] - centre[1]) * n[1]) / n[2]
        rel = np.column_stack([ring, z]) - centre
        clip = shapely.Polygon(np.column_stack([rel @ u, rel @ v])).buffer(0)
        outline = shapely.intersection(outline, clip)
        if outline.is_empty or outline.area < 1e-3:
            continue
        facet = Facet(source="lidar", normal=n, origin=centre, outline=outline)
        facet.obstacles = _obstacles(xyz, facet)
        out.append(facet)
    return out


#: roof points standing this far above a facet's plane (m) are an obstacle on it (a chimney,
#: a vent, a dormer) and up to OBSTACLE_TOP: higher ones are another roof or a tree
OBSTACLE_MIN = 0.5
OBSTACLE_TOP = 6.0


def _obstacles(xyz: F64, facet: Facet) -> Any:
    """Cells of the facet's outline under points standing above its plane, grown by half a
    metre (what panels keep clear of), or None."""
    u, v = facet.axes()
    rel = xyz - facet.origin
    up = rel @ facet.normal
    above = (up > OBSTACLE_MIN) & (up < OBSTACLE_TOP)
    if not above.any():
        return None
    uv = np.column_stack([rel[above] @ u, rel[above] @ v])
    inside = shapely.contains_xy(facet.outline, uv[:, 0], uv[:, 1])
    if inside.sum() < 3:
        return None
    shape = shapely.union_all(shapely.buffer(shapely.points(uv[inside]), 0.5))
    out = shapely.intersection(shape, facet.outline)
    return None if out.is_empty else out


#: roof points are binned in cells of this size (m) to find connected patches
CELL = 1.0
#: a facet's outline: the concave hull of its points (shapely's ratio: 0 hugs them, 1 convex)
HULL_RATIO = 0.3


def _cells(uv: F64) -> tuple[NDArray[np.int64], F64]:
    lo = uv.min(axis=0)
    return np.floor((uv - lo) / CELL).astype(np.int64), lo


def _largest_patch(xyz: F64, inliers: NDArray[np.bool_], n: F64, centre: F64) -> NDArray[np.bool_]:
    """The inliers in the largest patch of touching cells (8-connected) on the plane: points of
    another roof part that happen to lie near the plane are not the facet."""
    from scipy import ndimage

    idx = np.flatnonzero(inliers)
    u, v = plane_axes(n)
    rel = xyz[idx] - centre
    cells, _ = _cells(np.column_stack([rel @ u, rel @ v]))
    grid = np.zeros(tuple(cells.max(axis=0) + 1), dtype=bool)
    grid[cells[:, 0], cells[:, 1]] = True
    labels, count = ndimage.label(grid, structure=np.ones((3, 3)))
    keep = np.zeros(len(xyz), dtype=bool)
    if count == 0:
        return keep
    lab = labels[cells[:, 0], cells[:, 1]]
    biggest = int(np.argmax(np.bincount(lab)[1:]) + 1)
    keep[idx[lab == biggest]] = True
    return keep


#: an IFC element is an obstacle on a facet where it stands this far above the facet's plane
#: (m; below: the roof's own build-up, tiles and battens) and below OBSTACLE_TOP
ELEMENT_MIN = 0.1
#: what panels keep clear of around an obstacle (m), as around LiDAR obstacles
CLEARANCE = 0.5


def element_obstacles(
    facet: Facet,
    vertices: F64,
    faces: NDArray[np.int64],
    face_owner: NDArray[np.int64],
    owners: list[str],
    skip: set[str],
) -> list[str]:
    """IFC elements standing on the facet (a chimney, a railing, plant, a proxy on the roof):
    the part of each triangle above the facet's plane (``ELEMENT_MIN`` to ``OBSTACLE_TOP``)
    projected onto it, grown by ``CLEARANCE`` and clipped to the outline, joins the facet's
    obstacles; the elements in ``skip`` (the roof itself) are not obstacles. Returns the
    GlobalIds of the elements that take part of the facet."""
    keep = np.array([owners[o] not in skip for o in face_owner], dtype=bool)
    if not keep.any():
        return []
    tri = vertices[faces[keep]]
    up = (tri - facet.origin) @ facet.normal
    above = (up.max(axis=1) > ELEMENT_MIN) & (up.min(axis=1) < OBSTACLE_TOP)
    if not above.any():
        return []
    u, v = facet.axes()
    rel = tri[above] - facet.origin
    uv = np.stack([rel @ u, rel @ v], axis=-1)  # (n, 3, 2): each triangle seen from above
    # every triangle's shadow on the plane, vertical ones (wall faces) as lines: their convex
    # hull grown by the clearance covers both (shapely, vectorised over the triangles)
    hulls = shapely.convex_hull(shapely.multipoints(uv))
    grown = shapely.buffer(hulls, CLEARANCE)
    hits = shapely.intersects(grown, facet.outline)
    if not hits.any():
        return []
    shape = shapely.intersection(shapely.union_all(grown[hits]), facet.outline)
    if shape.is_empty or shape.area < 1e-3:
        return []
    facet.obstacles = shape if facet.obstacles is None else facet.obstacles.union(shape)
    who = face_owner[keep][above][hits]
    facet.blockers = sorted({owners[int(o)] for o in who})
    return facet.blockers
