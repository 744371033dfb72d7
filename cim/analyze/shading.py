"""Shadows on roof facets from the city: rays from sample points toward the sun.

The city is triangles: each LoD1 building its footprint extruded from the ground to its
height, each IFC building its element meshes. A building is shaded by the buildings whose
footprints come within the rules' radius of it (the same ones its fingerprint covers). The
year's daylight hours are grouped into bins of sun azimuth x elevation; one ray per sample
point and bin goes toward the bin's mean sun direction, and a facet's lit fraction in an hour
is the share of its points whose ray for that hour's bin reaches the sky. Rays are cast by
trimesh with Embree (embreex) when it is installed, else by trimesh's numpy engine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

F64 = NDArray[np.float64]
log = logging.getLogger(__name__)


def ray_engine() -> str:
    """'embree' when embreex is importable, else 'numpy'."""
    try:
        import embreex  # noqa: F401
    except ImportError:
        return "numpy"
    return "embree"


def intersector(vertices: F64, faces: NDArray[np.int64], engine: str | None = None) -> Any:
    """Something with ``intersects_any(origins, directions)``: trimesh's Embree intersector,
    or ``NumpyScene`` (no dependency beyond numpy) when embreex is missing or asked not to."""
    if (engine or ray_engine()) == "embree":
        import trimesh
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        return RayMeshIntersector(trimesh.Trimesh(vertices=vertices, faces=faces, process=False))
    return NumpyScene(vertices[faces])


class NumpyScene:
    """Ray-triangle tests (Moller-Trumbore) in numpy, in chunks: a fallback for small scenes
    (trimesh's own numpy engine needs rtree, which is not a dependency here)."""

    def __init__(self, triangles: F64, chunk: int = 2_000_000) -> None:
        self.v0 = triangles[:, 0]
        self.e1 = triangles[:, 1] - triangles[:, 0]
        self.e2 = triangles[:, 2] - triangles[:, 0]
        self.lo = triangles.min(axis=1)
        self.hi = triangles.max(axis=1)
        self.chunk = chunk

    def intersects_any(self, origins: F64, directions: F64) -> NDArray[np.bool_]:
        n, m = len(origins), len(self.v0)
        out = np.zeros(n, dtype=bool)
        if m == 0 or n == 0:
            return out
        step = max(1, self.chunk // m)
        for a in range(0, n, step):
            o, d = origins[a : a + step, None, :], directions[a : a + step, None, :]
            p = np.cross(d, self.e2)
            det = np.einsum("rtk,tk->rt", p, self.e1)
            ok = np.abs(det) > 1e-12
            inv = np.divide(1.0, det, out=np.zeros_like(det), where=ok)
            s = o - self.v0
            u = np.einsum("rtk,rtk->rt", s, p) * inv
            q = np.cross(s, self.e1)
            v = np.einsum("rtk,rtk->rt", np.broadcast_to(d, q.shape), q) * inv
            t = np.einsum("rtk,tk->rt", q, self.e2) * inv
            hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
            out[a : a + step] = hit.any(axis=1)
        return out


def extrude(footprint: Any, bottom: float, top: float) -> tuple[F64, NDArray[np.int64]]:
    """Walls and roof of a footprint extruded from ``bottom`` to ``top`` (triangles)."""
    verts: list[F64] = []
    faces: list[NDArray[np.int64]] = []
    n = 0
    for poly in getattr(footprint, "geoms", [footprint]):
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords)[:-1, :2]
            k = len(xy)
            if k < 2:
                continue
            lo = np.column_stack([xy, np.full(k, bottom)])
            hi = np.column_stack([xy, np.full(k, top)])
            verts += [lo, hi]
            i = np.arange(k)
            j = (i + 1) % k
            faces.append(np.column_stack([n + i, n + j, n + k + j]))
            faces.append(np.column_stack([n + i, n + k + j, n + k + i]))
            n += 2 * k
        tris = shapely.constrained_delaunay_triangles(poly)
        for t in getattr(tris, "geoms", []):
            xy = np.asarray(t.exterior.coords)[:3, :2]
            verts.append(np.column_stack([xy, np.full(3, top)]))
            faces.append(np.array([[n, n + 1, n + 2]]))
            n += 3
    if not verts:
        return np.empty((0, 3)), np.empty((0, 3), dtype=np.int64)
    return np.vstack(verts), np.vstack(faces).astype(np.int64)


@dataclass
class SunBins:
    """The year's daylight hours grouped by sun direction."""

    hour_bin: NDArray[np.int64]  # per hour: its bin, -1 when the sun is down
    directions: F64  # (b, 3) unit vectors toward the sun, one per bin

    @classmethod
    def of(cls, sun: F64, up: NDArray[np.bool_], az_step: float, el_step: float) -> SunBins:
        az = np.degrees(np.arctan2(sun[:, 0], sun[:, 1])) % 360.0
        el = np.degrees(np.arcsin(np.clip(sun[:, 2], -1.0, 1.0)))
        key = np.floor(az / az_step).astype(np.int64) * 1000 + np.floor(el / el_step).astype(
            np.int64
        )
        hour_bin = np.full(len(sun), -1, dtype=np.int64)
        idx = np.flatnonzero(up)
        uniq, inverse = np.unique(key[idx], return_inverse=True)
        hour_bin[idx] = inverse
        sums = np.zeros((len(uniq), 3))
        np.add.at(sums, inverse, sun[idx])
        dirs = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        return cls(hour_bin=hour_bin, directions=dirs)


def lit_fractions(
    scene: Any, points: list[F64], normals: list[F64], bins: SunBins
) -> tuple[list[F64], int]:
    """Per facet: the lit fraction (0..1) of its points for each sun bin, and the rays cast.
    Bins behind a facet's plane are not cast (no direct light reaches it then anyway)."""
    origins: list[F64] = []
    dirs: list[F64] = []
    slots: list[tuple[int, NDArray[np.int64], int]] = []  # facet, bins cast, points
    for f, (pts, n) in enumerate(zip(points, normals, strict=True)):
        front = np.flatnonzero(bins.directions @ n > 1e-6)
        slots.append((f, front, len(pts)))
        if len(front) == 0 or len(pts) == 0:
            continue
        origins.append(np.repeat(pts, len(front), axis=0))
        dirs.append(np.tile(bins.directions[front], (len(pts), 1)))
    out = [np.zeros(len(bins.directions)) for _ in points]
    if not origins:
        return out, 0
    o, d = np.vstack(origins), np.vstack(dirs)
    blocked = scene.intersects_any(o, d) if scene is not None else np.zeros(len(o), dtype=bool)
    at = 0
    for f, front, k in slots:
        if len(front) == 0 or k == 0:
            continue
        m = k * len(front)
        b = np.asarray(blocked[at : at + m], dtype=bool).reshape(k, len(front))
        out[f][front] = 1.0 - b.mean(axis=0)
        at += m
    return out, len(o)


def sky_directions(count: int) -> F64:
    """About ``count`` directions spread evenly over the upper hemisphere (a Fibonacci
    spiral), unit vectors."""
    k = np.arange(count) + 0.5
    z = 1.0 - k / count  # uniform in z over (0, 1]: equal areas of the hemisphere
    r = np.sqrt(1.0 - z * z)
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def sky_view(
    scene: Any, points: list[F64], normals: list[F64], count: int
) -> tuple[list[float], int]:
    """Per facet: the share of the isotropic sky light its points receive that the buildings
    around leave (1: nothing hides the sky), each direction weighted by its cosine to the
    facet's normal; and the rays cast."""
    dirs = sky_directions(count)
    out = []
    rays = 0
    for pts, n in zip(points, normals, strict=True):
        w = dirs @ n
        front = w > 0
        if scene is None or len(pts) == 0 or not front.any():
            out.append(1.0)
            continue
        d, w = dirs[front], w[front]
        o = np.repeat(pts, len(d), axis=0)
        rays += len(o)
        blocked = np.asarray(scene.intersects_any(o, np.tile(d, (len(pts), 1))), dtype=bool)
        open_ = 1.0 - blocked.reshape(len(pts), len(d)).mean(axis=0)
        out.append(float((open_ * w).sum() / w.sum()))
    return out, rays


@dataclass
class Rays:
    """A building's shading work: picklable, nothing of the store in it (``cast_rays``)."""

    vertices: F64
    faces: NDArray[np.int64]
    points: list[F64]
    normals: list[F64]
    bins: SunBins
    sky_directions: int
    engine: str | None


def cast_rays(work: Rays) -> tuple[list[F64], list[float], int, float]:
    """A worker's part (module level, for the executor): per facet, the lit fraction of each
    sun bin and the share of the sky its points see; the rays cast and the seconds casting
    them took."""
    scene = intersector(work.vertices, work.faces, work.engine) if len(work.faces) else None
    t = time.perf_counter()
    lit, rays = lit_fractions(scene, work.points, work.normals, work.bins)
    count = work.sky_directions
    views, sky_rays = (
        sky_view(scene, work.points, work.normals, count)
        if count
        else ([1.0] * len(work.points), 0)
    )
    return lit, views, rays + sky_rays, time.perf_counter() - t
