"""LiDAR ingest: LAS/LAZ point clouds into the store, a terrain model, and building heights.

Reading. laspy (lazrs backend for LAZ) reads LAS 1.2-1.4, point formats 0-10. Only the
dimensions kept are decompressed (laspy's ``DecompressionSelection`` skips GPS time, NIR, scan
angle and extra bytes of layered LAZ 1.4). A cloud is cut into parts of whole row groups (at
most ``PART_RUNS`` runs of ``RUN_POINTS``; a multiple of the workers, so they finish together);
each part is one task for the executor's workers (``encode_part``), a cloud under
``PARALLEL_MIN_POINTS`` is one part done in this process. A worker opens the file, seeks its
part and, run by run: sorts the records along a Hilbert curve over the file's stored integers
(``SortGrid``, ``_sorted``), computes the columns (reprojected to the project CRS with pyproj,
one vectorised call; without a reprojection, integer millimetres straight from the stored
integers), sums the ground points per DTM cell (``DtmGrid``), and writes the run as Parquet
row groups. Memory is bounded by those constants whatever the file size.

Units. x/y are converted by the reprojection (a CRS in US survey feet comes out in metres); z is
scaled by the vertical unit: the vertical CRS of a compound CRS, else the GeoTIFF
``VerticalUnitsGeoKey``, else the horizontal unit (the LAS convention when nothing is declared).
No vertical datum shift is applied: z stays in the file's vertical datum, in metres.

Storage. Each part is a Parquet file in the store's point folder (cim/store.py, migration
008), written by the worker itself (a Dask worker on another machine sends the bytes instead),
named in ``point_files`` and read through the ``point_rows`` view and the ``points`` view on it
(migration 005: intensity, returns and source id packed into one integer and RGB into
another). Why files and not DuckDB's own table: DuckDB's append cost 120-165 ns of CPU a point
in the one writing process, more than everything else together, and capped a LAS ingest at
5.5 M points/s; encoding Parquet costs 54 ns and runs in every worker. Each run's row groups
(122,880 rows) hold a compact patch of ground, so the row groups' min/max of x and y let a box
or footprint query read only the row groups it touches: about one row group per run that
passed over the box. x/y/z are ``DECIMAL(18,3)``: exact millimetres stored as 64-bit integers,
delta-encoded (see ``_PARQUET_OPTIONS``); a point of the synthetic PF7 cloud takes about 12
bytes (DuckDB's table: 15.3). Queries must compare x/y with DECIMAL(18,3) constants, else
DuckDB casts the column and cannot use the statistics; ``points_in_box`` and
``points_in_polygon`` do this, and read only the files whose bounds meet their box
(``Store.points_from``, migration 009): ``points`` reads every file's footer.

Derived. A DTM per source (``dtm``: mean z of the class-2 points per 1 m cell, gaps filled by
normalised convolution over a pyramid then nearest neighbour, the measured cells kept as a bit
mask; where DTMs overlap, the ground comes from the one measured there, ``_ground_at``) and, for
every building footprint in the store, ``building_heights``: 3D BAG-style roof percentiles
(50/70/90/max) of the class-6 points inside it, the ground level around it, point count,
density and a status. ``derive_building_heights`` is public: the GIS ingester calls it for the
buildings it adds.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import laspy
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from cim.crs import check_in_project_area, parse_crs, transformer
from cim.errors import CrsError, InputFileError
from ingest import IngestContext, IngestResult

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)

#: DuckDB's and our Parquet files' row group (rows): the unit the min/max statistics describe
ROW_GROUP = 122_880
#: points read, sorted and encoded together (a run): 16 row groups, about 80 MB in flight
RUN_POINTS = 16 * ROW_GROUP
#: runs per part: a part is one task for a worker and one Parquet file (at most 8M points,
#: about 60 MB of encoded bytes held by the worker and sent back)
PART_RUNS = 4
#: files with at least this many points (about 1M) are encoded by the executor's workers, in
#: parts; a smaller one in this process. With the workers started (`cim ingest` starts them
#: ahead for LAS/LAZ files; otherwise the first use costs about 0.4 s), two workers win from
#: about 1M points (measured: a 4M-point LAS 1.07-1.40 s in this process, 0.53-0.87 s in two
#: parts; 4M LAZ 1.55 -> 1.15 s; 1M LAZ 0.36 -> 0.32 s; 500k: no gain). It was 5.9M points.
PARALLEL_MIN_POINTS = 8 * ROW_GROUP
PARALLEL_MIN_WORKERS = 2
#: DTM cell size (m), coarsened so a DTM has at most DTM_MAX_CELLS cells
DTM_RESOLUTION = 1.0
DTM_MAX_CELLS = 4_000_000
#: a building's heights are "ok" with at least this many class-6 points and this density (pts/m2)
MIN_ROOF_POINTS = 5
MIN_ROOF_DENSITY = 0.5
#: ground level: the DTM sampled on a ring this far outside the footprint outline (m)
GROUND_RING_M = 1.0

DECIMAL = "DECIMAL(18,3)"
GROUND, BUILDING = 2, 6
_RGB_FORMATS = {2, 3, 5, 7, 8, 10}
#: EPSG unit codes of VerticalUnitsGeoKey (4099) -> metres
_VERTICAL_UNITS = {9001: 1.0, 9002: 0.3048, 9003: 1200.0 / 3937.0}
_LASF = b"LASF"


# ---- reading -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CloudCrs:
    """Where a cloud's coordinates come from and how they reach the project CRS."""

    label: str  # as found or given, e.g. EPSG:2154
    found_in: str  # wkt | geotiff | option
    horizontal_wkt: str
    z_factor: float  # file z unit -> metres
    z_unit: str


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
        small and the bincount stays in cache (2-3x faster than over the whole grid)."""
        if not len(x):
            return None
        # float division: exact for these integers (whole-millimetre origin and cell size),
        # and 4x faster than NumPy's int64 floor division
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
    #: another machine). Written straight to the file, 20M points took 1.75 s instead of 2.18
    out: str | None = None


def _horizontal(crs: CRS) -> CRS:
    if crs.is_compound and crs.sub_crs_list:
        for sub in crs.sub_crs_list:
            if not sub.is_vertical:
                return sub
    return crs


def _unit_factor(crs: CRS) -> tuple[float, str]:
    if crs.axis_info:
        axis = crs.axis_info[0]
        if axis.unit_name not in ("degree", "radian") and axis.unit_conversion_factor:
            return float(axis.unit_conversion_factor), axis.unit_name
    return 1.0, "metre"


def _geotiff_vertical_unit(header: laspy.LasHeader) -> int | None:
    for vlr in header.vlrs:
        if isinstance(vlr, laspy.vlrs.known.GeoKeyDirectoryVlr):
            for key in vlr.geo_keys:
                if key.id == 4099 and key.tiff_tag_location == 0:
                    return int(key.value_offset)
    return None


def resolve_crs(header: laspy.LasHeader, path: Path, override: str | None) -> CloudCrs:
    """The cloud's CRS (``--crs`` first, then the file's WKT, then its GeoTIFF keys)."""
    if override:
        crs = parse_crs(override, what=f"--crs for {path.name}")
        found_in = "option"
    else:
        try:
            wkt_crs = header.parse_crs(prefer_wkt=True)
        except Exception as exc:  # laspy raises pyproj's and its own errors alike
            raise CrsError(
                f"{path}: its CRS records cannot be read ({exc}); pass the CRS with --crs EPSG:n",
                detail=repr(exc),
            ) from exc
        if wkt_crs is None:
            raise CrsError(
                f"{path}: the file declares no coordinate reference system; pass it with "
                f"--crs (e.g. --crs EPSG:2154)"
            )
        crs = wkt_crs
        has_wkt = any(isinstance(v, laspy.vlrs.known.WktCoordinateSystemVlr) for v in header.vlrs)
        found_in = "wkt" if has_wkt else "geotiff"
    horizontal = _horizontal(crs)
    if horizontal.is_vertical:
        raise CrsError(f"{path}: CRS {crs.name!r} has no horizontal part; pass --crs EPSG:n")
    verticals = [s for s in crs.sub_crs_list if s.is_vertical] if crs.is_compound else []
    if verticals:
        z_factor, z_unit = _unit_factor(verticals[0])
    else:
        code = None if override else _geotiff_vertical_unit(header)
        if code in _VERTICAL_UNITS:
            z_factor = _VERTICAL_UNITS[code]
            z_unit = {9001: "metre", 9002: "foot", 9003: "US survey foot"}[code]
        else:
            z_factor, z_unit = _unit_factor(horizontal)
    return CloudCrs(_label(crs), found_in, horizontal.to_wkt(), z_factor, z_unit)


def _label(crs: CRS) -> str:
    """'EPSG:n' when the CRS carries its code, else its name. pyproj's to_epsg() searches the
    whole database for a CRS without one (0.23 s for autzen's WKT): not worth it for a label."""
    ident = crs.to_json_dict().get("id")
    if isinstance(ident, dict) and "authority" in ident and "code" in ident:
        return f"{ident['authority']}:{ident['code']}"
    return str(crs.name)


def _project_bounds(
    header: laspy.LasHeader, cloud: CloudCrs, dst: CRS, path: Path
) -> tuple[float, float, float, float]:
    """The header's x/y bounds in the project CRS. Refuses a cloud lying outside the project
    CRS's area (a wrong --crs, or the wrong store)."""
    t = transformer(cloud.horizontal_wkt, dst.to_wkt())
    bounds = t.transform_bounds(
        float(header.mins[0]), float(header.mins[1]), float(header.maxs[0]), float(header.maxs[1])
    )
    check_in_project_area(dst, bounds, f"{path} ({cloud.label})")
    x0, y0, x1, y1 = (float(v) for v in bounds)
    return x0, y0, x1, y1


def _decompression_selection() -> Any:
    """Decompress only what is kept (layered LAZ 1.4 skips the other fields' bytes)."""
    sel = laspy.DecompressionSelection
    return (
        sel.XY_RETURNS_CHANNEL
        | sel.Z
        | sel.CLASSIFICATION
        | sel.FLAGS
        | sel.INTENSITY
        | sel.POINT_SOURCE_ID
        | sel.RGB
    )


def _hilbert_table(order: int = 8) -> np.ndarray:
    """The Hilbert curve index of every cell of a 2**order square grid, as table[iy, ix].

    Hilbert, not Morton (Z) order: consecutive cells are always neighbours, so the stretch of
    cells in one DuckDB row group is a compact patch. A Z-order stretch that crosses a quadrant
    boundary jumps across the grid, and its row group's min/max box spans both sides (measured:
    a 5 m box read 4-6.3 of 25 row groups in Z order, 2-3.5 in Hilbert order). The classic xy2d
    loop, vectorised over the whole grid once (no library ships a vectorised one).
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


_HILBERT = _hilbert_table().ravel()


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
        return _HILBERT[cell]


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
    fewer columns make DuckDB's append cheaper (12 columns: 260 ns of CPU per point, 7: 165)."""
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
    shifted as it is (7 array operations instead of 17: 11 -> 8 ns a point)."""
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
    every format with colour, read as one 32-bit integer (4 array operations instead of 7:
    7.5 -> 5.3 ns a point)."""
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


def _mm_exact(raw: np.ndarray, scale: float, offset: float, factor: float) -> np.ndarray | None:
    """The stored integers of a dimension -> integer millimetres without floats, when its scale
    and offset are whole millimetres (0.01, 0.001 ...): ``raw * s + o``, exact and 3x faster
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
    exact = _mm_exact(raw, float(points.scales[axis]), float(points.offsets[axis]), factor)
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


def _sorted(points: laspy.ScaleAwarePointRecord, grid: SortGrid) -> laspy.ScaleAwarePointRecord:
    """The points in the Hilbert order of their cells, sorted as whole records before anything
    is computed from them, so every column comes out sorted from one gather. The records are
    gathered as opaque fixed-size items: NumPy's take of a structured array copies field by
    field (75 ns a point for PF7), of the same bytes as void items 11 ns."""
    record = points.array
    key = grid.key(record["X"], record["Y"])
    # stable argsort of uint16 is NumPy's radix sort (12 ns a point)
    order = np.argsort(key, kind="stable")
    items = np.ascontiguousarray(record).view(np.dtype((np.void, record.dtype.itemsize)))
    gathered = np.take(items, order).view(record.dtype)
    return laspy.ScaleAwarePointRecord(gathered, points.point_format, points.scales, points.offsets)


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


#: how each column is encoded, chosen per column on a sorted 2M-point run (ns of CPU a point to
#: encode, bytes a point): x/y/z by delta and bit packing (9-10 ns, 1.2-1.7 B; zstd on top
#: saved 0-0.5 B for 3-5 ns more, plain zstd 21-24 ns), the class by dictionary (4 ns, 0.01 B),
#: the packed attributes and RGB by delta (8 ns, 1.7 B; 12 ns and 6.2 B for random colours;
#: byte stream split and zstd took RGB to 2 B, but DuckDB 1.5 reads that encoding only for
#: floating point). Statistics only for the columns queries filter on.
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


def _decode_error(path: str | Path, exc: BaseException) -> InputFileError:
    return InputFileError(
        f"{path}: cannot decode the point data ({type(exc).__name__}: {exc}); the file is "
        f"corrupt or truncated, export or download it again",
        detail=repr(exc),
    )


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
    (a run never shares a row group with the next).

    CPU per point on one core (20M-point PF7 LAS, no reprojection): reading 10-18 ns, key 10,
    sort 24, columns 33, ground sums 25, Parquet 54."""
    classes = np.zeros(256, dtype=np.int64)
    lo = np.full(3, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(3, np.iinfo(np.int64).min, dtype=np.int64)
    ground: list[GroundPatch] = []
    done = groups = 0
    with pq.ParquetWriter(sink, point_file_schema(), **_PARQUET_OPTIONS) as writer:
        while done < spec.count:
            n = min(RUN_POINTS, spec.count - done)
            try:
                points = reader.read_points(n)
            except Exception as exc:
                raise _decode_error(spec.path, exc) from exc
            if len(points) != n:
                raise InputFileError(
                    f"{spec.path}: truncated: the point data ends at point "
                    f"{spec.start + done + len(points)}, before the count in its header; "
                    f"export or download the file again"
                )
            run = _process(_sorted(points, spec.grid), spec)
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


def _open(path: str) -> laspy.LasReader:
    try:
        return laspy.open(path, decompression_selection=_decompression_selection())
    except Exception as exc:
        raise _decode_error(path, exc) from exc


def encode_part(spec: PartSpec) -> Part:
    """Worker entry point: one part of a file as a Parquet file (written to ``spec.out``, else
    returned as bytes) and its summary."""
    sink = spec.out if spec.out is not None else pa.BufferOutputStream()
    with _open(spec.path) as reader:
        if spec.start:
            try:
                reader.seek(spec.start)
            except Exception as exc:
                raise _decode_error(spec.path, exc) from exc
        part = _encode(reader, spec, sink)
    if isinstance(sink, pa.BufferOutputStream):
        part.data = sink.getvalue()
    return part


class _CloudStats:
    """Class counts and bounds of the whole cloud, from the chunks' summaries."""

    def __init__(self) -> None:
        self.classes = np.zeros(256, dtype=np.int64)
        self.lo = np.full(3, np.iinfo(np.int64).max, dtype=np.int64)
        self.hi = np.full(3, np.iinfo(np.int64).min, dtype=np.int64)

    def add(self, part: Part) -> None:
        self.classes += part.classes
        np.minimum(self.lo, part.lo, out=self.lo)
        np.maximum(self.hi, part.hi, out=self.hi)

    def bbox(self) -> list[float | None]:
        if self.lo[0] > self.hi[0]:
            return [None] * 6  # no points
        return [float(v) / 1000.0 for v in (*self.lo, *self.hi)]


class _GroundGrid:
    """Mean z of the class-2 points per DTM cell over the cloud's bounds."""

    def __init__(self, grid: DtmGrid) -> None:
        self.grid = grid
        self.sum = np.zeros((grid.ny, grid.nx), dtype=np.float64)
        self.count = np.zeros((grid.ny, grid.nx), dtype=np.int64)

    def add(self, part: Part) -> None:
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
        _fill_gaps(z, known)
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


def _raw_grid(header: laspy.LasHeader) -> SortGrid:
    """The sort grid over the header's bounds in the file's stored integers (the sort needs
    neighbours only, so it is done before any scaling or reprojection)."""
    scales, offsets = header.scales, header.offsets
    lo = [(float(header.mins[i]) - float(offsets[i])) / float(scales[i]) for i in (0, 1)]
    hi = [(float(header.maxs[i]) - float(offsets[i])) / float(scales[i]) for i in (0, 1)]
    return SortGrid.over((lo[0], lo[1], hi[0], hi[1]))


def _part_ranges(n: int, workers: int) -> list[tuple[int, int]]:
    """(start, count) of the parts of a cloud of ``n`` points for ``workers`` workers: whole
    row groups, at most PART_RUNS runs each, and a multiple of ``workers`` of them so the
    workers finish together."""
    per = PART_RUNS * RUN_POINTS
    count = workers * -(-n // (workers * per))
    size = -(-n // count)
    size = -(-size // ROW_GROUP) * ROW_GROUP
    return [(start, min(size, n - start)) for start in range(0, n, size)]


class LidarIngester:
    """LAS/LAZ point clouds (see the module docstring)."""

    kind = "lidar"
    description = "a LiDAR cloud"
    options = ("crs",)
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    worker_module = "ingest.lidar"
    extensions = (".las", ".laz")

    def supports(self, path: Path) -> bool:
        if path.suffix.lower() not in self.extensions:
            return False
        try:
            with path.open("rb") as f:
                return f.read(4) == _LASF
        except OSError:
            return False

    def ingest(self, path: Path, store: Store, ctx: IngestContext) -> IngestResult:
        t0 = time.perf_counter()
        try:
            with laspy.open(path) as reader:
                header = reader.header
        except Exception as exc:
            raise InputFileError(
                f"{path}: not a readable LAS/LAZ file ({exc}); export it again",
                detail=repr(exc),
            ) from exc
        n_header = int(header.point_count)
        if n_header == 0:
            raise InputFileError(
                f"{path}: the header says the cloud has no points; export it again"
            )
        version = f"{header.version.major}.{header.version.minor}"
        pf = int(header.point_format.id)
        compressed = bool(header.are_points_compressed)
        fmt = f"LAS {version} PF{pf}" + (" (LAZ)" if compressed else "")
        cloud_crs = resolve_crs(header, path, ctx.options.crs)
        dst = _horizontal(store.crs)
        warnings: list[str] = []
        if cloud_crs.z_factor != 1.0:
            log.info("%s: z in %s, scaled by %s", path.name, cloud_crs.z_unit, cloud_crs.z_factor)
        has_rgb = pf in _RGB_FORMATS
        bounds = _project_bounds(header, cloud_crs, dst, path)
        src_wkt = cloud_crs.horizontal_wkt
        dst_wkt = dst.to_wkt()
        if CRS.from_wkt(src_wkt) == dst:
            src_wkt = dst_wkt  # same CRS: skip the transformation
        grid = _raw_grid(header)
        dtm = DtmGrid.over(*bounds)
        ctx.progress(0.0, f"{path.name}: {n_header:,} points, {fmt}, {cloud_crs.label}")

        def spec(start: int, count: int, out: Path | None = None) -> PartSpec:
            return PartSpec(
                str(path),
                start,
                count,
                src_wkt,
                dst_wkt,
                cloud_crs.z_factor,
                has_rgb,
                grid,
                dtm,
                None if out is None else str(out),
            )

        workers = ctx.executor.workers
        parts: Iterator[tuple[Part, Path | None]]
        if workers >= PARALLEL_MIN_WORKERS and n_header >= PARALLEL_MIN_POINTS:
            ranges = _part_ranges(n_header, workers)
            # workers on this machine write their files; a Dask cluster's send the bytes
            outs: list[Path | None] = [
                None if ctx.executor.distributed else store.new_point_file(ctx.source_id, i)
                for i in range(len(ranges))
            ]
            specs = [
                spec(start, count, out) for (start, count), out in zip(ranges, outs, strict=True)
            ]
            results = ctx.executor.map(encode_part, specs, window=workers + 1)
            parts = zip(results, outs, strict=True)
        else:  # the whole cloud as one part, encoded in this process straight to its file
            out = store.new_point_file(ctx.source_id, 0)
            parts = iter([(encode_part(spec(0, n_header, out)), out)])
        stats = _CloudStats()
        ground = _GroundGrid(dtm)
        done = 0
        for i, (part, file) in enumerate(parts):
            if file is None:  # from a remote worker: this process writes its bytes
                assert part.data is not None
                file = store.new_point_file(ctx.source_id, i)
                with file.open("wb") as f:
                    f.write(part.data)
                part.data = None
            store.add_point_file(ctx.source_id, file, part.points, part.row_groups, part.bbox())
            stats.add(part)
            ground.add(part)
            done += part.points
            ctx.progress(0.9 * done / n_header, f"stored {done:,} of {n_header:,} points")
        if done != n_header:
            raise InputFileError(
                f"{path}: the header says {n_header} points but {done} were read; "
                f"the file is truncated, export or download it again"
            )
        store.refresh_point_view()
        bbox = stats.bbox()
        if not dtm.covers(bbox):
            warnings.append(
                f"{path.name}: points lie outside the bounds in the file's header; the terrain "
                f"model covers the header's bounds only"
            )
        classes = {int(c): int(n) for c, n in enumerate(stats.classes) if n}
        has_ground = classes.get(GROUND, 0) > 0
        has_building = classes.get(BUILDING, 0) > 0
        store.con.execute(
            "INSERT INTO lidar_sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?)",
            [
                ctx.source_id,
                version,
                pf,
                compressed,
                n_header,
                done,
                cloud_crs.label,
                cloud_crs.found_in,
                cloud_crs.z_factor,
                has_rgb,
                has_ground,
                has_building,
                json.dumps({str(k): v for k, v in classes.items()}),
                *bbox,
            ],
        )
        ctx.progress(0.9, "terrain model")
        dtm_cells = 0
        if has_ground:
            dtm_cells = ground.save(store, ctx.source_id)
        else:
            warnings.append(f"{path.name}: no ground points (class 2): no terrain model")
        ctx.progress(0.95, "building heights")
        if not has_building:
            warnings.append(
                f"{path.name}: no building points (class 6): building heights unavailable"
            )
        if done == 0:
            warnings.append(f"{path.name}: the file holds no points")
        with_heights = derive_building_heights(store, _affected_buildings(store, bbox))
        ctx.progress(1.0, f"{done:,} points")
        seconds = time.perf_counter() - t0
        log.info(
            "%s: %d points in %.1f s (%.0f points/s)", path.name, done, seconds, done / seconds
        )
        counts: dict[str, Any] = {
            "points": done,
            "header_points": n_header,
            "ground_points": classes.get(GROUND, 0),
            "building_points": classes.get(BUILDING, 0),
            "dtm_cells": dtm_cells,
            "buildings_with_heights": with_heights,
            "classes": {str(k): v for k, v in classes.items()},
        }
        return IngestResult(format=fmt, crs=cloud_crs.label, counts=counts, warnings=warnings)


INGESTER = LidarIngester()


def _affected_buildings(store: Store, bbox: list[float | None]) -> list[int]:
    """Buildings whose heights a new cloud may change: those it overlaps, and those that were
    covered by a cloud that is gone (the one this file replaces)."""
    ids: set[int] = set()
    if bbox[0] is not None:
        rows = store.con.execute(
            "SELECT id FROM buildings WHERE footprint IS NOT NULL AND "
            "ST_Intersects(footprint, ST_MakeEnvelope(?, ?, ?, ?))",
            [bbox[0], bbox[1], bbox[3], bbox[4]],
        ).fetchall()
        ids.update(int(r[0]) for r in rows)
    stale = store.con.execute(
        "SELECT DISTINCT h.building_id FROM building_heights h, unnest(h.lidar_sources) AS u(s) "
        "WHERE u.s NOT IN (SELECT source_id FROM lidar_sources)"
    ).fetchall()
    ids.update(int(r[0]) for r in stale)
    return sorted(ids)


# ---- queries -----------------------------------------------------------------------------
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


# ---- terrain -----------------------------------------------------------------------------
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


def _ground_at(dtms: Iterable[Dtm], x: np.ndarray, y: np.ndarray) -> np.ndarray:
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


def _halve(a: np.ndarray) -> np.ndarray:
    """Sums of 2 x 2 blocks of cells (odd sizes padded with zeros)."""
    ny, nx = a.shape
    if ny % 2 or nx % 2:
        padded = np.zeros((ny + ny % 2, nx + nx % 2))
        padded[:ny, :nx] = a
        a = padded
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def _fill_gaps(grid: np.ndarray, known: np.ndarray) -> None:
    """Fill the NaN cells of ``grid`` in place from the known ones.

    Normalised convolution (a Gaussian-weighted mean of the known cells) over a pyramid: at
    each level the known values and their weights are summed over 2 x 2 blocks, so a Gaussian
    of one cell there reaches twice as far, up to 64 cells; a gap takes the first level that
    reaches it, interpolated bilinearly between that level's cells. Then nearest neighbour for
    what is left. Linear interpolation on a Delaunay triangulation (scipy griddata) was 1.4 s
    for a 100 x 100 grid: grid points are cocircular, which Qhull resolves slowly. Widening
    the Gaussian on the whole grid instead of coarsening it took 0.31-0.48 s for 1768 x 1768
    cells with building-sized gaps; this, 0.16 s.
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


def _dtms(store: Store, bounds: tuple[float, float, float, float] | None = None) -> Iterator[Dtm]:
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
    z = _ground_at(_dtms(store, (x, y, x, y)), np.array([x]), np.array([y]))[0]
    return None if np.isnan(z) else float(z)


# ---- building heights --------------------------------------------------------------------
def _ground_levels(store: Store, ids: list[int], footprints: list[Any]) -> dict[int, float]:
    """Median DTM elevation on a ring GROUND_RING_M outside each footprint."""
    if not ids:
        return {}
    rings = shapely.segmentize(
        shapely.boundary(shapely.buffer(np.asarray(footprints), GROUND_RING_M)), 1.0
    )
    coords, owner = shapely.get_coordinates(rings, return_index=True)
    if len(coords) == 0:
        return {}
    bounds = (
        float(coords[:, 0].min()),
        float(coords[:, 1].min()),
        float(coords[:, 0].max()),
        float(coords[:, 1].max()),
    )
    z = _ground_at(_dtms(store, bounds), coords[:, 0], coords[:, 1])
    out: dict[int, float] = {}
    for k, bid in enumerate(ids):
        vals = z[owner == k]
        vals = vals[~np.isnan(vals)]
        if len(vals):
            out[bid] = float(np.median(vals))
    return out


def heights_from_points(store: Store, building_ids: list[int]) -> int:
    """``derive_building_heights`` for new or moved buildings, when the store has points at all
    (the GIS and IFC ingesters call this; without points there is nothing to derive)."""
    if not building_ids or store.con.execute("SELECT 1 FROM points LIMIT 1").fetchone() is None:
        return 0
    return derive_building_heights(store, building_ids)


def derive_building_heights(store: Store, building_ids: list[int] | None = None) -> int:
    """Compute or refresh ``building_heights`` for the buildings (all when None) from the points.

    Fills ``buildings.height`` (roof p70 - ground) with ``height_source = 'lidar'`` where it is
    unknown (NULL height, or height_source NULL, 'unknown' or an earlier 'lidar'), and
    ``ground_z`` where it is NULL. Returns the number of buildings whose heights are ok.
    Runs in the caller's transaction, or in its own when there is none.
    """
    if store.in_transaction:
        return _derive(store, building_ids)
    with store.transaction():
        return _derive(store, building_ids)


def _derive(store: Store, building_ids: list[int] | None) -> int:
    con = store.con
    sql = (
        "SELECT id, source_id, ST_AsWKB(ST_Force2D(footprint)) FROM buildings "
        "WHERE footprint IS NOT NULL"
    )
    params: list[Any] = []
    if building_ids is not None:
        if not building_ids:
            return 0
        sql += " AND id IN (SELECT unnest(?::BIGINT[]))"
        params = [list(building_ids)]
    rows = con.execute(sql + " ORDER BY id", params).fetchall()
    if building_ids is None:
        con.execute(
            "DELETE FROM building_heights WHERE building_id NOT IN (SELECT id FROM buildings)"
        )
    if not rows:
        return 0
    ids = [int(r[0]) for r in rows]
    src_of = {int(r[0]): int(r[1]) for r in rows}
    geoms = shapely.from_wkb([bytes(r[2]) for r in rows])
    valid = ~shapely.is_empty(geoms) & (shapely.area(geoms) > 0)
    geoms = np.where(valid, shapely.make_valid(geoms), geoms)
    area = {bid: float(a) for bid, a in zip(ids, shapely.area(geoms), strict=True)}

    # which clouds cover each building (by bounding box), and do they have a building class
    b_bounds = shapely.bounds(geoms)
    cover = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "xmin": b_bounds[:, 0],
            "ymin": b_bounds[:, 1],
            "xmax": b_bounds[:, 2],
            "ymax": b_bounds[:, 3],
            "wkb": pa.array(shapely.to_wkb(geoms), pa.binary()),
        }
    )
    con.register("_lidar_buildings", cover)
    try:
        coverage = {
            int(r[0]): (sorted(r[1] or []), bool(r[2]))
            for r in con.execute(
                "SELECT b.id, list(l.source_id) FILTER (WHERE l.source_id IS NOT NULL), "
                "coalesce(bool_or(l.has_building_class), false) "
                "FROM _lidar_buildings b LEFT JOIN lidar_sources l "
                "ON l.xmin <= b.xmax AND l.xmax >= b.xmin "
                "AND l.ymin <= b.ymax AND l.ymax >= b.ymin GROUP BY b.id"
            ).fetchall()
        }
    finally:
        con.unregister("_lidar_buildings")
    roof: dict[int, tuple[Any, ...]] = {}
    nothing: tuple[list[int], bool] = ([], False)
    mask = np.array([coverage.get(bid, nothing)[1] for bid in ids], dtype=bool)
    if mask.any():
        sel = cover.filter(pa.array(mask))
        bx0, by0 = float(b_bounds[mask, 0].min()), float(b_bounds[mask, 1].min())
        bx1, by1 = float(b_bounds[mask, 2].max()), float(b_bounds[mask, 3].max())
        con.register("_lidar_buildings", sel)
        # only the point files meeting the buildings' box; the bounding-box constants are
        # DECIMAL so the zone maps prune; the join is DuckDB spatial's R-tree join of class-6
        # points against the footprints
        source, files = store.points_from(bx0, by0, bx1, by1)
        for r in con.execute(
            f"WITH b AS (SELECT id, ST_GeomFromWKB(wkb) AS g FROM _lidar_buildings), "
            f"p AS (SELECT source_id, x::DOUBLE AS x, y::DOUBLE AS y, z::DOUBLE AS z "
            f"FROM {source} WHERE classification = 6 "
            f"AND x BETWEEN ?::{DECIMAL} AND ?::{DECIMAL} "
            f"AND y BETWEEN ?::{DECIMAL} AND ?::{DECIMAL}) "
            f"SELECT b.id, count(*), quantile_cont(p.z, [0.5, 0.7, 0.9]), max(p.z) "
            f"FROM p JOIN b ON ST_Contains(b.g, ST_Point(p.x, p.y)) GROUP BY b.id",
            [*files, bx0, bx1, by0, by1],
        ).fetchall():
            roof[int(r[0])] = r[1:]
        con.unregister("_lidar_buildings")
    ground = _ground_levels(store, ids, list(geoms))

    out = []
    for bid in ids:
        covering, any_building_class = coverage.get(bid, nothing)
        g = ground.get(bid)
        n = 0
        p50 = p70 = p90 = pmax = height = None
        if not covering:
            status = "no_coverage"
        elif not any_building_class:
            status = "no_building_class"
        elif bid not in roof:
            status = "no_points"
        else:
            n, qs, pmax = roof[bid]
            p50, p70, p90 = qs
            density = n / area[bid] if area[bid] > 0 else 0.0
            if n < MIN_ROOF_POINTS or density < MIN_ROOF_DENSITY:
                status = "few_points"
            elif g is None:
                status = "no_ground"  # roof points but no terrain model around them
            elif p70 - g <= 0:
                status = "below_ground"
            else:
                status = "ok"
                height = p70 - g
        a = area[bid]
        out.append(
            (
                bid,
                src_of[bid],
                status,
                n,
                a,
                (n / a) if a > 0 else None,
                g,
                "dtm_ring" if g is not None else None,
                p50,
                p70,
                p90,
                pmax,
                height,
                covering,
            )
        )
    con.execute(
        "DELETE FROM building_heights WHERE building_id IN (SELECT unnest(?::BIGINT[]))", [ids]
    )
    store.insert_rows(
        "building_heights",
        (
            "building_id",
            "source_id",
            "status",
            "n_points",
            "area",
            "density",
            "ground_z",
            "ground_method",
            "roof_p50",
            "roof_p70",
            "roof_p90",
            "roof_max",
            "height",
            "lidar_sources",
        ),
        out,
    )
    # fill unknown heights; withdraw earlier LiDAR heights that are no longer ok
    con.execute(
        "UPDATE buildings SET height = NULL, height_source = 'unknown' "
        "FROM building_heights h WHERE h.building_id = buildings.id AND h.status <> 'ok' "
        "AND buildings.height_source = 'lidar' "
        "AND buildings.id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    con.execute(
        "UPDATE buildings SET height = h.height, height_source = 'lidar', "
        "ground_z = CASE WHEN buildings.height_source = 'lidar' OR buildings.ground_z IS NULL "
        "THEN h.ground_z ELSE buildings.ground_z END "
        "FROM building_heights h WHERE h.building_id = buildings.id AND h.status = 'ok' "
        "AND (buildings.height IS NULL OR buildings.height_source IS NULL "
        "OR buildings.height_source IN ('unknown', 'lidar')) "
        "AND buildings.id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    con.execute(
        "UPDATE buildings SET ground_z = h.ground_z FROM building_heights h "
        "WHERE h.building_id = buildings.id AND buildings.ground_z IS NULL "
        "AND h.ground_z IS NOT NULL AND buildings.id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    ok = sum(1 for r in out if r[2] == "ok")
    log.info("building heights: %d of %d buildings ok", ok, len(out))
    return ok
