"""The GIS roles and the read side of the ``features`` table.

A GIS layer is ingested in one of these roles: ``buildings`` become rows of ``buildings``, the
other roles rows of ``features`` (geometry, name, kind and the original attributes as JSON).
Readers (tiles, analyzers, the server) get a role's features here, optionally in a box; the bbox
columns prune before the exact intersection test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import shapely

from cim.errors import UsageError

if TYPE_CHECKING:
    from cim.store import Store

ROLES = ("buildings", "roads", "landcover", "parks", "pois", "boundary")
FEATURE_ROLES = ROLES[1:]


@dataclass(frozen=True)
class FeatureRecord:
    """One row of ``features``: the geometry in the project CRS, the original attributes."""

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
        FeatureRecord(fid, src, role_, layer, ref, name, kind, json.loads(a) if a else {}, g)
        for (fid, src, role_, layer, ref, name, kind, a, _), g in zip(rows, geoms, strict=True)
    ]
