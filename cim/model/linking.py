"""One building, several sources: link footprints that describe the same building.

Two buildings from different sources are the same building when their footprints overlap with
intersection over union (IoU) >= 0.5. Linked rows form a group with one canonical row (``same_as``
NULL) and the others pointing at it (``same_as`` = the canonical id; links are always one hop).
The canonical row is the one with the best geometry, BIM (IFC) > LoD2 > LoD1; on a tie the older
row (smaller id) stays canonical, so re-ingesting a file never flips the city model.

Candidates come from the bbox columns (a range filter DuckDB answers from its zone maps), the
pairs from a shapely STRtree, the IoU from vectorised shapely area/intersection, and the
groups from scipy's connected components.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import shapely
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)

#: IoU from which two footprints of different sources are one building
IOU_THRESHOLD = 0.5

#: lower is better: which row of a group is canonical
LOD_RANK = {"BIM": 0, "LoD2": 1, "LoD1": 2}


def _rank(lod: str | None) -> int:
    return LOD_RANK.get(lod or "", 3)


def _intersection_areas(a: NDArray[np.object_], b: NDArray[np.object_]) -> NDArray[np.float64]:
    """Areas of the pairwise intersections, on every core: shapely releases the GIL in GEOS
    calls, so threads (no pickling, no processes) share the overlay work."""
    workers = min(os.cpu_count() or 1, max(1, len(a) // 20_000))
    if workers == 1:
        return np.asarray(shapely.area(shapely.intersection(a, b)), dtype=np.float64)
    bounds = np.linspace(0, len(a), workers + 1, dtype=np.int64)
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(
            lambda k: shapely.area(
                shapely.intersection(a[bounds[k] : bounds[k + 1]], b[bounds[k] : bounds[k + 1]])
            ),
            range(workers),
        )
        return np.concatenate(list(parts)).astype(np.float64)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pa.Table:
    return con.execute(sql, params).to_arrow_table()


def link_buildings(store: Store, building_ids: list[int]) -> int:
    """(Re)link the given buildings (new, or moved) to overlapping buildings of other sources.

    Call it inside the ingest transaction after inserting or moving the rows. The given
    buildings leave the groups they were in; rows left pointing at them or at deleted rows are
    relinked too, so ``link_buildings(store, [])`` after deleting a source repairs its links.
    Returns how many of those buildings are now linked (in a group of two or more).
    """
    con = store.con
    # the usual first ingest: buildings of one source at most and no link to repair (one
    # query instead of the five in _candidates)
    alone = con.execute(
        "SELECT coalesce(min(source_id) = max(source_id), true) "
        "AND NOT coalesce(bool_or(same_as IS NOT NULL), false) FROM buildings"
    ).fetchone()
    if alone is not None and alone[0]:
        return 0
    found = _candidates(con, building_ids)
    if found is None:
        return 0
    ids, new, old = found
    pairs = _same_building_pairs(new, old)
    if pairs is None:
        return 0
    member, grouped = _regroup(con, pairs)
    linked_new = int(np.count_nonzero(grouped & np.isin(member, ids.column("id").to_numpy())))
    log.info("linked %d of %d buildings to other sources", linked_new, ids.num_rows)
    return linked_new


def _candidates(
    con: duckdb.DuckDBPyConnection, building_ids: list[int]
) -> tuple[pa.Table, pa.Table, pa.Table] | None:
    """Unlinks the buildings to relink and returns them (ids, and id, source_id, wkb of those
    with a footprint) and the other sources' buildings around them; None when there is nothing
    to link (no such building, or one source where they are)."""
    ids = pa.table({"id": np.unique(np.asarray(building_ids, dtype=np.int64))})  # sorted
    con.register("link_new_ids", ids)
    try:
        # (re)link from scratch: the given buildings leave their groups, and rows that pointed
        # at one of them, or at a row that is gone (its source was replaced), are linked again
        orphans = _fetch(
            con,
            "SELECT id FROM buildings WHERE same_as IN (SELECT id FROM link_new_ids) "
            "OR (same_as IS NOT NULL AND same_as NOT IN (SELECT id FROM buildings))",
            [],
        )
        con.execute(
            "UPDATE buildings SET same_as = NULL WHERE same_as IS NOT NULL AND ("
            "id IN (SELECT id FROM link_new_ids) OR same_as IN (SELECT id FROM link_new_ids) "
            "OR same_as NOT IN (SELECT id FROM buildings))"
        )
        if orphans.num_rows == 0 and ids.num_rows == 0:
            return None
        if orphans.num_rows:
            con.unregister("link_new_ids")
            ids = pa.table(
                {"id": np.union1d(ids.column("id").to_numpy(), orphans.column("id").to_numpy())}
            )
            con.register("link_new_ids", ids)
        extent = con.execute(
            "SELECT min(b.xmin), min(b.ymin), max(b.xmax), max(b.ymax) "
            "FROM buildings b JOIN link_new_ids n ON b.id = n.id WHERE b.footprint IS NOT NULL"
        ).fetchone()
        if extent is None or extent[0] is None:
            return None
        xmin, ymin, xmax, ymax = extent
        window = [xmin, xmax, ymin, ymax]
        sources = con.execute(
            "SELECT count(DISTINCT source_id) FROM buildings WHERE footprint IS NOT NULL "
            "AND xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?",
            window,
        ).fetchone()
        if sources is None or sources[0] < 2:
            return None  # one source where the buildings are (the usual first ingest)
        new = _fetch(
            con,
            "SELECT b.id, b.source_id, ST_AsWKB(b.footprint) AS wkb "
            "FROM buildings b JOIN link_new_ids n ON b.id = n.id "
            "WHERE b.footprint IS NOT NULL ORDER BY b.id",
            [],
        )
        old = _fetch(
            con,
            "SELECT b.id, b.source_id, ST_AsWKB(b.footprint) AS wkb FROM buildings b "
            "ANTI JOIN link_new_ids n ON b.id = n.id "
            "WHERE b.footprint IS NOT NULL AND b.xmax >= ? AND b.xmin <= ? "
            "AND b.ymax >= ? AND b.ymin <= ?",
            window,
        )
    finally:
        con.unregister("link_new_ids")
    return ids, new, old


def _same_building_pairs(new: pa.Table, old: pa.Table) -> NDArray[np.int64] | None:
    """The (id, id) pairs of a new building and one of another source whose footprints overlap
    with IoU >= IOU_THRESHOLD; None when there are none."""
    both = pa.concat_tables([new, old])
    all_ids = both.column("id").to_numpy()
    all_src = both.column("source_id").to_numpy()
    geoms = shapely.from_wkb(both.column("wkb").to_numpy(zero_copy_only=False))
    n_new = new.num_rows
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms[:n_new], predicate="intersects")
    keep = (all_src[i] != all_src[j]) & (i != j)
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return None
    inter = _intersection_areas(geoms[i], geoms[j])
    areas = shapely.area(geoms)
    union = areas[i] + areas[j] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    hit = iou >= IOU_THRESHOLD
    if not hit.any():
        return None
    return np.column_stack([all_ids[i[hit]], all_ids[j[hit]]])


def _regroup(
    con: duckdb.DuckDBPyConnection, pairs: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Merges the pairs with the existing groups they touch and writes each group's links to
    its canonical row; returns the rows of those groups (ids) and which are in a group of two
    or more."""
    # the existing groups the pairs touch (links are one hop: member -> canonical). Id lists go
    # to DuckDB as registered Arrow tables: a large Python list parameter is converted value by
    # value (each value trying to import pandas), far slower.
    con.register("link_ids", pa.table({"id": np.unique(pairs)}))
    try:
        rows = _fetch(
            con,
            "WITH heads AS (SELECT b.id FROM buildings b JOIN link_ids i ON b.id = i.id "
            "UNION SELECT b.same_as FROM buildings b JOIN link_ids i ON b.id = i.id "
            "WHERE b.same_as IS NOT NULL) "
            "SELECT id, same_as, lod FROM buildings WHERE id IN (SELECT id FROM heads) "
            "OR same_as IN (SELECT id FROM heads) ORDER BY id",
            [],
        )
    finally:
        con.unregister("link_ids")
    member = rows.column("id").to_numpy()
    current = rows.column("same_as").to_numpy(zero_copy_only=False)  # float, NaN = canonical
    has_link = ~np.isnan(current.astype(np.float64))
    rank = np.array([_rank(v) for v in rows.column("lod").to_pylist()], dtype=np.int64)

    # groups: connected components of the IoU pairs and the existing links
    edges_a = np.concatenate([pairs[:, 0], member[has_link]])
    edges_b = np.concatenate([pairs[:, 1], current[has_link].astype(np.int64)])
    known = np.isin(edges_a, member) & np.isin(edges_b, member)
    edges_a, edges_b = edges_a[known], edges_b[known]
    node_a = np.searchsorted(member, edges_a)
    node_b = np.searchsorted(member, edges_b)
    n = len(member)
    graph = coo_matrix((np.ones(len(node_a)), (node_a, node_b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    size = np.bincount(label)
    # canonical per group: best LoD, then oldest (smallest id)
    order = np.lexsort((member, rank, label))
    first = np.ones(n, dtype=bool)
    first[1:] = label[order][1:] != label[order][:-1]
    canonical_of_label = np.empty(label.max() + 1, dtype=np.int64)
    canonical_of_label[label[order][first]] = member[order][first]
    canonical = canonical_of_label[label]
    grouped = size[label] >= 2
    target = np.where(canonical == member, -1, canonical)  # -1 = canonical (NULL)
    now = np.where(has_link, np.nan_to_num(current.astype(np.float64)), -1).astype(np.int64)
    change = grouped & (target != now)
    if change.any():
        _set_links(con, member[change], target[change])
    return member, grouped


def _set_links(
    con: duckdb.DuckDBPyConnection, ids: NDArray[np.int64], same_as: NDArray[np.int64]
) -> None:
    """``buildings.same_as`` of the rows ``ids`` (-1: NULL, the row is canonical)."""
    upd = pa.table({"id": ids, "same_as": pa.array(same_as, pa.int64(), mask=same_as < 0)})
    con.register("link_updates", upd)
    try:
        con.execute(
            "UPDATE buildings SET same_as = u.same_as FROM link_updates u WHERE buildings.id = u.id"
        )
    finally:
        con.unregister("link_updates")
