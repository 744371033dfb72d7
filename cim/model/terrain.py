"""The terrain: the DTMs in the store, and the ground elevation wherever they cover it.

A DTM per LiDAR source (the LiDAR ingester writes it): z per cell, the cells that held ground
points (measured) kept as a bit mask, the others filled in from them. Where DTMs overlap
(flight strips, tile edges), the ground at a point comes from the one best measured there, so
that one's filled-in cells never take over another's ground points.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cim.store import Store


@dataclass(frozen=True)
class Dtm:
    source_id: int
    origin_x: float
    origin_y: float
    resolution: float
    nx: int
    ny: int
    z: np.ndarray  # (ny, nx) float32
    measured: np.ndarray | None = None  # (ny, nx) bool; None: every cell

    def sample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bilinear elevation at cell centres (NaN outside the grid) and its support: the
        share of its weight on measured cells, 1 where every cell used had ground points, 0
        where the value is filled in from cells further away."""
        fx = (np.asarray(x, dtype=np.float64) - self.origin_x) / self.resolution - 0.5
        fy = (np.asarray(y, dtype=np.float64) - self.origin_y) / self.resolution - 0.5
        inside = (fx >= -0.5) & (fx <= self.nx - 0.5) & (fy >= -0.5) & (fy <= self.ny - 0.5)
        fx = np.clip(fx, 0, self.nx - 1)
        fy = np.clip(fy, 0, self.ny - 1)
        i0 = np.minimum(np.floor(fx).astype(np.int64), max(self.nx - 2, 0))
        j0 = np.minimum(np.floor(fy).astype(np.int64), max(self.ny - 2, 0))
        i1 = np.minimum(i0 + 1, self.nx - 1)
        j1 = np.minimum(j0 + 1, self.ny - 1)
        tx, ty = fx - i0, fy - j0
        weights = ((1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty)
        cells = ((j0, i0), (j0, i1), (j1, i0), (j1, i1))
        out = sum(self.z[c] * w for c, w in zip(cells, weights, strict=True))
        if self.measured is None:
            support = np.ones(len(out))
        else:
            support = sum(self.measured[c] * w for c, w in zip(cells, weights, strict=True))
        return np.where(inside, out, np.nan), np.where(inside, support, -1.0)


def ground_at(dtms: Iterable[Dtm], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ground elevation at each (x, y) from the terrain models that cover it (NaN where none
    does): from the model best measured there, so that overlapping clouds (flight strips,
    tile edges) never take one's filled-in cells over another's ground points."""
    z = np.full(len(x), np.nan)
    best = np.full(len(x), -1.0)
    for dtm in dtms:
        value, support = dtm.sample(x, y)
        better = support > best + 1e-9
        z[better] = value[better]
        best[better] = support[better]
    return z


def dtms_over(
    store: Store, bounds: tuple[float, float, float, float] | None = None
) -> Iterator[Dtm]:
    """The DTMs overlapping ``bounds``, loaded one at a time."""
    sql = "SELECT source_id, origin_x, origin_y, resolution, nx, ny FROM dtm"
    params: list[Any] = []
    if bounds is not None:
        sql += (
            " WHERE origin_x <= ? AND origin_x + nx * resolution >= ? "
            "AND origin_y <= ? AND origin_y + ny * resolution >= ?"
        )
        params = [bounds[2], bounds[0], bounds[3], bounds[1]]
    for sid, ox, oy, res, nx, ny in store.con.execute(
        sql + " ORDER BY source_id", params
    ).fetchall():
        blob = store.con.execute(
            "SELECT z, measured FROM dtm WHERE source_id = ?", [sid]
        ).fetchone()
        assert blob is not None
        z = np.frombuffer(blob[0], dtype="<f4").reshape(ny, nx)
        measured: np.ndarray | None = None
        if blob[1] is not None:
            bits = np.frombuffer(blob[1], dtype=np.uint8)
            flat = np.unpackbits(bits, count=nx * ny, bitorder="little").astype(bool)
            measured = flat.reshape(ny, nx)
        yield Dtm(sid, ox, oy, res, nx, ny, z, measured)


def ground_elevation(store: Store, x: float, y: float) -> float | None:
    """Terrain elevation (m) at (x, y) in the project CRS from the DTMs; None where none covers."""
    z = ground_at(dtms_over(store, (x, y, x, y)), np.array([x]), np.array([y]))[0]
    return None if np.isnan(z) else float(z)
