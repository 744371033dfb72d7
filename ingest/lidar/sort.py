"""The order a cloud's points are stored in: along a Hilbert curve over a grid of cells.

A cloud is sorted run by run (``encode.RUN_POINTS`` points) before its columns are computed, so
that each Parquet row group of a run holds a compact patch of ground: the row groups' min/max of
x and y then let a box or footprint query read only the row groups it touches, about one per
run that passed over the box. The sort needs neighbours only, so it is done on the file's
stored integers, before any scaling or reprojection.
"""

from __future__ import annotations

from dataclasses import dataclass

import laspy
import numpy as np


def _hilbert_table(order: int = 8) -> np.ndarray:
    """The Hilbert curve index of every cell of a 2**order square grid, as table[iy, ix].

    Hilbert, not Morton (Z) order: consecutive cells are always neighbours, so the stretch of
    cells in one DuckDB row group is a compact patch. A Z-order stretch that crosses a quadrant
    boundary jumps across the grid, and its row group's min/max box spans both sides, so a box
    query reads more row groups in Z order than in Hilbert order. The classic xy2d loop,
    vectorised over the whole grid once (no library ships a vectorised one).
    """
    n = 1 << order
    y, x = (a.ravel() for a in np.mgrid[0:n, 0:n].astype(np.int64))
    d = np.zeros(n * n, dtype=np.int64)
    s = n // 2
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        flip = ~ry & rx
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        x, y = np.where(~ry, y, x), np.where(~ry, x, y)
        s //= 2
    return d.astype(np.uint16).reshape(n, n)


HILBERT = _hilbert_table().ravel()


@dataclass(frozen=True)
class SortGrid:
    """256 x 256 cells over a cloud's bounds in the project CRS; the sort key of a point is the
    Hilbert index of its cell (points outside the bounds go to the edge cells).

    The key only has to make each DuckDB row group (122,880 rows) a compact patch of ground, so
    its zone maps on x/y prune: 65,536 cells split a 1 km tile at 16 points/m2 into 4 m cells
    of 250 points, and a row group then covers about 500 neighbouring cells.
    """

    x0: float
    y0: float
    cell: float

    @classmethod
    def over(cls, bounds: tuple[float, float, float, float]) -> SortGrid:
        x0, y0, x1, y1 = bounds
        side = max(x1 - x0, y1 - y0, 1e-3)
        return cls(x0, y0, side / 255.999)

    def key(self, x: np.ndarray, y: np.ndarray, unit: float = 1.0) -> np.ndarray:
        """Keys of points at ``x * unit``, ``y * unit`` metres."""
        inv = 1.0 / self.cell
        fx = x * (unit * inv)
        fx -= self.x0 * inv
        fy = y * (unit * inv)
        fy -= self.y0 * inv
        cell = np.clip(fy, 0, 255, out=fy).astype(np.uint16)
        cell <<= np.uint16(8)
        cell |= np.clip(fx, 0, 255, out=fx).astype(np.uint16)
        return HILBERT[cell]


def raw_grid(header: laspy.LasHeader) -> SortGrid:
    """The sort grid over the header's bounds in the file's stored integers (the sort needs
    neighbours only, so it is done before any scaling or reprojection)."""
    scales, offsets = header.scales, header.offsets
    lo = [(float(header.mins[i]) - float(offsets[i])) / float(scales[i]) for i in (0, 1)]
    hi = [(float(header.maxs[i]) - float(offsets[i])) / float(scales[i]) for i in (0, 1)]
    return SortGrid.over((lo[0], lo[1], hi[0], hi[1]))


def sorted_points(
    points: laspy.ScaleAwarePointRecord, grid: SortGrid
) -> laspy.ScaleAwarePointRecord:
    """The points in the Hilbert order of their cells, sorted as whole records before anything
    is computed from them, so every column comes out sorted from one gather. The records are
    gathered as opaque fixed-size items: NumPy's take of a structured array copies field by
    field, much slower than of the same bytes as void items."""
    record = points.array
    key = grid.key(record["X"], record["Y"])
    # stable argsort of uint16 is NumPy's radix sort
    order = np.argsort(key, kind="stable")
    items = np.ascontiguousarray(record).view(np.dtype((np.void, record.dtype.itemsize)))
    gathered = np.take(items, order).view(record.dtype)
    return laspy.ScaleAwarePointRecord(gathered, points.point_format, points.scales, points.offsets)
