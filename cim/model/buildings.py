"""The buildings as the city shows them: one row per building, whatever sources describe it.

A building known from several sources is linked (``buildings.same_as``, see ``linking``): the
canonical row (BIM > LoD2 > LoD1) draws it, and what it lacks (a name, a use, floors, a year,
a green star, a height) is taken from the rows linked to it. Rows of models still waiting to be
placed are left out: they sit at the project origin, not where they belong.

A building whose ground level is unknown (a footprint without LiDAR or terrain under it) stands
on the terrain where a DTM covers it, else on the median ground level of the buildings that have
one, else at 0 (said in ``ground_source``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from numpy.typing import NDArray

from cim.model.analyses import building_analyses, summaries
from cim.model.terrain import dtms_over, ground_at

if TYPE_CHECKING:
    from cim.store import Store

#: the columns a building row carries to its readers (tiles, server, analyzers)
_COLUMNS = (
    "id",
    "source_id",
    "name",
    "use",
    "height",
    "height_source",
    "storeys_above",
    "storeys_below",
    "gross_floor_area",
    "year_built",
    "green_star",
    "lod",
)
_FILLED = ("name", "use", "height", "storeys_above", "year_built", "green_star")


@dataclass
class Buildings:
    """Canonical buildings as columns (one entry a building, in id order)."""

    ids: NDArray[np.int64]
    source_ids: NDArray[np.int64]
    source_kinds: list[str]
    footprints: NDArray[np.object_]  # shapely (Multi)Polygons, project CRS
    ground_z: NDArray[np.float64]
    ground_source: list[str]  # store | terrain | neighbours | default
    height: NDArray[np.float64]  # NaN when unknown
    columns: dict[str, list[Any]]  # the _COLUMNS, filled from linked rows
    linked: list[list[int]]  # the other rows describing each building

    def __len__(self) -> int:
        return len(self.ids)

    def bounds(self) -> NDArray[np.float64]:
        """(n, 4) xmin, ymin, xmax, ymax of each footprint."""
        out: NDArray[np.float64] = shapely.bounds(self.footprints)
        return out

    def subset(self, index: NDArray[np.int64]) -> Buildings:
        idx = [int(i) for i in index]
        return Buildings(
            ids=self.ids[index],
            source_ids=self.source_ids[index],
            source_kinds=[self.source_kinds[i] for i in idx],
            footprints=self.footprints[index],
            ground_z=self.ground_z[index],
            ground_source=[self.ground_source[i] for i in idx],
            height=self.height[index],
            columns={k: [v[i] for i in idx] for k, v in self.columns.items()},
            linked=[self.linked[i] for i in idx],
        )


def canonical_buildings(store: Store, ids: list[int] | None = None) -> Buildings:
    """The canonical buildings with a footprint (optionally only ``ids``), their missing
    attributes filled from the rows linked to them."""
    con = store.con
    where = "b.footprint IS NOT NULL AND b.same_as IS NULL AND s.status = 'ingested'"
    params: list[Any] = []
    if ids is not None:
        where += " AND b.id IN (SELECT unnest(?::BIGINT[]))"
        params.append(list(ids))
    cols = ", ".join(f"b.{c}" for c in _COLUMNS)
    table = con.execute(
        f"SELECT {cols}, s.kind, ST_AsWKB(b.footprint) AS wkb, b.ground_z "
        f"FROM buildings b JOIN sources s ON s.id = b.source_id WHERE {where} ORDER BY b.id",
        params,
    ).fetchall()
    n = len(table)
    columns: dict[str, list[Any]] = {c: [r[i] for r in table] for i, c in enumerate(_COLUMNS)}
    kinds = [r[len(_COLUMNS)] for r in table]
    footprints = (
        shapely.from_wkb([bytes(r[len(_COLUMNS) + 1]) for r in table])
        if n
        else np.empty(0, dtype=object)
    )
    ground = np.array([np.nan if r[-1] is None else r[-1] for r in table], dtype=np.float64)
    id_list = [int(i) for i in columns["id"]]
    linked = _linked_rows(store, id_list, columns)
    height = np.array(
        [np.nan if h is None else float(h) for h in columns["height"]], dtype=np.float64
    )
    sources = ["store" if np.isfinite(g) else "" for g in ground]
    _fill_ground(store, footprints, ground, sources)
    _analysis_columns(store, id_list, linked, columns)
    return Buildings(
        ids=np.array(id_list, dtype=np.int64),
        source_ids=np.array(columns["source_id"], dtype=np.int64),
        source_kinds=kinds,
        footprints=footprints,
        ground_z=ground,
        ground_source=sources,
        height=height,
        columns=columns,
        linked=linked,
    )


#: what the analyzers' summaries add to each building (tiles carry them; colouring reads them)
ANALYSIS_COLUMNS = {
    "prefab_rate": ("prefab", "prefab_rate"),
    "prefab_grade": ("prefab", "prefab_grade"),
    "energy_status": ("energy", "energy_status"),
    "shape_coefficient": ("energy", "shape_coefficient"),
    "pv_kwp": ("pv", "pv_kwp"),
    "pv_kwh_per_m2": ("pv", "pv_kwh_per_m2"),
}


def _analysis_columns(
    store: Store, ids: list[int], linked: list[list[int]], columns: dict[str, list[Any]]
) -> None:
    """Each building's analysis figures, from its own row or a row linked to it."""
    found = {name: summaries(store, name) for name in {a for a, _ in ANALYSIS_COLUMNS.values()}}
    for column, (analyzer, key) in ANALYSIS_COLUMNS.items():
        by_row = found[analyzer]
        values: list[Any] = []
        for bid, others in zip(ids, linked, strict=True):
            value = None
            for row in (bid, *others):
                if row in by_row and by_row[row].get(key) is not None:
                    value = by_row[row][key]
                    break
            values.append(value)
        columns[column] = values


def _linked_rows(store: Store, ids: list[int], columns: dict[str, list[Any]]) -> list[list[int]]:
    """The rows linked to each canonical building; fills its missing attributes from them
    (the first linked row, by id, that has the value)."""
    if not ids:
        return []
    # every linked row, filtered here: a list of ids as a query parameter costs about a
    # millisecond an id to bind, and linked rows are few
    rows = store.con.execute(
        f"SELECT same_as, id, {', '.join(_FILLED)} FROM buildings "
        "WHERE same_as IS NOT NULL ORDER BY same_as, id"
    ).fetchall()
    position = {bid: i for i, bid in enumerate(ids)}
    linked: list[list[int]] = [[] for _ in ids]
    for row in rows:
        i = position.get(int(row[0]), -1)
        if i < 0:
            continue
        linked[i].append(int(row[1]))
        for k, name in enumerate(_FILLED):
            if columns[name][i] is None and row[2 + k] is not None:
                columns[name][i] = row[2 + k]
    return linked


def _fill_ground(
    store: Store, footprints: NDArray[np.object_], ground: NDArray[np.float64], sources: list[str]
) -> None:
    missing = np.flatnonzero(~np.isfinite(ground))
    if len(missing) == 0:
        return
    centres = shapely.get_coordinates(shapely.point_on_surface(footprints[missing]))
    lo, hi = centres.min(axis=0), centres.max(axis=0)
    box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    dtms = list(dtms_over(store, box))
    if dtms:
        z = ground_at(dtms, centres[:, 0], centres[:, 1])
        for i, v in zip(missing, z, strict=True):
            if np.isfinite(v):
                ground[i] = v
                sources[i] = "terrain"
    # the median over the whole store, not over the buildings asked for: one building's detail
    # and the city's tiles then agree
    row = store.con.execute(
        "SELECT median(b.ground_z) FROM buildings b JOIN sources s ON s.id = b.source_id "
        "WHERE b.ground_z IS NOT NULL AND s.status = 'ingested'"
    ).fetchone()
    known = row[0] if row else None
    fallback, label = (float(known), "neighbours") if known is not None else (0.0, "default")
    for i in np.flatnonzero(~np.isfinite(ground)):
        ground[i] = fallback
        sources[i] = label


def building_attributes(store: Store, building_id: int) -> dict[str, Any]:
    """The ``attributes`` JSON of one building row (GIS attributes, the model's frame ...)."""
    row = store.con.execute(
        "SELECT attributes FROM buildings WHERE id = ?", [building_id]
    ).fetchone()
    if row is None or row[0] is None:
        return {}
    out: dict[str, Any] = json.loads(row[0])
    return out


#: what a building summary holds (``building_page``), in this order
SUMMARY_COLUMNS = (
    "id",
    "name",
    "use",
    "height",
    "storeys_above",
    "year_built",
    "green_star",
    "lod",
    "source_id",
)


def building_page(
    store: Store,
    bbox: tuple[float, float, float, float] | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]], NDArray[np.object_]]:
    """A page of the canonical buildings (by id), optionally in a box (project CRS) or
    matching ``q`` (an id, or part of a name): the total, the rows, and their footprints."""
    where = ["b.same_as IS NULL", "s.status = 'ingested'", "b.footprint IS NOT NULL"]
    params: list[Any] = []
    if bbox is not None:
        where.append("b.xmax >= ? AND b.xmin <= ? AND b.ymax >= ? AND b.ymin <= ?")
        params += [bbox[0], bbox[2], bbox[1], bbox[3]]
    if q:
        text = q.strip()
        if text.isdigit():
            where.append("(b.id = ? OR b.name ILIKE ?)")
            params += [int(text), f"%{text}%"]
        else:
            where.append("b.name ILIKE ?")
            params.append(f"%{text}%")
    sql_where = " AND ".join(where)
    base = f"FROM buildings b JOIN sources s ON s.id = b.source_id WHERE {sql_where}"
    total_row = store.con.execute(f"SELECT count(*) {base}", params).fetchone()
    total = int(total_row[0]) if total_row else 0
    cols = ", ".join(f"b.{c}" for c in SUMMARY_COLUMNS)
    rows = store.con.execute(
        f"SELECT {cols}, ST_AsWKB(b.footprint) {base} ORDER BY b.id LIMIT ? OFFSET ?",
        [*params, int(limit), int(offset)],
    ).fetchall()
    items = [dict(zip(SUMMARY_COLUMNS, r[:-1], strict=True)) for r in rows]
    shapes = shapely.from_wkb([bytes(r[-1]) for r in rows]) if rows else np.empty(0, object)
    return total, items, shapes


def building_detail(store: Store, building_id: int) -> dict[str, Any] | None:
    """Everything the store knows of one building: its row (filled from the rows linked to
    it), the linked rows, its sources, its elements by class and its LiDAR heights."""
    row = store.con.execute("SELECT same_as FROM buildings WHERE id = ?", [building_id]).fetchone()
    if row is None:
        return None
    canonical = int(row[0]) if row[0] is not None else building_id
    found = canonical_buildings(store, [canonical])
    if len(found) == 0:
        return None
    cols = {k: v[0] for k, v in found.columns.items()}
    group = [canonical, *found.linked[0]]
    sources = store.con.execute(
        "SELECT DISTINCT s.id, s.name, s.kind, s.format FROM buildings b JOIN sources s "
        "ON s.id = b.source_id WHERE b.id IN (SELECT unnest(?::BIGINT[])) ORDER BY s.id",
        [group],
    ).fetchall()
    classes = store.con.execute(
        "SELECT ifc_class, count(*) FROM elements WHERE building_id = ? GROUP BY ifc_class "
        "ORDER BY count(*) DESC, ifc_class",
        [canonical],
    ).fetchall()
    heights = store.con.execute(
        "SELECT status, n_points, roof_p50, roof_p70, roof_p90, height FROM building_heights "
        "WHERE building_id = ?",
        [canonical],
    ).fetchone()
    return {
        **cols,
        "id": canonical,
        "ground_z": float(found.ground_z[0]),
        "ground_source": found.ground_source[0],
        "footprint_area": float(shapely.area(found.footprints[0])),
        "footprint": found.footprints[0],
        "linked": found.linked[0],
        "attributes": building_attributes(store, canonical),
        "sources": [{"id": s[0], "name": s[1], "kind": s[2], "format": s[3]} for s in sources],
        "elements": {c: int(n) for c, n in classes},
        "lidar": (
            dict(
                zip(
                    ("status", "points", "roof_p50", "roof_p70", "roof_p90", "height"),
                    heights,
                    strict=True,
                )
            )
            if heights
            else None
        ),
        "analyses": building_analyses(store, group),
    }
