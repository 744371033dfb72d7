"""Writing a layer's kept rows: footprints into ``buildings``, other roles into ``features``.

Attribute values are parsed column-wise with Arrow ('12.5 m', '12,5' and '三' are numbers;
years from dates or text), the original attributes are kept as one JSON column, and every
batch is one ``INSERT ... SELECT`` from a registered Arrow table, sorted by a Hilbert key so
the bbox columns prune well.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from numpy.typing import NDArray

from ingest.gis.attributes import map_attributes, norm_name
from ingest.gis.geometry import Prepared
from ingest.gis.readers import Layer

if TYPE_CHECKING:
    from cim.store import Store


_NUMBER = r"(?P<v>[-+]?[0-9]+(?:[.,][0-9]+)?)"
_CN_DIGITS = {"一": "1", "二": "2", "三": "3", "四": "4", "五": "5"}


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _numbers(col: pa.ChunkedArray, pattern: str = _NUMBER) -> NDArray[np.float64]:
    """A column as float64 (NaN where missing or not a number); '12.5 m', '12,5' and '三' work."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = pc.cast(col, t.value_type)
        t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.cast(col, pa.float64())
    elif pa.types.is_boolean(t) or pa.types.is_temporal(t):
        return np.full(len(col), np.nan)
    else:
        text = _as_text(col)
        if text is None:
            return np.full(len(col), np.nan)
        for cn, digit in _CN_DIGITS.items():
            text = pc.replace_substring(text, cn, digit)
        found = pc.struct_field(pc.extract_regex(text, pattern), "v")
        values = pc.cast(pc.replace_substring(found, ",", "."), pa.float64())
    return np.asarray(pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False), dtype=float)


def _years(col: pa.ChunkedArray) -> NDArray[np.float64]:
    if pa.types.is_date(col.type) or pa.types.is_timestamp(col.type):
        return np.asarray(
            pc.fill_null(pc.cast(pc.year(col), pa.float64()), np.nan).to_numpy(
                zero_copy_only=False
            ),
            dtype=float,
        )
    years = _numbers(col, r"(?P<v>[0-9]{4})")
    return np.where((years >= 1000) & (years <= 2200), years, np.nan)


def _masked(values: NDArray[np.float64], typ: pa.DataType) -> pa.Array:
    """NaN -> NULL, cast to ``typ``."""
    mask = ~np.isfinite(values)
    return pa.array(np.where(mask, 0, values), mask=mask).cast(typ)


def _attr_struct(attrs: pa.Table) -> pa.StructArray | None:
    """The original attributes as one struct column (to_json in SQL); binary columns dropped,
    names made unique case-insensitively (DuckDB struct keys are case-insensitive)."""
    arrays, names, seen = [], [], set()
    for name, col in zip(attrs.column_names, attrs.columns, strict=True):
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            continue
        key, k = name, 1
        while norm_name(key) in seen:
            k += 1
            key = f"{name}_{k}"
        seen.add(norm_name(key))
        arrays.append(_json_or_text(col.combine_chunks()))
        names.append(key)
    if not arrays:
        return None
    return pa.StructArray.from_arrays(arrays, names=names)


def _json_or_text(array: pa.Array) -> pa.Array:
    """A JSON field (GDAL's arrow.json over text) stays JSON when every value parses, else it
    becomes its text: DuckDB's to_json refused the whole layer on one value that is not JSON
    ("Malformed JSON", found by fuzzing)."""
    if not isinstance(array.type, pa.BaseExtensionType):
        return array
    text = array.storage
    try:
        for value in text.to_pylist():
            if value is not None:
                json.loads(value)
    except ValueError:
        return text
    return array


def _hilbert_order_sql(bounds: NDArray[np.float64]) -> str:
    x0, y0 = float(np.min(bounds[:, 0])), float(np.min(bounds[:, 1]))
    x1, y1 = float(np.max(bounds[:, 2])), float(np.max(bounds[:, 3]))
    box = f"{{'min_x': {x0!r}, 'min_y': {y0!r}, 'max_x': {x1 + 1.0!r}, 'max_y': {y1 + 1.0!r}}}"
    return f"ORDER BY ST_Hilbert((xmin + xmax) / 2, (ymin + ymax) / 2, {box}::BOX_2D)"


def _refs(layer: Layer, keep: NDArray[np.bool_]) -> pa.Array:
    """'layer:fid' for each kept feature."""
    fids = pa.array(layer.refs[keep], pa.string())
    return pc.binary_join_element_wise(f"{layer.name}:", fids, "")


def _column(attrs: pa.Table, name: str | None) -> pa.ChunkedArray | None:
    return attrs.column(name) if name is not None and name in attrs.column_names else None


def _text_column(attrs: pa.Table, name: str | None, n: int) -> pa.Array:
    col = _column(attrs, name)
    text = _as_text(col) if col is not None else None
    return text.combine_chunks() if text is not None else pa.nulls(n, pa.string())


@contextmanager
def _registered(
    store: Store,
    name: str,
    columns: dict[str, Any],
    bounds: NDArray[np.float64],
    attrs: pa.Table,
) -> Iterator[str]:
    """A layer's kept rows (``columns``, then their ``bounds`` and the original ``attrs``) as one
    Arrow table registered as ``name`` for one ``INSERT ... SELECT``; yields the SQL of the
    attributes' JSON value."""
    batch = pa.table(
        {
            **columns,
            "xmin": bounds[:, 0],
            "ymin": bounds[:, 1],
            "xmax": bounds[:, 2],
            "ymax": bounds[:, 3],
        }
    )
    struct = _attr_struct(attrs)
    attributes_sql = "'{}'::JSON"
    if struct is not None:
        batch = batch.append_column("attrs", struct)
        attributes_sql = "to_json(attrs)"
    store.con.register(name, batch)
    try:
        yield attributes_sql
    finally:
        store.con.unregister(name)


def insert_buildings(
    store: Store,
    source_id: int,
    layer: Layer,
    prepared: Prepared,
    storey_height: float,
) -> dict[str, int]:
    """Insert a layer's footprints as buildings (LoD1, or CityJSON's LoD); counts by height
    source."""
    keep = prepared.keep
    attrs = layer.attrs.filter(pa.array(keep))
    geoms = prepared.geoms[keep]
    n = len(geoms)
    if n == 0:
        return {}
    fields = map_attributes(attrs.column_names)
    nan = np.full(n, np.nan)
    h_col, s_col = _column(attrs, fields.get("height")), _column(attrs, fields.get("storeys"))
    h_attr = _numbers(h_col) if h_col is not None else nan
    floors = _numbers(s_col) if s_col is not None else nan
    floors = np.where((floors > 0) & (floors < 500), np.round(floors), np.nan)
    h_attr = np.where(h_attr > 0, h_attr, np.nan)  # 0 or negative is "unknown", never a height
    h_geom = nan
    if layer.geometry_height is not None:
        h_geom = layer.geometry_height[keep]
        h_geom = np.where(h_geom > 0, h_geom, np.nan)
    height = np.where(
        np.isfinite(h_attr), h_attr, np.where(np.isfinite(h_geom), h_geom, floors * storey_height)
    )
    source = np.where(
        np.isfinite(h_attr),
        "attribute",
        np.where(
            np.isfinite(h_geom), "geometry", np.where(np.isfinite(floors), "floors", "unknown")
        ),
    )
    below_col = _column(attrs, fields.get("storeys_below"))
    below = _numbers(below_col) if below_col is not None else nan
    y_col = _column(attrs, fields.get("year_built"))
    star_col = _column(attrs, fields.get("green_star"))
    stars = _numbers(star_col) if star_col is not None else nan
    lod = layer.lod[keep] if layer.lod is not None else np.full(n, "LoD1", dtype=object)
    ground = layer.ground_z[keep] if layer.ground_z is not None else nan
    bounds = shapely.bounds(geoms)
    columns = {
        "source_ref": _refs(layer, keep),
        "name": _text_column(attrs, fields.get("name"), n),
        "use": _text_column(attrs, fields.get("use"), n),
        "wkb": pa.array(shapely.to_wkb(geoms), pa.binary()),
        "ground_z": _masked(ground, pa.float64()),
        "height": _masked(height, pa.float64()),
        "height_source": pa.array(source.astype(object), pa.string()),
        "storeys_above": _masked(floors, pa.int32()),
        "storeys_below": _masked(np.where(below >= 0, np.round(below), np.nan), pa.int32()),
        "year_built": _masked(_years(y_col) if y_col is not None else nan, pa.int32()),
        "green_star": _masked(np.where((stars >= 0) & (stars <= 5), stars, np.nan), pa.int32()),
        "lod": pa.array(lod, pa.string()),
    }
    with _registered(store, "gis_buildings_batch", columns, bounds, attrs) as attributes_sql:
        store.con.execute(
            "INSERT INTO buildings (source_id, source_ref, name, use, footprint, ground_z, height, "
            "height_source, storeys_above, storeys_below, year_built, green_star, lod, attributes, "
            "xmin, ymin, xmax, ymax) "
            f"SELECT ?, source_ref, name, use, ST_GeomFromWKB(wkb), ground_z, height, "
            f"height_source, storeys_above, storeys_below, year_built, green_star, lod, "
            f"{attributes_sql}, xmin, ymin, xmax, ymax FROM gis_buildings_batch "
            + _hilbert_order_sql(bounds),
            [source_id],
        )
    values, counts = np.unique(source, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def insert_features(
    store: Store, source_id: int, layer: Layer, prepared: Prepared, role: str
) -> int:
    """Insert a layer's kept features into ``features`` under ``role``."""
    keep = prepared.keep
    attrs = layer.attrs.filter(pa.array(keep))
    geoms = prepared.geoms[keep]
    n = len(geoms)
    if n == 0:
        return 0
    fields = map_attributes(attrs.column_names)
    bounds = shapely.bounds(geoms)
    columns = {
        "source_ref": _refs(layer, keep),
        "name": _text_column(attrs, fields.get("name"), n),
        "kind": _text_column(attrs, fields.get("kind") or fields.get("use"), n),
        "wkb": pa.array(shapely.to_wkb(geoms), pa.binary()),
    }
    with _registered(store, "gis_features_batch", columns, bounds, attrs) as attributes_sql:
        store.con.execute(
            "INSERT INTO features (source_id, role, layer, source_ref, name, kind, attributes, "
            "geom, xmin, ymin, xmax, ymax) "
            f"SELECT ?, ?, ?, source_ref, name, kind, {attributes_sql}, ST_GeomFromWKB(wkb), "
            f"xmin, ymin, xmax, ymax FROM gis_features_batch " + _hilbert_order_sql(bounds),
            [source_id, role, layer.name],
        )
    return n
