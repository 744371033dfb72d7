"""The tilesets' frame: ENU (east, north, up) at the project origin, placed on the globe by the
root tile's transform (ENU -> ECEF, EPSG:4978).

Project coordinates (a projected CRS, metres) are not ENU: the projection's scale factor and
grid convergence (half a degree at Tongliao in EPSG:4550) and the Earth's curvature (8 m of drop
at 10 km) lie between them. Every vertex is mapped exactly (``Frame.to_enu``: pyproj to ECEF,
then the ENU rotation); many points at once go through a quadratic fitted to exact transforms
over their box and checked against exact transforms of some of them (``to_enu_fitted``, 5-7x
faster); normals are rotated by an affine fitted over the tile's extent (``Frame.affine``,
right to a centimetre over a tile).

Project coordinates go to longitude and latitude on the CRS's own geodetic datum (the inverse
projection, which pyproj sets up in milliseconds, where a transformation to EPSG:4978 took 1.5 s
to find here), then to ECEF on that datum's ellipsoid in closed form. The datum is taken as
WGS84 for the globe: CGCS2000, ETRS89 and NAD83 differ from it by a metre or less, which a map
of the city does not show. Heights are taken as ellipsoidal (the store has no geoid model): a
city on a geoid-based datum sits some metres off the ellipsoid's surface, which CesiumJS draws
without terrain.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from pyproj import CRS

from cim.crs import transformer
from cim.georef import fit_affine

#: WGS84's ellipsoid, for a CRS whose datum has none stated
WGS84 = (6378137.0, 298.257223563)


def geodetic_to_ecef(
    lon: np.ndarray, lat: np.ndarray, h: np.ndarray, ellipsoid: tuple[float, float] = WGS84
) -> np.ndarray:
    """(n, 3) ECEF metres of geodetic coordinates (degrees, metres) on an ellipsoid (semi-major
    axis, inverse flattening): the closed form, exact."""
    a, inv_f = ellipsoid
    e2 = (2 - 1 / inv_f) / inv_f
    lam, phi = np.radians(lon), np.radians(lat)
    sp, cp = np.sin(phi), np.cos(phi)
    n = a / np.sqrt(1 - e2 * sp * sp)
    return np.column_stack(
        [(n + h) * cp * np.cos(lam), (n + h) * cp * np.sin(lam), (n * (1 - e2) + h) * sp]
    )


def enu_to_ecef_matrix(
    lon: float, lat: float, h: float, ellipsoid: tuple[float, float] = WGS84
) -> np.ndarray:
    """The 4x4 matrix taking ENU metres at (lon, lat, h) to ECEF metres (row-major)."""
    lam, phi = math.radians(lon), math.radians(lat)
    sl, cl, sp, cp = math.sin(lam), math.cos(lam), math.sin(phi), math.cos(phi)
    x, y, z = geodetic_to_ecef(np.array([lon]), np.array([lat]), np.array([h]), ellipsoid)[0]
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
        geodetic = crs.geodetic_crs or CRS.from_epsg(4326)
        ell = geodetic.ellipsoid
        self.ellipsoid = (
            (ell.semi_major_metre, ell.inverse_flattening) if ell is not None else WGS84
        )
        self._to_geodetic = transformer(crs, geodetic)
        lon, lat = self._to_geodetic.transform(*origin_xy)
        self.lon, self.lat = float(lon), float(lat)
        self.matrix = enu_to_ecef_matrix(self.lon, self.lat, 0.0, self.ellipsoid)
        self._inverse_origin = self.matrix[:3, 3].copy()

    @property
    def transform(self) -> list[float]:
        """The root tile's ``transform``: column-major, as 3D Tiles wants it."""
        return [float(v) for v in self.matrix.T.reshape(-1)]

    def to_enu(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) project coordinates -> ENU metres, exactly (a pyproj call per point)."""
        pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        lon, lat = self._to_geodetic.transform(pts[:, 0], pts[:, 1])
        ecef = geodetic_to_ecef(np.asarray(lon), np.asarray(lat), pts[:, 2], self.ellipsoid)
        # ECEF relative to the origin first: float64 keeps millimetres that way
        rel = ecef - self._inverse_origin
        out: np.ndarray = rel @ self.matrix[:3, :3]
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


#: how far the fitted mapping may be from the exact one (metres) on a point file's own points
ENU_TOLERANCE = 5e-5


def _quadratic_terms(d: np.ndarray) -> np.ndarray:
    u, v, w = d[:, 0], d[:, 1], d[:, 2]
    return np.column_stack([np.ones_like(u), u, v, w, u * u, u * v, v * v, u * w, v * w, w * w])


def to_enu_fitted(frame: Frame, xyz: np.ndarray, seed: int = 0) -> np.ndarray:
    """Project coordinates -> ENU, through a quadratic fitted to exact transforms
    (``Frame.to_enu``) over the points' box, checked against exact transforms of 2,000 of the
    points themselves; exact when the fit misses by more than ``ENU_TOLERANCE``.

    The exact transform runs at 0.5-1 M points/s here, the fit at 10-20 M/s. It is summed
    with ``einsum``, not ``@``: OpenBLAS's threads made the product 60x slower on a loaded
    2-core machine. An affine is not
    enough: the Earth's curvature alone drops 5 mm at 250 m from a fit's centre, which a
    quadratic holds (its misfit over a 1 km file is below a micrometre, 0.02 mm at 3 km)."""
    if len(xyz) < 5_000:
        return frame.to_enu(xyz)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1.0)
    axis = np.linspace(-1.0, 1.0, 5)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = grid * half + centre
    coef, *_ = np.linalg.lstsq(_quadratic_terms(grid - centre), frame.to_enu(grid), rcond=None)
    probe = np.random.default_rng(seed).choice(len(xyz), 2_000, replace=False)
    fitted = np.einsum("ij,jk->ik", _quadratic_terms(xyz[probe] - centre), coef)
    if float(np.abs(fitted - frame.to_enu(xyz[probe])).max()) > ENU_TOLERANCE:
        return frame.to_enu(xyz)
    out = np.empty_like(xyz)
    step = 1 << 18  # chunks whose temporaries stay in cache and are allocated once
    buf = np.empty((min(step, len(xyz)), 10))
    for a in range(0, len(xyz), step):
        chunk = xyz[a : a + step]
        m = len(chunk)
        t = buf[:m]
        np.subtract(chunk, centre, out=t[:, 1:4])
        u, v, w = t[:, 1], t[:, 2], t[:, 3]
        t[:, 0] = 1.0
        np.multiply(u, u, out=t[:, 4])
        np.multiply(u, v, out=t[:, 5])
        np.multiply(v, v, out=t[:, 6])
        np.multiply(u, w, out=t[:, 7])
        np.multiply(v, w, out=t[:, 8])
        np.multiply(w, w, out=t[:, 9])
        np.einsum("ij,jk->ik", t, coef, out=out[a : a + m])
    return out


@functools.lru_cache(maxsize=4)
def frame_for(crs_wkt: str, origin: tuple[float, float]) -> Frame:
    """The frame of a store (by its CRS and origin), made once per process: making pyproj's
    transformers costs a few tenths of a second."""
    return Frame(CRS.from_wkt(crs_wkt), origin)
