"""Reading a LAS/LAZ file: its coordinate reference system and units, and its point data.

laspy (lazrs backend for LAZ) reads LAS 1.2-1.4, point formats 0-10. Only the dimensions kept
are decompressed (laspy's ``DecompressionSelection`` skips GPS time, NIR, scan angle and extra
bytes of layered LAZ 1.4).

Units. x/y are converted by the reprojection (a CRS in US survey feet comes out in metres); z is
scaled by the vertical unit: the vertical CRS of a compound CRS, else the GeoTIFF
``VerticalUnitsGeoKey``, else the horizontal unit (the LAS convention when nothing is declared).
No vertical datum shift is applied: z stays in the file's vertical datum, in metres.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import laspy
from pyproj import CRS

from cim.crs import check_in_project_area, parse_crs, transformer
from cim.errors import CimError, CrsError, InputFileError

#: sizes and offsets of the LAS public header (ASPRS LAS 1.4 R15, table 3) and of a VLR/EVLR
#: header; a LAS 1.0-1.2 header is 227 bytes, 1.3 235, 1.4 375
_MIN_HEADER, _V14_HEADER = 227, 375
_VLR_HEADER, _EVLR_HEADER = 54, 60
#: bits of the point format byte that LASzip sets in a compressed file
_COMPRESSED_BITS = 0xC0

#: the largest coordinate (m or ft) a header's scale and offset may give a point: far beyond any
#: CRS's range, well within the store's DECIMAL(18,3) columns (1e15)
_MAX_COORDINATE = 1e12
_MAX_RAW = 2**31  # points store x, y, z as signed 32-bit integers

#: EPSG unit codes of VerticalUnitsGeoKey (4099) -> metres
_VERTICAL_UNITS = {9001: 1.0, 9002: 0.3048, 9003: 1200.0 / 3937.0}


@dataclass(frozen=True)
class CloudCrs:
    """Where a cloud's coordinates come from and how they reach the project CRS."""

    label: str  # as found or given, e.g. EPSG:2154
    found_in: str  # wkt | geotiff | option
    horizontal_wkt: str
    z_factor: float  # file z unit -> metres
    z_unit: str


def check_header_sizes(path: Path) -> None:
    """Refuse a header whose counts of variable-length records cannot fit in the file.

    laspy reads as many VLRs as the header says, each from wherever the file ends: a corrupt
    count (hundreds of millions) took minutes and gigabytes before anything failed. Checking
    the counts against the file's size first takes the header's fields, read here by hand
    because laspy offers no way to read the header without its records.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(_V14_HEADER)
    if len(head) < _MIN_HEADER or head[:4] != b"LASF":
        raise InputFileError(f"{path}: not a LAS/LAZ file, or its header is cut short")
    header_size, point_offset, n_vlrs = struct.unpack_from("<HII", head, 94)
    room = point_offset - header_size
    problem = None
    if header_size < _MIN_HEADER or not header_size <= point_offset <= size:
        problem = (
            f"a header of {header_size} bytes with the points at byte {point_offset} "
            f"does not fit in a file of {size} bytes"
        )
    elif n_vlrs * _VLR_HEADER > room:
        problem = f"{n_vlrs:,} variable-length records do not fit in {room:,} bytes"
    elif head[25] >= 4 and len(head) == _V14_HEADER:  # LAS 1.4: extended VLRs after the points
        evlr_start, n_evlrs = struct.unpack_from("<QI", head, 235)
        if n_evlrs and (evlr_start > size or n_evlrs * _EVLR_HEADER > size - evlr_start):
            problem = f"{n_evlrs:,} extended records from byte {evlr_start:,} do not fit in it"
    if problem is None and head[104] & _COMPRESSED_BITS:
        problem = _laz_points_problem(path, head, point_offset, size)
    if problem is None and head[104] & _COMPRESSED_BITS:
        problem = _laz_chunk_problem(path, point_offset, size)
    if problem:
        raise InputFileError(
            f"{path}: the LAS header is corrupt ({problem}); export or download the file again"
        )


#: how many times its compressed size a LAZ file's points may take decoded: LASzip gives 5-15x
#: on real clouds; a corrupt point count asked lazrs for 154 GB for a file of a few kilobytes,
#: which aborted the process (found by CI's fuzz run)
_LAZ_MAX_RATIO = 2000


def _laz_points_problem(path: Path, head: bytes, point_offset: int, size: int) -> str | None:
    """Whether the header's point count, and the LASzip chunk size (lazrs allocates a whole
    chunk), can be decoded from the file's compressed bytes."""
    record = struct.unpack_from("<H", head, 105)[0]
    count = struct.unpack_from("<I", head, 107)[0]
    if head[25] >= 4 and len(head) >= 255:  # LAS 1.4: the 64-bit count
        count = max(count, struct.unpack_from("<Q", head, 247)[0])
    room = max(size - point_offset, 0)
    limit = _LAZ_MAX_RATIO * room + (64 << 20)
    if count * record > limit:
        return (
            f"{count:,} points of {record} bytes cannot be decoded from {room:,} compressed bytes"
        )
    vlr = _laszip_vlr(path)
    if vlr is not None and len(vlr) >= 16:
        chunk = struct.unpack_from("<I", vlr, 12)[0]
        if chunk != _VARIABLE_CHUNKS and chunk * record > limit:
            return f"LAZ chunks of {chunk:,} points do not fit in {room:,} compressed bytes"
    return None


#: the LASzip chunk size that means chunks of variable size (their counts in the chunk table)
_VARIABLE_CHUNKS = 0xFFFFFFFF


def _laz_chunk_problem(path: Path, point_offset: int, size: int) -> str | None:
    """What is wrong with a LAZ file's chunk table, or None.

    The LASzip chunk table (its offset in the 8 bytes where the points start, or in the last
    8 bytes when that is -1; then a version and the number of chunks) is allocated by lazrs
    at the size it declares: a corrupt count aborted the process asking for 34 GB. Every chunk
    takes at least a byte of the file, so a count above the file's size is corrupt. Then the
    layers of each chunk of a layered (LAS 1.4) file: see _layered_chunk_problem.
    """
    with path.open("rb") as f:
        f.seek(point_offset)
        table = struct.unpack("<q", f.read(8).ljust(8, b"\0"))[0]
        if table == -1 and size >= 8:
            f.seek(size - 8)
            table = struct.unpack("<q", f.read(8))[0]
        if not 0 < table <= size - 8:
            return None  # no table to trust: lazrs says what is wrong
        f.seek(table)
        _version, n_chunks = struct.unpack("<II", f.read(8))
    if n_chunks > size:
        return f"a LAZ chunk table of {n_chunks:,} chunks in a file of {size:,} bytes"
    return _layered_chunk_problem(path, point_offset)


#: LASzip item types of LAS 1.4 layered compression -> the number of layers each has (BYTE14:
#: one per extra byte, None here)
_LAYERED_ITEMS = {10: 9, 11: 1, 12: 2, 13: 1, 14: None}
_LASZIP_USER_ID = b"laszip encoded"
_LASZIP_RECORD_ID = 22204


def _laszip_vlr(path: Path) -> bytes | None:
    """The record data of a LAZ file's LASzip VLR, or None (its header's counts are checked
    already: check_header_sizes)."""
    with path.open("rb") as f:
        head = f.read(_MIN_HEADER)
        header_size, point_offset, n_vlrs = struct.unpack_from("<HII", head, 94)
        f.seek(header_size)
        data = f.read(point_offset - header_size)
    at = 0
    for _ in range(n_vlrs):
        if at + _VLR_HEADER > len(data):
            return None
        user_id = data[at + 2 : at + 18].rstrip(b"\0")
        record_id, length = struct.unpack_from("<HH", data, at + 18)
        at += _VLR_HEADER
        if user_id == _LASZIP_USER_ID and record_id == _LASZIP_RECORD_ID:
            return data[at : at + length]
        at += length
    return None


def _layered_chunk_problem(path: Path, point_offset: int) -> str | None:
    """What is wrong with a LAZ file's chunks as its chunk table gives them, or None.

    The table's byte counts must fit in the file: a count of 2^64 - 9 made lazrs panic
    ("capacity overflow"). Then, in a layered file (LAS 1.4, point formats 6-10), each chunk
    begins with its first point raw, its count of points and the byte size of each layer
    (x/y, z, classification, flags ...); lazrs allocates each layer it decodes at the size
    declared there, before reading it: a size of 3 GB in a 2 KB file (one byte changed, found
    by fuzzing) made the process take more than 3 GB before failing. The sizes must add up to
    the chunk's byte count. The table is read by lazrs, which decodes no point for it."""
    import lazrs

    size = path.stat().st_size
    vlr = _laszip_vlr(path)
    if vlr is None or len(vlr) < 34:
        return None  # lazrs says what is wrong
    try:
        with path.open("rb") as f:
            f.seek(point_offset)
            chunks = lazrs.read_chunk_table(f, lazrs.LazVlr(vlr))
    except BaseException as exc:  # lazrs's own errors, and its panics (see decoding)
        if not is_decoder_error(exc):
            raise
        return None  # lazrs says what is wrong when it decodes
    chunks = chunks or []
    room = size - point_offset - 8  # the chunks follow the chunk table's offset
    total = sum(n_bytes for _, n_bytes in chunks)
    if total > room:
        return (
            f"a LAZ chunk table giving its {len(chunks):,} chunks {total:,} bytes where the "
            f"file has {room:,}"
        )
    n_items = min(struct.unpack_from("<H", vlr, 32)[0], (len(vlr) - 34) // 6)
    items = [struct.unpack_from("<HHH", vlr, 34 + 6 * i) for i in range(n_items)]
    if not items or any(kind not in _LAYERED_ITEMS for kind, _, _ in items):
        return None  # not layered (LAS 1.0-1.3 point formats): no layer sizes to check
    n_layers = sum(_LAYERED_ITEMS[kind] or item_size for kind, item_size, _ in items)
    first_point = sum(item_size for _, item_size, _ in items)
    chunk_head = first_point + 4 + 4 * n_layers
    at = point_offset + 8
    with path.open("rb") as f:
        for i, (_points, n_bytes) in enumerate(chunks):
            f.seek(at)
            head = f.read(chunk_head)
            if len(head) < chunk_head:
                break  # a truncated file: the decoder says so
            layers = struct.unpack_from(f"<{n_layers}I", head, first_point + 4)
            if chunk_head + sum(layers) > n_bytes:
                return (
                    f"the layers of LAZ chunk {i} declare {sum(layers):,} bytes where the "
                    f"chunk table gives the chunk {n_bytes:,}"
                )
            at += n_bytes
    return None


def check_scales(header: laspy.LasHeader, path: Path) -> None:
    """Refuse scales and offsets that put the points nowhere (a coordinate of 1e174 m from a
    corrupt offset overflowed the millimetre conversion)."""
    for axis, scale, offset in zip("xyz", header.scales, header.offsets, strict=True):
        s, o = float(scale), float(offset)
        if not (math.isfinite(s) and math.isfinite(o) and s != 0.0) or (
            abs(o) + abs(s) * _MAX_RAW > _MAX_COORDINATE
        ):
            raise InputFileError(
                f"{path}: the LAS header is corrupt ({axis} scale {s:g} and offset {o:g} put "
                f"the points beyond any coordinate range); export or download the file again"
            )


def horizontal_crs(crs: CRS) -> CRS:
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
    horizontal = horizontal_crs(crs)
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
    whole database for a CRS without one: too slow for a label."""
    ident = crs.to_json_dict().get("id")
    if isinstance(ident, dict) and "authority" in ident and "code" in ident:
        return f"{ident['authority']}:{ident['code']}"
    return str(crs.name)


def project_bounds(
    header: laspy.LasHeader, cloud: CloudCrs, dst: CRS, path: Path
) -> tuple[float, float, float, float]:
    """The header's x/y bounds in the project CRS. Refuses a cloud lying outside the project
    CRS's area (a wrong --crs, or the wrong store)."""
    t = transformer(cloud.horizontal_wkt, dst.to_wkt(), what=f"{path} ({cloud.label})")
    xs = sorted((float(header.mins[0]), float(header.maxs[0])))
    ys = sorted((float(header.mins[1]), float(header.maxs[1])))
    if not all(map(math.isfinite, (*xs, *ys))):
        raise InputFileError(
            f"{path}: the header's bounds are not finite numbers; the file is corrupt, export "
            f"or download it again"
        )
    # a header with min and max swapped still says where the cloud is (pyproj would take
    # xmin > xmax for a box across the antimeridian)
    bounds = t.transform_bounds(xs[0], ys[0], xs[1], ys[1])
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


def is_decoder_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the decoder's failure: an Exception (lazrs's LazrsError, laspy's
    errors, an IoError), or a panic of lazrs's Rust code ("capacity overflow" on a corrupt
    chunk), which pyo3 raises as ``pyo3_runtime.PanicException``, a BaseException that
    ``except Exception`` lets through. Not KeyboardInterrupt, SystemExit, GeneratorExit."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


@contextmanager
def decoding(path: str | Path) -> Iterator[None]:
    """Wherever laspy/lazrs decode: their failures (exceptions and panics alike) become the
    clear InputFileError naming the file (decode_error); the project's own errors pass."""
    try:
        yield
    except CimError:
        raise
    except BaseException as exc:
        if not is_decoder_error(exc):
            raise
        raise decode_error(path, exc) from exc


def open_points(path: str) -> laspy.LasReader:
    with decoding(path):
        return laspy.open(path, decompression_selection=_decompression_selection())


def decode_error(path: str | Path, exc: BaseException) -> InputFileError:
    return InputFileError(
        f"{path}: cannot decode the point data ({type(exc).__name__}: {exc}); the file is "
        f"corrupt or truncated, export or download it again",
        detail=repr(exc),
    )
