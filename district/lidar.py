"""An airborne LiDAR survey of part of the district, sampled from its ground and roofs.

Points fall uniformly at random (a Poisson process, as a scanner's footprints roughly do at
this scale) at ``DENSITY`` points per m2 over the survey extent: on the ground (class 2) where
no building stands, and on every roof (class 6) the extent covers, flat or gabled along the
footprint's long side as the plan says, with Gaussian noise on the height. Walls and vegetation
are left out. LAS 1.4, point format 6, LAZ (lazrs), with the project CRS as a WKT record.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import laspy
import numpy as np
import pyproj
import shapely

from district.bim import GROUND_Z
from district.plan import CRS, PITCH_DEG, STOREY_M, District

DENSITY = 3.0  # points per m2
NOISE_Z = 0.04  # m, one standard deviation
GROUND, BUILDING = 2, 6  # ASPRS classes


def sample_points(district: District, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """x, y, z, class and intensity of the survey's points."""
    extent = district.lidar_extent
    shapes = [(b.geometry, b.fields) for b in district.buildings]
    shapes += [
        (p.footprint, {"height": p.height, "roof": "flat", "floors": 0})
        for p in district.plots.values()
    ]
    roofs = [(g.intersection(extent), f, g) for g, f in shapes if g.intersects(extent)]
    parts = [_ground(extent, [r[0] for r in roofs], rng)]
    parts += [_roof(clipped, whole, fields, rng) for clipped, fields, whole in roofs]
    points = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    points["z"] = points["z"] + rng.normal(0.0, NOISE_Z, len(points["z"]))
    return points


def _uniform(area: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    xmin, ymin, xmax, ymax = area.bounds
    n = rng.poisson(DENSITY * (xmax - xmin) * (ymax - ymin))
    x, y = rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)
    inside = shapely.contains_xy(area, x, y)
    return x[inside], y[inside]


def _ground(extent: Any, footprints: list[Any], rng: np.random.Generator) -> dict[str, Any]:
    x, y = _uniform(extent, rng)
    covered = shapely.union_all(footprints)
    keep = ~shapely.contains_xy(covered, x, y)
    x, y = x[keep], y[keep]
    return _points(x, y, np.full(len(x), GROUND_Z), GROUND, rng.normal(300, 40, len(x)))


def _roof(
    clipped: Any, whole: Any, fields: dict[str, Any], rng: np.random.Generator
) -> dict[str, Any]:
    """Points on a roof: flat at the building's height, or a gable whose ridge runs along the
    footprint's long side, at the height (the ridge) above eaves at the floors' height."""
    x, y = _uniform(clipped, rng)
    top = GROUND_Z + float(fields["height"])
    if fields["roof"] == "gable":
        xmin, ymin, xmax, ymax = whole.bounds
        along_x = (xmax - xmin) >= (ymax - ymin)
        off = np.abs(y - (ymin + ymax) / 2) if along_x else np.abs(x - (xmin + xmax) / 2)
        half = (ymax - ymin) / 2 if along_x else (xmax - xmin) / 2
        eaves = GROUND_Z + int(fields["floors"]) * STOREY_M
        z = eaves + (half - off) * np.tan(np.radians(PITCH_DEG))
    else:
        z = np.full(len(x), top)
    return _points(x, y, z, BUILDING, rng.normal(800, 80, len(x)))


def _points(x: Any, y: Any, z: Any, cls: int, intensity: Any) -> dict[str, Any]:
    return {
        "x": x,
        "y": y,
        "z": z,
        "classification": np.full(len(x), cls, np.uint8),
        "intensity": np.clip(intensity, 0, 65535).astype(np.uint16),
    }


def write_laz(path: Path, district: District, rng: np.random.Generator) -> int:
    """Write the survey to ``path`` (LAZ); the number of points."""
    pts = sample_points(district, rng)
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.floor([pts["x"].min(), pts["y"].min(), pts["z"].min()])
    header.add_crs(pyproj.CRS(CRS))
    header.creation_date = datetime.date(2026, 1, 1)
    header.system_identifier = "cim district generator"
    header.generating_software = "cim demo generate"
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts["x"], pts["y"], pts["z"]
    las.classification = pts["classification"]
    las.intensity = pts["intensity"]
    n = len(pts["x"])
    las.return_number = np.ones(n, np.uint8)
    las.number_of_returns = np.ones(n, np.uint8)
    las.gps_time = np.arange(n, dtype=np.float64) * 1e-5
    las.write(str(path), do_compress=True, laz_backend=laspy.LazBackend.Lazrs)
    return n
