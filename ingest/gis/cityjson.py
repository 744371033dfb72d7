"""CityJSON (1.x/2.0, and CityJSONSeq) buildings as one ``Layer`` for the GIS ingester.

GDAL has no CityJSON driver, so the JSON is parsed here. Each Building (with its BuildingParts)
gives one row: the footprint is the union of the 2D projections of its best-LoD surfaces (vertical
walls project to nothing and drop out; an LoD0 footprint surface is taken as is), the height is
the z extent of that geometry and ground_z its lowest z. The LoD becomes 'LoD2' for LoD >= 2,
else 'LoD1'. Parsing is per object (JSON is), the geometry work per building is vectorised.

The JSON is checked where it is used, not trusted: a document whose header, transform or
vertices do not have CityJSON's shape is refused naming the file; a building whose geometry
cannot be read (boundaries of the wrong nesting, vertex indices out of range) keeps its row
without a footprint, which the ingester skips and lists by id.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
import shapely.errors
from numpy.typing import NDArray

from cim.errors import InputFileError
from ingest.gis.readers import Layer, file_head

log = logging.getLogger(__name__)

_EPSG_URL = re.compile(r"EPSG/\d+/(\d+)", re.IGNORECASE)
_CITYJSON_TYPE = re.compile(rb'"type"\s*:\s*"CityJSON"')
_BUILDING = ("Building",)
_PART = ("BuildingPart",)


def is_cityjson(path: Path) -> bool:
    """A CityJSON file (or CityJSONSeq) by its name, or by its first bytes whatever its name."""
    name = path.name.lower()
    if name.endswith((".city.json", ".cityjson", ".city.jsonl", ".cityjsonl")):
        return True
    head = file_head(path, 4096)
    if name.endswith(".json") and b'"CityJSON"' in head:
        return True
    return head.lstrip().startswith(b"{") and _CITYJSON_TYPE.search(head) is not None


#: what reading one building's geometry raises when its boundaries are not CityJSON's nesting
_GEOMETRY_ERRORS = (
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    OverflowError,  # an index of 1e308, or infinity
    shapely.errors.GEOSException,
)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _crs(meta: dict[str, Any]) -> str | None:
    ref = str(meta.get("referenceSystem") or meta.get("referenceSystem".lower()) or "")
    m = _EPSG_URL.search(ref)
    if m:
        return f"EPSG:{m.group(1)}"
    if ref.upper().startswith("EPSG:"):
        return ref.upper()
    return None


def _lod(geom: dict[str, Any]) -> float:
    try:
        lod = float(str(geom.get("lod", 0)))
    except ValueError:
        return 0.0
    return lod if np.isfinite(lod) else 0.0


def _geometries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in _list(obj.get("geometry")) if isinstance(g, dict)]


def _surfaces(geom: dict[str, Any]) -> list[list[list[int]]]:
    """Every surface (a list of rings of vertex indices) of a geometry, whatever its type."""
    b = geom.get("boundaries") or []
    t = geom.get("type")
    if t in ("MultiSurface", "CompositeSurface"):
        return list(b)
    if t == "Solid":
        return [s for shell in b for s in shell]
    if t in ("MultiSolid", "CompositeSolid"):
        return [s for solid in b for shell in solid for s in shell]
    return []


def _footprint(surfaces: list[list[list[int]]], v: NDArray[np.float64]) -> tuple[Any, float, float]:
    """(footprint, zmin, zmax) of a set of surfaces in real coordinates."""
    rings = [np.asarray(s[0], dtype=np.int64) for s in surfaces if s and len(s[0]) >= 3]
    if not rings:
        return None, np.nan, np.nan
    for r in rings:  # NumPy would take a negative index from the end: check, not wrap
        if r.ndim != 1 or r.min() < 0 or r.max() >= len(v):
            raise IndexError(f"vertex index out of range 0..{len(v) - 1}")
    polys = shapely.polygons([shapely.linearrings(v[r][:, :2]) for r in rings])
    polys = shapely.make_valid(polys)
    flat = shapely.area(polys) > 1e-6  # walls project to (near) nothing
    used = np.unique(np.concatenate([np.asarray(r) for r in rings]))
    z = v[used, 2]
    if not flat.any():
        return None, float(z.min()), float(z.max())
    fp = shapely.union_all(polys[flat], grid_size=None)
    return fp, float(z.min()), float(z.max())


def _object_array(items: list[Any]) -> NDArray[np.object_]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _attributes_table(rows: list[dict[str, Any]]) -> pa.Table:
    clean = [
        {
            k: (json.dumps(val, ensure_ascii=False) if isinstance(val, dict | list) else val)
            for k, val in r.items()
        }
        for r in rows
    ]
    try:
        return pa.Table.from_pylist(clean)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # mixed types across objects: keep them all as text
        return pa.Table.from_pylist(
            [{k: None if val is None else str(val) for k, val in r.items()} for r in clean]
        )


def _documents(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header (transform, metadata) and the documents holding CityObjects and vertices:
    one CityJSON document, or a CityJSONSeq (by its name, or by a first document followed by
    more), whose first line is the header."""
    sequence = path.name.lower().endswith((".jsonl", ".city.jsonl"))
    try:
        text = path.read_text(encoding="utf-8")
        if not sequence:
            try:
                docs = [json.loads(text)]
            except json.JSONDecodeError as exc:
                if exc.msg != "Extra data":
                    raise
                sequence = True
        if sequence:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: malformed JSON, or an integer of over 4,300 digits; RecursionError:
        # nesting deeper than Python's parser goes
        raise InputFileError(f"{path}: not valid CityJSON ({type(exc).__name__}: {exc})") from exc
    if not docs:
        raise InputFileError(f"{path}: empty CityJSONSeq file")
    if not all(isinstance(d, dict) for d in docs):
        raise InputFileError(f"{path}: a CityJSONSeq line is not a JSON object")
    header = docs[0]
    if not isinstance(header, dict) or header.get("type") != "CityJSON":
        raise InputFileError(f'{path}: not a CityJSON document (no "type": "CityJSON")')
    return (header, docs[1:]) if sequence else (header, docs)


def _triple(value: Any, default: float, what: str, path: Path) -> NDArray[np.float64]:
    """A transform's scale or translate: three finite numbers."""
    try:
        out = np.asarray([default] * 3 if value is None else value, dtype=np.float64)
    except (TypeError, ValueError):
        out = np.empty(0)
    if out.shape != (3,) or not np.isfinite(out).all():
        raise InputFileError(
            f"{path}: the CityJSON transform's {what} is {str(value)[:60]!r}, not three numbers; "
            f"export the file again"
        )
    return out


def _vertices(
    doc: dict[str, Any], scale: NDArray[np.float64], translate: NDArray[np.float64], path: Path
) -> NDArray[np.float64]:
    """A document's vertices in real coordinates, an (n, 3) array of finite numbers."""
    raw = doc.get("vertices") or []
    if isinstance(raw, list) and not raw:
        return np.empty((0, 3))
    try:
        v = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):  # rows of other lengths, or not numbers
        v = np.empty(0)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputFileError(
            f"{path}: the CityJSON vertices are not a list of [x, y, z] numbers; export the "
            f"file again"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        v = v * scale + translate
    if not np.isfinite(v).all():
        raise InputFileError(
            f"{path}: CityJSON vertices out of range once scaled (not finite numbers); "
            f"check the file's transform"
        )
    return v


def read_cityjson(path: Path, only: str | None = None) -> tuple[str, list[Layer]]:
    """The buildings of a CityJSON file as one ``Layer``."""
    header, docs = _documents(path)
    transform = header.get("transform") or {}
    if not isinstance(transform, dict):
        raise InputFileError(f"{path}: the CityJSON transform is not an object; export it again")
    scale = _triple(transform.get("scale"), 1.0, "scale", path)
    translate = _triple(transform.get("translate"), 0.0, "translate", path)
    crs = _crs(_dict(header.get("metadata")))
    refs: list[str] = []
    geoms: list[Any] = []
    heights: list[float] = []
    grounds: list[float] = []
    lods: list[str] = []
    attrs: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for doc in docs:
        objects = _dict(doc.get("CityObjects"))
        v = _vertices(doc, scale, translate, path)
        for oid, obj in objects.items():
            if not isinstance(obj, dict) or obj.get("type") not in _BUILDING:
                continue
            members = [obj] + [
                objects[c]
                for c in _list(obj.get("children"))
                if isinstance(c, str) and _dict(objects.get(c)).get("type") in _PART
            ]
            best = max((_lod(g) for m in members for g in _geometries(m)), default=-1.0)
            try:
                surfaces = [
                    s
                    for m in members
                    for g in _geometries(m)
                    if _lod(g) == best
                    for s in _surfaces(g)
                ]
                fp, zmin, zmax = _footprint(surfaces, v) if surfaces else (None, np.nan, np.nan)
            except _GEOMETRY_ERRORS as exc:
                log.debug("%s: building %s: unreadable geometry (%s)", path, oid, exc)
                unreadable.append(oid)
                fp, zmin, zmax = None, np.nan, np.nan
            refs.append(oid)
            geoms.append(fp)
            heights.append(zmax - zmin if best >= 1 else np.nan)
            grounds.append(zmin)
            lods.append("LoD2" if best >= 2 else "LoD1")
            attrs.append(_dict(obj.get("attributes")))
    if unreadable:
        log.warning(
            "%s: %d buildings with unreadable geometry (kept without a footprint): %s",
            path,
            len(unreadable),
            ", ".join(unreadable[:10]),
        )
    if only is not None and only != path.stem:
        log.info("%s: CityJSON has one layer of buildings; --layer %s ignored", path, only)
    table = _attributes_table(attrs)
    if table.num_rows != len(refs):  # no object has attributes: a table of n rows, no columns
        table = pa.table({"_": pa.nulls(len(refs))}).select([])
    layer = Layer(
        name=path.name.split(".")[0],
        geoms=_object_array(geoms),
        refs=np.asarray(refs, dtype=object),
        attrs=table,
        crs=crs,
        geometry_type="MultiPolygon",
        geometry_height=np.asarray(heights, dtype=np.float64),
        ground_z=np.asarray(grounds, dtype=np.float64),
        lod=np.asarray(lods, dtype=object),
    )
    version = header.get("version", "")
    return f"CityJSON {version}".strip(), [layer]
