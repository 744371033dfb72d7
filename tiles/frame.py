"""The tilesets' frame: ENU (east, north, up) at the project origin, placed on the globe by the
root tile's transform (ENU -> ECEF, EPSG:4978).

Project coordinates (a projected CRS, metres) are not ENU: the projection's scale factor and
grid convergence (half a degree at Tongliao in EPSG:4550) and the Earth's curvature (8 m of drop
at 10 km) lie between them. Every vertex is mapped exactly (``Frame.to_enu``: pyproj to ECEF,
then the ENU rotation; about 4 M points/s here); normals are rotated by an affine fitted over the
tile's extent (``Frame.affine``, right to a centimetre over a tile).

Heights are taken as ellipsoidal (the store has no geoid model): a city on a geoid-based datum
sits some metres off the ellipsoid's surface, which CesiumJS draws without terrain.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from pyproj import CRS, Transformer

from cim.georef import fit_affine


def enu_to_ecef_matrix(lon: float, lat: float, h: float) -> np.ndarray:
    """The 4x4 matrix taking ENU metres at (lon, lat, h) to ECEF metres (row-major)."""
    lam, phi = math.radians(lon), math.radians(lat)
    sl, cl, sp, cp = math.sin(lam), math.cos(lam), math.sin(phi), math.cos(phi)
    ecef = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    x, y, z = ecef.transform(lon, lat, h)
    m = np.eye(4)
    m[:3, 0] = [-sl, cl, 0.0]  # east
    m[:3, 1] = [-sp * cl, -sp * sl, cp]  # north
    m[:3, 2] = [cp * cl, cp * sl, sp]  # up
    m[:3, 3] = [x, y, z]
    return m


class Frame:
    """ENU at the project origin (lon, lat of the store's origin, height 0)."""

    def __init__(self, crs: CRS, origin_xy: tuple[float, float]) -> None:
        self.crs = crs
        to_geo = Transformer.from_crs(crs, "EPSG:4979", always_xy=True)
        lon, lat = to_geo.transform(*origin_xy)[:2]
        self.lon, self.lat = float(lon), float(lat)
        self.matrix = enu_to_ecef_matrix(self.lon, self.lat, 0.0)
        self._inverse = np.linalg.inv(self.matrix)
        self._to_ecef = Transformer.from_crs(crs.to_3d(), "EPSG:4978", always_xy=True)

    @property
    def transform(self) -> list[float]:
        """The root tile's ``transform``: column-major, as 3D Tiles wants it."""
        return [float(v) for v in self.matrix.T.reshape(-1)]

    def to_enu(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) project coordinates -> ENU metres, exactly (a pyproj call per point)."""
        pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        x, y, z = self._to_ecef.transform(pts[:, 0], pts[:, 1], pts[:, 2])
        ecef = np.column_stack([x, y, z, np.ones(len(pts))])
        out: np.ndarray = (ecef @ self._inverse.T)[:, :3]
        return out

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (a frame lives as long as its build)
    def _affine(self, cx: float, cy: float, cz: float, half: float) -> np.ndarray:
        return fit_affine(self.to_enu, np.array([cx, cy, cz]), half)

    def affine(self, bounds: np.ndarray) -> np.ndarray:
        """4x4 affine project -> ENU fitted over ``bounds`` (xmin, ymin, zmin, xmax, ymax,
        zmax), snapped to 64 m so neighbouring tiles share fits."""
        b = np.asarray(bounds, dtype=np.float64)
        c = (b[:3] + b[3:]) / 2
        half = float(max(b[3] - b[0], b[4] - b[1], 1.0) / 2)
        snap = 64.0
        half = snap * math.ceil(half / snap)
        cx, cy, cz = (round(float(v) / snap) * snap for v in c)
        return self._affine(cx, cy, cz, half)


def apply(matrix: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """(n, 3) points through a 4x4 affine."""
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    out: np.ndarray = pts @ matrix[:3, :3].T + matrix[:3, 3]
    return out


def rotate(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n, 3) normals through the linear part of an affine, renormalised."""
    v = np.asarray(vectors, dtype=np.float64).reshape(-1, 3) @ matrix[:3, :3].T
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    out: np.ndarray = v / norm
    return out
