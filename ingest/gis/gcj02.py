"""GCJ-02, the offset ("Mars") coordinates of Chinese web maps (AutoNavi/Amap, Tencent, Google
China), to and from WGS84.

Written by hand because no library we depend on does it: PROJ has no GCJ-02 operation (it is not
a datum shift but an obfuscation published only as code), and the small PyPI packages that do it
work one point at a time in pure Python. This is the widely published algorithm (the "eviltransform"
/ "coordtransform" code, Krasovsky 1940 ellipsoid constants), vectorised with NumPy so a whole
layer converts in one call. Points outside China are not offset, as in the original.

``wgs84_to_gcj02`` is the forward formula; ``gcj02_to_wgs84`` inverts it by fixed-point iteration
(the offset varies slowly, so each step divides the error by about 1e5; three steps reach
millimetres, we iterate to 1e-9 degrees).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Krasovsky 1940 semi-major axis and first eccentricity squared, as in the published code
_A = 6378245.0
_EE = 0.00669342162296594323

#: the box outside which the published code applies no offset
_LON_MIN, _LON_MAX = 72.004, 137.8347
_LAT_MIN, _LAT_MAX = 0.8293, 55.8271


def in_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """True where the GCJ-02 offset applies (the rough box of the published algorithm)."""
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    return (x >= _LON_MIN) & (x <= _LON_MAX) & (y >= _LAT_MIN) & (y <= _LAT_MAX)


def _offset(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    """The (dlon, dlat) in degrees that GCJ-02 adds to a WGS84 position."""
    x = lon - 105.0
    y = lat - 35.0
    sq = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sq + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sq + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad) * np.pi)
    inside = in_china(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray, NDArray]:
    """WGS84 lon/lat (degrees) to GCJ-02 lon/lat; arrays in, arrays out."""
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    dlon, dlat = _offset(x, y)
    return x + dlon, y + dlat


def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, *, tolerance: float = 1e-9, max_iter: int = 20
) -> tuple[NDArray, NDArray]:
    """GCJ-02 lon/lat (degrees) to WGS84 lon/lat, the exact inverse by iteration."""
    gx = np.asarray(lon, dtype=np.float64)
    gy = np.asarray(lat, dtype=np.float64)
    dlon, dlat = _offset(gx, gy)
    wx, wy = gx - dlon, gy - dlat  # first guess: the offset at the GCJ point
    for _ in range(max_iter):
        fx, fy = wgs84_to_gcj02(wx, wy)
        ex, ey = fx - gx, fy - gy
        wx, wy = wx - ex, wy - ey
        if np.all(np.abs(ex) < tolerance) and np.all(np.abs(ey) < tolerance):
            break
    return wx, wy
