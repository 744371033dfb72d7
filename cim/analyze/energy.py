"""The energy-code analyzer: GB 55015-2021 envelope checks of every building.

A building modelled in IFC is measured from its element meshes (``envelope.py``): the shape
coefficient (outside surface above ground over the volume it encloses), the window-to-wall
ratio of each orientation (window openings over the gross facade of that orientation, true
north from the model's placement and the projection's meridian convergence), the skylight
ratio, and the U values of roofs, walls, windows and floors over outdoor air
(``thermal.py``). A building known only from GIS or LiDAR gets the checks its footprint and
height allow (the shape coefficient of its block), a city-wide screening.

Each building's climate zone comes from the nearest city of
``schemas/standards/climate-zones-cn.json`` (or the store's own zone, ``--zone``); its limits
from ``schemas/standards/gb55015-2021.json``. A check is ``pass``, ``fail``, ``advisory`` (over
a limit that is not verified, or for a building whose type was assumed: never red on its own)
or ``unknown`` (data missing, or no limit for the zone and type: never assumed to pass).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cim.analyze.base import Outcome, Subject, Work, computed_inline, fingerprint
from cim.analyze.energy_rules import Cities, Limits, load_cities, load_limits
from cim.analyze.envelope import (
    FACADE_CLASSES,
    WALL_NZ,
    Envelope,
    azimuth,
    azimuths,
    groups,
    measure_envelope,
    sector,
    sectors,
)
from cim.analyze.members import Element, read_elements
from cim.analyze.thermal import SLABS as _SLABS
from cim.analyze.thermal import envelope_u_values, glass_panel, glazed_door
from cim.errors import NotFound, UsageError
from cim.model.meshes import element_meshes

if TYPE_CHECKING:
    from cim.store import Store

NAME = "energy"
#: bump when the way anything is measured changes: every stored result goes stale
VERSION = 1
#: the store's own climate zone, when set (`cim analyze energy --zone`)
ZONE_META = "energy_climate_zone"
SECTORS = ("north", "east", "south", "west")
#: a building further than this from every city of the table has no zone from it (km)
MAX_CITY_KM = 1000.0
#: a facade smaller than this (the edges of a building turned between two orientations) gets
#: no window-to-wall check (m2)
MIN_FACADE_M2 = 1.0
GUIDS = 20
_WINDOWS = ("IfcWindow", "IfcWindowStandardCase")
_DOORS = ("IfcDoor", "IfcDoorStandardCase")
_RESIDENTIAL = (
    "residential", "住宅", "居住", "dwelling", "house", "wohn", "apartment", "宿舍", "别墅",
    "citygml:1000", "1000 (residential",
)  # fmt: skip
_PUBLIC = (
    "office", "办公", "school", "学校", "hospital", "医院", "commercial", "商业", "hotel",
    "酒店", "public", "公共", "retail", "shop", "商场", "mall", "教育", "文化", "体育",
)  # fmt: skip
_ORDER = {"fail": 3, "advisory": 2, "unknown": 1, "pass": 0}


def building_type(use: str | None, floor_area: float | None) -> dict[str, Any]:
    """residential, public_A (> 300 m2) or public_B, from the building's use; a building whose
    use says neither is taken as residential, and says so (its failures are advisory)."""
    text = (use or "").casefold()
    if any(w in text for w in _RESIDENTIAL):
        return {"type": "residential", "assumed": False, "from": use}
    if any(w in text for w in _PUBLIC):
        public = "public_A" if floor_area is None or floor_area > 300 else "public_B"
        return {"type": public, "assumed": floor_area is None, "from": use}
    why = f"use {use!r} says neither" if use else "no use given"
    return {"type": "residential", "assumed": True, "from": f"{why}: taken as residential"}


def verdict_of(checks: list[dict[str, Any]]) -> str:
    """The building's status: its worst check (fail > advisory > unknown > pass)."""
    if not checks:
        return "unknown"
    return str(max((c["status"] for c in checks), key=lambda s: _ORDER[s]))


@dataclass
class EnergyAnalyzer:
    limits: Limits = field(default_factory=load_limits)
    cities: Cities = field(default_factory=load_cities)
    name: str = NAME

    def rules_label(self) -> str:
        return f"{self.limits.label}; {self.cities.label}"

    # -- subjects -----------------------------------------------------------------------
    def subjects(self, store: Store, building: int | None = None) -> list[Subject]:
        rows = store.con.execute(
            "SELECT b.id, b.source_id, b.source_ref, coalesce(b.name, s.name), s.sha256, "
            "s.kind, s.status, b.use, b.height, b.storeys_above, b.gross_floor_area, b.ground_z, "
            "ST_Area(b.footprint), ST_Perimeter(b.footprint), ST_X(ST_Centroid(b.footprint)), "
            "ST_Y(ST_Centroid(b.footprint)), p.matrix, p.params, "
            "EXISTS (SELECT 1 FROM elements e WHERE e.building_id = b.id) "
            "FROM buildings b JOIN sources s ON s.id = b.source_id "
            "LEFT JOIN placements p ON p.source_id = b.source_id "
            "WHERE b.footprint IS NOT NULL AND b.same_as IS NULL ORDER BY b.id"
        ).fetchall()
        rows = [r for r in rows if r[6] == "ingested" or (r[5] == "ifc" and r[18])]
        if building is not None:
            rows = [r for r in rows if r[0] == building]
            if not rows:
                raise NotFound(
                    f"building {building} is not in the store, or it is linked to another "
                    "(its canonical building carries the result)"
                )
        zone = store_zone(store)
        rules = fingerprint(self.limits.sha256, self.cities.sha256, VERSION)
        lonlat = _lonlat(store, [(r[14], r[15]) for r in rows])
        out = []
        for r, (lon, lat) in zip(rows, lonlat, strict=True):
            bid, sid, guid, name, sha, kind, status = r[:7]
            modelled = kind == "ifc" and bool(r[18])
            inputs = {
                "guid": guid,
                "modelled": modelled,
                "use": r[7],
                "height": r[8],
                "storeys": r[9],
                "floor_area": r[10],
                "ground_z": r[11],
                "footprint_area": r[12],
                "perimeter": r[13],
                "centre": (r[14], r[15]),
                "lonlat": (lon, lat),
                "placed": status == "ingested",
                "placement": json.loads(r[17]) if r[17] else {},
                "zone": zone,
            }
            facts = {k: v for k, v in inputs.items() if k not in ("lonlat", "placement")}
            part = (sha, status, r[16]) if modelled else (sha, facts)
            out.append(
                Subject(
                    key=f"building:{bid}",
                    building_id=int(bid),
                    source_id=int(sid),
                    fingerprint=fingerprint(part, rules, zone),
                    label=name or guid or f"building {bid}",
                    inputs=inputs,
                )
            )
        return out

    # -- one building -------------------------------------------------------------------
    def compute(self, store: Store, subject: Subject) -> Outcome:
        return computed_inline(self.plan(store, subject))

    def plan(self, store: Store, subject: Subject) -> Outcome | Work:
        """What the store says of the building, here; the voxel flood fill of its envelope
        (the heavy part: seconds to a minute for a large model) as work for the executor."""
        assert subject.building_id is not None
        i = subject.inputs
        climate = self.climate(i["lonlat"], i["zone"])
        result: dict[str, Any] = {
            "building_id": subject.building_id,
            "global_id": i["guid"],
            "name": subject.label,
            "scope": "model" if i["modelled"] else "screening",
            "rules": {"limits": self.limits.label, "climate": self.cities.label},
            "location": {"lon": round(i["lonlat"][0], 6), "lat": round(i["lonlat"][1], 6)},
            "climate": climate,
        }
        if not i["modelled"]:
            result.update(_measure_block(i))
            return self._finish(subject, result)
        out, model = self._read_model(store, subject)
        result.update(out)
        if model is None:
            return self._finish(subject, result)

        def finish(envelope: Envelope | None) -> Outcome:
            result.update(self._measured(model, envelope))
            return self._finish(subject, result)

        return Work(_envelope, (model.meshes, i["ground_z"]), finish)

    def _finish(self, subject: Subject, result: dict[str, Any]) -> Outcome:
        climate = result["climate"]
        btype = building_type(subject.inputs["use"], result.get("floor_area"))
        result["building_type"] = btype
        result["checks"] = self.checks(climate["zone"], btype, result)
        result["status"] = verdict_of(result["checks"])
        counts = {s: sum(1 for c in result["checks"] if c["status"] == s) for s in _ORDER}
        shape = result["shape"]["value"]
        summary = {
            "name": subject.label,
            "scope": result["scope"],
            "zone": climate["zone"],
            "energy_status": result["status"],
            "shape_coefficient": shape,
            "failing": counts["fail"],
            "advisory": counts["advisory"],
            "unknown": counts["unknown"],
        }
        return Outcome(summary=summary, result=result)

    def climate(self, lonlat: tuple[float, float], zone: str | None) -> dict[str, Any]:
        city, km = self.cities.nearest(*lonlat)
        found = {
            "city": city.name_zh,
            "city_en": city.name_en,
            "province": city.province,
            "distance_km": round(km, 1),
            "hdd18": city.hdd18,
            "verified": city.verified,
        }
        if zone is not None:
            return {
                "zone": zone,
                "source": "store",
                "nearest_city": found,
                **_zone_name(self.limits, zone),
            }
        if km > MAX_CITY_KM:
            return {
                "zone": None,
                "source": None,
                "nearest_city": found,
                "why": f"{km:.0f} km from the nearest city of {self.cities.path.name}: outside "
                "its reach (set the store's zone: cim analyze energy --zone ZONE)",
            }
        return {"zone": city.zone, "source": "nearest_city", "nearest_city": found,
                **_zone_name(self.limits, city.zone)}  # fmt: skip

    # -- the model's envelope -----------------------------------------------------------
    def _read_model(self, store: Store, subject: Subject) -> tuple[dict[str, Any], _Model | None]:
        """The model's elements, meshes and relations from the store; the model is None when
        there is nothing to measure (the first part says why)."""
        i = subject.inputs
        bid = subject.building_id
        assert bid is not None and subject.source_id is not None
        elements = read_elements(store, bid)
        out: dict[str, Any] = {
            "storeys": {"value": i["storeys"], "source": "model"},
            "floor_area": i["floor_area"],
        }
        if not i["placed"]:
            why = "the model waits for placement (`cim place`): orientation unknown"
            return {**out, **_unmeasured(why)}, None
        by_guid = {e.guid: e for e in elements}
        fills, voids = _relations(store, subject.source_id)
        openings = {o for w, o in voids if w in by_guid}
        meshes = list(element_meshes(store, building_ids=[bid], exclude=("IfcSpace",)))
        meshes += [
            m
            for m in element_meshes(
                store,
                source_ids=[subject.source_id],
                exclude=(),
                classes=("IfcOpeningElement", "IfcOpeningStandardCase"),
            )
            if m.global_id in openings and m.building_id is None
        ]
        # an opening in the envelope stands for the window or door that fills it
        present = {m.global_id for m in meshes if m.global_id in openings}
        filled = {w for w, o in fills.items() if o in present}
        meshes = [m for m in meshes if m.global_id not in filled]
        grid_north = _grid_north(store, i["centre"])
        return out, _Model(elements, meshes, fills, grid_north, i["placement"])

    def _measured(self, model: _Model, env: Envelope | None) -> dict[str, Any]:
        """What the envelope measured says: areas, shape coefficient, window-to-wall ratios,
        skylights, U values."""
        if env is None:
            return _unmeasured("the model has no walls, slabs or roofs with a shape")
        elements, meshes, fills, grid_north = (
            model.elements,
            model.meshes,
            model.fills,
            model.grid_north,
        )
        out: dict[str, Any] = {}
        ids = {m.global_id: m.element_id for m in meshes}
        classes = {m.element_id: m.ifc_class for m in meshes}
        kinds = env.kinds()
        area = {k: float(env.area[kinds == k].sum()) for k in ("wall", "roof", "floor")}
        external = sum(area.values())
        volume = env.volume
        out["envelope"] = {
            "method": "element meshes, voxel flood fill for the outside air, the model's own "
            "triangles for areas (see cim/analyze/envelope.py)",
            "pitch_m": env.pitch,
            "ground_z": round(env.ground_z, 3),
            "external_area_m2": round(external, 2),
            "by_kind_m2": {k: round(v, 2) for k, v in area.items()},
            "volume_m3": round(volume, 2),
            "volume_voxels_m3": round(env.volume_voxels, 2),
            "grid_north_deg": round(grid_north, 3),
            "placement": {
                k: model.placement[k]
                for k in ("true_north_deg", "rotation_deg", "lon", "lat")
                if k in model.placement
            },
            "notes": env.notes,
            "free_standing_walls": sorted(
                m.global_id for m in meshes if m.element_id in env.free_standing
            )[:GUIDS],
            "limits": "overhangs, balconies and canopies modelled with the roof or slabs count "
            "as envelope; gaps wider than two voxels let outside air in",
        }
        shape = external / volume if volume > 1e-6 else None
        out["shape"] = {
            "value": None if shape is None else round(shape, 4),
            "why": None if shape is not None else "no enclosed volume found",
            "external_area_m2": round(external, 2),
            "volume_m3": round(volume, 2),
        }
        roofs = {e.id for e in elements if e.ifc_class == "IfcRoof" or e.predefined == "ROOF"}
        facade_ids = {
            eid
            for eid, c in classes.items()
            if c in FACADE_CLASSES or (c in _SLABS and eid not in roofs)
        }
        facades = _facades(env, grid_north, facade_ids)
        windows, glazing = self._windows(elements, env, fills, ids, classes, grid_north)
        out["facades"] = _wwr(facades, glazing)
        skylights = sum(w["area_m2"] for w in windows if w["sector"] == "roof")
        out["skylight"] = {
            "window_area_m2": round(skylights, 3),
            "roof_area_m2": round(area["roof"], 2),
            "ratio": round(skylights / area["roof"], 4) if area["roof"] > 0 else None,
        }
        out["windows"] = windows[:200]
        out["u_values"] = envelope_u_values(elements, env, windows, GUIDS)
        return out

    def _windows(
        self,
        elements: list[Element],
        env: Envelope,
        fills: dict[str, str],
        ids: dict[str, int],
        classes: dict[int, str],
        grid_north: float,
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Each outside window (glazed door, glass panel): its area, sector and where the area
        came from; and the glazed area per sector."""
        pieces = _pieces_by_element(env)
        out: list[dict[str, Any]] = []
        glazing: dict[str, float] = defaultdict(float)
        for e in elements:
            if e.ifc_class in _WINDOWS:
                kind = "window"
            elif e.ifc_class in _DOORS and glazed_door(e):
                kind = "glazed door"
            elif e.ifc_class in ("IfcPlate", "IfcCurtainWall") and glass_panel(e):
                kind = "curtain wall glazing"
            else:
                continue
            opening = fills.get(e.guid)
            face = pieces.get(ids.get(opening, -1)) if opening else None
            source = "opening geometry"
            if face is None:
                face = pieces.get(e.id)
                source = "window geometry"
            if face is None:
                continue  # not on the outside (an inner window)
            normal, face_area = face
            size = e.attributes
            if source == "window geometry" and "OverallWidth" in size and "OverallHeight" in size:
                face_area = float(size["OverallWidth"]) * float(size["OverallHeight"])
                source = "OverallWidth x OverallHeight"
            if abs(normal[2]) > WALL_NZ:
                where, az = ("roof", None) if normal[2] > 0 else ("floor", None)
            else:
                az = azimuth(normal, grid_north)
                where = sector(az)
            glazing[where] += face_area
            out.append(
                {
                    "global_id": e.guid,
                    "name": e.name,
                    "class": e.ifc_class,
                    "kind": kind,
                    "sector": where,
                    "azimuth_deg": None if az is None else round(az, 1),
                    "area_m2": round(face_area, 3),
                    "area_source": source,
                    "u": e.thermal_transmittance,
                }
            )
        return out, dict(glazing)

    # -- checks -------------------------------------------------------------------------
    def checks(
        self, zone: str | None, btype: dict[str, Any], r: dict[str, Any]
    ) -> list[dict[str, Any]]:
        storeys = (r.get("storeys") or {}).get("value")
        facades = r.get("facades") or {}
        wwrs = [f["wwr"] for f in facades.values() if f.get("wwr") is not None]
        facts: dict[str, float | None] = {
            "storeys": storeys,
            "shape": r["shape"]["value"],
            "floor_area": r.get("floor_area"),
            "wwr": max(wwrs) if wwrs else None,
        }
        values: dict[str, tuple[float | None, str | None, dict[str, Any]]] = {
            "shape_coefficient": (r["shape"]["value"], r["shape"].get("why"), {})
        }
        if r["scope"] == "model":
            for s in SECTORS:
                f = facades.get(s) or {}
                if (f.get("facade_area_m2") or 0.0) >= MIN_FACADE_M2:
                    values[f"wwr_{s}"] = (f["wwr"], None, f)
            sky = r.get("skylight") or {}
            if sky.get("window_area_m2"):
                values["skylight_ratio"] = (sky.get("ratio"), None, sky)
            for key, u in (r.get("u_values") or {}).items():
                values[f"k_{key}"] = (u.get("value"), u.get("why"), u)
        out = []
        for check, (value, why, evidence) in values.items():
            out.append(self._check(check, value, why, evidence, zone, btype, facts))
        return out

    def _check(
        self,
        check: str,
        value: float | None,
        why: str | None,
        evidence: dict[str, Any],
        zone: str | None,
        btype: dict[str, Any],
        facts: dict[str, float | None],
    ) -> dict[str, Any]:
        rows = [
            x
            for x in self.limits.for_check(check)
            if zone is not None and x.applies(zone, btype["type"], facts)
        ]
        row: dict[str, Any] = {"check": check, "value": value, "limit": None, "evidence": evidence}
        if value is None:
            return {**row, "status": "unknown", "why": why or "not measured"}
        if zone is None:
            return {**row, "status": "unknown", "why": "climate zone unknown"}
        if not rows:
            return {
                **row,
                "status": "unknown",
                "why": f"no limit in {self.limits.path.name} for {check} in zone {zone}, "
                f"{btype['type']} buildings with these facts",
            }
        limit = min(rows, key=lambda x: x.max)
        row.update(limit=limit.max, rule=limit.as_json(), clause=limit.clause)
        if value <= limit.max + 1e-9:
            return {**row, "status": "pass"}
        if not limit.verified:
            return {**row, "status": "advisory", "why": f"over {limit.max:g}, a limit not "
                    "verified against the code's text (advisory only)"}  # fmt: skip
        if btype["assumed"]:
            return {**row, "status": "advisory", "why": f"over {limit.max:g}; the building's "
                    f"type was assumed ({btype['from']})"}  # fmt: skip
        return {**row, "status": "fail", "why": f"over {limit.max:g}"}

    # -- the city -----------------------------------------------------------------------
    def rollup(self, store: Store, rows: list[dict[str, Any]]) -> Outcome | None:
        """Share of buildings passing, by scope and status, and the candidates for retrofit:
        buildings over a limit, the furthest over first."""
        by_status: dict[str, int] = defaultdict(int)
        by_scope: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        candidates = []
        for r in rows:
            s = r["summary"]
            status = s.get("energy_status", "unknown")
            by_status[status] += 1
            by_scope[s.get("scope", "?")][status] += 1
            if status in ("fail", "advisory"):
                over = [
                    c
                    for c in r["result"].get("checks", [])
                    if c["status"] in ("fail", "advisory") and c.get("limit")
                ]
                worst = max(over, key=lambda c: c["value"] / c["limit"]) if over else None
                candidates.append(
                    {
                        "building_id": r["building_id"],
                        "name": s.get("name"),
                        "status": status,
                        "scope": s.get("scope"),
                        "worst_check": worst["check"] if worst else None,
                        "over_by": round(worst["value"] / worst["limit"] - 1, 4) if worst else None,
                    }
                )
        candidates.sort(key=lambda c: -(c["over_by"] or 0))
        total = len(rows)
        known = total - by_status.get("unknown", 0)
        passing = by_status.get("pass", 0)
        result = {
            "indicator": "share of buildings passing the envelope checks (GB 55015-2021)",
            "buildings": total,
            "by_status": dict(sorted(by_status.items())),
            "by_scope": {k: dict(sorted(v.items())) for k, v in sorted(by_scope.items())},
            "share_passing": round(passing / total, 4) if total else None,
            "share_passing_of_known": round(passing / known, 4) if known else None,
            "retrofit_candidates": candidates[:100],
        }
        summary = {"share_passing": result["share_passing"], "buildings": total}
        return Outcome(summary=summary, result=result)


# ---- helpers ---------------------------------------------------------------------------


def store_zone(store: Store) -> str | None:
    try:
        return store.meta(ZONE_META)
    except KeyError:
        return None


def set_store_zone(store: Store, zone: str | None, limits: Limits) -> None:
    """Fixes the store's climate zone (None: back to the nearest city). Call in a transaction."""
    if zone is None:
        store.con.execute("DELETE FROM meta WHERE key = ?", [ZONE_META])
        return
    if zone not in limits.zones:
        raise UsageError(
            f"unknown climate zone {zone!r}: {limits.path.name} knows "
            + ", ".join(sorted(limits.zones))
        )
    store.set_meta(ZONE_META, zone)


def _zone_name(limits: Limits, zone: str) -> dict[str, Any]:
    known = limits.zones.get(zone, {})
    return {"zone_zh": known.get("name_zh"), "hdd18_range": known.get("hdd18")}


def _lonlat(store: Store, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    from pyproj import Transformer

    if not points:
        return []
    t = Transformer.from_crs(store.crs, "EPSG:4326", always_xy=True)
    xs, ys = t.transform([p[0] for p in points], [p[1] for p in points])
    return [(float(x), float(y)) for x, y in zip(np.atleast_1d(xs), np.atleast_1d(ys), strict=True)]


def _grid_north(store: Store, centre: tuple[float, float]) -> float:
    """The true azimuth (degrees) of the project CRS's +y at a point: its meridian
    convergence, so that facades face true, not grid, north."""
    from pyproj import Geod, Transformer

    t = Transformer.from_crs(store.crs, "EPSG:4326", always_xy=True)
    x, y = centre
    lon1, lat1 = t.transform(x, y)
    lon2, lat2 = t.transform(x, y + 100.0)
    az, _, _ = Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    return float(az)


def _relations(store: Store, source_id: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    rows = store.con.execute(
        "SELECT kind, relating_guid, related_guid FROM element_relations "
        "WHERE source_id = ? AND kind IN ('fills', 'voids')",
        [source_id],
    ).fetchall()
    fills = {b: a for k, a, b in rows if k == "fills"}  # window -> opening
    voids = [(a, b) for k, a, b in rows if k == "voids"]  # (wall, opening)
    return fills, voids


def _pieces_by_element(env: Envelope) -> dict[int, tuple[np.ndarray, float]]:
    """Element id -> (area-weighted outward normal, area) of its outside surface facing the
    way most of it faces (a window's or opening's outer face, not its sills)."""
    out: dict[int, tuple[np.ndarray, float]] = {}
    for eid, m in groups(env.element).items():
        normals, areas = env.normal[m], env.area[m]
        # the dominant direction: the biggest area among pieces facing within 30 degrees
        main = normals[np.argmax(areas)]
        same = normals @ main > math.cos(math.radians(30))
        n = (normals[same] * areas[same, None]).sum(axis=0)
        length = float(np.linalg.norm(n))
        if length == 0:
            continue
        out[int(eid)] = (n / length, float(areas[same].sum()))
    return out


def _facades(env: Envelope, grid_north: float, facade_ids: set[int]) -> dict[str, float]:
    """Gross facade area per orientation: the outside wall faces of walls, curtain walls,
    columns, floor slabs' edges and the openings, windows and doors in them (not the edges
    of roofs: fascias)."""
    facade = np.isin(env.element, list(facade_ids))
    walls = (env.kinds() == "wall") & facade
    side = sectors(azimuths(env.normal[walls], grid_north))
    return {s: float(env.area[walls][side == s].sum()) for s in SECTORS if (side == s).any()}


def _wwr(facades: dict[str, float], glazing: dict[str, float]) -> dict[str, dict[str, Any]]:
    out = {}
    for s in SECTORS:
        wall = facades.get(s, 0.0)
        glass = glazing.get(s, 0.0)
        out[s] = {
            "facade_area_m2": round(wall, 2),
            "window_area_m2": round(glass, 3),
            "wwr": round(glass / wall, 4) if wall > 0 else None,
        }
    return out


@dataclass
class _Model:
    """What a modelled building's measurement reads from the store."""

    elements: list[Element]
    meshes: list[Any]  # ElementMesh
    fills: dict[str, str]
    grid_north: float
    placement: dict[str, Any]


def _envelope(item: tuple[list[Any], float | None]) -> Envelope | None:
    """A worker's part (module level, for the executor): the envelope of a model's meshes."""
    meshes, ground_z = item
    measured = measure_envelope(meshes, ground_z)
    return None if measured is None else measured.envelope_only()


def _unmeasured(why: str) -> dict[str, Any]:
    return {"shape": {"value": None, "why": why}, "facades": {}, "u_values": {}}


def _measure_block(i: dict[str, Any]) -> dict[str, Any]:
    """A footprint with a height: the shape coefficient of its block (walls and roof over
    footprint area x height), storeys from the data or the height at 3 m a storey."""
    area, perimeter, height = i["footprint_area"], i["perimeter"], i["height"]
    storeys = i["storeys"]
    source = "data"
    if storeys is None and height:
        storeys, source = max(1, round(height / 3.0)), "height / 3 m"
    out: dict[str, Any] = {
        "storeys": {"value": storeys, "source": source if storeys is not None else None},
        "floor_area": i["floor_area"] or (area * storeys if area and storeys else None),
    }
    if not height or not area:
        out["shape"] = {"value": None, "why": "no height or no footprint area"}
        return out
    external = perimeter * height + area
    volume = area * height
    out["shape"] = {
        "value": round(external / volume, 4),
        "external_area_m2": round(external, 2),
        "volume_m3": round(volume, 2),
        "method": "footprint perimeter x height + footprint area (roof), over area x height",
    }
    return out
