"""Building heights from the LiDAR points: ``building_heights`` and ``buildings.height``.

For every building footprint in the store: 3D BAG-style roof percentiles (50/70/90/max) of the
class-6 points inside it, the ground level around it (the DTMs sampled on a ring just outside
the footprint), point count, density and a status; the height is the roof's 70th percentile
above that ground. The LiDAR ingester derives them for the buildings a new cloud affects
(``affected_buildings``), the GIS and IFC ingesters for the buildings they add
(``heights_from_points``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import shapely

from cim.model.points import DECIMAL
from cim.model.terrain import dtms_over, ground_at

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)


#: a building's heights are "ok" with at least this many class-6 points and this density (pts/m2)
MIN_ROOF_POINTS = 5
MIN_ROOF_DENSITY = 0.5
#: ground level: the DTM sampled on a ring this far outside the footprint outline (m)
GROUND_RING_M = 1.0


def _ground_levels(store: Store, ids: list[int], footprints: list[Any]) -> dict[int, float]:
    """Median DTM elevation on a ring GROUND_RING_M outside each footprint."""
    if not ids:
        return {}
    rings = shapely.segmentize(
        shapely.boundary(shapely.buffer(np.asarray(footprints), GROUND_RING_M)), 1.0
    )
    coords, owner = shapely.get_coordinates(rings, return_index=True)
    if len(coords) == 0:
        return {}
    bounds = (
        float(coords[:, 0].min()),
        float(coords[:, 1].min()),
        float(coords[:, 0].max()),
        float(coords[:, 1].max()),
    )
    z = ground_at(dtms_over(store, bounds), coords[:, 0], coords[:, 1])
    out: dict[int, float] = {}
    for k, bid in enumerate(ids):
        vals = z[owner == k]
        vals = vals[~np.isnan(vals)]
        if len(vals):
            out[bid] = float(np.median(vals))
    return out


def heights_from_points(store: Store, building_ids: list[int]) -> int:
    """``derive_building_heights`` for new or moved buildings, when the store has points at all
    (the GIS and IFC ingesters call this; without points there is nothing to derive)."""
    if not building_ids or store.con.execute("SELECT 1 FROM points LIMIT 1").fetchone() is None:
        return 0
    return derive_building_heights(store, building_ids)


def derive_building_heights(store: Store, building_ids: list[int] | None = None) -> int:
    """Compute or refresh ``building_heights`` for the buildings (all when None) from the points.

    Fills ``buildings.height`` (roof p70 - ground) with ``height_source = 'lidar'`` where it is
    unknown (NULL height, or height_source NULL, 'unknown' or an earlier 'lidar'), and
    ``ground_z`` where it is NULL. Returns the number of buildings whose heights are ok.
    Runs in the caller's transaction, or in its own when there is none.
    """
    if store.in_transaction:
        return _derive(store, building_ids)
    with store.transaction():
        return _derive(store, building_ids)


def _derive(store: Store, building_ids: list[int] | None) -> int:
    """``derive_building_heights`` in the transaction it runs in."""
    found = _footprints(store, building_ids)
    if found is None:
        return 0
    ids, src_of, geoms = found
    area = {bid: float(a) for bid, a in zip(ids, shapely.area(geoms), strict=True)}
    cover, b_bounds, coverage = _coverage(store, ids, geoms)
    roof = _roof_stats(store, ids, cover, b_bounds, coverage)
    ground = _ground_levels(store, ids, list(geoms))
    out = _height_rows(ids, src_of, area, coverage, roof, ground)
    _write_heights(store, ids, out)
    ok = sum(1 for r in out if r[2] == "ok")
    log.info("building heights: %d of %d buildings ok", ok, len(out))
    return ok


#: a building no cloud covers: no source, and no building class
_NOTHING: tuple[list[int], bool] = ([], False)


def _footprints(
    store: Store, building_ids: list[int] | None
) -> tuple[list[int], dict[int, int], np.ndarray] | None:
    """The buildings' ids, sources and valid 2D footprints (None when there are none). For all
    buildings (``building_ids`` None), first drops the heights of buildings that are gone."""
    con = store.con
    sql = (
        "SELECT id, source_id, ST_AsWKB(ST_Force2D(footprint)) FROM buildings "
        "WHERE footprint IS NOT NULL"
    )
    params: list[Any] = []
    if building_ids is not None:
        if not building_ids:
            return None
        sql += " AND id IN (SELECT unnest(?::BIGINT[]))"
        params = [list(building_ids)]
    rows = con.execute(sql + " ORDER BY id", params).fetchall()
    if building_ids is None:
        con.execute(
            "DELETE FROM building_heights WHERE building_id NOT IN (SELECT id FROM buildings)"
        )
    if not rows:
        return None
    ids = [int(r[0]) for r in rows]
    src_of = {int(r[0]): int(r[1]) for r in rows}
    geoms = shapely.from_wkb([bytes(r[2]) for r in rows])
    valid = ~shapely.is_empty(geoms) & (shapely.area(geoms) > 0)
    geoms = np.where(valid, shapely.make_valid(geoms), geoms)
    return ids, src_of, geoms


def _coverage(
    store: Store, ids: list[int], geoms: np.ndarray
) -> tuple[pa.Table, np.ndarray, dict[int, tuple[list[int], bool]]]:
    """Which clouds cover each building (by bounding box), and whether they have a building
    class; with the buildings' table (id, bounds, footprint) and bounds the roof query uses."""
    con = store.con
    b_bounds = shapely.bounds(geoms)
    cover = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "xmin": b_bounds[:, 0],
            "ymin": b_bounds[:, 1],
            "xmax": b_bounds[:, 2],
            "ymax": b_bounds[:, 3],
            "wkb": pa.array(shapely.to_wkb(geoms), pa.binary()),
        }
    )
    con.register("_lidar_buildings", cover)
    try:
        coverage = {
            int(r[0]): (sorted(r[1] or []), bool(r[2]))
            for r in con.execute(
                "SELECT b.id, list(l.source_id) FILTER (WHERE l.source_id IS NOT NULL), "
                "coalesce(bool_or(l.has_building_class), false) "
                "FROM _lidar_buildings b LEFT JOIN lidar_sources l "
                "ON l.xmin <= b.xmax AND l.xmax >= b.xmin "
                "AND l.ymin <= b.ymax AND l.ymax >= b.ymin GROUP BY b.id"
            ).fetchall()
        }
    finally:
        con.unregister("_lidar_buildings")
    return cover, b_bounds, coverage


def _roof_stats(
    store: Store,
    ids: list[int],
    cover: pa.Table,
    b_bounds: np.ndarray,
    coverage: dict[int, tuple[list[int], bool]],
) -> dict[int, tuple[Any, ...]]:
    """Point count, roof percentiles (50/70/90) and maximum of the class-6 points inside each
    footprint covered by a cloud with a building class (none for a footprint without any)."""
    con = store.con
    roof: dict[int, tuple[Any, ...]] = {}
    mask = np.array([coverage.get(bid, _NOTHING)[1] for bid in ids], dtype=bool)
    if not mask.any():
        return roof
    sel = cover.filter(pa.array(mask))
    bx0, by0 = float(b_bounds[mask, 0].min()), float(b_bounds[mask, 1].min())
    bx1, by1 = float(b_bounds[mask, 2].max()), float(b_bounds[mask, 3].max())
    con.register("_lidar_buildings", sel)
    # only the point files meeting the buildings' box; the bounding-box constants are
    # DECIMAL so the zone maps prune; the join is DuckDB spatial's R-tree join of class-6
    # points against the footprints
    source, files = store.points_from(bx0, by0, bx1, by1)
    for r in con.execute(
        f"WITH b AS (SELECT id, ST_GeomFromWKB(wkb) AS g FROM _lidar_buildings), "
        f"p AS (SELECT source_id, x::DOUBLE AS x, y::DOUBLE AS y, z::DOUBLE AS z "
        f"FROM {source} WHERE classification = 6 "
        f"AND x BETWEEN ?::{DECIMAL} AND ?::{DECIMAL} "
        f"AND y BETWEEN ?::{DECIMAL} AND ?::{DECIMAL}) "
        f"SELECT b.id, count(*), quantile_cont(p.z, [0.5, 0.7, 0.9]), max(p.z) "
        f"FROM p JOIN b ON ST_Contains(b.g, ST_Point(p.x, p.y)) GROUP BY b.id",
        [*files, bx0, bx1, by0, by1],
    ).fetchall():
        roof[int(r[0])] = r[1:]
    con.unregister("_lidar_buildings")
    return roof


#: the columns of ``building_heights`` rows
_HEIGHT_COLUMNS = (
    "building_id",
    "source_id",
    "status",
    "n_points",
    "area",
    "density",
    "ground_z",
    "ground_method",
    "roof_p50",
    "roof_p70",
    "roof_p90",
    "roof_max",
    "height",
    "lidar_sources",
)


def _height_rows(
    ids: list[int],
    src_of: dict[int, int],
    area: dict[int, float],
    coverage: dict[int, tuple[list[int], bool]],
    roof: dict[int, tuple[Any, ...]],
    ground: dict[int, float],
) -> list[tuple[Any, ...]]:
    """The ``building_heights`` rows (in the order of ``_HEIGHT_COLUMNS``), with each
    building's status: ok, or why its height is unknown."""
    out = []
    for bid in ids:
        covering, any_building_class = coverage.get(bid, _NOTHING)
        g = ground.get(bid)
        n = 0
        p50 = p70 = p90 = pmax = height = None
        if not covering:
            status = "no_coverage"
        elif not any_building_class:
            status = "no_building_class"
        elif bid not in roof:
            status = "no_points"
        else:
            n, qs, pmax = roof[bid]
            p50, p70, p90 = qs
            density = n / area[bid] if area[bid] > 0 else 0.0
            if n < MIN_ROOF_POINTS or density < MIN_ROOF_DENSITY:
                status = "few_points"
            elif g is None:
                status = "no_ground"  # roof points but no terrain model around them
            elif p70 - g <= 0:
                status = "below_ground"
            else:
                status = "ok"
                height = p70 - g
        a = area[bid]
        out.append(
            (
                bid,
                src_of[bid],
                status,
                n,
                a,
                (n / a) if a > 0 else None,
                g,
                "dtm_ring" if g is not None else None,
                p50,
                p70,
                p90,
                pmax,
                height,
                covering,
            )
        )
    return out


def _write_heights(store: Store, ids: list[int], out: list[tuple[Any, ...]]) -> None:
    """Replaces the buildings' ``building_heights`` rows, and fills ``buildings.height`` and
    ``ground_z`` from them where they are unknown."""
    con = store.con
    con.execute(
        "DELETE FROM building_heights WHERE building_id IN (SELECT unnest(?::BIGINT[]))", [ids]
    )
    store.insert_rows("building_heights", _HEIGHT_COLUMNS, out)
    # fill unknown heights; withdraw earlier LiDAR heights that are no longer ok
    con.execute(
        "UPDATE buildings SET height = NULL, height_source = 'unknown' "
        "FROM building_heights h WHERE h.building_id = buildings.id AND h.status <> 'ok' "
        "AND buildings.height_source = 'lidar' "
        "AND buildings.id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    con.execute(
        "UPDATE buildings SET height = h.height, height_source = 'lidar', "
        "ground_z = CASE WHEN buildings.height_source = 'lidar' OR buildings.ground_z IS NULL "
        "THEN h.ground_z ELSE buildings.ground_z END "
        "FROM building_heights h WHERE h.building_id = buildings.id AND h.status = 'ok' "
        "AND (buildings.height IS NULL OR buildings.height_source IS NULL "
        "OR buildings.height_source IN ('unknown', 'lidar')) "
        "AND buildings.id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    con.execute(
        "UPDATE buildings SET ground_z = h.ground_z FROM building_heights h "
        "WHERE h.building_id = buildings.id AND buildings.ground_z IS NULL "
        "AND h.ground_z IS NOT NULL AND buildings.id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )


def affected_buildings(store: Store, bbox: list[float | None]) -> list[int]:
    """Buildings whose heights a new cloud may change: those it overlaps, and those that were
    covered by a cloud that is gone (the one this file replaces)."""
    ids: set[int] = set()
    if bbox[0] is not None:
        rows = store.con.execute(
            "SELECT id FROM buildings WHERE footprint IS NOT NULL AND "
            "ST_Intersects(footprint, ST_MakeEnvelope(?, ?, ?, ?))",
            [bbox[0], bbox[1], bbox[3], bbox[4]],
        ).fetchall()
        ids.update(int(r[0]) for r in rows)
    stale = store.con.execute(
        "SELECT DISTINCT h.building_id FROM building_heights h, unnest(h.lidar_sources) AS u(s) "
        "WHERE u.s NOT IN (SELECT source_id FROM lidar_sources)"
    ).fetchall()
    ids.update(int(r[0]) for r in stale)
    return sorted(ids)
