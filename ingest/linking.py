"""One building, several sources: link footprints that describe the same building.

Two buildings from different sources are the same building when their footprints overlap with
intersection over union (IoU) >= 0.5. Linked rows form a group with one canonical row (``same_as``
NULL) and the others pointing at it (``same_as`` = the canonical id; links are always one hop).
The canonical row is the one with the best geometry, BIM (IFC) > LoD2 > LoD1; on a tie the older
row (smaller id) stays canonical, so re-ingesting a file never flips the city model.

Candidates come from the bbox columns (a range filter DuckDB answers from its zone maps), the
pairs from a shapely STRtree and the IoU from vectorised shapely area/intersection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import shapely

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)

#: IoU from which two footprints of different sources are one building
IOU_THRESHOLD = 0.5

#: lower is better: which row of a group is canonical
LOD_RANK = {"BIM": 0, "LoD2": 1, "LoD1": 2}


def _rank(lod: str | None) -> int:
    return LOD_RANK.get(lod or "", 3)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def link_buildings(store: Store, building_ids: list[int]) -> int:
    """Link the given (new) buildings to overlapping buildings of other sources.

    Call it inside the ingest transaction after inserting the rows. Returns how many of the
    given buildings are now linked (part of a group of two or more).
    """
    if not building_ids:
        return 0
    con = store.con
    ids = pa.table({"id": pa.array(sorted(set(building_ids)), pa.int64())})
    con.register("link_new_ids", ids)
    try:
        extent = con.execute(
            "SELECT min(b.xmin), min(b.ymin), max(b.xmax), max(b.ymax) "
            "FROM buildings b JOIN link_new_ids n ON b.id = n.id WHERE b.footprint IS NOT NULL"
        ).fetchone()
        if extent is None or extent[0] is None:
            return 0
        xmin, ymin, xmax, ymax = extent
        sources = con.execute(
            "SELECT count(DISTINCT source_id) FROM buildings WHERE footprint IS NOT NULL "
            "AND xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?",
            [xmin, xmax, ymin, ymax],
        ).fetchone()
        if sources is None or sources[0] < 2:
            return 0  # one source where the buildings are (the usual first ingest)
        old = con.execute(
            "SELECT b.id, b.source_id, ST_AsWKB(b.footprint) FROM buildings b "
            "ANTI JOIN link_new_ids n ON b.id = n.id "
            "WHERE b.footprint IS NOT NULL AND b.xmax >= ? AND b.xmin <= ? "
            "AND b.ymax >= ? AND b.ymin <= ?",
            [xmin, xmax, ymin, ymax],
        ).fetchall()
        new = con.execute(
            "SELECT b.id, b.source_id, ST_AsWKB(b.footprint) "
            "FROM buildings b JOIN link_new_ids n ON b.id = n.id "
            "WHERE b.footprint IS NOT NULL ORDER BY b.id"
        ).fetchall()
    finally:
        con.unregister("link_new_ids")

    all_ids = np.array([r[0] for r in new] + [r[0] for r in old], dtype=np.int64)
    all_src = np.array([r[1] for r in new] + [r[1] for r in old], dtype=np.int64)
    geoms = shapely.from_wkb([bytes(r[2]) for r in new] + [bytes(r[2]) for r in old])
    n_new = len(new)
    if len(set(all_src.tolist())) < 2:
        return 0  # one source only: nothing to link across sources
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms[:n_new], predicate="intersects")
    keep = (all_src[i] != all_src[j]) & (i != j)
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return 0
    inter = shapely.area(shapely.intersection(geoms[i], geoms[j]))
    areas = shapely.area(geoms)
    union = areas[i] + areas[j] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    hit = iou >= IOU_THRESHOLD
    pairs = list(zip(all_ids[i[hit]].tolist(), all_ids[j[hit]].tolist(), strict=True))
    if not pairs:
        return 0

    # the existing groups the pairs touch (links are one hop: member -> canonical)
    involved = sorted({a for p in pairs for a in p})
    rows = con.execute(
        "SELECT id, same_as FROM buildings WHERE id IN (SELECT unnest(?::BIGINT[]))",
        [involved],
    ).fetchall()
    heads = sorted(set(involved) | {r[1] for r in rows if r[1] is not None})
    rows = con.execute(
        "SELECT id, same_as, lod FROM buildings "
        "WHERE id IN (SELECT unnest(?::BIGINT[])) OR same_as IN (SELECT unnest(?::BIGINT[]))",
        [heads, heads],
    ).fetchall()
    uf = _UnionFind()
    lod: dict[int, str | None] = {}
    current: dict[int, int | None] = {}
    for bid, same_as, row_lod in rows:
        lod[bid] = row_lod
        current[bid] = same_as
        uf.find(bid)
        if same_as is not None:
            uf.union(bid, same_as)
    for a, b in pairs:
        uf.union(a, b)

    groups: dict[int, list[int]] = {}
    for bid in lod:
        groups.setdefault(uf.find(bid), []).append(bid)
    update_id: list[int] = []
    update_to: list[int | None] = []
    linked_new = 0
    new_set = set(all_ids[:n_new].tolist())
    for members in groups.values():
        if len(members) < 2:
            continue
        canonical = min(members, key=lambda b: (_rank(lod[b]), b))
        for b in members:
            target = None if b == canonical else canonical
            if current.get(b) != target:
                update_id.append(b)
                update_to.append(target)
            if b in new_set:
                linked_new += 1
    if update_id:
        upd = pa.table(
            {"id": pa.array(update_id, pa.int64()), "same_as": pa.array(update_to, pa.int64())}
        )
        con.register("link_updates", upd)
        try:
            con.execute(
                "UPDATE buildings SET same_as = u.same_as FROM link_updates u "
                "WHERE buildings.id = u.id"
            )
        finally:
            con.unregister("link_updates")
    log.info("linked %d of %d buildings to other sources", linked_new, len(new_set))
    return linked_new
