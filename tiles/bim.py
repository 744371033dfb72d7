"""The BIM tileset: one tile per placed IFC model, its elements as features (CIM6 detail).

The element feature id set comes first, so picking returns an element (GlobalId, class, storey,
precast flag, building); the building set second. The root has no content and ADD refinement:
each model is a child whose geometric error is 0. A model whose inputs (the file's bytes and its
placement) did not change reuses its file.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import shapely

from cim.model.buildings import canonical_buildings
from tiles.buildings import ENCODING, add_elements, building_columns, read_city
from tiles.context import BuildContext
from tiles.encode import TileJob, encode_tile
from tiles.tileset import Tile, box

#: the root's geometric error: models are drawn once their tile is this close to mattering
ROOT_ERROR = 64.0


def build_bim(ctx: BuildContext) -> tuple[Tile, dict[str, Any]] | None:
    ctx.step(0.0, "reading models")
    b = canonical_buildings(ctx.store)
    city = read_city(ctx, b) if len(b) else None
    if city is None or not city.bim.any():
        return None
    models: dict[int, list[int]] = {}
    for i in np.flatnonzero(city.bim):
        models.setdefault(int(b.source_ids[i]), []).append(int(i))
    children: list[Tile] = []
    elements = 0
    for k, (source_id, members) in enumerate(sorted(models.items())):
        idx = np.asarray(members, dtype=np.int64)
        h = hashlib.sha256(f"{ENCODING}:bim:{source_id}".encode())
        for i in idx:
            h.update(city.digests[i].encode())
        key = h.hexdigest()
        uri = ctx.writer.reuse(key)
        if uri is None:
            lo, hi = city.lo[idx].min(axis=0), city.hi[idx].max(axis=0)
            centre = [float(round(v)) for v in (lo + hi) / 2]
            x0, y0, x1, y1 = (float(v) for v in shapely.total_bounds(b.footprints[idx]))
            job = TileJob(
                crs_wkt=ctx.store.crs.to_wkt(),
                origin=ctx.store.project_origin,
                translation=(centre[0], centre[1], centre[2]),
                rotation_bounds=(x0, y0, 0.0, x1, y1, 0.0),
                buildings=building_columns(b, idx),
                first_table="element",
            )
            add_elements(ctx, job, [int(b.ids[i]) for i in idx], list(range(len(idx))))
            elements += len(job.elements["global_id"]) if job.elements else 0
            uri = ctx.writer.put(encode_tile(job), ".glb", input_key=key)
        children.append(
            {
                "boundingVolume": box(city.lo[idx].min(axis=0), city.hi[idx].max(axis=0)),
                "geometricError": 0.0,
                "content": {"uri": uri},
            }
        )
        ctx.step((k + 1) / len(models), f"{k + 1}/{len(models)} models")
    all_idx = np.flatnonzero(city.bim)
    root: Tile = {
        "boundingVolume": box(city.lo[all_idx].min(axis=0), city.hi[all_idx].max(axis=0)),
        "geometricError": ROOT_ERROR,
        "refine": "ADD",
        "children": children,
    }
    return root, {"models": len(models), "elements_encoded": elements}
