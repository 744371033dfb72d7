"""One part of a cloud as a Parquet point file: what the executor's workers run (``encode_part``).

A cloud is cut into parts of whole row groups (at most ``PART_RUNS`` runs of ``RUN_POINTS``; a
multiple of the workers, so they finish together, ``part_ranges``); each part is one task for
the workers, and a small cloud is one part encoded in the ingesting process. A worker opens the
file, seeks its part and, run by run: sorts the records in Hilbert order (``sort``), computes
the columns (reprojected to the project CRS with pyproj, one vectorised call; without a
reprojection, integer millimetres straight from the stored integers), sums the ground points
per DTM cell (``dtm.DtmGrid``), and writes the run as Parquet row groups. Memory is bounded by
those constants whatever the file size.

Storage. Each part is a Parquet file in the store's point folder (cim/store.py, migration 008),
written by the worker itself (a Dask worker on another machine sends the bytes instead), named
in ``point_files`` and read through the ``point_rows`` view and the ``points`` view on it
(migration 005: intensity, returns and source id packed into one integer and RGB into another).
Files and not DuckDB's own table: DuckDB's append costs more CPU a point in the one writing
process than everything else together, while Parquet is encoded in every worker. x/y/z are
``DECIMAL(18,3)``: exact millimetres stored as 64-bit integers, delta-encoded (see
``_PARQUET_OPTIONS``), which queries compare with DECIMAL constants so that the row groups'
statistics prune (``cim.model.points``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import laspy
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cim.crs import transformer
from cim.errors import InputFileError
from cim.model.points import GROUND
from ingest.lidar.dtm import DtmGrid, GroundPatch
from ingest.lidar.reader import decoding, open_points
from ingest.lidar.sort import SortGrid, sorted_points

#: DuckDB's and our Parquet files' row group (rows): the unit the min/max statistics describe
ROW_GROUP = 122_880
#: points read, sorted and encoded together (a run): 16 row groups, about 80 MB in flight
RUN_POINTS = 16 * ROW_GROUP
#: runs per part: a part is one task for a worker and one Parquet file (at most 8M points,
#: about 60 MB of encoded bytes held by the worker and sent back)
PART_RUNS = 4


@dataclass(frozen=True)
class PartSpec:
    """One part of a file (``count`` points from ``start``), for a worker: picklable, the
    worker opens the file itself. ``grid`` is over the file's stored integer coordinates."""

    path: str
    start: int
    count: int
    src_wkt: str
    dst_wkt: str
    z_factor: float
    has_rgb: bool
    grid: SortGrid
    dtm: DtmGrid
    #: the file to write; None: the worker sends the file's bytes back (a Dask worker on
    #: another machine). Written straight to the file, it is not copied through the ingesting
    #: process: faster
    out: str | None = None


#: a sorted run of points as columns of the point files: x/y/z in integer millimetres of the
#: project CRS, the other attributes packed (see pack_attributes), rgb when the format has it
Columns = dict[str, np.ndarray]


def pack_attributes(
    intensity: np.ndarray,
    return_number: np.ndarray,
    number_of_returns: np.ndarray,
    point_source_id: np.ndarray,
) -> np.ndarray:
    """The ``point_rows.attributes`` integer (migration 005; the ``points`` view unpacks it):
    fewer columns make DuckDB's append cheaper."""
    out = np.asarray(intensity).astype(np.uint64)
    out |= (np.asarray(return_number).astype(np.uint64) & np.uint64(15)) << np.uint64(16)
    out |= (np.asarray(number_of_returns).astype(np.uint64) & np.uint64(15)) << np.uint64(20)
    out |= np.asarray(point_source_id).astype(np.uint64) << np.uint64(24)
    return out


def pack_rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """The ``point_rows.rgb`` integer: red | green << 16 | blue << 32."""
    out = np.asarray(red).astype(np.uint64)
    out |= np.asarray(green).astype(np.uint64) << np.uint64(16)
    out |= np.asarray(blue).astype(np.uint64) << np.uint64(32)
    return out


def _record_attributes(points: laspy.ScaleAwarePointRecord) -> np.ndarray:
    """``pack_attributes`` of decoded points. Formats 6-10 keep the return number and count as
    the low and high 4 bits of one byte, which is their packed layout already: that byte is
    shifted as it is (7 array operations instead of 17)."""
    record = points.array
    if points.point_format.id < 6:
        return pack_attributes(
            record["intensity"],
            points["return_number"],
            points["number_of_returns"],
            record["point_source_id"],
        )
    out = record["intensity"].astype(np.uint64)
    out |= record["bit_fields"].astype(np.uint64) << np.uint64(16)
    out |= record["point_source_id"].astype(np.uint64) << np.uint64(24)
    return out


def _record_rgb(points: laspy.ScaleAwarePointRecord) -> np.ndarray:
    """``pack_rgb`` of decoded points: red and green, adjacent little-endian 16-bit fields in
    every format with colour, read as one 32-bit integer (4 array operations instead of 7)."""
    record = points.array
    red, green = record.dtype.fields["red"][1], record.dtype.fields["green"][1]
    if green != red + 2 or not record.flags.c_contiguous:
        return pack_rgb(record["red"], record["green"], record["blue"])
    red_green = np.ndarray(
        (len(record),), dtype="<u4", buffer=record, offset=red, strides=(record.itemsize,)
    )
    out = red_green.astype(np.uint64)
    out |= record["blue"].astype(np.uint64) << np.uint64(32)
    return out


def _mm(values: np.ndarray, factor: float) -> np.ndarray:
    """float coordinates -> integer millimetres (in place on ``values``)."""
    np.multiply(values, factor, out=values)
    np.rint(values, out=values)
    return values.astype(np.int64)


def _integral(v: float) -> bool:
    return abs(v - round(v)) < 1e-9 * max(1.0, abs(v))


def mm_exact(raw: np.ndarray, scale: float, offset: float, factor: float) -> np.ndarray | None:
    """The stored integers of a dimension -> integer millimetres without floats, when its scale
    and offset are whole millimetres (0.01, 0.001 ...): ``raw * s + o``, exact and faster
    than scaling to metres and rounding. None when they are not."""
    s, o = scale * 1000.0 * factor, offset * 1000.0 * factor
    if not (_integral(s) and _integral(o)):
        return None
    out = raw.astype(np.int64)
    out *= round(s)
    out += round(o)
    return out


def _coordinate(points: laspy.ScaleAwarePointRecord, axis: int, factor: float) -> np.ndarray:
    """Dimension ``axis`` (0 x, 1 y, 2 z) in integer millimetres, scaled by ``factor``."""
    raw = np.asarray(points.array["XYZ"[axis]])
    exact = mm_exact(raw, float(points.scales[axis]), float(points.offsets[axis]), factor)
    if exact is not None:
        return exact
    return _mm(np.array(points["xyz"[axis]], dtype=np.float64), 1000.0 * factor)


def _process(points: laspy.ScaleAwarePointRecord, spec: PartSpec) -> Columns:
    """Decoded points -> columns in the project CRS and integer millimetres."""
    out: Columns = {}
    if spec.src_wkt == spec.dst_wkt:
        out["x"], out["y"] = _coordinate(points, 0, 1.0), _coordinate(points, 1, 1.0)
    else:
        x = np.array(points.x, dtype=np.float64)
        y = np.array(points.y, dtype=np.float64)
        transformer(spec.src_wkt, spec.dst_wkt).transform(x, y, inplace=True)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InputFileError(
                f"{spec.path}: some points cannot be transformed to the project CRS (points "
                f"{spec.start}-{spec.start + spec.count}); check the file's CRS or pass --crs"
            )
        out["x"], out["y"] = _mm(x, 1000.0), _mm(y, 1000.0)
    out["z"] = _coordinate(points, 2, spec.z_factor)
    out["classification"] = np.ascontiguousarray(points["classification"], dtype=np.uint8)
    out["attributes"] = _record_attributes(points)
    if spec.has_rgb:
        out["rgb"] = _record_rgb(points)
    return out


def point_file_schema() -> pa.Schema:
    """The point files' columns (cim.store.POINT_FILE_COLUMNS): x/y/z are DECIMAL(18,3) stored
    as 64-bit integers, which DuckDB's filters compare with the row groups' min/max."""
    return pa.schema(
        [
            ("x", pa.decimal64(18, 3)),
            ("y", pa.decimal64(18, 3)),
            ("z", pa.decimal64(18, 3)),
            ("classification", pa.uint8()),
            ("attributes", pa.uint64()),
            ("rgb", pa.uint64()),
        ]
    )


#: how each column is encoded, chosen per column on a sorted run for the CPU and the bytes a
#: point: x/y/z by delta and bit packing (zstd on top saved little for more CPU, plain zstd cost
#: more CPU), the class by dictionary, the packed attributes and RGB by delta (byte stream split
#: and zstd made RGB smaller, but DuckDB 1.5 reads that encoding only for floating point).
#: Statistics only for the columns queries filter on.
_PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": ["classification"],
    "column_encoding": {
        "x": "DELTA_BINARY_PACKED",
        "y": "DELTA_BINARY_PACKED",
        "z": "DELTA_BINARY_PACKED",
        "attributes": "DELTA_BINARY_PACKED",
        "rgb": "DELTA_BINARY_PACKED",
    },
    "compression": "none",
    "write_statistics": ["x", "y", "z", "classification"],
    "store_decimal_as_integer": True,
}


@dataclass
class Part:
    """A part of a cloud encoded as a Parquet file, and its summary, computed by the worker (or
    this process) that decoded it."""

    data: pa.Buffer | None  # the file's bytes; None when written straight to its file
    points: int
    row_groups: int
    classes: np.ndarray  # points per class (256)
    lo: np.ndarray  # min x, y, z (mm)
    hi: np.ndarray  # max x, y, z (mm)
    ground: list[GroundPatch]  # its ground points (class 2) per DTM cell, per run

    def bbox(self) -> list[float | None]:
        if self.points == 0:
            return [None] * 6
        return [float(v) / 1000.0 for v in (*self.lo, *self.hi)]


def _arrow_run(run: Columns, n: int) -> pa.Table:
    xyz = [
        pa.Array.from_buffers(pa.decimal64(18, 3), n, [None, pa.py_buffer(run[c])])
        for c in ("x", "y", "z")
    ]
    rgb = pa.array(run["rgb"]) if "rgb" in run else pa.nulls(n, pa.uint64())
    return pa.Table.from_arrays(
        [*xyz, pa.array(run["classification"]), pa.array(run["attributes"]), rgb],
        schema=point_file_schema(),
    )


def _encode(reader: laspy.LasReader, spec: PartSpec, sink: Any) -> Part:
    """Read the part's points run by run from ``reader`` (positioned at ``spec.start``): sort
    each run, compute its columns and summary, and write it to ``sink`` as Parquet row groups
    (a run never shares a row group with the next)."""
    classes = np.zeros(256, dtype=np.int64)
    lo = np.full(3, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(3, np.iinfo(np.int64).min, dtype=np.int64)
    ground: list[GroundPatch] = []
    done = groups = 0
    with pq.ParquetWriter(sink, point_file_schema(), **_PARQUET_OPTIONS) as writer:
        while done < spec.count:
            n = min(RUN_POINTS, spec.count - done)
            with decoding(spec.path):  # lazrs's errors and panics: the clear error
                points = reader.read_points(n)
            if len(points) != n:
                raise InputFileError(
                    f"{spec.path}: truncated: the point data ends at point "
                    f"{spec.start + done + len(points)}, before the count in its header; "
                    f"export or download the file again"
                )
            run = _process(sorted_points(points, spec.grid), spec)
            del points
            xyz = [run[c] for c in ("x", "y", "z")]
            counts = np.bincount(run["classification"], minlength=256)
            classes += counts
            np.minimum(lo, [int(a.min()) for a in xyz], out=lo)
            np.maximum(hi, [int(a.max()) for a in xyz], out=hi)
            if counts[GROUND]:
                is_ground = run["classification"] == GROUND
                patch = spec.dtm.accumulate(*(a[is_ground] for a in xyz))
                if patch is not None:
                    ground.append(patch)
            writer.write_table(_arrow_run(run, n), row_group_size=ROW_GROUP)
            groups += -(-n // ROW_GROUP)
            done += n
    return Part(None, done, groups, classes, lo, hi, ground)


def encode_part(spec: PartSpec) -> Part:
    """Worker entry point: one part of a file as a Parquet file (written to ``spec.out``, else
    returned as bytes) and its summary."""
    sink = spec.out if spec.out is not None else pa.BufferOutputStream()
    with open_points(spec.path) as reader:
        if spec.start:
            with decoding(spec.path):
                reader.seek(spec.start)
        part = _encode(reader, spec, sink)
    if isinstance(sink, pa.BufferOutputStream):
        part.data = sink.getvalue()
    return part


def part_ranges(n: int, workers: int) -> list[tuple[int, int]]:
    """(start, count) of the parts of a cloud of ``n`` points for ``workers`` workers: whole
    row groups, at most PART_RUNS runs each, and a multiple of ``workers`` of them so the
    workers finish together."""
    per = PART_RUNS * RUN_POINTS
    count = workers * -(-n // (workers * per))
    size = -(-n // count)
    size = -(-size // ROW_GROUP) * ROW_GROUP
    return [(start, min(size, n - start)) for start in range(0, n, size)]
