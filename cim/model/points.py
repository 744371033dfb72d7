"""LiDAR points in a box or a polygon, and the ASPRS classes of the points.

The points are in the store's point files (Parquet), read through ``Store.points_from``, which
names only the files whose bounds meet the box (the ``points`` view reads every file's footer).
x/y/z are ``DECIMAL(18,3)`` in the files: a query must compare x/y with DECIMAL(18,3) constants,
else DuckDB casts the column and cannot use the row groups' min/max statistics;
``points_in_box`` and ``points_in_polygon`` do this.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import shapely

if TYPE_CHECKING:
    from cim.store import Store


DECIMAL = "DECIMAL(18,3)"


#: the ASPRS classes the model uses: ground (the terrain) and building (the roofs)
GROUND, BUILDING = 2, 6

#: the standard ASPRS point classes (LAS 1.4), by code
ASPRS_CLASSES = {
    0: "created, never classified",
    1: "unclassified",
    2: "ground",
    3: "low vegetation",
    4: "medium vegetation",
    5: "high vegetation",
    6: "building",
    7: "low point (noise)",
    9: "water",
    10: "rail",
    11: "road surface",
    13: "wire - guard (shield)",
    14: "wire - conductor (phase)",
    15: "transmission tower",
    16: "wire-structure connector (insulator)",
    17: "bridge deck",
    18: "high noise",
}


_POINT_COLS = (
    "source_id, x::DOUBLE AS x, y::DOUBLE AS y, z::DOUBLE AS z, classification, intensity, "
    "return_number, number_of_returns, red, green, blue, point_source_id"
)


def _class_filter(classes: Sequence[int] | None) -> tuple[str, list[Any]]:
    if classes is None:
        return "", []
    return " AND classification IN (SELECT unnest(?::UTINYINT[]))", [list(classes)]


def points_in_box(
    store: Store,
    xmin: float,
    ymin: float,
    xmax: float,
    ymax: float,
    classes: Sequence[int] | None = None,
) -> pa.Table:
    """Points with xmin <= x <= xmax and ymin <= y <= ymax (project CRS), as an Arrow table.

    x/y/z come back as float64. The box is compared as DECIMAL(18,3) so the zone maps prune.
    """
    source, files = store.points_from(xmin, ymin, xmax, ymax)
    where, params = _class_filter(classes)
    sql = (
        f"SELECT {_POINT_COLS} FROM {source} WHERE x BETWEEN ?::{DECIMAL} AND ?::{DECIMAL} "
        f"AND y BETWEEN ?::{DECIMAL} AND ?::{DECIMAL}{where}"
    )
    return store.con.execute(sql, [*files, xmin, xmax, ymin, ymax, *params]).to_arrow_table()


def points_in_polygon(
    store: Store, polygon: str | shapely.Geometry, classes: Sequence[int] | None = None
) -> pa.Table:
    """Points inside a (multi)polygon given as WKT or shapely geometry (project CRS)."""
    geom = shapely.from_wkt(polygon) if isinstance(polygon, str) else polygon
    xmin, ymin, xmax, ymax = (float(v) for v in geom.bounds)
    source, files = store.points_from(xmin, ymin, xmax, ymax)
    where, params = _class_filter(classes)
    sql = (
        f"SELECT {_POINT_COLS} FROM {source} WHERE x BETWEEN ?::{DECIMAL} AND ?::{DECIMAL} "
        f"AND y BETWEEN ?::{DECIMAL} AND ?::{DECIMAL}{where} "
        f"AND ST_Contains(ST_GeomFromText(?), ST_Point(x::DOUBLE, y::DOUBLE))"
    )
    return store.con.execute(
        sql, [*files, xmin, xmax, ymin, ymax, *params, shapely.to_wkt(geom)]
    ).to_arrow_table()


@dataclass
class PointBatch:
    """Points of one point file as NumPy arrays: x/y/z float64 (project CRS), classification
    uint8, rgb (n, 3) uint16 or None when the file has no colour."""

    file: str
    source_id: int
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    classification: np.ndarray
    rgb: np.ndarray | None


def point_files(store: Store) -> list[tuple[str, int, int]]:
    """Every point file of the store: (file, source_id, points), in file order."""
    rows = store.con.execute(
        "SELECT file, source_id, points FROM point_files ORDER BY file"
    ).fetchall()
    return [(str(f), int(s), int(n)) for f, s, n in rows]


def point_batches(
    store: Store, files: Sequence[str] | None = None, batch_rows: int = 1 << 20
) -> Iterator[PointBatch]:
    """All points of the store (or of ``files``, in that order), in batches of at most
    ``batch_rows`` points of one file each, so a caller streaming over a large cloud holds one
    batch beyond its own arrays. Read through the ``points_in`` macro."""
    known = {f: s for f, s, _ in point_files(store)}
    for file in files if files is not None else list(known):
        reader = store.con.execute(
            "SELECT x::DOUBLE AS x, y::DOUBLE AS y, z::DOUBLE AS z, classification, "
            "red, green, blue FROM points_in(?::VARCHAR[])",
            [[file]],
        ).to_arrow_reader(batch_rows)
        for batch in reader:
            rgb: np.ndarray | None = None
            red = batch.column("red")
            if red.null_count < len(red):
                rgb = np.column_stack(
                    [
                        batch.column(c).fill_null(0).to_numpy().astype(np.uint16, copy=False)
                        for c in ("red", "green", "blue")
                    ]
                )
            yield PointBatch(
                file=file,
                source_id=known.get(file, -1),
                x=batch.column("x").to_numpy(),
                y=batch.column("y").to_numpy(),
                z=batch.column("z").to_numpy(),
                classification=batch.column("classification").to_numpy().astype(np.uint8),
                rgb=rgb,
            )
