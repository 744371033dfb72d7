"""Placing model coordinates in the project CRS.

A model source (IFC) keeps its meshes in model coordinates (metres). Its placement is a 4x4
affine from model metres to the project CRS, fitted by least squares to exact pyproj transforms
of points spread over the model's extent: exact when the model's map CRS is the project CRS,
and within a millimetre over a few hundred metres otherwise (it then absorbs the grid's scale
factor and meridian convergence). ``cim place`` replaces the affine without re-reading the file.

A georeference degrades, it never fails the file: between datums the transformation is the best
one usable here (PROJ's best may need a grid that is not installed; which one was used, and its
stated accuracy, go into the placement's params and the warnings), a target CRS may be
geographic (degrees, in the CRS's axis order), and a georeference outside the project CRS's
area or without any usable transformation leaves the model at the project origin, waiting to be
placed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyproj import CRS
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_operation import TransverseMercatorConversion

from cim.crs import Transformation, best_transformation, crs_label, datum_name, transformer
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
    grid = fit_points(center, half_extent)
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


def fit_points(center: np.ndarray, half_extent: float) -> np.ndarray:
    """The model points (n x 3 metres) an affine is fitted over: +-half_extent around center."""
    h = max(float(half_extent), 50.0)
    g = np.array([-h, 0.0, h])
    grid: np.ndarray = np.array(np.meshgrid(g, g, [-h / 4, h / 4])).reshape(3, -1).T + center
    return grid


def transformation_params(chosen: Transformation) -> dict[str, Any]:
    """What ``placements.params`` records of the transformation used (see ``Transformation``)."""
    out: dict[str, Any] = {
        "transformation": chosen.name,
        "transformation_proj": chosen.proj,
        "transformation_accuracy_m": chosen.accuracy_m,
    }
    if chosen.best_known is not None:
        out["best_transformation"] = chosen.best_known
        out["best_transformation_accuracy_m"] = chosen.best_known_accuracy_m
        out["missing_grids"] = list(chosen.missing_grids)
    return out


def _metres(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} m"


def transformation_warnings(
    chosen: Transformation, src: CRS, dst: CRS, *, ballpark: bool = True
) -> list[str]:
    """One line when the transformation used is not the best PROJ knows (a grid is missing), and
    with ``ballpark`` one when PROJ knows none between the two datums here."""
    out = []
    if chosen.best_known is not None:
        grids = ", ".join(chosen.missing_grids) or "a grid"
        out.append(
            f"PROJ's best transformation from {crs_label(src)} to {crs_label(dst)} here, "
            f"{chosen.best_known!r} (accuracy {_metres(chosen.best_known_accuracy_m)}), needs "
            f"{grids}, not installed; used {chosen.name!r} (stated accuracy "
            f"{_metres(chosen.accuracy_m)})"
        )
    if ballpark and chosen.ballpark:
        out.append(
            f"PROJ knows no transformation from {datum_name(src)} to {datum_name(dst)} here: "
            f"placed by a ballpark that ignores the datum shift (centimetres between modern "
            f"datums such as WGS 84 and CGCS2000, up to about a hundred metres from older ones "
            f"such as Beijing 1954 or Xian 1980); give an anchor where that matters"
        )
    return out


def _local_crs(geo: CRS, lon: float, lat: float) -> CRS:
    """A transverse Mercator on ``geo``'s datum centred at lon/lat: model metres east/north."""
    return ProjectedCRS(
        TransverseMercatorConversion(latitude_natural_origin=lat, longitude_natural_origin=lon),
        geodetic_crs=geo,
    )


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
    geo_crs: CRS | None = None,
) -> Placement:
    """Model point ``model_origin`` at lon/lat/elevation (degrees of ``geo_crs``, WGS 84 unless
    given); model axes turned ``rotation_deg`` counter-clockwise from east/north (true north,
    not grid north). Raises CrsError outside the project CRS's area, or when PROJ has no
    transformation usable here."""
    geo = horizontal_geographic(geo_crs or CRS.from_epsg(4326))
    if not in_area_of_use(project_crs, lon, lat):
        raise CrsError(
            f"lon {lon:.5f}, lat {lat:.5f} lies outside the area of use of the project CRS"
        )
    to_geo = transformer(_local_crs(geo, lon, lat), geo)
    th = math.radians(rotation_deg)
    c, s = math.cos(th), math.sin(th)

    def to_lonlat(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = xyz - model_origin
        lo, la = to_geo.transform(c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1])
        return np.asarray(lo), np.asarray(la)

    probe = np.column_stack(to_lonlat(fit_points(model_origin, half_extent)))
    chosen = best_transformation(geo, project_crs, lon, lat, probe)
    if chosen is None:
        raise CrsError(
            f"PROJ has no transformation from {crs_label(geo)} to {crs_label(project_crs)} "
            f"usable at lon {lon:.5f}, lat {lat:.5f}"
        )

    def func(xyz: np.ndarray) -> np.ndarray:
        x, y = chosen.transform(*to_lonlat(xyz))
        return np.column_stack([x, y, xyz[:, 2] - model_origin[2] + elevation])

    matrix = fit_affine(func, model_origin, half_extent)
    extra = transformation_params(chosen) if chosen.best_known else {}
    return Placement(
        method,
        matrix,
        {
            **params,
            **extra,
            "lon": lon,
            "lat": lat,
            "elevation": elevation,
            "rotation_deg": rotation_deg,
        },
        transformation_warnings(chosen, geo, project_crs, ballpark=False),
    )


def horizontal_geographic(crs: CRS) -> CRS:
    """The 2D geographic CRS of a geographic (2D or 3D, or compound) CRS."""
    base = crs.sub_crs_list[0] if crs.is_compound and crs.sub_crs_list else crs
    if len(base.axis_info) > 2:
        base = base.to_2d()
    return base


def is_geographic(crs: CRS) -> bool:
    base = crs.sub_crs_list[0] if crs.is_compound and crs.sub_crs_list else crs
    return bool(base.is_geographic)


def _unplaced(
    project_origin: tuple[float, float], params: dict[str, Any], why: str, method: str
) -> Placement:
    placement = origin_placement(project_origin, params)
    placement.warnings.append(f"the model's {method.replace('_', ' ')} {why}")
    return placement


def map_conversion_placement(
    project_crs: CRS,
    map_crs: CRS,
    helmert: dict[str, float],
    unit_scale: float,
    center: np.ndarray,
    half_extent: float,
    method: str,
    project_origin: tuple[float, float],
) -> Placement:
    """IfcMapConversion / IfcRigidOperation to a projected CRS: model -> map CRS (Helmert),
    then the best transformation usable here to the project CRS. Where it lies outside the
    project CRS's area, or no transformation is usable, the model waits at the project origin
    (``needs_placement``) with a warning saying why."""
    if map_crs.is_compound and map_crs.sub_crs_list:
        map_crs = map_crs.sub_crs_list[0]  # heights are taken as they are (no geoid shift)
    th = math.atan2(helmert["x_axis_ordinate"], helmert["x_axis_abscissa"])
    c, s = math.cos(th), math.sin(th)
    sc = helmert["scale"]
    fx, fy, fz = helmert["factor_x"], helmert["factor_y"], helmert["factor_z"]

    def to_map(xyz: np.ndarray) -> np.ndarray:
        # the iterator gives metres; the conversion works on model (project length) units
        x, y, z = (xyz / unit_scale).T
        e = sc * fx * c * x - sc * fy * s * y + helmert["eastings"]
        n = sc * fx * s * x + sc * fy * c * y + helmert["northings"]
        return np.column_stack([e, n, sc * fz * z + helmert["orthogonal_height"]])

    label = crs_label(map_crs)
    probe = to_map(fit_points(center, half_extent))
    e0, n0 = to_map(np.asarray(center, dtype=np.float64).reshape(1, 3))[0, :2]
    # where it lies: the map CRS's own geographic coordinates (a conversion, no datum shift)
    geodetic = map_crs.geodetic_crs or CRS.from_epsg(4326)
    lon, lat = (float(v) for v in transformer(map_crs, geodetic).transform(e0, n0))
    unplaced = {
        "map_crs": label,
        "eastings": helmert["eastings"],
        "northings": helmert["northings"],
    }
    if not (math.isfinite(lon) and math.isfinite(lat)):
        why = f"({helmert['eastings']:g}, {helmert['northings']:g}) is not a place in {label}"
        return _unplaced(project_origin, unplaced, f"{why}; placed at the project origin", method)
    unplaced |= {"map_lon": lon, "map_lat": lat}
    if not in_area_of_use(project_crs, lon, lat):
        return _unplaced(
            project_origin,
            unplaced,
            f"to {label} lies at lon {lon:.5f}, lat {lat:.5f}, outside the area of the project "
            f"CRS {crs_label(project_crs)}; placed at the project origin",
            method,
        )
    chosen = best_transformation(map_crs, project_crs, lon, lat, probe[:, :2])
    if chosen is None:
        return _unplaced(
            project_origin,
            unplaced,
            f"to {label}: PROJ has no transformation to {crs_label(project_crs)} usable here; "
            f"placed at the project origin",
            method,
        )

    def func(xyz: np.ndarray) -> np.ndarray:
        enh = to_map(xyz)
        px, py = chosen.transform(enh[:, 0], enh[:, 1])
        return np.column_stack([px, py, enh[:, 2]])

    matrix = fit_affine(func, center, half_extent)
    return Placement(
        method,
        matrix,
        {"map_crs": label, **helmert, **transformation_params(chosen)},
        transformation_warnings(chosen, map_crs, project_crs),
    )


def geographic_target_placement(
    project_crs: CRS,
    geo_crs: CRS,
    first: float,
    second: float,
    helmert: dict[str, float],
    half_extent: float,
    method: str,
    project_origin: tuple[float, float],
) -> Placement:
    """IfcRigidOperation / IfcMapConversion whose target CRS is geographic: ``first`` and
    ``second`` are the model origin's coordinates in the CRS's axis order and unit (EPSG:4258,
    4326 and 4490: latitude, longitude in degrees); model x/y are metres east/north, turned by
    the conversion's x axis. Coordinates that only fit the project CRS's area in the other order
    are read so, with a warning; outside it, or without a transformation, the model waits at
    the project origin."""
    geo = horizontal_geographic(geo_crs)
    label = crs_label(geo)
    axes = geo.axis_info
    a, b = (first * axes[0].unit_conversion_factor, second * axes[1].unit_conversion_factor)
    a, b = math.degrees(a), math.degrees(b)
    lat_first = axes[0].direction.lower() in ("north", "south")
    lon, lat = (b, a) if lat_first else (a, b)
    rot = math.degrees(math.atan2(helmert["x_axis_ordinate"], helmert["x_axis_abscissa"]))
    unplaced = {"map_crs": label, "map_lon": lon, "map_lat": lat}
    notes: list[str] = []

    def fits(lo: float, la: float) -> bool:
        return abs(la) <= 90 and abs(lo) <= 180 and in_area_of_use(project_crs, lo, la)

    if not fits(lon, lat) and fits(lat, lon):
        order = "latitude, longitude" if lat_first else "longitude, latitude"
        notes.append(
            f"the model's {method.replace('_', ' ')} to {label} gives ({first:g}, {second:g}), "
            f"which lies in the project CRS's area only read the other way round: read as "
            f"lon {lat:.6f}, lat {lon:.6f}, not in the CRS's order ({order})"
        )
        lon, lat = lat, lon
    try:
        placement = geographic_placement(
            project_crs,
            lon,
            lat,
            helmert["orthogonal_height"],
            rot,
            np.zeros(3),
            half_extent,
            method,
            {"map_crs": label},
            geo_crs=geo,
        )
    except CrsError as exc:
        return _unplaced(
            project_origin, unplaced, f"to {label}: {exc}; placed at the project origin", method
        )
    placement.warnings[:0] = notes
    return placement


def origin_placement(project_origin: tuple[float, float], params: dict[str, Any]) -> Placement:
    m = np.eye(4)
    m[0, 3], m[1, 3] = project_origin
    return Placement("none", m, params, needs_placement=True)
