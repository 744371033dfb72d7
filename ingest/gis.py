"""GIS layers: building footprints become LoD1 buildings, other layers become ``features``.

Reading goes through pyogrio/GDAL as Arrow (GeoJSON, Shapefile, GeoPackage, FlatGeobuf, KML,
GML ...), through pyarrow for GeoParquet (the GDAL in the pyogrio wheel has no Parquet driver)
and through ``ingest.gis_cityjson`` for CityJSON. Every layer then takes the same vectorised path:
WKB -> shapely arrays -> 2D -> project CRS (pyproj, or GCJ-02 first) -> repaired -> attributes
mapped by ``schemas/gis_attributes.json`` -> one bulk ``INSERT ... SELECT`` from a registered
Arrow table, sorted by a Hilbert key so the bbox columns prune well. No per-feature Python.

Roles (buildings, roads, landcover, parks, pois, boundary) come from ``--role`` or are guessed
from the layer's name, fields and geometry type; a guess is reported in the warnings.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
import pyogrio.errors
import shapely
from numpy.typing import NDArray
from pyproj import CRS

from cim.crs import check_in_project_area, crs_label, parse_crs, transformer
from cim.errors import CrsError, InputFileError, UsageError
from cim.model.heights import heights_from_points
from cim.model.linking import link_buildings
from ingest import IngestContext, IngestResult
from ingest.gis_gcj02 import gcj02_to_wgs84

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)

ROLES = ("buildings", "roads", "landcover", "parks", "pois", "boundary")
FEATURE_ROLES = ROLES[1:]
GCJ02_NAMES = frozenset({"gcj02", "gcj-02", "gcj_02", "gcj"})
#: how many skipped/repaired feature ids a warning lists before "... and N more"
MAX_LISTED = 50

_POLYGONAL = frozenset({3, 6})  # shapely type ids: Polygon, MultiPolygon
_OGR_ERRORS = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    pyogrio.errors.FeatureError,
    pyogrio.errors.CRSError,
)


# ---- configuration (schemas/gis_attributes.json) -----------------------------------------
@functools.lru_cache(maxsize=1)
def load_config() -> dict[str, Any]:
    """The attribute-name and role-word tables (``schemas/gis_attributes.json``)."""
    text = resources.files("schemas").joinpath("gis_attributes.json").read_text(encoding="utf-8")
    config: dict[str, Any] = json.loads(text)
    return config


def _norm(name: str) -> str:
    return name.strip().lower()


def map_attributes(fields: list[str]) -> dict[str, str]:
    """Concept (height, storeys, use, name, year_built, green_star, kind) -> the layer's field."""
    by_norm: dict[str, str] = {}
    for f in fields:
        by_norm.setdefault(_norm(f), f)
    out: dict[str, str] = {}
    for concept, names in load_config()["attributes"].items():
        for n in names:
            if _norm(n) in by_norm:
                out[concept] = by_norm[_norm(n)]
                break
    return out


def guess_role(layer: str, fields: list[str], geometry_type: str | None) -> tuple[str, str]:
    """The role of a layer and why: the longest role word in its name, else its fields, else
    its geometry type (points -> pois, lines -> roads, polygons -> buildings)."""
    roles_cfg = load_config()["roles"]
    name = _norm(layer)
    best: tuple[int, str, str] | None = None
    for role in ROLES:
        for word in roles_cfg[role]["layer_words"]:
            if word in name and (best is None or len(word) > best[0]):
                best = (len(word), role, word)
    if best is not None:
        return best[1], f"layer name {layer!r} contains {best[2]!r}"
    norm_fields = {_norm(f): f for f in fields}
    for role in ROLES:
        for f in roles_cfg[role]["fields"]:
            if _norm(f) in norm_fields:
                return role, f"field {norm_fields[_norm(f)]!r}"
    base = (geometry_type or "").replace(" Z", "").replace(" M", "").replace("3D ", "")
    role = roles_cfg["geometry"].get(base)
    if role is not None:
        return role, f"geometry type {geometry_type}"
    return "landcover", "nothing else to go by"


# ---- layers as read --------------------------------------------------------------------
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


def _is_cityjson(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".city.json", ".cityjson", ".city.jsonl", ".cityjsonl")):
        return True
    return name.endswith(".json") and b'"CityJSON"' in _head(path, 4096)


def _head(path: Path, n: int) -> bytes:
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


def _read_ogr(path: Path, only: str | None) -> tuple[str, list[Layer]]:
    try:
        listed = pyogrio.list_layers(path)
    except _OGR_ERRORS as exc:
        raise InputFileError(
            f"{path}: not a readable GIS file ({_reason(exc)}); check it opens in QGIS, "
            f"or export it again",
            detail=str(exc),
        ) from exc
    names = [str(n) for n, geom_type in listed if geom_type is not None]
    if only is not None:
        if only not in [str(n) for n, _ in listed]:
            raise InputFileError(
                f"{path}: no layer {only!r}; its layers are: "
                + ", ".join(str(n) for n, _ in listed)
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
                driver = str(pyogrio.read_info(path, layer=name).get("driver") or driver)
            meta, table = pyogrio.read_arrow(path, layer=name, return_fids=True)
        except _OGR_ERRORS as exc:
            raise InputFileError(
                f"{path}: layer {name!r} cannot be read ({_reason(exc)})", detail=str(exc)
            ) from exc
        geom_col = table.column_names[-1]
        fids = table.column(0)
        attrs = table.select(table.column_names[1:-1])
        wkb = table.column(geom_col).to_numpy(zero_copy_only=False)
        layers.append(
            Layer(
                name=name,
                geoms=shapely.from_wkb(wkb, on_invalid="ignore"),
                refs=pc.cast(fids, pa.string()).to_numpy(zero_copy_only=False),
                attrs=attrs,
                crs=meta.get("crs"),
                geometry_type=meta.get("geometry_type"),
            )
        )
    return driver, layers


def _read_geoparquet(path: Path, only: str | None) -> tuple[str, list[Layer]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw_geo = (table.schema.metadata or {}).get(b"geo")
    if raw_geo is None:
        raise InputFileError(f"{path}: a Parquet file without GeoParquet 'geo' metadata")
    geo = json.loads(raw_geo)
    column = geo.get("primary_column") or next(iter(geo.get("columns", {})), None)
    spec = geo.get("columns", {}).get(column, {})
    if column is None or column not in table.column_names:
        raise InputFileError(f"{path}: GeoParquet metadata names no geometry column")
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
    return "GeoParquet", [
        Layer(
            name=name,
            geoms=geoms,
            refs=np.asarray([str(i) for i in range(table.num_rows)], dtype=object),
            attrs=table.drop_columns([column]),
            crs=crs,
            geometry_type=types[0] if len(types) == 1 else None,
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


def read_layers(path: Path, only: str | None = None) -> tuple[str, list[Layer]]:
    """The format name and the layers of a GIS file (every layer, or only the one named)."""
    if _is_cityjson(path):
        from ingest.gis_cityjson import read_cityjson

        return read_cityjson(path, only)
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        return _read_geoparquet(path, only)
    return _read_ogr(path, only)


# ---- CRS ---------------------------------------------------------------------------------
def _reprojector(
    path: Path, layer: Layer, override: str | None, target: CRS
) -> tuple[str, Callable[[NDArray[np.float64]], NDArray[np.float64]] | None]:
    """The CRS label as found (or given) and a coordinate function to the project CRS."""
    wgs84 = CRS.from_epsg(4326)
    if override is not None and _norm(override) in GCJ02_NAMES:
        to_project = transformer(wgs84, target)

        def from_gcj(xy: NDArray[np.float64]) -> NDArray[np.float64]:
            lon, lat = gcj02_to_wgs84(xy[:, 0], xy[:, 1])
            x, y = to_project.transform(lon, lat)
            return np.column_stack([x, y])

        return "GCJ02", from_gcj
    if override is not None:
        src = parse_crs(override, what="--crs")
    elif layer.crs:
        src = parse_crs(layer.crs, what=f"CRS of {path.name}")
    else:
        raise CrsError(
            f"{path}: layer {layer.name!r} has no CRS: pass --crs with the CRS of its "
            f"coordinates (e.g. --crs EPSG:4326 for lon/lat, --crs GCJ02 for Chinese web maps)"
        )
    label = crs_label(src)
    if src.is_compound and src.sub_crs_list:
        src = src.sub_crs_list[0]  # footprints are 2D: the horizontal part
    if src == target:
        return label, None
    tr = transformer(src, target)

    def reproject(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return label, reproject


# ---- attribute values --------------------------------------------------------------------
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
        while _norm(key) in seen:
            k += 1
            key = f"{name}_{k}"
        seen.add(_norm(key))
        arrays.append(col.combine_chunks())
        names.append(key)
    if not arrays:
        return None
    return pa.StructArray.from_arrays(arrays, names=names)


# ---- geometry ----------------------------------------------------------------------------
@dataclass
class Prepared:
    """A layer's geometries in the project CRS, repaired, with the rows to keep."""

    geoms: NDArray[np.object_]
    keep: NDArray[np.bool_]
    repaired: list[str]
    skipped: list[tuple[str, str]]  # (feature ref, why)


def prepare_geometries(
    geoms: NDArray[np.object_],
    refs: NDArray[np.object_],
    reproject: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None,
    polygons_only: bool,
) -> Prepared:
    """Drop Z, reproject, repair invalid geometries (polygonal part kept for polygons), and
    mark what cannot be used: no geometry, empty, not polygonal for buildings."""
    skipped: list[tuple[str, str]] = []
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    for ref in refs[missing]:
        skipped.append((str(ref), "no geometry"))
    g = shapely.force_2d(geoms)
    if reproject is not None:
        g = shapely.transform(g, reproject)
    type_id = shapely.get_type_id(g)
    was_polygonal = np.isin(type_id, list(_POLYGONAL))
    if polygons_only:
        wrong = ~missing & ~was_polygonal
        for ref, t in zip(refs[wrong], shapely.get_type_id(g[wrong]), strict=True):
            skipped.append((str(ref), f"not a polygon (geometry type id {t})"))
    else:
        wrong = np.zeros(len(g), dtype=bool)
    invalid = ~missing & ~wrong & ~shapely.is_valid(g)
    repaired: list[str] = []
    if invalid.any():
        fixed = shapely.make_valid(g[invalid], method="structure", keep_collapsed=False)
        poly = was_polygonal[invalid]
        if poly.any():
            fixed[poly] = _polygonal_part(fixed[poly])
        bad = shapely.is_missing(fixed) | shapely.is_empty(fixed)
        g[invalid] = fixed
        inv_refs = refs[invalid]
        repaired = [str(r) for r in inv_refs[~bad]]
        for ref in inv_refs[bad]:
            skipped.append((str(ref), "invalid and nothing is left after repair"))
        missing = missing.copy()
        missing[np.flatnonzero(invalid)[bad]] = True
    return Prepared(g, ~missing & ~wrong, repaired, skipped)


def _polygonal_part(geoms: NDArray[np.object_]) -> NDArray[np.object_]:
    """The polygons of each geometry (a GeometryCollection from make_valid keeps only them)."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    parts2, index2 = shapely.get_parts(parts, return_index=True)  # MultiPolygon -> Polygons
    owner = index[index2]
    is_poly = shapely.get_type_id(parts2) == 3
    out = np.full(len(geoms), None, dtype=object)
    if is_poly.any():
        shapely.multipolygons(parts2[is_poly], indices=owner[is_poly], out=out)
    single = shapely.get_num_geometries(out) == 1
    out[single] = shapely.get_geometry(out[single], 0)
    return out


def _hilbert_order_sql(bounds: NDArray[np.float64]) -> str:
    x0, y0 = float(np.min(bounds[:, 0])), float(np.min(bounds[:, 1]))
    x1, y1 = float(np.max(bounds[:, 2])), float(np.max(bounds[:, 3]))
    box = f"{{'min_x': {x0!r}, 'min_y': {y0!r}, 'max_x': {x1 + 1.0!r}, 'max_y': {y1 + 1.0!r}}}"
    return f"ORDER BY ST_Hilbert((xmin + xmax) / 2, (ymin + ymax) / 2, {box}::BOX_2D)"


# ---- writing -----------------------------------------------------------------------------
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
    struct = _attr_struct(attrs)
    batch = pa.table(
        {
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
            "xmin": bounds[:, 0],
            "ymin": bounds[:, 1],
            "xmax": bounds[:, 2],
            "ymax": bounds[:, 3],
        }
    )
    attributes_sql = "'{}'::JSON"
    if struct is not None:
        batch = batch.append_column("attrs", struct)
        attributes_sql = "to_json(attrs)"
    store.con.register("gis_buildings_batch", batch)
    try:
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
    finally:
        store.con.unregister("gis_buildings_batch")
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
    batch = pa.table(
        {
            "source_ref": _refs(layer, keep),
            "name": _text_column(attrs, fields.get("name"), n),
            "kind": _text_column(attrs, fields.get("kind") or fields.get("use"), n),
            "wkb": pa.array(shapely.to_wkb(geoms), pa.binary()),
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
    store.con.register("gis_features_batch", batch)
    try:
        store.con.execute(
            "INSERT INTO features (source_id, role, layer, source_ref, name, kind, attributes, "
            "geom, xmin, ymin, xmax, ymax) "
            f"SELECT ?, ?, ?, source_ref, name, kind, {attributes_sql}, ST_GeomFromWKB(wkb), "
            f"xmin, ymin, xmax, ymax FROM gis_features_batch " + _hilbert_order_sql(bounds),
            [source_id, role, layer.name],
        )
    finally:
        store.con.unregister("gis_features_batch")
    return n


def _lidar_heights(store: Store, source_id: int) -> int:
    """Roof heights of this source's buildings from LiDAR points already in the store: every
    building gets its roof percentiles (for PV), unknown heights are filled (others are kept)."""
    rows = store.con.execute(
        "SELECT id FROM buildings WHERE source_id = ? ORDER BY id", [source_id]
    ).fetchall()
    return int(heights_from_points(store, [r[0] for r in rows]))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


# ---- the ingester ------------------------------------------------------------------------
class GisIngester:
    """GIS vector files: footprints -> LoD1 buildings, other layers -> features."""

    kind = "gis"
    description = "a GIS file"
    options = ("crs", "layer", "role")
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"role": ROLES}
    worker_module = None
    extensions = (
        ".geojson",
        ".json",
        ".geojsonl",
        ".geojsons",
        ".shp",
        ".gpkg",
        ".parquet",
        ".geoparquet",
        ".fgb",
        ".city.json",
        ".cityjson",
        ".city.jsonl",
        ".kml",
        ".gml",
    )

    def supports(self, path: Path) -> bool:
        name = path.name.lower()
        if not name.endswith(self.extensions):
            return False
        if name.endswith(".json") and not name.endswith(".city.json"):
            head = _head(path, 4096)
            return bool(re.search(rb'"type"\s*:\s*"(FeatureCollection|Feature|CityJSON)"', head))
        if name.endswith(".parquet"):
            return self._is_geoparquet(path)
        return True

    @staticmethod
    def _is_geoparquet(path: Path) -> bool:
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(path).metadata or {}
        except (OSError, pa.ArrowException):
            return True  # let ingest() say what is wrong with it
        return b"geo" in meta

    def ingest(self, path: Path, store: Store, ctx: IngestContext) -> IngestResult:
        opts = ctx.options
        if opts.role is not None and opts.role not in ROLES:
            raise UsageError(f"--role {opts.role!r}: pick one of {', '.join(ROLES)}")
        storey_height = float(load_config().get("storey_height_m", 3.0))
        ctx.progress(0.0, f"reading {path.name}")
        fmt, layers = read_layers(path, opts.layer)
        if sum(len(layer.geoms) for layer in layers) == 0:
            raise InputFileError(f"{path}: no features in this file; export it again")
        result = IngestResult(format=fmt)
        counts: dict[str, Any] = {role: 0 for role in ROLES}
        counts.update({"repaired": 0, "skipped": 0, "linked": 0})
        heights: dict[str, int] = {}
        per_layer: dict[str, dict[str, Any]] = {}
        crs_found: list[str] = []
        for i, layer in enumerate(layers):
            step = f"layer {layer.name} ({len(layer.geoms)} features)"
            ctx.progress(0.1 + 0.8 * i / len(layers), step)
            if opts.role is not None:
                role = opts.role
            else:
                role, why = guess_role(layer.name, layer.attrs.column_names, layer.geometry_type)
                if layer.lod is not None:
                    role, why = "buildings", "CityJSON buildings"
                else:
                    result.warnings.append(
                        f"layer {layer.name!r}: role guessed as {role} ({why}); "
                        f"pass --role to set it"
                    )
            label, reproject = _reprojector(path, layer, opts.crs, store.crs)
            if label not in crs_found:
                crs_found.append(label)
            prepared = prepare_geometries(
                layer.geoms, layer.refs, reproject, polygons_only=(role == "buildings")
            )
            kept = prepared.geoms[prepared.keep]
            if len(kept):
                check_in_project_area(
                    store.crs,
                    tuple(shapely.total_bounds(kept)),
                    f"{path}: layer {layer.name!r} ({label})",
                )
            if role == "buildings":
                by_source = insert_buildings(store, ctx.source_id, layer, prepared, storey_height)
                for k, v in by_source.items():
                    heights[k] = heights.get(k, 0) + v
                written = sum(by_source.values())
            else:
                written = insert_features(store, ctx.source_id, layer, prepared, role)
            counts[role] += written
            counts["repaired"] += len(prepared.repaired)
            counts["skipped"] += len(prepared.skipped)
            per_layer[layer.name] = {"role": role, "read": len(layer.geoms), "written": written}
            if prepared.repaired:
                result.warnings.append(
                    f"layer {layer.name!r}: repaired {len(prepared.repaired)} invalid "
                    f"geometries (feature ids {_listing(prepared.repaired)})"
                )
            if prepared.skipped:
                result.warnings.append(
                    f"layer {layer.name!r}: skipped {len(prepared.skipped)} features: "
                    + _listing([f"{ref} ({why})" for ref, why in prepared.skipped])
                )
        if counts["buildings"]:
            ctx.progress(0.9, "building heights from LiDAR")
            if _lidar_heights(store, ctx.source_id):
                heights = {
                    str(k): int(v)
                    for k, v in store.con.execute(
                        "SELECT coalesce(height_source, 'unknown'), count(*) FROM buildings "
                        "WHERE source_id = ? GROUP BY 1 ORDER BY 1",
                        [ctx.source_id],
                    ).fetchall()
                }
            if heights.get("unknown"):
                result.warnings.append(
                    f"{heights['unknown']} buildings have no height (no height or floors "
                    f"attribute, no LiDAR roof under them): stored as unknown (NULL), not 0"
                )
        # always: a replaced source may have left other sources' links pointing at its rows
        ids = store.con.execute(
            "SELECT id FROM buildings WHERE source_id = ? ORDER BY id", [ctx.source_id]
        ).fetchnumpy()["id"]
        counts["linked"] = link_buildings(store, ids.tolist())
        counts = {k: v for k, v in counts.items() if v or k not in FEATURE_ROLES}
        counts["heights"] = heights
        counts["layers"] = per_layer
        result.counts = counts
        result.crs = ", ".join(crs_found)
        ctx.progress(1.0, f"{path.name}: done")
        return result


INGESTER = GisIngester()


# ---- reading features back ---------------------------------------------------------------
@dataclass(frozen=True)
class FeatureRecord:
    id: int
    source_id: int
    role: str
    layer: str | None
    source_ref: str | None
    name: str | None
    kind: str | None
    attributes: dict[str, Any]
    geometry: shapely.Geometry


def features(
    store: Store, role: str, bbox: tuple[float, float, float, float] | None = None
) -> list[FeatureRecord]:
    """The features of one role, optionally only those intersecting ``bbox`` (xmin, ymin, xmax,
    ymax in the project CRS). The bbox columns prune before the exact ST_Intersects test."""
    if role not in FEATURE_ROLES:
        raise UsageError(f"role {role!r}: pick one of {', '.join(FEATURE_ROLES)}")
    sql = (
        "SELECT id, source_id, role, layer, source_ref, name, kind, attributes, ST_AsWKB(geom) "
        "FROM features WHERE role = ?"
    )
    params: list[Any] = [role]
    if bbox is not None:
        x0, y0, x1, y1 = (float(v) for v in bbox)
        sql += (
            " AND xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?"
            " AND ST_Intersects(geom, ST_MakeEnvelope(?, ?, ?, ?))"
        )
        params += [x0, x1, y0, y1, x0, y0, x1, y1]
    rows = store.con.execute(sql + " ORDER BY id", params).fetchall()
    if not rows:
        return []
    geoms = shapely.from_wkb([bytes(r[8]) for r in rows])
    return [
        FeatureRecord(
            id=r[0],
            source_id=r[1],
            role=r[2],
            layer=r[3],
            source_ref=r[4],
            name=r[5],
            kind=r[6],
            attributes=json.loads(r[7]) if r[7] else {},
            geometry=g,
        )
        for r, g in zip(rows, geoms, strict=True)
    ]
