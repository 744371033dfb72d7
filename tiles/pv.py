"""The rooftop PV tileset: every roof facet the PV analyzer found (``cim/analyze/pv.py``, stored
in ``analyses``), one feature each, drawn a few centimetres above its roof.

A facet's usable part (after the edge setback and the obstacles) is coloured by its specific
yield (kWh/kWp a year) on ``YIELD_EDGES`` / ``YIELD_RAMP``, the same buckets and colours as the
page's legend (``viewer/static/colour.js`` PV_FACETS, checked by a test); the rest of it, and
every facet the rules left out, is grey. Each feature carries the facet's figures (tilt,
azimuth, areas, kWh, kWp, shading loss) and, for a facet left out, the rule and its reason.

Facets are grouped in tiles of ``CELL`` metres aligned on the project origin (a tile's content
depends only on the results of its own buildings, so a new result rewrites only its tile); the
root has no content and ADD refinement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from cim.model.analyses import stored
from tiles.buildings import ENCODING
from tiles.context import BuildContext
from tiles.frame import rotate, to_enu_fitted
from tiles.gltf import FeatureTable, GlbBuilder, Primitive, Property
from tiles.tileset import Tile, box

F64 = NDArray[np.float64]

CELL = 256.0
#: the root's geometric error: facets draw once a tile is this close to mattering
ROOT_ERROR = 96.0
#: facets float this far (m) above their roof along its normal, clear of its triangles
LIFT = 0.08
#: specific yield buckets, kWh/kWp a year: an unshaded flat roof at Tongliao gives about 1,240,
#: a south roof tilted 30 degrees about 1,450, a shaded one less
YIELD_EDGES = (800.0, 950.0, 1050.0, 1150.0, 1300.0)
#: colour.js RAMP (ColorBrewer YlOrRd-ish), light to dark: more sun is darker
YIELD_RAMP = ("#fee391", "#fec44f", "#fb9a29", "#e3591c", "#b5301b", "#7a1a12")
#: not usable: left out by a rule, or the setback strip and obstacles of a usable facet
UNUSABLE = "#9aa3ad"

FACET_PROPERTIES = (
    Property("facet_id", "STRING", description="building id and facet number: 'B.F'"),
    Property("building_id", "SCALAR", "INT32", "building id in the store"),
    Property("facet", "SCALAR", "INT32", "facet number in the building's PV result"),
    Property("source", "STRING", description="where the facet comes from: ifc, lidar, lod1"),
    Property("tilt", "SCALAR", "FLOAT64", "tilt, degrees from horizontal"),
    Property("azimuth", "SCALAR", "FLOAT64", "azimuth, degrees clockwise from north"),
    Property("area_m2", "SCALAR", "FLOAT64", "facet area, m2"),
    Property("usable_area_m2", "SCALAR", "FLOAT64", "usable area after the rules, m2"),
    Property("usable", "BOOLEAN", description="whether any part of the facet is usable"),
    Property("kwp", "SCALAR", "FLOAT64", "PV capacity, kWp", no_data=-1.0),
    Property("kwh_per_year", "SCALAR", "FLOAT64", "AC energy, kWh a year", no_data=-1.0),
    Property("kwh_per_m2", "SCALAR", "FLOAT64", "kWh a year per m2 of usable area", no_data=-1.0),
    Property("kwh_per_kwp", "SCALAR", "FLOAT64", "specific yield, kWh/kWp a year", no_data=-1.0),
    Property(
        "shading_loss",
        "SCALAR",
        "FLOAT64",
        "share of the unshaded yield lost to shadows, 0..1",
        no_data=-1.0,
    ),
    Property("excluded_by", "STRING", description="the rule that left the facet out, or empty"),
    Property("why", "STRING", description="why the rule left it out (English), or empty"),
    Property("why_zh", "STRING", description="why the rule left it out (Chinese), or empty"),
)


@dataclass
class _Mesh:
    """Triangles of one colour (project CRS) with each vertex's feature row."""

    positions: list[F64] = field(default_factory=list)
    normals: list[F64] = field(default_factory=list)
    rows: list[F64] = field(default_factory=list)


def yield_colour(kwh_per_kwp: float | None) -> str:
    """The legend's colour of a specific yield."""
    if kwh_per_kwp is None or kwh_per_kwp < 0:
        return UNUSABLE
    for edge, colour in zip(YIELD_EDGES, YIELD_RAMP, strict=False):
        if kwh_per_kwp < edge:
            return colour
    return YIELD_RAMP[len(YIELD_EDGES)]


def rgba(hex_colour: str) -> tuple[float, float, float, float]:
    """'#rrggbb' -> the material's base colour, written as the legend's values (as the
    buildings' BLOCK_RGBA is): linearised, CesiumJS drew the lit roofs far darker than the
    legend (seen in docs/pv-facets.png)."""
    v = hex_colour.lstrip("#")
    r, g, b = (round(int(v[k : k + 2], 16) / 255.0, 4) for k in (0, 2, 4))
    return (r, g, b, 1.0)


def build_pv(ctx: BuildContext) -> tuple[Tile, dict[str, Any]] | None:
    ctx.step(0.0, "reading PV results")
    results = [
        row["result"]
        for row in stored(ctx.store, "pv").values()
        if row["building_id"] is not None and row["result"].get("facets")
    ]
    if not results:
        return None
    results.sort(key=lambda r: int(r["building_id"]))
    ox, oy = ctx.store.project_origin
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in results:
        x, y = np.asarray(r["facets"][0]["outline"][0], dtype=np.float64)[:, :2].mean(axis=0)
        key = (int(np.floor((x - ox) / CELL)), int(np.floor((y - oy) / CELL)))
        cells.setdefault(key, []).append(r)
    children: list[Tile] = []
    facets = usable = 0
    for k, (_, members) in enumerate(sorted(cells.items())):
        h = hashlib.sha256(f"{ENCODING}:pv:{_code_digest()}".encode())
        for r in members:
            h.update(repr((r["building_id"], r["facets"])).encode())
        table, meshes = facet_features(members)
        facets += len(table["facet_id"])
        usable += sum(table["usable"])
        lo, hi = _enu_bounds(ctx, meshes)
        input_key = h.hexdigest()
        uri = ctx.writer.reuse(input_key)
        if uri is None:
            uri = ctx.writer.put(
                encode_facets(ctx, table, meshes, lo, hi), ".glb", input_key=input_key
            )
        children.append(
            {"boundingVolume": box(lo, hi), "geometricError": 0.0, "content": {"uri": uri}}
        )
        ctx.step((k + 1) / len(cells), f"{k + 1}/{len(cells)} tiles")
    boxes = np.array([c["boundingVolume"]["box"] for c in children])
    half = np.abs(boxes[:, 3:].reshape(-1, 3, 3)).sum(axis=1)
    root: Tile = {
        "boundingVolume": box((boxes[:, :3] - half).min(axis=0), (boxes[:, :3] + half).max(axis=0)),
        "geometricError": ROOT_ERROR,
        "refine": "ADD",
        "children": children,
    }
    return root, {"buildings": len(results), "facets": facets, "usable_facets": usable}


def _code_digest() -> str:
    """This module's code: a change to how facets are drawn re-encodes every tile."""
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def facet_features(
    results: list[dict[str, Any]],
) -> tuple[dict[str, list[Any]], dict[str, _Mesh]]:
    """The feature table of these buildings' facets and their triangles by colour."""
    table: dict[str, list[Any]] = {p.name: [] for p in FACET_PROPERTIES}
    meshes: dict[str, _Mesh] = {}
    for r in results:
        for f in r["facets"]:
            row = len(table["facet_id"])
            _add_row(table, int(r["building_id"]), f)
            colour = yield_colour(table["kwh_per_kwp"][-1]) if f["usable"] else UNUSABLE
            for shape, c in _pieces(f, colour):
                mesh = meshes.setdefault(c, _Mesh())
                _triangulate(shape, f, row, mesh)
    return table, meshes


def _add_row(table: dict[str, list[Any]], bid: int, f: dict[str, Any]) -> None:
    usable = bool(f["usable"])
    area = float(f["usable_area_m2"])
    kwh = float(f["kwh_per_year"]) if usable and "kwh_per_year" in f else -1.0
    reason = f.get("excluded_by") or {}
    table["facet_id"].append(f"{bid}.{int(f['facet'])}")
    table["building_id"].append(bid)
    table["facet"].append(int(f["facet"]))
    table["source"].append(str(f["source"]))
    table["tilt"].append(float(f["tilt_deg"]))
    table["azimuth"].append(float(f["azimuth_deg"]))
    table["area_m2"].append(float(f["area_m2"]))
    table["usable_area_m2"].append(area)
    table["usable"].append(usable)
    table["kwp"].append(float(f["kwp"]) if usable and "kwp" in f else -1.0)
    table["kwh_per_year"].append(kwh)
    table["kwh_per_m2"].append(round(kwh / area, 1) if kwh >= 0 and area > 0 else -1.0)
    table["kwh_per_kwp"].append(float(f.get("kwh_per_kwp", -1.0)) if usable else -1.0)
    table["shading_loss"].append(float(f.get("shading_loss", -1.0)) if usable else -1.0)
    table["excluded_by"].append(str(reason.get("rule", "")))
    table["why"].append(str(reason.get("why", "")))
    table["why_zh"].append(str(reason.get("why_zh", reason.get("why", ""))))


@dataclass(frozen=True)
class _Plane:
    origin: F64
    u: F64
    v: F64
    n: F64

    def to_2d(self, xyz: F64) -> F64:
        d = xyz - self.origin
        return np.column_stack([d @ self.u, d @ self.v])

    def to_3d(self, uv: F64) -> F64:
        out: F64 = self.origin + uv[:, :1] * self.u + uv[:, 1:2] * self.v
        return out


def _plane(ring: F64) -> _Plane:
    """The facet's plane from its outline: Newell's normal (robust for any simple polygon,
    here rather than a least-squares fit because the ring is exactly planar), turned upward."""
    a, b = ring, np.roll(ring, -1, axis=0)
    n = np.array(
        [
            ((a[:, 1] - b[:, 1]) * (a[:, 2] + b[:, 2])).sum(),
            ((a[:, 2] - b[:, 2]) * (a[:, 0] + b[:, 0])).sum(),
            ((a[:, 0] - b[:, 0]) * (a[:, 1] + b[:, 1])).sum(),
        ]
    )
    norm = float(np.linalg.norm(n))
    n = np.array([0.0, 0.0, 1.0]) if norm < 1e-12 else n / norm
    if n[2] < 0:
        n = -n
    h = np.cross([0.0, 0.0, 1.0], n)
    u = np.array([1.0, 0.0, 0.0]) if np.linalg.norm(h) < 1e-9 else h / np.linalg.norm(h)
    v = np.cross(n, u)
    return _Plane(ring.mean(axis=0), u, v / np.linalg.norm(v), n)


def _pieces(f: dict[str, Any], colour: str) -> list[tuple[tuple[_Plane, Any], str]]:
    """The facet's usable part in ``colour`` and the rest of its outline in grey, each as a
    plane and a 2D shape in it."""
    rings = [np.asarray(r, dtype=np.float64) for r in f["outline"] if len(r) >= 3]
    if not rings:
        return []
    plane = _plane(rings[0][:-1] if np.allclose(rings[0][0], rings[0][-1]) else rings[0])
    whole = shapely.union_all([shapely.Polygon(plane.to_2d(r)).buffer(0) for r in rings])
    usable = shapely.union_all(
        [
            shapely.Polygon(
                plane.to_2d(np.asarray(p[0], dtype=np.float64)),
                [plane.to_2d(np.asarray(h, dtype=np.float64)) for h in p[1:]],
            ).buffer(0)
            for p in f.get("usable_outline") or []
        ]
    )
    if "usable_outline" not in f and f["usable"]:
        return [((plane, whole), colour)]  # a result from before the analyzer kept it
    if not f["usable"] or usable.is_empty:
        return [((plane, whole), UNUSABLE)]
    rest = whole.difference(usable.buffer(1e-6))
    out = [((plane, usable), colour)]
    if rest.area > 1e-3:
        out.append(((plane, rest), UNUSABLE))
    return out


def _triangulate(shape: tuple[_Plane, Any], f: dict[str, Any], row: int, mesh: _Mesh) -> None:
    """The shape's triangles (shapely's constrained Delaunay: holes and concave outlines
    kept), lifted ``LIFT`` above the plane."""
    plane, geom = shape
    polygons = [p for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon) and p.area > 0]
    if not polygons:
        return
    tris = shapely.get_parts(shapely.constrained_delaunay_triangles(shapely.MultiPolygon(polygons)))
    if len(tris) == 0:
        return
    coords = shapely.get_coordinates(shapely.get_exterior_ring(tris)).reshape(-1, 4, 2)[:, :3]
    xyz = plane.to_3d(coords.reshape(-1, 2)) + plane.n * LIFT
    mesh.positions.append(xyz)
    mesh.normals.append(np.tile(plane.n, (len(xyz), 1)))
    mesh.rows.append(np.full(len(xyz), float(row)))


def _enu_bounds(ctx: BuildContext, meshes: dict[str, _Mesh]) -> tuple[F64, F64]:
    xyz = np.vstack([p for m in meshes.values() for p in m.positions])
    enu = ctx.frame.to_enu(xyz)
    return enu.min(axis=0) - 0.01, enu.max(axis=0) + 0.01


def encode_facets(
    ctx: BuildContext, table: dict[str, list[Any]], meshes: dict[str, _Mesh], lo: F64, hi: F64
) -> bytes:
    """One tile's glb: a primitive per colour, the facet table as its one feature id set."""
    frame = ctx.frame
    xyz = np.vstack([p for m in meshes.values() for p in m.positions])
    x0, y0 = xyz[:, :2].min(axis=0)
    x1, y1 = xyz[:, :2].max(axis=0)
    rotation = frame.affine(np.array([x0, y0, 0.0, x1, y1, 0.0]))
    centre = tuple(float(round(v)) for v in (lo + hi) / 2)
    origin = np.asarray(centre, dtype=np.float64)
    glb = GlbBuilder(translation=centre)
    glb.add_table(FeatureTable("facet", FACET_PROPERTIES, table, len(table["facet_id"])))
    for colour, m in sorted(meshes.items()):
        positions = np.vstack(m.positions)
        glb.add_primitive(
            Primitive(
                positions=to_enu_fitted(frame, positions) - origin,
                normals=rotate(rotation, np.vstack(m.normals)),
                indices=np.arange(len(positions), dtype=np.uint32).reshape(-1, 3),
                feature_ids=[np.concatenate(m.rows)],
                rgba=rgba(colour),
            )
        )
    return glb.to_bytes()
