"""The workers' side of the building tilesets: one tile's glb from plain data.

A ``TileJob`` holds everything one tile needs (footprints, heights, attributes, element meshes)
as picklable arrays, so ``encode_tile`` runs in the executor's workers (local pool or Dask) as
well as in the process that reads the store; each worker makes the tileset's frame once.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiles.blocks import extrude
from tiles.frame import frame_for, rotate, to_enu_fitted
from tiles.gltf import FeatureTable, GlbBuilder, Primitive, Property

#: the colour of LoD1 blocks (CesiumJS styles recolour them by any property)
BLOCK_RGBA = (0.86, 0.85, 0.82, 1.0)

BUILDING_PROPERTIES = (
    Property("id", "SCALAR", "INT32", "building id in the store"),
    Property("name", "STRING", description="name"),
    Property("use", "STRING", description="use (residential, school ...)"),
    Property("height", "SCALAR", "FLOAT64", "height above ground, m", no_data=-1.0),
    Property("ground_z", "SCALAR", "FLOAT64", "ground elevation, m"),
    Property("floors", "SCALAR", "INT32", "storeys above ground", no_data=-1),
    Property("gross_floor_area", "SCALAR", "FLOAT64", "gross floor area, m2", no_data=-1.0),
    Property("year", "SCALAR", "INT32", "year built", no_data=-1),
    Property("green_star", "SCALAR", "INT32", "green building star rating", no_data=-1),
    Property("lod", "STRING", description="level of detail: BIM, LoD2, LoD1"),
    Property("source", "STRING", description="kind of source: ifc, gis, lidar"),
    Property("height_source", "STRING", description="where the height comes from"),
    Property(
        "prefab_rate", "SCALAR", "FLOAT64", "assembly rate P, % (GB/T 51129-2017)", no_data=-1.0
    ),
    Property("prefab_grade", "STRING", description="prefab grade: A, AA, AAA or empty"),
    Property(
        "energy_status",
        "STRING",
        description="GB 55015-2021 envelope checks: pass, fail, advisory, unknown, or empty",
    ),
    Property(
        "shape_coefficient",
        "SCALAR",
        "FLOAT64",
        "shape coefficient (体形系数, GB 55015-2021): outside surface / volume, 1/m",
        no_data=-1.0,
    ),
    Property("pv_kwp", "SCALAR", "FLOAT64", "rooftop PV capacity, kWp", no_data=-1.0),
    Property(
        "pv_kwh_per_m2", "SCALAR", "FLOAT64", "rooftop PV, kWh/yr per m2 of roof", no_data=-1.0
    ),
)
ELEMENT_PROPERTIES = (
    Property("global_id", "STRING", description="IFC GlobalId"),
    Property("ifc_class", "STRING", description="IFC class"),
    Property("name", "STRING", description="name"),
    Property("storey", "STRING", description="building storey"),
    Property("building_id", "SCALAR", "INT32", "building id in the store", no_data=-1),
    Property("precast", "STRING", description="precast, cast in place or unknown"),
)


@dataclass
class MeshPart:
    """An element's triangles of one colour, in project coordinates."""

    positions: NDArray[np.float64]
    normals: NDArray[np.float64]
    indices: NDArray[np.uint32]
    rgba: tuple[float, float, float, float]
    building_row: int  # row in the tile's building table
    element_row: int  # row in the tile's element table


@dataclass
class TileJob:
    """One tile: blocks for ``blocks`` (indices into the building table), element meshes for
    the rest; ``first_table`` says which table is feature id set 0 (building or element)."""

    crs_wkt: str
    origin: tuple[float, float]
    translation: tuple[float, float, float]
    rotation_bounds: tuple[float, ...]  # project bounds the normals' rotation is fitted over
    buildings: dict[str, list[Any]]  # BUILDING_PROPERTIES columns
    blocks: list[int] = field(default_factory=list)
    footprints: NDArray[np.object_] | None = None  # of the blocks
    ground: NDArray[np.float64] | None = None
    height: NDArray[np.float64] | None = None
    simplify: float = 0.0
    elements: dict[str, list[Any]] | None = None  # ELEMENT_PROPERTIES columns
    parts: list[MeshPart] = field(default_factory=list)
    first_table: str = "building"


def encoder_version() -> str:
    """A digest of the code that writes a tile's bytes (this module, the blocks, the glb
    writer and the frame): tiles are reused only when it is unchanged."""
    from tiles import blocks, frame, gltf

    h = hashlib.sha256()
    for module in (blocks, frame, gltf, sys.modules[__name__]):
        h.update(Path(module.__file__ or "").read_bytes())
    return h.hexdigest()[:16]


def encode_tile(job: TileJob) -> bytes:
    """The glb of one tile."""
    frame = frame_for(job.crs_wkt, job.origin)
    rotation = frame.affine(np.asarray(job.rotation_bounds))
    origin = np.asarray(job.translation, dtype=np.float64)
    glb = GlbBuilder(translation=job.translation)
    building = FeatureTable(
        "building", BUILDING_PROPERTIES, job.buildings, len(job.buildings["id"])
    )
    element = (
        FeatureTable("element", ELEMENT_PROPERTIES, job.elements, len(job.elements["global_id"]))
        if job.elements is not None
        else None
    )
    element_first = job.first_table == "element" and element is not None
    tables = [element, building] if element_first else [building, element]
    for t in tables:
        if t is not None:
            glb.add_table(t)
    if job.blocks and job.footprints is not None:
        assert job.ground is not None and job.height is not None
        b = extrude(job.footprints, job.ground, job.height, job.simplify)
        if len(b.indices):
            rows = np.asarray(job.blocks, dtype=np.float64)[b.feature]
            glb.add_primitive(
                Primitive(
                    positions=to_enu_fitted(frame, b.positions) - origin,
                    normals=rotate(rotation, b.normals),
                    indices=b.indices,
                    feature_ids=[rows],
                    rgba=BLOCK_RGBA,
                )
            )
    for rgba, parts in _by_colour(job.parts).items():
        positions = np.vstack([p.positions for p in parts])
        offsets = np.cumsum([0] + [len(p.positions) for p in parts[:-1]])
        indices = np.vstack([p.indices + o for p, o in zip(parts, offsets, strict=True)])
        counts = [len(p.positions) for p in parts]
        b_rows = np.repeat([float(p.building_row) for p in parts], counts)
        e_rows = np.repeat([float(p.element_row) for p in parts], counts)
        glb.add_primitive(
            Primitive(
                positions=to_enu_fitted(frame, positions) - origin,
                normals=rotate(rotation, np.vstack([p.normals for p in parts])),
                indices=indices,
                feature_ids=[e_rows, b_rows] if element_first else [b_rows, e_rows],
                rgba=rgba,
            )
        )
    return glb.to_bytes()


def _by_colour(parts: list[MeshPart]) -> dict[tuple[float, float, float, float], list[MeshPart]]:
    out: dict[tuple[float, float, float, float], list[MeshPart]] = {}
    for p in parts:
        out.setdefault(p.rgba, []).append(p)
    return out


def split_by_colour(
    positions: NDArray[np.float64],
    normals: NDArray[np.float64],
    indices: NDArray[np.uint32],
    rgba: NDArray[np.float32],
    building_row: int,
    element_row: int,
) -> list[MeshPart]:
    """One element's mesh as parts of one colour each (its triangles' materials)."""
    colours, which = np.unique(np.round(rgba, 3), axis=0, return_inverse=True)
    which = which.reshape(-1)
    out = []
    for k, colour in enumerate(colours):
        tris = indices[which == k]
        used, local = np.unique(tris.reshape(-1), return_inverse=True)
        out.append(
            MeshPart(
                positions=positions[used],
                normals=normals[used],
                indices=local.reshape(-1, 3).astype(np.uint32),
                rgba=(float(colour[0]), float(colour[1]), float(colour[2]), float(colour[3])),
                building_row=building_row,
                element_row=element_row,
            )
        )
    return out
