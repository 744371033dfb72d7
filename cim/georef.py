"""Placing model coordinates in the project CRS.

A model source (IFC) keeps its meshes in model coordinates (metres). Its placement is a 4x4
affine from model metres to the project CRS, fitted by least squares to exact pyproj transforms
of points spread over the model's extent: exact when the model's map CRS is the project CRS,
and within a millimetre over a few hundred metres otherwise (it then absorbs the grid's scale
factor and meridian convergence). ``cim place`` replaces the affine without re-reading the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyproj import CRS

from cim.crs import transformer
from cim.errors import CrsError

XYZFunc = Callable[[np.ndarray], np.ndarray]  # (n,3) model metres -> (n,3) project CRS

#: Revit's default site (Boston): a georeference this close to it is almost surely not the site
REVIT_DEFAULT_SITES = {"Boston (Revit default)": (-71.0598, 42.3584)}


@dataclass
class Placement:
    method: str  # map_conversion | rigid_operation | site_reflatlon | anchor | none
    matrix: np.ndarray  # (4, 4) model metres -> project CRS
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    needs_placement: bool = False

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        return apply_affine(self.matrix, xyz)


def apply_affine(matrix: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    out: np.ndarray = pts @ matrix[:3, :3].T + matrix[:3, 3]
    return out


def fit_affine(func: XYZFunc, center: np.ndarray, half_extent: float) -> np.ndarray:
    """Least-squares affine (4x4) of ``func`` over a box of +-half_extent around ``center``."""
    h = max(float(half_extent), 50.0)
    g = np.array([-h, 0.0, h])
    grid = np.array(np.meshgrid(g, g, [-h / 4, h / 4])).reshape(3, -1).T + center
    out = func(grid)
    if not np.all(np.isfinite(out)):
        raise CrsError("the georeference does not map to finite project coordinates")
    a = np.hstack([grid, np.ones((len(grid), 1))])
    sol, *_ = np.linalg.lstsq(a, out, rcond=None)
    m = np.eye(4)
    m[:3, :] = sol.T
    return m


def in_area_of_use(crs: CRS, lon: float, lat: float, margin_deg: float = 1.0) -> bool:
    area = crs.area_of_use
    if area is None:
        return True
    return (
        area.west - margin_deg <= lon <= area.east + margin_deg
        and area.south - margin_deg <= lat <= area.north + margin_deg
    )


def near_default_site(lon: float, lat: float, km: float = 3.0) -> str | None:
    for name, (dlon, dlat) in REVIT_DEFAULT_SITES.items():
        dx = (lon - dlon) * 111.32 * math.cos(math.radians(lat))
        dy = (lat - dlat) * 110.57
        if math.hypot(dx, dy) < km:
            return name
    return None


def geographic_placement(
    project_crs: CRS,
    lon: float,
    lat: float,
    elevation: float,
    rotation_deg: float,
    model_origin: np.ndarray,
    half_extent: float,
    method: str,
    params: dict[str, Any],
) -> Placement:
    """Model point ``model_origin`` at lon/lat/elevation (WGS84); model axes turned
    ``rotation_deg`` counter-clockwise from east/north (true north, not grid north)."""
    if not in_area_of_use(project_crs, lon, lat):
        raise CrsError(
            f"lon {lon:.5f}, lat {lat:.5f} lies outside the area of use of the project CRS"
        )
    local = CRS.from_proj4(
        f"+proj=tmerc +lat_0={lat} +lon_0={lon} +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
    )
    to_geo = transformer(local, CRS.from_epsg(4326))
    to_project = transformer(CRS.from_epsg(4326), project_crs)
    th = math.radians(rotation_deg)
    c, s = math.cos(th), math.sin(th)

    def func(xyz: np.ndarray) -> np.ndarray:
        d = xyz - model_origin
        e = c * d[:, 0] - s * d[:, 1]
        n = s * d[:, 0] + c * d[:, 1]
        lo, la = to_geo.transform(e, n)
        x, y = to_project.transform(lo, la)
        return np.column_stack([x, y, d[:, 2] + elevation])

    matrix = fit_affine(func, model_origin, half_extent)
    return Placement(
        method,
        matrix,
        {**params, "lon": lon, "lat": lat, "elevation": elevation, "rotation_deg": rotation_deg},
    )


def map_conversion_placement(
    project_crs: CRS,
    map_crs: CRS,
    helmert: dict[str, float],
    unit_scale: float,
    center: np.ndarray,
    half_extent: float,
    method: str,
) -> Placement:
    """IfcMapConversion / IfcRigidOperation: model -> map CRS (Helmert), then pyproj."""
    th = math.atan2(helmert["x_axis_ordinate"], helmert["x_axis_abscissa"])
    c, s = math.cos(th), math.sin(th)
    sc = helmert["scale"]
    fx, fy, fz = helmert["factor_x"], helmert["factor_y"], helmert["factor_z"]
    to_project = transformer(map_crs, project_crs)

    def func(xyz: np.ndarray) -> np.ndarray:
        # the iterator gives metres; the conversion works on model (project length) units
        x, y, z = (xyz / unit_scale).T
        e = sc * fx * c * x - sc * fy * s * y + helmert["eastings"]
        n = sc * fx * s * x + sc * fy * c * y + helmert["northings"]
        h = sc * fz * z + helmert["orthogonal_height"]
        px, py = to_project.transform(e, n)
        return np.column_stack([px, py, h])

    matrix = fit_affine(func, center, half_extent)
    return Placement(method, matrix, {"map_crs": map_crs.to_string(), **helmert})


def origin_placement(project_origin: tuple[float, float], params: dict[str, Any]) -> Placement:
    m = np.eye(4)
    m[0, 3], m[1, 3] = project_origin
    return Placement("none", m, params, needs_placement=True)
