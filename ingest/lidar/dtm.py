"""A cloud's terrain model (DTM): the mean z of its ground points (class 2) per cell.

The cells are 1 m, coarsened so a DTM has at most ``DTM_MAX_CELLS``, over the cloud's bounds in
the project CRS. The ground points are summed per cell where each run is decoded
(``DtmGrid.accumulate``, in the workers), added up over the cloud (``GroundGrid``), the gaps
filled by normalised convolution over a pyramid then nearest neighbour (``fill_gaps``), and the
DTM saved with its measured cells as a bit mask, so that where DTMs overlap the ground comes from
the one measured there (``cim.model.terrain``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from cim.store import Store


#: DTM cell size (m), coarsened so a DTM has at most DTM_MAX_CELLS cells
DTM_RESOLUTION = 1.0
DTM_MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class DtmGrid:
    """Where the DTM cells of a cloud lie: origin and cell size in whole metres, nx x ny cells
    over the cloud's bounds (coarsened so there are at most DTM_MAX_CELLS)."""

    ox: float
    oy: float
    res: float
    nx: int
    ny: int

    @classmethod
    def over(cls, xmin: float, ymin: float, xmax: float, ymax: float) -> DtmGrid:
        res = DTM_RESOLUTION
        area = max(xmax - xmin, res) * max(ymax - ymin, res)
        if area / res**2 > DTM_MAX_CELLS:
            res = float(math.ceil(math.sqrt(area / DTM_MAX_CELLS)))
        ox, oy = math.floor(xmin / res) * res, math.floor(ymin / res) * res
        nx = math.floor((xmax - ox) / res) + 1
        ny = math.floor((ymax - oy) / res) + 1
        return cls(ox, oy, res, nx, ny)

    def covers(self, bbox: list[float | None]) -> bool:
        """Whether the grid holds a cloud's actual x/y bounds (to one cell)."""
        x0, y0, x1, y1 = bbox[0], bbox[1], bbox[3], bbox[4]
        if x0 is None or y0 is None or x1 is None or y1 is None:
            return True
        r = self.res
        return (
            x0 >= self.ox - r
            and y0 >= self.oy - r
            and x1 <= self.ox + (self.nx + 1) * r
            and y1 <= self.oy + (self.ny + 1) * r
        )

    def accumulate(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> GroundPatch | None:
        """Sum and count of z (metres) per cell of points at integer millimetres, over the
        window of cells they touch (points outside the grid go to its edge cells). Done per
        chunk where the chunk is decoded: a chunk covers a strip of the cloud, so its window is
        small and the bincount stays in cache (faster than over the whole grid)."""
        if not len(x):
            return None
        # float division: exact for these integers (whole-millimetre origin and cell size),
        # and faster than NumPy's int64 floor division
        res = self.res * 1000.0
        fx = x - self.ox * 1000.0
        fx /= res
        np.clip(fx, 0, self.nx - 1, out=fx)
        fy = y - self.oy * 1000.0
        fy /= res
        np.clip(fy, 0, self.ny - 1, out=fy)
        ix, iy = fx.astype(np.int64), fy.astype(np.int64)
        col0, row0 = int(ix.min()), int(iy.min())
        width, height = int(ix.max()) - col0 + 1, int(iy.max()) - row0 + 1
        if width * height > max(len(x), 65_536):
            # points scattered over the cloud (a file not in scanner order): a window as large
            # as the grid would cost more memory than the points; the caller bins them
            row0 = col0 = 0
            width, height = self.nx, self.ny
        iy -= row0
        iy *= width
        iy += ix
        if col0:
            iy -= col0
        zm = z / 1000.0
        if (width, height) == (self.nx, self.ny):
            return GroundPatch(0, 0, None, None, iy, zm)
        size = width * height
        total = np.bincount(iy, weights=zm, minlength=size).reshape(height, width)
        count = np.bincount(iy, minlength=size).reshape(height, width)
        return GroundPatch(row0, col0, total, count)


@dataclass
class GroundPatch:
    """Sum of z and number of ground points per DTM cell over a window of the grid; or, for
    points spread over the whole grid, their cells and z."""

    row0: int
    col0: int
    total: np.ndarray | None  # (rows, cols) float64
    count: np.ndarray | None  # (rows, cols) int64
    cells: np.ndarray | None = None  # flat index in the whole grid
    z: np.ndarray | None = None  # metres


class EncodedPart(Protocol):
    """What ``GroundGrid`` takes of a part of a cloud (``encode.Part``): its ground points."""

    ground: list[GroundPatch]


class GroundGrid:
    """Mean z of the class-2 points per DTM cell over the cloud's bounds."""

    def __init__(self, grid: DtmGrid) -> None:
        self.grid = grid
        self.sum = np.zeros((grid.ny, grid.nx), dtype=np.float64)
        self.count = np.zeros((grid.ny, grid.nx), dtype=np.int64)

    def add(self, part: EncodedPart) -> None:
        """A part's ground points, summed per cell where the part was decoded."""
        for patch in part.ground:
            self._add(patch)

    def _add(self, patch: GroundPatch) -> None:
        if patch.total is None or patch.count is None:
            assert patch.cells is not None and patch.z is not None
            size = self.sum.size
            self.sum.ravel()[:] += np.bincount(patch.cells, weights=patch.z, minlength=size)
            self.count.ravel()[:] += np.bincount(patch.cells, minlength=size)
            return
        rows, cols = patch.total.shape
        window = np.s_[patch.row0 : patch.row0 + rows, patch.col0 : patch.col0 + cols]
        self.sum[window] += patch.total
        self.count[window] += patch.count

    def save(self, store: Store, source_id: int) -> int:
        """Fill the gaps and write the DTM row; returns the number of cells."""
        g = self.grid
        known = self.count > 0
        z = np.divide(self.sum, self.count, out=np.full((g.ny, g.nx), np.nan), where=known)
        fill_gaps(z, known)
        store.con.execute(
            "INSERT INTO dtm (source_id, origin_x, origin_y, resolution, nx, ny, measured_cells, "
            "z, measured) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                source_id,
                g.ox,
                g.oy,
                g.res,
                g.nx,
                g.ny,
                int(known.sum()),
                z.astype("<f4").tobytes(),
                np.packbits(known.ravel(), bitorder="little").tobytes(),
            ],
        )
        return g.nx * g.ny


def _halve(a: np.ndarray) -> np.ndarray:
    """Sums of 2 x 2 blocks of cells (odd sizes padded with zeros)."""
    ny, nx = a.shape
    if ny % 2 or nx % 2:
        padded = np.zeros((ny + ny % 2, nx + nx % 2))
        padded[:ny, :nx] = a
        a = padded
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def fill_gaps(grid: np.ndarray, known: np.ndarray) -> None:
    """Fill the NaN cells of ``grid`` in place from the known ones.

    Normalised convolution (a Gaussian-weighted mean of the known cells) over a pyramid: at
    each level the known values and their weights are summed over 2 x 2 blocks, so a Gaussian
    of one cell there reaches twice as far, up to 64 cells; a gap takes the first level that
    reaches it, interpolated bilinearly between that level's cells. Then nearest neighbour for
    what is left. Not linear interpolation on a Delaunay triangulation (scipy griddata): grid
    points are cocircular, which Qhull resolves slowly. Not a Gaussian widened on the whole
    grid either: slower than coarsening it, for building-sized gaps already.
    """
    from scipy.ndimage import distance_transform_edt, gaussian_filter, map_coordinates

    missing = ~known
    if not missing.any() or not known.any():
        return
    values = np.where(known, grid, 0.0)
    weights = known.astype(np.float64)
    scale = 1
    while True:
        num = gaussian_filter(values, 1.0, mode="nearest", truncate=3.0)
        den = gaussian_filter(weights, 1.0, mode="nearest", truncate=3.0)
        rows, cols = np.nonzero(missing)
        if scale == 1:
            num_at, den_at = num[rows, cols], den[rows, cols]
        else:  # the gaps' cell centres in this level's cells
            at = np.stack([(rows + 0.5) / scale - 0.5, (cols + 0.5) / scale - 0.5])
            num_at = map_coordinates(num, at, order=1, mode="nearest")
            den_at = map_coordinates(den, at, order=1, mode="nearest")
        reach = den_at > 1e-3 * scale * scale  # a level's cell weighs up to scale**2
        rows, cols = rows[reach], cols[reach]
        grid[rows, cols] = num_at[reach] / den_at[reach]
        missing[rows, cols] = False
        if scale >= 64 or not missing.any():
            break
        values, weights = _halve(values), _halve(weights)
        scale *= 2
    if missing.any():
        idx = distance_transform_edt(~known, return_distances=False, return_indices=True)
        grid[missing] = grid[idx[0][missing], idx[1][missing]]
