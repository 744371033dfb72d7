"""3D Tiles 1.1 documents (``tileset.json``) and the structural checks every tileset passes
before it is committed: required fields, bounding volumes that contain their children and their
content, geometric error that does not grow with depth, every URI resolving.

Bounding volumes are ``box``es in the tileset's frame (ENU at the project origin, z up).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from numpy.typing import NDArray

from tiles.gltf import read_glb

#: how far content or a child may stick out of its tile's box (metres): float32 positions and
#: the box's own rounding
TOLERANCE = 0.05


class BoundingVolume(TypedDict):
    box: list[float]


class Content(TypedDict):
    uri: str


class Tile(TypedDict):
    boundingVolume: BoundingVolume
    geometricError: float
    refine: NotRequired[str]
    content: NotRequired[Content]
    children: NotRequired[list[Tile]]
    transform: NotRequired[list[float]]


class Asset(TypedDict):
    version: str
    generator: NotRequired[str]
    tilesetVersion: NotRequired[str]


class Tileset(TypedDict):
    asset: Asset
    geometricError: float
    root: Tile
    properties: NotRequired[dict[str, Any]]


def box(lo: NDArray[np.float64], hi: NDArray[np.float64]) -> BoundingVolume:
    """An axis-aligned ``box`` from its corners (ENU metres), a few millimetres larger."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    c = (lo + hi) / 2
    h = np.maximum((hi - lo) / 2, 0.01) + 0.005
    return {
        "box": [
            *(round(float(v), 3) for v in c),
            round(float(h[0]), 3),
            0.0,
            0.0,
            0.0,
            round(float(h[1]), 3),
            0.0,
            0.0,
            0.0,
            round(float(h[2]), 3),
        ]
    }


def box_bounds(volume: BoundingVolume) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The axis-aligned corners (lo, hi) enclosing a ``box``."""
    b = np.asarray(volume["box"], dtype=np.float64)
    c, axes = b[:3], b[3:].reshape(3, 3)
    h = np.abs(axes).sum(axis=0)
    return c - h, c + h


def walk(tile: Tile, depth: int = 0) -> Iterator[tuple[Tile, int]]:
    yield tile, depth
    for child in tile.get("children", []):
        yield from walk(child, depth + 1)


def count_tiles(doc: Tileset) -> int:
    return sum(1 for _ in walk(doc["root"]))


def content_bounds(glb: bytes) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """The ENU corners of a glb's positions (accessor min/max plus the node translation, Y-up
    turned back to Z-up), or None when it has no geometry."""
    doc, _ = read_glb(glb)
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    t = np.asarray(doc["nodes"][0].get("translation", [0.0, 0.0, 0.0]), dtype=np.float64)
    for mesh in doc.get("meshes", []):
        for prim in mesh["primitives"]:
            acc = doc["accessors"][prim["attributes"]["POSITION"]]
            a = np.asarray(acc["min"]) + t
            b = np.asarray(acc["max"]) + t
            # glTF (x, y, z) = (e, u, -n)
            lo = np.minimum(lo, [a[0], -b[2], a[1]])
            hi = np.maximum(hi, [b[0], -a[2], b[1]])
    if not np.all(np.isfinite(lo)):
        return None
    return lo, hi


def check_tileset(
    folder: Path, name: str = "tileset.json", document: Tileset | None = None
) -> list[str]:
    """Every structural problem of the tileset ``folder/name`` (or of ``document``, whose
    content lies in ``folder``) and of the external tilesets it names, one line each; an empty
    list when it is sound."""
    problems: list[str] = []
    _check_document(folder, name, problems, None, document)
    return problems


def _check_document(
    folder: Path,
    name: str,
    problems: list[str],
    parent_error: float | None,
    doc: Any = None,
) -> None:
    if doc is None:
        try:
            doc = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: cannot be read ({exc})")
            return
    version = doc.get("asset", {}).get("version")
    if version not in ("1.0", "1.1"):
        problems.append(f"{name}: asset.version is {version!r}, not 1.0 or 1.1")
    if not isinstance(doc.get("geometricError"), int | float):
        problems.append(f"{name}: no geometricError")
    root = doc.get("root")
    if not isinstance(root, dict):
        problems.append(f"{name}: no root tile")
        return
    top = doc.get("geometricError", parent_error)
    if parent_error is not None and top > parent_error + 1e-9:
        problems.append(f"{name}: geometricError {top} above its parent tile's {parent_error}")
    if root.get("refine") not in ("ADD", "REPLACE"):
        problems.append(f"{name}: the root tile has no refine ADD or REPLACE")
    _check_tile(folder, name, root, top, "root", problems)  # type: ignore[arg-type]


def _check_tile(
    folder: Path, doc_name: str, tile: Tile, parent_error: float, where: str, problems: list[str]
) -> None:
    say: Callable[[str], None] = lambda msg: problems.append(f"{doc_name} {where}: {msg}")  # noqa: E731
    if "box" not in tile.get("boundingVolume", {}):
        say("no bounding box")
        return
    error = tile.get("geometricError")
    if not isinstance(error, int | float) or error < 0:
        say(f"geometricError {error!r}")
        return
    if error > parent_error + 1e-9:
        say(f"geometricError {error} above its parent's {parent_error}")
    lo, hi = box_bounds(tile["boundingVolume"])
    uri = tile.get("content", {}).get("uri")
    if uri:
        target = folder / uri
        if not target.is_file():
            say(f"content {uri} does not exist")
        elif uri.endswith(".json"):
            _check_document(target.parent, target.name, problems, float(error))
        else:
            bounds = content_bounds(target.read_bytes())
            if bounds is not None and not _inside(bounds, (lo, hi)):
                say(f"content {uri} sticks out of the tile's box")
    for k, child in enumerate(tile.get("children", [])):
        if "box" in child.get("boundingVolume", {}) and not _inside(
            box_bounds(child["boundingVolume"]), (lo, hi)
        ):
            say(f"child {k} sticks out of its parent's box")
        _check_tile(folder, doc_name, child, float(error), f"{where}/{k}", problems)


def _inside(
    inner: tuple[NDArray[np.float64], NDArray[np.float64]],
    outer: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> bool:
    return bool(
        np.all(inner[0] >= outer[0] - TOLERANCE) and np.all(inner[1] <= outer[1] + TOLERANCE)
    )
