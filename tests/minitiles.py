"""A tiny 3D Tiles 1.1 tileset made in the tests, independent of the project's tile writers.

It proves the test harness itself (validator, server, browser) works: one box, written as glb by
trimesh's exporter, optionally carrying one feature with `EXT_mesh_features` and a property table
of `EXT_structural_metadata`, under a root transform (ENU at a lon/lat -> ECEF, from pyproj).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from pyproj import Transformer

GLB_MAGIC = 0x46546C67
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942

PropertyValue = str | int | float


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON, BIN chunk) of a glb."""
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise ValueError("not a glTF 2.0 binary")
    off = 12
    doc: dict[str, Any] | None = None
    binary = b""
    while off < length:
        clen, ctype = struct.unpack_from("<II", data, off)
        chunk = data[off + 8 : off + 8 + clen]
        if ctype == CHUNK_JSON:
            doc = json.loads(chunk.decode("utf-8"))
        elif ctype == CHUNK_BIN:
            binary = bytes(chunk)
        off += 8 + clen
    if doc is None:
        raise ValueError("glb without a JSON chunk")
    return doc, binary


def write_glb(doc: dict[str, Any], binary: bytes) -> bytes:
    """A glb from its JSON and BIN chunk (JSON padded with spaces, BIN with zeros, to 4 bytes)."""
    if doc.get("buffers"):
        doc["buffers"][0]["byteLength"] = len(binary)
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    binary = binary + b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(js), CHUNK_JSON) + js
    if binary:
        chunks += struct.pack("<II", len(binary), CHUNK_BIN) + binary
    return struct.pack("<III", GLB_MAGIC, 2, 12 + len(chunks)) + chunks


class _Bin:
    """Appends 8-byte aligned buffer views to a glb's one buffer."""

    def __init__(self, doc: dict[str, Any], binary: bytes) -> None:
        self.doc = doc
        self.data = bytearray(binary)

    def view(self, payload: bytes, target: int | None = None) -> int:
        self.data += b"\0" * (-len(self.data) % 8)
        bv: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(payload)}
        if target is not None:
            bv["target"] = target
        self.data += payload
        views = self.doc.setdefault("bufferViews", [])
        views.append(bv)
        return len(views) - 1


def _property(binary: _Bin, value: PropertyValue) -> tuple[dict[str, Any], dict[str, Any]]:
    """(class property, property table entry) for one feature's value."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
        values = binary.view(raw)
        offsets = binary.view(struct.pack("<II", 0, len(raw)))
        return {"type": "STRING"}, {"values": values, "stringOffsets": offsets}
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"unsupported property value {value!r}")
    if isinstance(value, int):
        return {"type": "SCALAR", "componentType": "INT32"}, {
            "values": binary.view(struct.pack("<i", value))
        }
    return {"type": "SCALAR", "componentType": "FLOAT64"}, {
        "values": binary.view(struct.pack("<d", value))
    }


def add_feature_metadata(
    glb: bytes, properties: Mapping[str, PropertyValue], class_name: str = "building"
) -> bytes:
    """The glb with every vertex of every primitive in feature 0, whose properties are given.

    Feature IDs as a `_FEATURE_ID_0` float attribute (`EXT_mesh_features`), the values in one
    property table of `EXT_structural_metadata`; every new buffer view 8-byte aligned.
    """
    doc, raw = read_glb(glb)
    binary = _Bin(doc, raw)
    class_props: dict[str, Any] = {}
    table_props: dict[str, Any] = {}
    for name, value in properties.items():
        class_props[name], table_props[name] = _property(binary, value)
    accessors = doc.setdefault("accessors", [])
    for mesh in doc.get("meshes", []):
        for prim in mesh["primitives"]:
            count = accessors[prim["attributes"]["POSITION"]]["count"]
            ids = np.zeros(count, dtype="<f4").tobytes()
            accessors.append(
                {
                    "bufferView": binary.view(ids, target=34962),
                    "componentType": 5126,
                    "count": count,
                    "type": "SCALAR",
                }
            )
            prim["attributes"]["_FEATURE_ID_0"] = len(accessors) - 1
            prim.setdefault("extensions", {})["EXT_mesh_features"] = {
                "featureIds": [{"featureCount": 1, "attribute": 0, "propertyTable": 0}]
            }
    doc.setdefault("extensions", {})["EXT_structural_metadata"] = {
        "schema": {"id": "cim_test", "classes": {class_name: {"properties": class_props}}},
        "propertyTables": [{"class": class_name, "count": 1, "properties": table_props}],
    }
    used = doc.setdefault("extensionsUsed", [])
    for ext in ("EXT_mesh_features", "EXT_structural_metadata"):
        if ext not in used:
            used.append(ext)
    return write_glb(doc, bytes(binary.data))


def box_glb(
    size: tuple[float, float, float] = (20.0, 20.0, 30.0),
    properties: Mapping[str, PropertyValue] | None = None,
    color: tuple[int, int, int, int] = (200, 80, 40, 255),
) -> bytes:
    """A box (east, north, up extents in metres) standing on the local origin, as glb.

    glTF is Y-up and Cesium turns content Z-up, so the glb's +Y is local up. Flat faces with
    normals; with `properties`, one feature carrying them (see `add_feature_metadata`).
    """
    east, north, up = size
    box = trimesh.creation.box(extents=(east, up, north))
    box.apply_translation((0.0, up / 2.0, 0.0))
    box.unmerge_vertices()  # one normal per face corner: flat shading
    box.visual.face_colors = np.tile(np.array(color, dtype=np.uint8), (len(box.faces), 1))
    glb: bytes = trimesh.Scene(box).export(file_type="glb", include_normals=True)
    if properties:
        glb = add_feature_metadata(glb, properties)
    return glb


def enu_to_ecef(lon: float, lat: float, height: float = 0.0) -> list[float]:
    """The 4x4 column-major matrix (3D Tiles `transform`) from ENU at lon/lat/height to ECEF."""
    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(
        lon, lat, height
    )
    lo, la = np.radians(lon), np.radians(lat)
    e = [-np.sin(lo), np.cos(lo), 0.0]
    n = [-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)]
    u = [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)]
    return [float(v) for v in [*e, 0.0, *n, 0.0, *u, 0.0, x, y, z, 1.0]]


def write_box_tileset(
    folder: Path,
    lon: float = 122.263,
    lat: float = 43.617,
    height: float = 180.0,
    size: tuple[float, float, float] = (20.0, 20.0, 30.0),
    properties: Mapping[str, PropertyValue] | None = None,
    content_name: str = "box.glb",
) -> Path:
    """A one-tile 3D Tiles 1.1 tileset with the box at lon/lat/height; returns its tileset.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / content_name).write_bytes(box_glb(size, properties))
    east, north, up = size
    tileset = {
        "asset": {"version": "1.1", "generator": "cim tests/minitiles.py"},
        "geometricError": 100.0,
        "root": {
            "transform": enu_to_ecef(lon, lat, height),
            "boundingVolume": {
                "box": [0, 0, up / 2, east / 2, 0, 0, 0, north / 2, 0, 0, 0, up / 2]
            },
            "geometricError": 0.0,
            "refine": "REPLACE",
            "content": {"uri": content_name},
        },
    }
    path = folder / "tileset.json"
    path.write_text(json.dumps(tileset, indent=1))
    return path
