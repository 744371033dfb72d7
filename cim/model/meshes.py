"""Element meshes of the ingested models, placed in the project CRS.

A model's meshes are stored in its own coordinates (``meshes`` rows of owner 'element', float32
offsets from a float64 origin) with the source's placement matrix beside them (``placements``),
so placing a model again never touches them. This applies the placement, rotates the normals,
and gives each triangle its material's colour. Spaces and openings are not drawn by default:
they are volumes of air, kept in the store for the analyzers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cim.model.elements import precast_flag

if TYPE_CHECKING:
    from cim.store import Store

#: classes left out of what is drawn (kept in the store)
NOT_DRAWN = ("IfcSpace", "IfcOpeningElement", "IfcAnnotation", "IfcVirtualElement", "IfcGrid")
#: the colour of a triangle whose material has none
DEFAULT_RGBA = (0.8, 0.8, 0.78, 1.0)


@dataclass
class ElementMesh:
    """One element's triangles in the project CRS."""

    element_id: int
    building_id: int | None
    source_id: int
    global_id: str
    ifc_class: str
    name: str | None
    storey: str | None
    precast: bool | None
    positions: NDArray[np.float64]  # (n, 3) project CRS
    normals: NDArray[np.float64]  # (n, 3) unit, project axes
    indices: NDArray[np.uint32]  # (m, 3)
    rgba: NDArray[np.float32]  # (m, 4) per triangle


def _rgba(materials: list[dict[str, Any]], ids: NDArray[np.uint16], m: int) -> NDArray[np.float32]:
    table = np.array(
        [tuple(mat.get("rgba") or DEFAULT_RGBA) for mat in materials] or [DEFAULT_RGBA],
        dtype=np.float32,
    ).reshape(-1, 4)
    if len(ids) != m:
        ids = np.zeros(m, dtype=np.uint16)
    ids = np.minimum(ids, len(table) - 1)
    out: NDArray[np.float32] = table[ids]
    return out


def element_meshes(
    store: Store,
    building_ids: Sequence[int] | None = None,
    source_ids: Sequence[int] | None = None,
    exclude: Sequence[str] = NOT_DRAWN,
    classes: Sequence[str] | None = None,
) -> Iterator[ElementMesh]:
    """The meshes of the elements of these buildings (or sources), placed, in element order,
    optionally only those of ``classes``. Models waiting for placement are left out."""
    where = ["m.owner = 'element'", "s.status = 'ingested'"]
    params: list[Any] = []
    if building_ids is not None:
        where.append("e.building_id IN (SELECT unnest(?::BIGINT[]))")
        params.append(list(building_ids))
    if source_ids is not None:
        where.append("e.source_id IN (SELECT unnest(?::INTEGER[]))")
        params.append(list(source_ids))
    if classes is not None:
        where.append("e.ifc_class IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(classes))
    if exclude:
        where.append("e.ifc_class NOT IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(exclude))
    cur = store.con.cursor()
    cur.execute(
        "SELECT e.id, e.building_id, e.source_id, e.global_id, e.ifc_class, e.name, e.storey, "
        "e.psets, m.origin_x, m.origin_y, m.origin_z, m.positions, m.normals, m.indices, "
        "m.material_ids, m.materials, p.matrix FROM meshes m "
        "JOIN elements e ON e.id = m.owner_id JOIN sources s ON s.id = e.source_id "
        "JOIN placements p ON p.source_id = e.source_id "
        f"WHERE {' AND '.join(where)} ORDER BY e.id, m.id",
        params,
    )
    try:
        while batch := cur.fetchmany(256):
            for row in batch:
                yield _mesh(row)
    finally:
        cur.close()


def _mesh(row: tuple[Any, ...]) -> ElementMesh:
    (eid, bid, sid, gid, cls, name, storey, psets, ox, oy, oz, pos, nrm, idx, mids, mats, mx) = row
    matrix = np.array(mx, dtype=np.float64).reshape(4, 4)
    local = np.frombuffer(pos, dtype=np.float32).reshape(-1, 3).astype(np.float64)
    local += np.array([ox, oy, oz])
    positions = local @ matrix[:3, :3].T + matrix[:3, 3]
    normals = np.frombuffer(nrm, dtype=np.float32).reshape(-1, 3).astype(np.float64)
    normals = normals @ matrix[:3, :3].T
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    length[length == 0] = 1.0
    indices = np.frombuffer(idx, dtype=np.uint32).reshape(-1, 3)
    ids = np.frombuffer(mids, dtype=np.uint16) if mids else np.zeros(0, np.uint16)
    materials = json.loads(mats) if mats else []
    sets = json.loads(psets) if psets else {}
    return ElementMesh(
        element_id=int(eid),
        building_id=None if bid is None else int(bid),
        source_id=int(sid),
        global_id=gid,
        ifc_class=cls,
        name=name,
        storey=storey,
        precast=precast_flag(sets, name),
        positions=positions,
        normals=normals / length,
        indices=indices,
        rgba=_rgba(materials, ids, len(indices)),
    )
