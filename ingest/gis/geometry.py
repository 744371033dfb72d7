"""A layer's geometries made ready for the store: 2D, in the project CRS, valid.

Reprojection goes through pyproj, or through GCJ-02 -> WGS84 first for the offset coordinates
of Chinese web maps (``ingest.gis.gcj02``). Invalid geometries are repaired with
``make_valid`` (polygons keep their polygonal part); what cannot be used is marked, with the
reason, rather than dropped silently. All of it works on shapely arrays, no per-feature Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import shapely.errors
from numpy.typing import NDArray
from pyproj import CRS

from cim.crs import crs_label, parse_crs, transformer
from cim.errors import CrsError
from ingest.gis.attributes import norm_name
from ingest.gis.gcj02 import gcj02_to_wgs84
from ingest.gis.readers import Layer

GCJ02_NAMES = frozenset({"gcj02", "gcj-02", "gcj_02", "gcj"})
_POLYGONAL = frozenset({3, 6})  # shapely type ids: Polygon, MultiPolygon


def reprojector(
    path: Path, layer: Layer, override: str | None, target: CRS
) -> tuple[str, Callable[[NDArray[np.float64]], NDArray[np.float64]] | None]:
    """The CRS label as found (or given) and a coordinate function to the project CRS."""
    wgs84 = CRS.from_epsg(4326)
    if override is not None and norm_name(override) in GCJ02_NAMES:
        to_project = transformer(wgs84, target)

        def from_gcj(xy: NDArray[np.float64]) -> NDArray[np.float64]:
            lon, lat = gcj02_to_wgs84(xy[:, 0], xy[:, 1])
            x, y = to_project.transform(lon, lat)
            return np.column_stack([x, y])

        return "GCJ02", from_gcj
    if override is not None:
        src = parse_crs(override, what="--crs")
    elif layer.crs:
        src = parse_crs(layer.crs, what=f"CRS of {path.name}")
    else:
        raise CrsError(
            f"{path}: layer {layer.name!r} has no CRS: pass --crs with the CRS of its "
            f"coordinates (e.g. --crs EPSG:4326 for lon/lat, --crs GCJ02 for Chinese web maps)"
        )
    label = crs_label(src)
    if src.is_compound and src.sub_crs_list:
        src = src.sub_crs_list[0]  # footprints are 2D: the horizontal part
    if src == target:
        return label, None
    tr = transformer(src, target)

    def reproject(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return label, reproject


@dataclass
class Prepared:
    """A layer's geometries in the project CRS, repaired, with the rows to keep."""

    geoms: NDArray[np.object_]
    keep: NDArray[np.bool_]
    repaired: list[str]
    skipped: list[tuple[str, str]]  # (feature ref, why)


def prepare_geometries(
    geoms: NDArray[np.object_],
    refs: NDArray[np.object_],
    reproject: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None,
    polygons_only: bool,
) -> Prepared:
    """Drop Z, reproject, repair invalid geometries (polygonal part kept for polygons), and
    mark what cannot be used: no geometry, empty, not polygonal for buildings."""
    skipped: list[tuple[str, str]] = []
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    for ref in refs[missing]:
        skipped.append((str(ref), "no geometry"))
    g = shapely.force_2d(geoms)
    if reproject is not None:
        g = shapely.transform(g, reproject)
    type_id = shapely.get_type_id(g)
    was_polygonal = np.isin(type_id, list(_POLYGONAL))
    if polygons_only:
        wrong = ~missing & ~was_polygonal
        for ref, t in zip(refs[wrong], shapely.get_type_id(g[wrong]), strict=True):
            skipped.append((str(ref), f"not a polygon (geometry type id {t})"))
    else:
        wrong = np.zeros(len(g), dtype=bool)
    # coordinates that are not finite (a position outside the source CRS's domain, which
    # the reprojection sends to infinity): GEOS cannot repair such a ring (make_valid raised
    # "Shell empty after removing invalid points" for the whole layer), so the feature goes
    unusable = ~missing & ~wrong & _not_finite(g)
    for ref in refs[unusable]:
        skipped.append((str(ref), "coordinates not finite in the project CRS"))
    missing = missing | unusable
    invalid = ~missing & ~wrong & ~shapely.is_valid(g)
    repaired: list[str] = []
    if invalid.any():
        fixed, why = _make_valid(g[invalid])
        poly = was_polygonal[invalid]
        if poly.any():
            fixed[poly] = _polygonal_part(fixed[poly])
        bad = shapely.is_missing(fixed) | shapely.is_empty(fixed)
        g[invalid] = fixed
        inv_refs = refs[invalid]
        repaired = [str(r) for r in inv_refs[~bad]]
        for ref, reason in zip(inv_refs[bad], why[bad], strict=True):
            skipped.append((str(ref), reason or "invalid and nothing is left after repair"))
        missing = missing.copy()
        missing[np.flatnonzero(invalid)[bad]] = True
    return Prepared(g, ~missing & ~wrong, repaired, skipped)


def _not_finite(geoms: NDArray[np.object_]) -> NDArray[np.bool_]:
    """Whether each geometry has a coordinate that is NaN or infinite."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    out = np.zeros(len(geoms), dtype=bool)
    out[index[~np.isfinite(coords).all(axis=1)]] = True
    return out


def _make_valid(geoms: NDArray[np.object_]) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
    """make_valid of each geometry, and why it could not be repaired ("" where it could).
    All at once; if GEOS refuses one, one by one, the refused ones left empty with GEOS's
    reason, so that one geometry never fails its layer."""
    why = np.full(len(geoms), "", dtype=object)
    try:
        return shapely.make_valid(geoms, method="structure", keep_collapsed=False), why
    except shapely.errors.GEOSException:
        pass
    fixed = np.full(len(geoms), None, dtype=object)
    for i, geom in enumerate(geoms):
        try:
            fixed[i] = shapely.make_valid(geom, method="structure", keep_collapsed=False)
        except shapely.errors.GEOSException as exc:
            why[i] = f"invalid and GEOS cannot repair it ({exc})"
    return fixed, why


def _polygonal_part(geoms: NDArray[np.object_]) -> NDArray[np.object_]:
    """The polygons of each geometry (a GeometryCollection from make_valid keeps only them)."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    parts2, index2 = shapely.get_parts(parts, return_index=True)  # MultiPolygon -> Polygons
    owner = index[index2]
    is_poly = shapely.get_type_id(parts2) == 3
    out = np.full(len(geoms), None, dtype=object)
    if is_poly.any():
        shapely.multipolygons(parts2[is_poly], indices=owner[is_poly], out=out)
    single = shapely.get_num_geometries(out) == 1
    out[single] = shapely.get_geometry(out[single], 0)
    return out
