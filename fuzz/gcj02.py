"""Harness: the GCJ-02 conversion (``ingest.gis.gcj02``) on arbitrary coordinates.

Both directions must take any float (NaN, infinities, far outside China) without raising, and
inside the box where the offset applies, WGS84 -> GCJ-02 -> WGS84 must come back within a
millimetre (1e-8 degrees): the inverse is what ``--crs GCJ02`` uses on every vertex. Within
``_EDGE_DEG`` of the box's edges the published formula is discontinuous (no offset just
outside, up to several hundred metres just inside), so some GCJ-02 positions there have no
WGS84 preimage: the round trip is checked away from the edges, which lie outside China's land.
"""

from __future__ import annotations

import math

import numpy as np

from ingest.gis.gcj02 import gcj02_to_wgs84, in_china, wgs84_to_gcj02

_TOLERANCE_DEG = 1e-8
_EDGE_DEG = 0.01


def _floats(data: bytes) -> np.ndarray:
    n = len(data) // 16 * 2
    return np.frombuffer(data[: n * 8], dtype=np.float64).reshape(-1, 2)


def test_one_input(data: bytes) -> None:
    points = _floats(data)
    if not len(points):
        return
    lon, lat = points[:, 0], points[:, 1]
    with np.errstate(all="ignore"):
        gx, gy = wgs84_to_gcj02(lon, lat)
        wx, wy = gcj02_to_wgs84(lon, lat)
        assert gx.shape == gy.shape == wx.shape == wy.shape == lon.shape
        back_x, back_y = gcj02_to_wgs84(gx, gy)
    inner = in_china(lon - _EDGE_DEG, lat - _EDGE_DEG) & in_china(lon + _EDGE_DEG, lat + _EDGE_DEG)
    for i in np.flatnonzero(inner):
        ex = abs(float(back_x[i]) - float(lon[i]))
        ey = abs(float(back_y[i]) - float(lat[i]))
        assert math.isfinite(ex) and ex < _TOLERANCE_DEG and ey < _TOLERANCE_DEG, (
            f"GCJ-02 round trip of ({lon[i]!r}, {lat[i]!r}) is off by ({ex:g}, {ey:g}) degrees"
        )
