"""The workers' side of the IFC ingest: meshing products, and what a mesh's numbers are.

What the executor's worker processes run (``mesh_chunk``: a chunk of a file's products meshed
with ifcopenshell's geometry iterator) and what the ingesting process shares with them when it
meshes alone: the kernel's settings, ``MeshData``, a mesh's quantities and outline
(``mesh_stats``), the Clipper unions of triangles and polygons behind projected areas and
footprints. It imports only what meshing needs, so that a worker does not load the ingester's
store writes and the models it derives.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import numpy as np
import pyclipper
import shapely
import shapely.affinity
import shapely.errors
from shapely.geometry.base import BaseGeometry

from ingest.ifc.quirks import repair

#: the kernel: faster than the default opencascade on the samples (see
#: benchmarks/ifc_ingest.py); it falls back per element to opencascade
GEOMETRY_LIBRARY = "hybrid-cgal-simple-opencascade"

#: elements whose outline makes the building's footprint, storeys and height
_SHELL_ROOTS = ("IfcBuildingElement", "IfcBuiltElement", "IfcElementAssembly")
_NOT_SHELL = (
    "IfcFooting",
    "IfcPile",
    "IfcBuildingElementProxy",
    "IfcFurnishingElement",
    "IfcOpeningElement",
)

#: a mesh's volume is kept when an open surface could make it wrong by at most this fraction
VOLUME_TOLERANCE = 0.01


@dataclass
class MeshData:
    verts: np.ndarray  # (n,3) float64 model metres
    normals: np.ndarray  # (n,3) float32
    faces: np.ndarray  # (m,3) uint32
    material_ids: np.ndarray  # (m,) int
    materials: list[dict[str, Any]]


def mesh_stats(
    mesh: MeshData, terrain: bool = False
) -> tuple[dict[str, float], BaseGeometry | None]:
    """Volume, surface area, horizontal projected area and height of a mesh, and its outline.

    ``terrain``: the mesh is a surface over the ground (IfcSite, IfcGeographicElement), which
    never folds over itself, so its projected area is the plain sum of its triangles' shadows
    (a union of thousands of TIN triangles would cost far more for the same number).
    """
    v, f = mesh.verts, mesh.faces
    if len(f) == 0:
        return {}, None
    lo, hi = v.min(axis=0), v.max(axis=0)
    tri = v[f]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    # Volume by the divergence theorem, about the mesh's centre (world coordinates can be
    # large). It is only a volume if the surface is closed: an open one's (a tree of crossed
    # planes, a terrain, a bed missing its underside) changes with the origin, by d.A/3 for
    # a shift d, where A, the sum of the triangles' area vectors, is zero for a closed surface.
    # Kept when that change over the mesh's extent is within VOLUME_TOLERANCE of it.
    centre = (lo + hi) / 2
    ca, cb, cc = a - centre, b - centre, c - centre
    volume = abs(float(np.einsum("ij,ij->i", ca, np.cross(cb, cc)).sum()) / 6.0)
    drift = float(np.linalg.norm(hi - lo) * np.linalg.norm(cross.sum(axis=0) / 2.0) / 6.0)
    closed = drift <= VOLUME_TOLERANCE * volume
    zmin, zmax = float(lo[2]), float(hi[2])
    # Horizontal projected area = area of the union of the triangles' shadows on the ground.
    # For a closed solid the upward-facing triangles alone cover that shadow (every vertical
    # line through it leaves the solid through one), and they barely overlap, which makes the
    # union several times faster than with every triangle (the same areas on the samples).
    keep = cross[:, 2] > 1e-10
    if not keep.any():  # an open surface facing down
        keep = np.abs(cross[:, 2]) > 1e-10
    outline = None
    projected = 0.0
    if terrain:
        projected = float(0.5 * np.abs(cross[keep, 2]).sum())
    elif keep.any():
        outline = union_of_triangles(tri[keep][:, :, :2])
        projected = float(outline.area)
    stats = {
        "surface_area": float(area.sum()),
        "projected_area": projected,
        "height": zmax - zmin,
    }
    if closed:
        stats["volume"] = volume
    return stats, outline


class MeshStats:
    """mesh_stats with a memory: a mesh that is a translated copy of one already seen (the
    same window type along a facade, the same tree around a building: 109 of LargeBuilding's
    182 meshes) takes that one's quantities, which a translation leaves unchanged, and its
    outline moved. Copies are recognised by a hash of their vertices relative to their lowest
    corner, to the micrometre, and their triangles."""

    def __init__(self) -> None:
        self._seen: dict[tuple[bool, bytes], tuple[np.ndarray, dict[str, float], Any]] = {}

    def __call__(
        self, mesh: MeshData, terrain: bool = False
    ) -> tuple[dict[str, float], BaseGeometry | None]:
        lo = mesh.verts.min(axis=0) if len(mesh.verts) else np.zeros(3)
        shape = np.round(mesh.verts - lo, 6).tobytes() + mesh.faces.tobytes()
        key = (terrain, hashlib.blake2b(shape, digest_size=16).digest())
        seen = self._seen.get(key)
        if seen is None:
            stats, outline = mesh_stats(mesh, terrain)
            self._seen[key] = (lo, stats, outline)
            return stats, outline
        first_lo, stats, outline = seen
        if outline is not None:
            dx, dy = (lo - first_lo)[:2]
            outline = shapely.affinity.translate(outline, float(dx), float(dy))
        return dict(stats), outline


#: Clipper works on integers: model metres become micrometres (exact to well under 1e-6 m2)
_CLIP_SCALE = 1e6


def union_of_triangles(tri2d: np.ndarray) -> BaseGeometry:
    """The union of 2D triangles as a shapely geometry (see _clipper_union)."""
    # one orientation for all, else overlapping clockwise and counter-clockwise triangles
    # cancel out under Clipper's non-zero fill rule
    d1, d2 = tri2d[:, 1] - tri2d[:, 0], tri2d[:, 2] - tri2d[:, 0]
    clockwise = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] < 0
    tri2d = np.where(clockwise[:, None, None], tri2d[:, ::-1], tri2d)

    def fallback() -> BaseGeometry:
        polys = shapely.polygons(tri2d)
        try:
            return shapely.union_all(polys)
        except shapely.errors.GEOSException:
            return shapely.union_all(shapely.make_valid(polys), grid_size=1e-4)

    return _clipper_union(tri2d, fallback)


def union_of_polygons(geoms: Iterable[BaseGeometry]) -> BaseGeometry:
    """The union of (multi)polygons (see _clipper_union): exteriors counter-clockwise and holes
    clockwise, so a hole stays empty under the non-zero rule unless another polygon covers it."""
    parts = [
        shapely.geometry.polygon.orient(p, 1.0)
        for g in geoms
        for p in getattr(g, "geoms", [g])
        if p.geom_type == "Polygon" and not p.is_empty
    ]
    rings = [np.asarray(r.coords)[:-1, :2] for p in parts for r in (p.exterior, *p.interiors)]
    return _clipper_union(rings, lambda: shapely.union_all(parts, grid_size=1e-3))


def _clipper_union(
    rings: list[np.ndarray] | np.ndarray, fallback: Callable[[], BaseGeometry]
) -> BaseGeometry:
    """The union of closed 2D rings under the non-zero fill rule, as a shapely geometry.

    Clipper (pyclipper) rather than GEOS: its sweep-line union on integer coordinates is
    several times faster than shapely.union_all on the samples' triangle soups, with areas
    equal to 1e-6 relative. GEOS (``fallback``) is kept for what Clipper refuses.
    """
    if len(rings) == 0:
        return shapely.Polygon()
    paths: list[list[list[int]]]
    if isinstance(rings, np.ndarray):  # (n, k, 2): rings of one length (triangles), at once
        origin = rings.reshape(-1, 2).min(axis=0)
        paths = np.round((rings - origin) * _CLIP_SCALE).astype(np.int64).tolist()
    else:
        origin = np.min([r.min(axis=0) for r in rings], axis=0)
        paths = [np.round((r - origin) * _CLIP_SCALE).astype(np.int64).tolist() for r in rings]
    clipper = pyclipper.Pyclipper()
    try:
        clipper.AddPaths(paths, pyclipper.PT_SUBJECT, True)
        tree = clipper.Execute2(pyclipper.CT_UNION, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)
    except pyclipper.ClipperException:
        return fallback()

    def ring(contour: list[list[int]]) -> np.ndarray:
        return np.asarray(contour, dtype=np.float64) / _CLIP_SCALE + origin

    polygons = []
    stack = list(tree.Childs)
    while stack:
        outer = stack.pop()
        holes = []
        for hole in outer.Childs:
            holes.append(ring(hole.Contour))
            stack.extend(hole.Childs)  # islands inside a hole
        polygons.append(shapely.Polygon(ring(outer.Contour), holes))
    if not polygons:
        return shapely.Polygon()
    result = polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)
    if not result.is_valid:  # Clipper may return a ring touching itself at a vertex
        result = shapely.union_all(shapely.make_valid(np.array(polygons)))
    return result


def mesh_data(g: Any) -> MeshData:
    """Copy a kernel triangulation into NumPy arrays (metres, model coordinates)."""
    verts = np.frombuffer(g.verts_buffer, dtype=np.float64).reshape(-1, 3).copy()
    faces = np.frombuffer(g.faces_buffer, dtype=np.int32).reshape(-1, 3).astype(np.uint32)
    normals = np.frombuffer(g.normals_buffer, dtype=np.float64).reshape(-1, 3)
    if len(normals) != len(verts):
        normals = _vertex_normals(verts, faces)
    mids = np.frombuffer(g.material_ids_buffer, dtype=np.int32)
    materials = [
        {"name": getattr(m, "name", None) or "", "rgba": _style_rgba(m)} for m in g.materials
    ]
    if not materials:
        materials = [{"name": "default", "rgba": [0.8, 0.8, 0.8, 1.0]}]
    mids = np.where(mids < 0, 0, mids)
    return MeshData(verts, normals.astype(np.float32), faces, mids, materials)


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, for the rare shape the kernel returns without them."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return np.divide(vn, norm, out=np.tile([0.0, 0.0, 1.0], (len(vn), 1)), where=norm > 0)


def _style_rgba(style: Any) -> list[float]:
    try:
        d = style.diffuse
        rgb = [float(d.r()), float(d.g()), float(d.b())]
    except Exception:
        rgb = [0.8, 0.8, 0.8]
    t = float(style.transparency) if getattr(style, "has_transparency", False) else 0.0
    if not math.isfinite(t):
        t = 0.0
    return [*rgb, 1.0 - t]


def geometry_settings() -> Any:
    """The geometry iterator's settings, the same in the workers and in this process."""
    s = ifcopenshell.geom.settings()
    s.set("use-world-coords", True)
    s.set("apply-default-materials", False)  # unstyled elements get a grey of our own
    # welded vertices come without normals: keep one vertex per face corner (flat shading)
    s.set("weld-vertices", False)
    return s


#: a worker's parsed model (path, size, mtime) -> file, kept between the chunks of one file,
#: one per thread (a Dask worker may run several); the next file replaces it
_worker_models = threading.local()


def _worker_model(path: str) -> ifcopenshell.file:
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    cached = getattr(_worker_models, "entry", None)
    if cached is None or cached[0] != key:
        _worker_models.entry = None  # the last file goes before the next one is parsed
        parsed = ifcopenshell.open(path)
        repair(parsed, Path(path))  # as the ingesting process does: the kernel needs it
        _worker_models.entry = (key, parsed)
    model: ifcopenshell.file = _worker_models.entry[1]
    return model


#: why a model's products were meshed one by one: the geometry iterator's constructor refused
#: the model (it reads the model's representation contexts, and fails on a required attribute
#: left null in them)
ITERATOR_REFUSED = "the geometry iterator refuses the model; its elements are meshed one by one"


class IteratorRefused(RuntimeError):
    """The geometry iterator's constructor refused the model (ITERATOR_REFUSED)."""


def iterate_meshes(
    model: ifcopenshell.file, threads: int, ids: list[int] | None = None
) -> Iterator[tuple[int, MeshData, dict[str, float], BaseGeometry | None]]:
    """The geometry iterator over ``model``'s products (those of ``ids`` only, if given) on
    ``threads`` threads: (entity id, mesh, its quantities, its outline for a shell element
    else None) of each shape with a vertex, as the kernel gives them. A shape without a vertex
    is left out (mesh_alone says why). Raises IteratorRefused if the iterator refuses the
    model."""
    kwargs: dict[str, Any] = {}
    if ids is not None:
        kwargs["include"] = [model.by_id(i) for i in ids]
    wanted = set(ids) if ids is not None else None
    try:
        it = ifcopenshell.geom.iterator(
            geometry_settings(),
            model,
            threads,
            geometry_library=GEOMETRY_LIBRARY,  # type: ignore[arg-type]
            **kwargs,
        )
    except RuntimeError as exc:
        raise IteratorRefused(str(exc)) from exc
    stats_of = MeshStats()
    if it.initialize():
        while True:
            shape = it.get()
            if wanted is None or shape.id in wanted:
                mesh = mesh_data(shape.geometry)
                if len(mesh.verts):
                    product = model.by_id(shape.id)
                    stats, outline = stats_of(mesh, is_terrain(product))
                    # outlines are only of use for the building's footprint (shell elements)
                    yield shape.id, mesh, stats, outline if is_shell(product) else None
            if not it.next():
                break


def mesh_chunk(
    item: tuple[str, list[int]],
) -> list[tuple[int, MeshData, dict[str, float], bytes | None]]:
    """Work item for a worker: mesh some products of a file (by entity id), with each mesh's
    quantities and outline. The worker parses the file once for all its chunks."""
    path, ids = item
    model = _worker_model(path)
    try:
        return [
            (pid, mesh, stats, shapely.to_wkb(outline) if outline else None)
            for pid, mesh, stats, outline in iterate_meshes(model, 1, ids)
        ]
    except IteratorRefused:
        # the ingesting process meshes these products one by one (mesh_alone)
        return []


def mesh_alone(product: Any) -> tuple[MeshData | None, str | None]:
    """Mesh one product the geometry iterator passed over, with the same kernel and settings:
    (its mesh, None), or (None, why the kernel cannot mesh it).

    The iterator takes only bodies in the model's 3D "Model" contexts; ``create_shape`` takes
    whichever representation the product has (exporters put spaces' bodies in a "Plan"
    context)."""
    try:
        shape = ifcopenshell.geom.create_shape(
            geometry_settings(),
            product,
            geometry_library=GEOMETRY_LIBRARY,  # type: ignore[arg-type]
        )
    except Exception as exc:  # the kernel's own errors are RuntimeErrors of many kinds
        return None, str(exc) or type(exc).__name__
    geometry = getattr(shape, "geometry", None)
    if geometry is None:
        return None, "no geometry produced"
    mesh = mesh_data(geometry)
    if len(mesh.faces) == 0 or len(mesh.verts) == 0:
        return None, "no surfaces (the representation holds curves or points only)"
    return mesh, None


def is_shell(product: Any) -> bool:
    """Whether the product is of the building's shell (its outline makes the footprint)."""
    # is_a() with a class another schema version names (IfcBuiltElement) is simply False
    return any(product.is_a(c) for c in _SHELL_ROOTS) and not any(
        product.is_a(c) for c in _NOT_SHELL
    )


def is_terrain(product: Any) -> bool:
    return bool(product.is_a("IfcSite") or product.is_a("IfcGeographicElement"))
