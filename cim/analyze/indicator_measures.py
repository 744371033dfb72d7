"""The measures of the city health check, each over one built-up area (``Area``): what it
found (value, evidence, the buildings a map shows) before it is judged against a target.

A measure whose data is missing returns ``None`` as its value, and the reason: it is then
``no_data``, never 0 or met.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from cim.analyze.urban import Network, road_lines, straight_distances
from cim.model.buildings import Buildings
from cim.model.features import FeatureRecord

#: at most this many building ids in one list of evidence or one map layer
MAX_IDS = 5000


@dataclass
class Area:
    """What one boundary's measures read, once."""

    geometry: shapely.Geometry
    targets: dict[str, Any]
    buildings: Buildings  # the canonical buildings inside (by a point on their footprint)
    roads: list[FeatureRecord]  # within reach of the boundary
    landcover: list[FeatureRecord]
    parks: list[FeatureRecord]
    pois: list[FeatureRecord]
    has_role: dict[str, bool]  # does the store hold any feature of the role at all
    prefab: dict[int, dict[str, Any]]  # building id -> the prefab analyzer's summary
    pv: dict[int, dict[str, Any]]
    attributes: dict[int, dict[str, Any]]  # building id -> its GIS attributes
    flag_names: dict[str, list[str]]  # ultra_low_energy / energy_retrofit -> attribute names
    _floor: list[tuple[float | None, bool]] | None = field(default=None, repr=False)
    _centrelines: tuple[NDArray[np.object_], NDArray[np.object_]] | None = field(
        default=None, repr=False
    )

    @property
    def area_m2(self) -> float:
        return float(self.geometry.area)

    def ids(self, mask: NDArray[np.bool_]) -> list[int]:
        return [int(i) for i in self.buildings.ids[mask][:MAX_IDS]]

    def residential(self) -> NDArray[np.bool_]:
        uses = {u.casefold() for u in self.targets["residential_uses"]}
        return np.array(
            [str(u or "").strip().casefold() in uses for u in self.buildings.columns["use"]],
            dtype=bool,
        )

    def new(self) -> NDArray[np.bool_]:
        since = int(self.targets["new_since"])
        return np.array(
            [y is not None and int(y) >= since for y in self.buildings.columns["year_built"]],
            dtype=bool,
        )

    def floors(self) -> NDArray[np.float64]:
        return np.array(
            [np.nan if s is None else float(s) for s in self.buildings.columns["storeys_above"]]
        )

    def floor_area(self) -> list[tuple[float | None, bool]]:
        """Each building's floor area and whether it is an estimate (footprint x floors)."""
        if self._floor is None:
            out: list[tuple[float | None, bool]] = []
            b = self.buildings
            for gfa, floors, fp in zip(
                b.columns["gross_floor_area"], b.columns["storeys_above"], b.footprints, strict=True
            ):
                if gfa:
                    out.append((float(gfa), False))
                elif floors:
                    out.append((float(shapely.area(fp)) * int(floors), True))
                else:
                    out.append((None, False))
            self._floor = out
        return self._floor

    def road_lines(self) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
        """Every road as lines, and the part of them that comes from road polygons (their
        centrelines, computed once for every measure)."""
        if self._centrelines is None:
            lines = [f.geometry for f in self.roads if f.geometry.geom_type.endswith("LineString")]
            polys = [f.geometry for f in self.roads if f.geometry.geom_type.endswith("Polygon")]
            from_polys = road_lines([], polys)
            self._centrelines = (np.concatenate([road_lines(lines, []), from_polys]), from_polys)
        return self._centrelines

    def stored(self, by_id: dict[int, dict[str, Any]], i: int) -> dict[str, Any] | None:
        """An analyzer's summary for building ``i``: its own row's, else a linked row's."""
        for row in (int(self.buildings.ids[i]), *self.buildings.linked[i]):
            if row in by_id:
                return by_id[row]
        return None


@dataclass
class Found:
    value: float | None
    evidence: dict[str, Any]
    method: list[str]
    layers: list[dict[str, Any]] = field(default_factory=list)
    no_data: str | None = None  # why the status is no_data although a value was found


def _layer(layer_id: str, label: str, label_zh: str, ids: list[int]) -> dict[str, Any]:
    return {"id": layer_id, "label": label, "label_zh": label_zh, "building_ids": ids}


def road_density(a: Area) -> Found:
    if not a.has_role["roads"]:
        return Found(None, {"roads": 0}, [], no_data="no road layer in the store")
    lines = [f.geometry for f in a.roads if f.geometry.geom_type.endswith("LineString")]
    polys = [f.geometry for f in a.roads if f.geometry.geom_type.endswith("Polygon")]
    all_lines, from_polys = a.road_lines()
    inside = shapely.intersection(all_lines, a.geometry)
    km = float(shapely.length(inside).sum()) / 1000.0
    km_polys = float(shapely.length(shapely.intersection(from_polys, a.geometry)).sum()) / 1000
    km2 = a.area_m2 / 1e6
    return Found(
        km / km2 if km2 > 0 else None,
        {
            "line_roads": len(lines),
            "polygon_roads": len(polys),
            "centreline_km": round(km, 4),
            "from_polygons_km": round(km_polys, 4),
            "area_km2": round(km2, 6),
        },
        [
            "line roads as they are, road polygons reduced to centrelines (a pruned medial "
            "axis), clipped to the boundary; a road drawn both as a line and as a polygon "
            "counts twice"
        ],
    )


def permeable_share(a: Area) -> Found:
    lc = a.targets["landcover"]
    perm_words = {w.casefold() for w in lc["permeable"]}
    imp_words = {w.casefold() for w in lc["impervious"]}
    perm: list[shapely.Geometry] = []
    imp: list[shapely.Geometry] = []
    unmapped: dict[str, int] = {}
    for f in a.landcover:
        k = (f.kind or "").strip().casefold()
        if k in perm_words:
            perm.append(f.geometry)
        elif k in imp_words:
            imp.append(f.geometry)
        else:
            unmapped[f.kind or ""] = unmapped.get(f.kind or "", 0) + 1
    if lc["parks_permeable"]:
        perm += [f.geometry for f in a.parks]
    widths = lc["road_widths_m"]
    hard = [*a.buildings.footprints]
    for f in a.roads:
        g = f.geometry
        if g.geom_type.endswith("Polygon"):
            hard.append(g)
        else:
            w = float(widths.get((f.kind or "").strip().casefold(), widths["default"]))
            hard.append(shapely.buffer(g, w / 2.0, cap_style="flat"))
    b = a.geometry
    hard_u = shapely.intersection(shapely.union_all(hard), b) if hard else shapely.Polygon()
    imp_u = shapely.union(shapely.intersection(shapely.union_all(imp), b), hard_u)
    perm_u = shapely.difference(shapely.intersection(shapely.union_all(perm), b), imp_u)
    total = a.area_m2
    perm_a, imp_a = float(perm_u.area), float(imp_u.area)
    unknown = max(total - perm_a - imp_a, 0.0)
    share = perm_a / total if total > 0 else None
    evidence = {
        "area_m2": round(total, 1),
        "permeable_m2": round(perm_a, 1),
        "impervious_m2": round(imp_a, 1),
        "buildings_and_roads_m2": round(float(hard_u.area), 1),
        "unknown_m2": round(unknown, 1),
        "unknown_share": round(unknown / total, 4) if total > 0 else None,
        "unmapped_classes": unmapped,
    }
    method = [
        "land cover by the mapping in the targets file; buildings and roads (line roads "
        "widened by road_widths_m) impervious; where permeable and impervious overlap, "
        "impervious"
    ]
    limit = float(lc["unknown_max_share"])
    why = None
    if total > 0 and unknown / total > limit:
        why = (
            f"{100 * unknown / total:.1f}% of the area has no known land cover "
            f"(more than {100 * limit:.0f}%)"
        )
    return Found(share, evidence, method, no_data=why)


def park_coverage(a: Area) -> Found:
    res = a.residential()
    if not a.has_role["parks"] or not res.any():
        why = "no park layer in the store" if not a.has_role["parks"] else "no homes"
        return Found(None, {"residential": int(res.sum())}, [], no_data=why)
    pk = a.targets["parks"]
    parks = [f for f in a.parks if f.geometry.area >= float(pk["min_area_ha"]) * 1e4]
    reach = np.array([_park_distance(f.geometry.area, pk["size_classes"]) for f in parks])
    covered = np.zeros(len(res), dtype=bool)
    if parks:
        geoms = np.array([f.geometry for f in parks], dtype=object)
        for i in np.flatnonzero(res):
            d = shapely.distance(a.buildings.footprints[i], geoms)
            covered[i] = bool((d <= reach).any())
    out = res & ~covered
    n = int(res.sum())
    return Found(
        int((res & covered).sum()) / n,
        {
            "residential": n,
            "covered": int((res & covered).sum()),
            "parks": len(parks),
            "parks_too_small": len(a.parks) - len(parks),
            "not_covered": a.ids(out),
        },
        ["straight-line distance from a footprint to a park's edge, by the park's size class"],
        [
            _layer(
                "not_covered",
                "homes beyond a park's service distance",
                "公园服务半径外的住宅",
                a.ids(out),
            )
        ],
    )


def _park_distance(area_m2: float, classes: list[dict[str, Any]]) -> float:
    for c in classes:
        if c["max_area_ha"] is None or area_m2 < float(c["max_area_ha"]) * 1e4:
            return float(c["distance_m"])
    return float(classes[-1]["distance_m"])


def life_circle(a: Area) -> Found:
    res = a.residential()
    if not a.has_role["pois"] or not res.any():
        why = "no facility (POI) layer in the store" if not a.has_role["pois"] else "no homes"
        return Found(None, {"residential": int(res.sum())}, [], no_data=why)
    types = a.targets["facilities"]["types"]
    homes = shapely.get_coordinates(shapely.point_on_surface(a.buildings.footprints[res]))
    home_ids = a.buildings.ids[res]
    lines, _ = a.road_lines()
    net = Network.of(lines) if len(lines) else None
    method = (
        "network distance over the road centrelines; homes (a point on the footprint) and "
        "facilities snapped to the nearest road, the snap distances added"
        if net
        else "straight-line distance: there are no roads to walk along"
    )
    per_type, layers, shares = {}, [], []
    for t in types:
        kinds = {k.casefold() for k in t["kinds"]}
        at = [f for f in a.pois if (f.kind or "").strip().casefold() in kinds]
        pts = (
            shapely.get_coordinates(shapely.point_on_surface([f.geometry for f in at]))
            if at
            else np.empty((0, 2))
        )
        limit = float(t["distance_m"])
        straight = straight_distances(pts, homes)
        if net is not None and len(pts):
            dist, _, snaps = net.distances(pts, homes, cutoff=limit)
        else:
            dist, snaps = straight, np.zeros(len(homes))
        ok = dist <= limit
        missing = [int(i) for i in home_ids[~ok][:MAX_IDS]]
        shares.append(float(ok.mean()))
        per_type[t["id"]] = {
            "name_zh": t["name_zh"],
            "distance_m": limit,
            "facilities": len(at),
            "covered": int(ok.sum()),
            "share": round(float(ok.mean()), 4),
            "straight_line_covered": int((straight <= limit).sum()),
            "max_snap_m": round(float(snaps.max()), 1) if len(snaps) else None,
            "not_covered": missing,
        }
        layers.append(
            _layer(
                t["id"],
                f"homes without {t['id'].replace('_', ' ')} within {limit:g} m",
                f"{limit:g} 米内无{t['name_zh']}的住宅",
                missing,
            )
        )
    return Found(
        min(shares),
        {
            "residential": len(homes),
            "network": net is not None,
            "types": per_type,
        },
        [method, "the indicator is the lowest share over the facility types"],
        layers,
    )


def heights(a: Area) -> tuple[Found, Found]:
    """Homes over 18 floors, and the share of new homes' floor area with 6 floors or fewer."""
    res, new, floors = a.residential(), a.new(), a.floors()
    known = res & np.isfinite(floors)
    tall = known & (floors > 18)
    if not known.any():
        why = "no home has a number of floors"
        none = Found(None, {"residential": int(res.sum())}, [], no_data=why)
        return none, Found(None, dict(none.evidence), [], no_data=why)
    over = Found(
        float((tall & new).sum()),
        {
            "residential_with_floors": int(known.sum()),
            "over_18_new": a.ids(tall & new),
            "over_18_older": a.ids(tall & ~new),
        },
        [f"residential buildings with more than 18 floors built since {a.targets['new_since']}"],
        [_layer("over_18", "homes over 18 floors", "18 层以上住宅", a.ids(tall))],
    )
    fa = a.floor_area()
    total = low = 0.0
    estimated = 0
    for i in np.flatnonzero(known & new):
        area, guess = fa[i]
        if area is None:
            continue
        total += area
        low += area if floors[i] <= 6 else 0.0
        estimated += int(guess)
    share = Found(
        low / total if total > 0 else None,
        {
            "new_homes": int((known & new).sum()),
            "floor_area_m2": round(total, 1),
            "low_rise_floor_area_m2": round(low, 1),
            "floor_area_estimated": estimated,
        },
        ["floor area: gross floor area, else footprint area times floors"],
        [
            _layer(
                "over_6",
                "new homes over 6 floors",
                "6 层以上新建住宅",
                a.ids(known & new & (floors > 6)),
            )
        ],
    )
    return over, share


def prefab_share(a: Area) -> Found:
    new = a.new()
    fa = a.floor_area()
    scored = prefab = 0.0
    unknown, scored_n, prefab_ids = [], 0, []
    for i in np.flatnonzero(new):
        s = a.stored(a.prefab, int(i))
        area = fa[i][0]
        if s is None or s.get("prefabricated") is None or area is None:
            unknown.append(int(a.buildings.ids[i]))
            continue
        scored += area
        scored_n += 1
        if s["prefabricated"]:
            prefab += area
            prefab_ids.append(int(a.buildings.ids[i]))
    evidence = {
        "new_buildings": int(new.sum()),
        "scored": scored_n,
        "scored_floor_area_m2": round(scored, 1),
        "prefabricated_floor_area_m2": round(prefab, 1),
        "unknown": unknown[:MAX_IDS],
    }
    method = [
        "the prefab analyzer's stored verdicts (cim analyze prefab) over the new buildings it "
        "scored; those it did not score are listed as unknown"
    ]
    layers = [
        _layer(
            "prefabricated", "new prefabricated buildings", "新建装配式建筑", prefab_ids[:MAX_IDS]
        ),
        _layer("unknown", "new buildings not scored", "未评价的新建建筑", unknown[:MAX_IDS]),
    ]
    return Found(prefab / scored if scored > 0 else None, evidence, method, layers)


def green_share(a: Area) -> Found:
    new = a.new()
    stars = a.buildings.columns["green_star"]
    known = np.array([s is not None for s in stars], dtype=bool) & new
    rated = known & np.array([bool(s) and int(s) >= 1 for s in stars], dtype=bool)
    n = int(known.sum())
    return Found(
        int(rated.sum()) / n if n else None,
        {"new_buildings": int(new.sum()), "rating_known": n, "rated": int(rated.sum())},
        ["green_star 1-3 counts as rated, 0 as not rated; unknown ratings are left out"],
        [
            _layer(
                "not_rated",
                "new buildings without a green star",
                "无星级的新建建筑",
                a.ids(known & ~rated),
            )
        ],
    )


def flagged_area(a: Area, flag: str) -> Found:
    names = {n.strip().casefold() for n in a.flag_names.get(flag, [])}
    fa = a.floor_area()
    seen = flagged = 0
    area = 0.0
    no_area, ids = [], []
    for i, bid in enumerate(a.buildings.ids):
        attrs = {str(k).strip().casefold(): v for k, v in a.attributes.get(int(bid), {}).items()}
        values = [attrs[n] for n in names if n in attrs and attrs[n] is not None]
        if not values:
            continue
        seen += 1
        if not _truthy(values[0]):
            continue
        flagged += 1
        ids.append(int(bid))
        floor = fa[i][0]
        if floor is None:
            no_area.append(int(bid))
        else:
            area += floor
    return Found(
        area if seen else None,
        {
            "buildings_with_attribute": seen,
            "flagged": flagged,
            "without_floor_area": no_area[:MAX_IDS],
            "attribute_names": sorted(names),
        },
        [
            "buildings whose attribute says so (names from schemas/gis_attributes.json); "
            "floor area: gross floor area, else footprint area times floors"
        ],
        [
            _layer(
                flag,
                f"buildings marked {flag}",
                "超低能耗建筑" if flag == "ultra_low_energy" else "节能改造建筑",
                ids[:MAX_IDS],
            )
        ],
    )


def _truthy(v: Any) -> bool:
    if isinstance(v, bool | int | float):
        return bool(v)
    return str(v).strip().casefold() in {"1", "true", "yes", "y", "是", "有", "t"}


def pv_share(a: Area) -> Found:
    per_m2 = float(a.targets["electricity_demand_kwh_per_m2"]["value"])
    fa = a.floor_area()
    kwh = demand = 0.0
    with_pv = no_area = 0
    for i in range(len(a.buildings)):
        s = a.stored(a.pv, i)
        if s is None or s.get("pv_kwh") is None:
            continue
        with_pv += 1
        floor = fa[i][0]
        if floor is None:
            no_area += 1
            continue
        kwh += float(s["pv_kwh"])
        demand += floor * per_m2
    return Found(
        kwh / demand if demand > 0 else None,
        {
            "buildings_with_pv_result": with_pv,
            "without_floor_area": no_area,
            "pv_mwh_per_year": round(kwh / 1000, 1),
            "demand_mwh_per_year": round(demand / 1000, 1),
            "demand_kwh_per_m2": per_m2,
            "demand_verified": bool(a.targets["electricity_demand_kwh_per_m2"]["verified"]),
        },
        [
            "the PV analyzer's stored yearly kWh (cim analyze pv) over the same buildings' "
            "floor area times the demand per m2 of the targets file"
        ],
    )
