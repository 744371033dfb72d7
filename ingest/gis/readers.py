"""Reading GIS files into ``Layer`` records: geometries, feature ids and attributes as found.

Whatever GDAL opens as a vector dataset (``ingest.gis.datasets`` says how: GeoJSON, Shapefile,
GeoPackage, SpatiaLite, FileGDB, MapInfo, DXF, GML, KML, CSV ...) goes through pyogrio as
Arrow; GeoParquet through pyarrow, because the GDAL in the pyogrio wheel has no Parquet driver.
CityJSON has its own reader (``ingest.gis.cityjson``) giving the same ``Layer``.
Nothing is processed here: geometries stay in the file's CRS.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
import shapely
from numpy.typing import NDArray
from pyproj import CRS

from cim.crs import parse_crs
from cim.errors import CrsError, InputFileError
from ingest.gis.datasets import OGR_ERRORS, Dataset, not_utf8


@dataclass
class Layer:
    """One layer of a file as read, before any processing (geometries in the file's CRS)."""

    name: str
    geoms: NDArray[np.object_]
    refs: NDArray[np.object_]  # feature ids as strings
    attrs: pa.Table  # original attribute columns
    crs: str | None  # as the file says: "EPSG:n" or WKT; None when it says nothing
    geometry_type: str | None
    #: CityJSON: height and ground elevation from the 3D geometry, and its LoD
    geometry_height: NDArray[np.float64] | None = None
    ground_z: NDArray[np.float64] | None = None
    lod: NDArray[np.object_] | None = None
    extra_counts: dict[str, int] = field(default_factory=dict)


def file_head(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _reason(exc: Exception) -> str:
    """GDAL's message without the file path it repeats and its generic driver hint."""
    text = str(exc).split("; It might help")[0].strip()
    text = re.sub(r"^'[^']*'\s*", "", text)
    return text.rstrip(".") or type(exc).__name__


def _unique_names(names: list[str]) -> list[str]:
    """Field names made unique and non-empty (a corrupt or hand-made file may repeat a name,
    or leave it empty): the second ``height`` becomes ``height_2``, an empty one ``field_N``."""
    seen: set[str] = set()
    out = []
    for k, name in enumerate(names):
        base = name or f"field_{k}"
        unique, n = base, 1
        while unique in seen:
            n += 1
            unique = f"{base}_{n}"
        seen.add(unique)
        out.append(unique)
    return out


#: Layer.extra_counts: attribute values that were not UTF-8 text (see utf8_attributes)
NOT_UTF8_VALUES = "attribute_values_not_utf8"


def utf8_attributes(table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` with every text value valid UTF-8, and how many were not.

    GDAL hands on a field's bytes as text in whatever encoding the file has them (a
    GeoPackage's TEXT may hold anything): DuckDB refused the whole layer at the store write
    ("Invalid unicode detected in segment statistics update", found by fuzzing). A column that
    fails Arrow's full validation is decoded value by value, the bytes that are not UTF-8
    replaced by U+FFFD; the rest of the table is untouched (and not copied)."""
    bad_total = 0
    for i, (name, col) in enumerate(zip(table.column_names, table.columns, strict=True)):
        typ = col.type
        if isinstance(typ, pa.BaseExtensionType):  # GDAL's JSON fields: arrow.json over a string
            typ = typ.storage_type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            continue
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        binary = pa.large_binary() if pa.types.is_large_string(typ) else pa.binary()
        values: list[str | None] = []
        for chunk in col.chunks:
            if isinstance(chunk.type, pa.BaseExtensionType):
                chunk = chunk.storage
            if isinstance(chunk, pa.DictionaryArray):
                chunk = chunk.dictionary_decode()
            for raw in chunk.view(binary).to_pylist():
                if raw is None:
                    values.append(None)
                    continue
                try:
                    values.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    values.append(raw.decode("utf-8", "replace"))
                    bad_total += 1
        # the values as plain text (an extension type such as arrow.json is not kept)
        table = table.set_column(i, name, pa.array(values, typ))
    return table, bad_total


def read_ogr(dataset: Dataset, only: str | None) -> tuple[str, list[Layer]]:
    """The driver's name and the layers of a dataset GDAL opens (every layer with
    geometries, or only the one named)."""
    path, where, options = dataset.source, dataset.gdal_path, dataset.open_options
    try:
        all_names, names = dataset.layers()
    except OGR_ERRORS as exc:
        raise InputFileError(
            f"{path}: not a readable GIS file ({_reason(exc)}); check it opens in QGIS, "
            f"or export it again",
            detail=str(exc),
        ) from exc
    if only is not None:
        if only not in all_names:
            raise InputFileError(
                f"{path}: no layer {only!r}; its layers are: " + ", ".join(all_names)
            )
        if only not in names:
            raise InputFileError(f"{path}: layer {only!r} has no geometries (an attribute table)")
        names = [only]
    if not names:
        raise InputFileError(f"{path}: no layer with geometries in this file")
    driver = "GIS"
    layers: list[Layer] = []
    for name in names:
        try:
            if not layers:  # the driver name, once (read_info costs as much as a small read)
                info = pyogrio.read_info(where, layer=name, **options)
                driver = str(info.get("driver") or driver)
            meta, table = pyogrio.read_arrow(where, layer=name, return_fids=True, **options)
        except UnicodeDecodeError as exc:
            raise not_utf8(path) from exc
        except (
            *OGR_ERRORS,
            OSError,
            pa.ArrowException,
            UnboundLocalError,
            NotImplementedError,
        ) as exc:
            # OSError / ArrowException: Arrow's stream over a corrupt layer ("reading feature
            # size"); UnboundLocalError: pyogrio's read_info on a layer whose CRS text it
            # cannot decode (a pyogrio bug, found by fuzzing); NotImplementedError: pyarrow's
            # "Wrapping scalar of type ..." for a type it has no Python scalar for
            raise InputFileError(
                f"{path}: layer {name!r} cannot be read ({_reason(exc)})", detail=str(exc)
            ) from exc
        try:
            columns = table.column_names
        except UnicodeDecodeError as exc:  # a field name that is not UTF-8
            raise not_utf8(path) from exc
        table = table.rename_columns(_unique_names(columns))
        try:
            refs = pc.cast(table.column(0), pa.string()).to_numpy(zero_copy_only=False)
            attrs, not_utf8_values = utf8_attributes(
                table.select(list(range(1, table.num_columns - 1)))
            )
            wkb = table.column(table.num_columns - 1).to_numpy(zero_copy_only=False)
        except (pa.ArrowException, NotImplementedError) as exc:  # as above, once read
            raise InputFileError(
                f"{path}: layer {name!r} cannot be read ({_reason(exc)})", detail=str(exc)
            ) from exc
        layers.append(
            Layer(
                name=name,
                geoms=shapely.from_wkb(wkb, on_invalid="ignore"),
                refs=refs,
                attrs=attrs,
                crs=meta.get("crs"),
                geometry_type=meta.get("geometry_type"),
                extra_counts={NOT_UTF8_VALUES: not_utf8_values} if not_utf8_values else {},
            )
        )
    return driver, layers


#: what a row costs once read, beyond its columns' widths (check_parquet_size): the shapely
#: geometry made of its WKB, and NumPy's object array holding it
_GEOMETRY_ROW_BYTES = 120


def check_parquet_size(path: Path) -> None:
    """Refuse a Parquet file whose footer declares more rows than this machine could read.

    pyarrow allocates a column at the row count its footer declares before it decodes a page:
    a footer changed to declare 2^40 rows in an 841-byte file (one varint) made
    ``pq.read_table`` take 23 GB before the system killed it. Rows can be stored in almost no
    bytes (dictionary and run-length encoding), so the count is checked against memory: each
    row's columns at their Arrow width (8 bytes for a value of variable size) and a geometry
    object, against half the memory free, as the IFC ingest checks its workers' models."""
    import psutil
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    in_groups = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        values = [group.column(j).num_values for j in range(group.num_columns)]
        in_groups += max([group.num_rows, *values])
    rows = max(meta.num_rows, in_groups)
    width = sum(
        max(1, t.bit_width // 8) if pa.types.is_primitive(t) and t.bit_width else 8
        for t in schema.types
    )
    need = rows * (width + _GEOMETRY_ROW_BYTES)
    free = psutil.virtual_memory().available
    if need > free / 2:
        raise InputFileError(
            f"{path}: the Parquet footer declares {rows:,} rows, which would take about "
            f"{need / 2**30:,.1f} GB to read ({free / 2**30:.1f} GB free): the file is corrupt, "
            f"or too large for this machine (split it)"
        )


def read_geoparquet(path: Path, only: str | None) -> tuple[str, list[Layer]]:
    import pyarrow.parquet as pq

    check_parquet_size(path)
    try:
        table = pq.read_table(path)
        table.column_names  # noqa: B018 - decoded here: a name that is not UTF-8 raises
    except (OSError, pa.ArrowException, UnicodeDecodeError, NotImplementedError) as exc:
        # NotImplementedError: pyarrow's "Wrapping scalar of type ..." for a type it has no
        # Python scalar for
        raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw_geo = (table.schema.metadata or {}).get(b"geo")
    if raw_geo is None:
        raise InputFileError(f"{path}: a Parquet file without GeoParquet 'geo' metadata")
    try:
        geo = json.loads(raw_geo)
    except ValueError as exc:  # malformed JSON, or bytes that are not UTF-8
        raise InputFileError(f"{path}: its GeoParquet 'geo' metadata is not JSON ({exc})") from exc
    columns = geo.get("columns") if isinstance(geo, dict) else None
    if not isinstance(columns, dict):
        raise InputFileError(f"{path}: its GeoParquet 'geo' metadata has no columns")
    column = geo.get("primary_column") or next(iter(columns), None)
    spec = columns.get(column) if isinstance(column, str) else None
    if not isinstance(spec, dict) or column not in table.column_names:
        raise InputFileError(f"{path}: GeoParquet metadata names no geometry column")
    geometry_type = table.schema.field(column).type
    if not (
        pa.types.is_binary(geometry_type)
        or pa.types.is_large_binary(geometry_type)
        or pa.types.is_binary_view(geometry_type)
    ):
        # an integer column named as the geometry: shapely's TypeError before; an interval
        # column: pyarrow's to_numpy crashed the process
        raise InputFileError(
            f"{path}: the GeoParquet geometry column {column!r} holds {geometry_type}, not "
            f"WKB bytes; write it with WKB encoding"
        )
    if str(spec.get("encoding", "WKB")).upper() != "WKB":
        raise InputFileError(
            f"{path}: GeoParquet geometry encoding {spec.get('encoding')!r} is not supported; "
            f"write it with WKB encoding"
        )
    # GeoParquet: a missing "crs" means OGC:CRS84, an explicit null means unknown
    crs_spec = spec.get("crs", "OGC:CRS84")
    crs = None if crs_spec is None else _geoparquet_crs(path, crs_spec)
    name = only or path.stem
    geoms = shapely.from_wkb(
        table.column(column).to_numpy(zero_copy_only=False), on_invalid="ignore"
    )
    types = spec.get("geometry_types") or []
    attrs, not_utf8_values = utf8_attributes(table.drop_columns([column]))
    return "GeoParquet", [
        Layer(
            name=name,
            geoms=geoms,
            refs=np.asarray([str(i) for i in range(table.num_rows)], dtype=object),
            attrs=attrs,
            crs=crs,
            geometry_type=types[0] if len(types) == 1 else None,
            extra_counts={NOT_UTF8_VALUES: not_utf8_values} if not_utf8_values else {},
        )
    ]


def _geoparquet_crs(path: Path, spec: Any) -> str:
    """The WKT of a GeoParquet column's CRS (PROJJSON, or a bare {"id": ...} some writers use)."""
    try:
        return str(CRS.from_user_input(spec).to_wkt())
    except Exception as exc:  # pyproj raises CRSError or TypeError depending on the input
        ident = spec.get("id") if isinstance(spec, dict) else None
        if isinstance(ident, dict) and "authority" in ident and "code" in ident:
            return str(parse_crs(f"{ident['authority']}:{ident['code']}").to_wkt())
        raise CrsError(
            f"{path}: GeoParquet CRS {str(spec)[:80]!r} is not understood; pass --crs"
        ) from exc
