"""glTF 2.0 binary (glb) content for 3D Tiles 1.1: meshes, point clouds, feature ids
(``EXT_mesh_features``) and property tables (``EXT_structural_metadata``).

Written by hand, not with pygltflib or trimesh: neither writes the metadata extensions' binary
layout (property tables with string offsets, boolean bitstreams, 8-byte aligned views), and a
tile is a handful of NumPy arrays laid end to end, which is faster to write directly than through
an object model. Every glb the tilers write passes the Khronos validator in the tests.

Conventions: glTF is Y-up; a tile's content is in the tileset's local ENU frame (x east, y north,
z up), so positions are written as (e, u, -n) and CesiumJS's default Y-up to Z-up rotation puts
them back. Positions are float32 relative to a node translation (float64 in the JSON), so
precision does not depend on the distance from the tileset's origin. Feature ids are float32
vertex attributes (any count, and 4-byte aligned as vertex attributes must be).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GLB_MAGIC = 0x46546C67
JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942

FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES, POINTS = 4, 0


def enu_to_gltf(enu: np.ndarray) -> np.ndarray:
    """(n, 3) east, north, up -> glTF's Y-up axes (e, u, -n)."""
    out = np.empty_like(enu)
    out[:, 0] = enu[:, 0]
    out[:, 1] = enu[:, 2]
    out[:, 2] = -enu[:, 1]
    return out


@dataclass(frozen=True)
class Property:
    """A property of a metadata class: ``type`` is SCALAR (with ``component`` FLOAT64, INT32
    ...), STRING or BOOLEAN; ``no_data`` marks a missing value."""

    name: str
    type: str
    component: str | None = None
    description: str = ""
    no_data: Any = None

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.component:
            out["componentType"] = self.component
        if self.description:
            out["description"] = self.description
        if self.no_data is not None:
            out["noData"] = self.no_data
        return out


_NUMPY = {"FLOAT64": "<f8", "FLOAT32": "<f4", "INT32": "<i4", "UINT8": "u1", "UINT32": "<u4"}


@dataclass
class FeatureTable:
    """One property table: a class (its name and properties) and a column per property."""

    class_name: str
    properties: Sequence[Property]
    columns: Mapping[str, Sequence[Any] | np.ndarray]
    count: int
    description: str = ""


@dataclass
class Primitive:
    """Positions (n, 3) in the content's local ENU metres, relative to the node translation;
    ``indices`` (m, 3) for triangles, None for points; ``feature_ids`` one float array per
    feature id set (same length as the positions), in the order of ``GlbBuilder.tables``."""

    positions: np.ndarray
    normals: np.ndarray | None = None
    indices: np.ndarray | None = None
    colors: np.ndarray | None = None  # (n, 3|4) uint8
    feature_ids: list[np.ndarray] = field(default_factory=list)
    rgba: tuple[float, float, float, float] | None = None  # material colour (triangles)


class GlbBuilder:
    """Builds one glb: ``add_table`` the property tables, ``add_primitive`` the geometry, then
    ``to_bytes``. Every buffer view starts on an 8-byte boundary (metadata needs it)."""

    def __init__(self, translation: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        #: the node's translation, ENU metres (the positions are relative to it)
        self.translation = [float(v) for v in translation]
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []
        self.materials: list[dict[str, Any]] = []
        self._material_index: dict[tuple[float, ...], int] = {}
        self.primitives: list[dict[str, Any]] = []
        self.tables: list[FeatureTable] = []
        self._chunks: list[bytes] = []
        self._length = 0

    # ---- binary ------------------------------------------------------------------------
    def _view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        pad = (-self._length) % 8
        if pad:
            self._chunks.append(b"\0" * pad)
            self._length += pad
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self._length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        if stride is not None:
            view["byteStride"] = stride
        self._chunks.append(data)
        self._length += len(data)
        self.views.append(view)
        return len(self.views) - 1

    def _accessor(
        self,
        array: np.ndarray,
        component: int,
        kind: str,
        *,
        target: int | None = None,
        normalized: bool = False,
        bounds: bool = False,
    ) -> int:
        view = self._view(np.ascontiguousarray(array).tobytes(), target)
        acc: dict[str, Any] = {
            "bufferView": view,
            "componentType": component,
            "count": int(array.shape[0]),
            "type": kind,
        }
        if normalized:
            acc["normalized"] = True
        if bounds:
            flat = array.reshape(array.shape[0], -1)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    # ---- content -----------------------------------------------------------------------
    def add_table(self, table: FeatureTable) -> int:
        """A property table; feature id set k of every primitive refers to table k."""
        self.tables.append(table)
        return len(self.tables) - 1

    def _material(self, rgba: tuple[float, float, float, float]) -> int:
        key = tuple(round(float(c), 4) for c in rgba)
        if key not in self._material_index:
            mat: dict[str, Any] = {
                "pbrMetallicRoughness": {
                    "baseColorFactor": list(key),
                    "metallicFactor": 0.0,
                    "roughnessFactor": 1.0,
                },
                "doubleSided": True,
            }
            if key[3] < 1.0:
                mat["alphaMode"] = "BLEND"
            self.materials.append(mat)
            self._material_index[key] = len(self.materials) - 1
        return self._material_index[key]

    def add_primitive(self, p: Primitive) -> None:
        n = len(p.positions)
        if n == 0:
            return
        pos = enu_to_gltf(np.asarray(p.positions, dtype=np.float64)).astype(np.float32)
        attrs: dict[str, int] = {
            "POSITION": self._accessor(pos, FLOAT, "VEC3", target=ARRAY_BUFFER, bounds=True)
        }
        if p.normals is not None:
            nrm = enu_to_gltf(np.asarray(p.normals, dtype=np.float64)).astype(np.float32)
            attrs["NORMAL"] = self._accessor(nrm, FLOAT, "VEC3", target=ARRAY_BUFFER)
        if p.colors is not None:
            c = np.asarray(p.colors, dtype=np.uint8)
            if c.shape[1] == 3:
                c = np.hstack([c, np.full((n, 1), 255, np.uint8)])
            attrs["COLOR_0"] = self._accessor(
                c, UNSIGNED_BYTE, "VEC4", target=ARRAY_BUFFER, normalized=True
            )
        feature_sets = []
        for k, ids in enumerate(p.feature_ids):
            acc = self._accessor(
                np.asarray(ids, dtype=np.float32), FLOAT, "SCALAR", target=ARRAY_BUFFER
            )
            attrs[f"_FEATURE_ID_{k}"] = acc
            table = self.tables[k]
            feature_sets.append(
                {
                    "featureCount": int(table.count),
                    "attribute": k,
                    "propertyTable": k,
                    "label": table.class_name,
                }
            )
        prim: dict[str, Any] = {"attributes": attrs, "mode": TRIANGLES}
        if p.indices is None:
            prim["mode"] = POINTS
        else:
            idx = np.asarray(p.indices).reshape(-1)
            if n < 65536:
                prim["indices"] = self._accessor(
                    idx.astype(np.uint16), UNSIGNED_SHORT, "SCALAR", target=ELEMENT_ARRAY_BUFFER
                )
            else:
                prim["indices"] = self._accessor(
                    idx.astype(np.uint32), UNSIGNED_INT, "SCALAR", target=ELEMENT_ARRAY_BUFFER
                )
        if p.rgba is not None:
            prim["material"] = self._material(p.rgba)
        if feature_sets:
            prim["extensions"] = {"EXT_mesh_features": {"featureIds": feature_sets}}
        self.primitives.append(prim)

    # ---- metadata ----------------------------------------------------------------------
    def _table_json(self, table: FeatureTable) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for prop in table.properties:
            values = table.columns[prop.name]
            if prop.type == "STRING":
                encoded = [("" if v is None else str(v)).encode("utf-8") for v in values]
                if not any(encoded):
                    continue  # every value empty: left out (a buffer view is never empty)
                offsets = np.zeros(len(encoded) + 1, dtype="<u4")
                offsets[1:] = np.cumsum([len(b) for b in encoded])
                props[prop.name] = {
                    "values": self._view(b"".join(encoded)),
                    "stringOffsets": self._view(offsets.tobytes()),
                    "stringOffsetType": "UINT32",
                }
            elif prop.type == "BOOLEAN":
                bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
                props[prop.name] = {"values": self._view(bits.tobytes())}
            else:
                assert prop.component is not None
                arr = np.asarray(
                    [prop.no_data if v is None else v for v in values]
                    if not isinstance(values, np.ndarray)
                    else values,
                    dtype=_NUMPY[prop.component],
                )
                props[prop.name] = {"values": self._view(arr.tobytes())}
        return {"class": table.class_name, "count": int(table.count), "properties": props}

    def _metadata(self) -> dict[str, Any]:
        classes = {}
        for t in self.tables:
            entry: dict[str, Any] = {"properties": {p.name: p.schema() for p in t.properties}}
            if t.description:
                entry["description"] = t.description
            classes[t.class_name] = entry
        return {
            "schema": {"id": "cim", "classes": classes},
            "propertyTables": [self._table_json(t) for t in self.tables],
        }

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": "cim-pipeline tiles"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
        }
        node: dict[str, Any] = {}
        if self.primitives:
            doc["meshes"] = [{"primitives": self.primitives}]
            node["mesh"] = 0
        if any(self.translation):
            e, n, u = self.translation
            node["translation"] = [e, u, -n]  # ENU -> glTF's Y-up, as the positions
        doc["nodes"] = [node]
        used = []
        if self.tables:
            doc["extensions"] = {"EXT_structural_metadata": self._metadata()}
            used = ["EXT_mesh_features", "EXT_structural_metadata"]
        if self.materials:
            doc["materials"] = self.materials
        if self.accessors:
            doc["accessors"] = self.accessors
        if self.views:
            doc["bufferViews"] = self.views
        binary = b"".join(self._chunks)
        binary += b"\0" * ((-len(binary)) % 4)
        if binary:
            doc["buffers"] = [{"byteLength": len(binary)}]
        if used:
            doc["extensionsUsed"] = used
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * ((-len(text)) % 4)
        total = 12 + 8 + len(text) + (8 + len(binary) if binary else 0)
        out = [struct.pack("<III", GLB_MAGIC, 2, total), struct.pack("<II", len(text), JSON_CHUNK)]
        out.append(text)
        if binary:
            out += [struct.pack("<II", len(binary), BIN_CHUNK), binary]
        return b"".join(out)


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON document and the binary chunk of a glb (for checks and tests)."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2 or total != len(data):
        raise ValueError("not a glb 2.0 file")
    jlen, _ = struct.unpack_from("<II", data, 12)
    doc = json.loads(data[20 : 20 + jlen])
    binary = b""
    if 20 + jlen < total:
        blen, _ = struct.unpack_from("<II", data, 20 + jlen)
        binary = data[28 + jlen : 28 + jlen + blen]
    return doc, binary


def property_tables(data: bytes) -> dict[str, dict[str, list[Any]]]:
    """The property tables of a glb by class name, decoded to lists (checks and tests read
    back what was written)."""
    doc, binary = read_glb(data)
    meta = doc.get("extensions", {}).get("EXT_structural_metadata")
    if not meta:
        return {}
    classes = meta["schema"]["classes"]

    def view(k: int) -> bytes:
        v = doc["bufferViews"][k]
        return binary[v.get("byteOffset", 0) : v.get("byteOffset", 0) + v["byteLength"]]

    out: dict[str, dict[str, list[Any]]] = {}
    for table in meta["propertyTables"]:
        cls = classes[table["class"]]["properties"]
        count = table["count"]
        cols: dict[str, list[Any]] = {}
        for name, spec in cls.items():
            prop = table["properties"].get(name)
            if prop is None:
                cols[name] = [None] * count
            elif spec["type"] == "STRING":
                offsets = np.frombuffer(view(prop["stringOffsets"]), dtype="<u4")
                raw = view(prop["values"])
                cols[name] = [
                    raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)
                ]
            elif spec["type"] == "BOOLEAN":
                bits = np.unpackbits(
                    np.frombuffer(view(prop["values"]), np.uint8), bitorder="little"
                )
                cols[name] = [bool(b) for b in bits[:count]]
            else:
                arr = np.frombuffer(view(prop["values"]), dtype=_NUMPY[spec["componentType"]])
                cols[name] = [None if v == spec.get("noData") else v.item() for v in arr[:count]]
        out[table["class"]] = cols
    return out


def feature_ids(data: bytes) -> list[list[np.ndarray]]:
    """Each primitive's feature id arrays (one per feature id set), decoded."""
    doc, binary = read_glb(data)
    out = []
    for mesh in doc.get("meshes", []):
        for prim in mesh["primitives"]:
            sets = prim.get("extensions", {}).get("EXT_mesh_features", {}).get("featureIds", [])
            arrays = []
            for s in sets:
                acc = doc["accessors"][prim["attributes"][f"_FEATURE_ID_{s['attribute']}"]]
                v = doc["bufferViews"][acc["bufferView"]]
                start = v.get("byteOffset", 0) + acc.get("byteOffset", 0)
                arrays.append(np.frombuffer(binary, "<f4", acc["count"], start))
            out.append(arrays)
    return out
