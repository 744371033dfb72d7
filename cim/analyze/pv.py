"""Rooftop PV potential of every building: usable roof area, kWp and yearly kWh, with shading
from the city.

Roof facets come from IFC models (their upward faces that see the sky) or from LoD1 footprints
(a flat roof at the building's height) (``roofs``); the usable part of each follows the rules
in ``schemas/standards/pv-rules.json``. The sky is an hourly year at the site (``solar``:
pvlib's clear sky scaled to the site's monthly climate, or a TMY/EPW file), turned into
plane-of-array light (Perez) for each facet; rays from sample points toward the sun against the
buildings around (``shading``) take away the direct light of the hours it is blocked; PVWatts
turns what is left into AC energy.

The terrain shades too: where LiDAR gave the store a DTM, its surface within the shading radius
(resampled to ``terrain_cell_m``) joins the triangles the rays are cast against, so a hill to
the south takes its hours of sun (a mountain beyond the radius does not).

A building's fingerprint covers what it reads: its own geometry (source sha256, placement,
footprint, heights), the geometry of every building within the shading radius, the LiDAR
sources whose terrain lies within it, the rules file and the weather. A new building next door
makes it stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from numpy.typing import NDArray

from cim.analyze.base import Outcome, Subject, Work, computed_inline, fingerprint
from cim.analyze.roofs import (
    MIN_PLANE_POINTS,
    Facet,
    apply_rules,
    element_obstacles,
    flat_roof,
    point_facets,
    triangle_facets,
)
from cim.analyze.shading import Rays, SunBins, cast_rays, extrude, intersector, ray_engine
from cim.analyze.solar import FacetSky, Weather, pvwatts_yield, site_weather, weather_file
from cim.analyze.standards import RulesFile
from cim.errors import InputFileError, NotFound
from cim.model.buildings import Buildings, canonical_buildings
from cim.model.meshes import element_meshes
from cim.model.points import BUILDING, points_in_polygon
from cim.model.terrain import Dtm, dtms_over, ground_at

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)

NAME = "pv"
#: bump when the way facets, light or yield are computed changes: every result goes stale
VERSION = 3  # 2: facets keep their usable outline; 3: IFC elements on a roof are obstacles
RULES_FILE = Path(__file__).resolve().parents[2] / "schemas" / "standards" / "pv-rules.json"
ROOF_CLASSES = ("IfcRoof",)
#: roof triangles are cut to edges of about this length (m) before the sky check
SKY_CHECK_EDGE = 1.0
#: a roof triangle sees the sky when nothing of its model is above this height over it (m)
SKY_CHECK_LIFT = 0.5

F64 = NDArray[np.float64]


class PvRules(RulesFile):
    def rule(self, rule_id: str) -> dict[str, Any]:
        for r in self.doc["usable"]:
            if r["id"] == rule_id:
                out: dict[str, Any] = r
                return out
        raise KeyError(rule_id)


def load_rules(path: Path = RULES_FILE) -> PvRules:
    try:
        raw = path.read_bytes()
        doc = json.loads(raw)
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: no such PV rules file") from err
    except ValueError as err:
        raise InputFileError(f"{path} is not a JSON PV rules file: {err}") from err
    for key in ("id", "file_version", "usable", "system", "shading", "pv_ready"):
        if key not in doc:
            raise InputFileError(f"{path}: a PV rules file needs '{key}' (see {RULES_FILE.name})")
    return PvRules(path=path, doc=doc, sha256=hashlib.sha256(raw).hexdigest())


@dataclass
class _City:
    """What one run reads once: the canonical buildings, who shades whom, their triangles."""

    buildings: Buildings
    index: dict[int, int]  # building id -> position
    neighbours: list[list[int]]  # positions within the shading radius (not itself)
    digests: list[str]  # each building's geometry digest
    ifc_ids: set[int]
    has_roof: list[bool]  # an IFC model or a known height
    lidar: list[list[str]]  # the sha256 of the LiDAR sources whose files meet the footprint
    dtms: list[Dtm]  # the store's terrain models
    dtm_shas: list[str]  # the sha256 of each one's LiDAR source
    terrain: list[list[int]]  # per building: the DTMs (positions) within its shading radius
    geometry: dict[int, tuple[F64, NDArray[np.int64]]] = field(default_factory=dict)


@dataclass
class PvAnalyzer:
    rules: PvRules = field(default_factory=load_rules)
    weather_path: Path | None = None
    module_w_per_m2: float | None = None  # overrides the rules file's
    system_losses_pct: float | None = None
    engine: str | None = None  # 'embree' | 'numpy' (default: embree when installed)
    name: str = NAME
    _city: _City | None = None
    _weather: Weather | None = None
    _sky: FacetSky | None = None
    _bins: SunBins | None = None
    rays: int = 0
    ray_seconds: float = 0.0

    # -- the protocol --------------------------------------------------------------------
    def rules_label(self) -> str:
        w = self.weather_path.name if self.weather_path else "site climate"
        return f"{self.rules.label}; weather: {w}; PVWatts"

    def system(self) -> dict[str, Any]:
        s = dict(self.rules.doc["system"])
        if self.module_w_per_m2 is not None:
            s["module_w_per_m2"] = self.module_w_per_m2
        if self.system_losses_pct is not None:
            s["system_losses_pct"] = self.system_losses_pct
        return s

    def subjects(self, store: Store, building: int | None = None) -> list[Subject]:
        city = self._read_city(store)
        b = city.buildings
        settings = fingerprint(self.rules.sha256, self.system(), self._weather_digest(), VERSION)
        out = []
        for i, bid in enumerate(b.ids):
            if building is not None and int(bid) != building:
                continue
            if not city.has_roof[i]:
                continue
            near = sorted(city.digests[j] for j in city.neighbours[i])
            ground = sorted(city.dtm_shas[k] for k in city.terrain[i])
            out.append(
                Subject(
                    key=f"building:{int(bid)}",
                    building_id=int(bid),
                    source_id=int(b.source_ids[i]),
                    fingerprint=fingerprint(city.digests[i], near, ground, settings),
                    label=str(b.columns["name"][i] or f"building {int(bid)}"),
                    inputs={"position": i},
                )
            )
        if building is not None and not out:
            raise NotFound(
                f"building {building} has no roof to analyse (not in the store, no footprint, "
                "or neither a height nor an IFC model)"
            )
        return out

    def compute(self, store: Store, subject: Subject) -> Outcome:
        return computed_inline(self.plan(store, subject))

    def plan(self, store: Store, subject: Subject) -> Outcome | Work:
        """The facets and the geometry around them from the store, here; the shading rays
        (the heavy part) as work for the executor; the yield of each facet when they are
        back."""
        city = self._read_city(store)
        i = int(subject.inputs["position"])
        b = city.buildings
        bid = int(b.ids[i])
        system = self.system()
        facets, why_none = self._facets(store, city, i)
        apply_rules(facets, self.rules.doc["usable"])
        usable = [f for f in facets if f.usable is not None]
        sky, weather, bins = self._sky_now(store)
        rays = self._rays(store, city, i, usable, bins)

        def finish(cast: tuple[list[F64], list[float], int, float]) -> Outcome:
            lit, views, count, seconds = cast
            self.rays += count
            self.ray_seconds += seconds
            for f, p, view in zip(usable, rays.points, views, strict=True):
                f.sample_count = len(p)
                f.sky_view = view
            lit_of = {id(f): frac for f, frac in zip(usable, lit, strict=True)}
            rows = []
            for k, f in enumerate(facets):
                row = _facet_row(k, f, self.rules)
                if f.usable is not None:
                    row.update(_facet_yield(f, lit_of[id(f)], sky, weather, bins, system))
                rows.append(row)
            return _outcome(b, i, bid, rows, why_none, system, self.rules, weather)

        if not usable:
            return finish(([], [], 0, 0.0))
        return Work(cast_rays, rays, finish)

    def rollup(self, store: Store, rows: list[dict[str, Any]]) -> Outcome | None:
        if not rows:
            return None
        s = [r["summary"] for r in rows]
        kwp = sum(x.get("pv_kwp") or 0.0 for x in s)
        kwh = sum(x.get("pv_kwh") or 0.0 for x in s)
        area = sum(x.get("pv_usable_m2") or 0.0 for x in s)
        roof = sum(x.get("roof_area_m2") or 0.0 for x in s)
        new = [x for x in s if x.get("new_building")]
        city = self.rules.doc.get("city", {})
        result = {
            "indicator": "rooftop PV potential",
            "buildings": len(s),
            "buildings_with_roof": sum(1 for x in s if (x.get("roof_area_m2") or 0) > 0),
            "pv_ready": sum(1 for x in s if x.get("pv_ready")),
            "new_buildings": len(new),
            "new_pv_ready": sum(1 for x in new if x.get("pv_ready")),
            "roof_area_m2": round(roof, 1),
            "usable_area_m2": round(area, 1),
            "kwp": round(kwp, 1),
            "mwh_per_year": round(kwh / 1000.0, 1),
            "kwh_per_kwp": round(kwh / kwp, 1) if kwp > 0 else None,
            "renewable_share_target": city.get("renewable_share_target"),
            "note": city.get("note"),
        }
        summary = {"pv_kwp": result["kwp"], "pv_mwh": result["mwh_per_year"]}
        return Outcome(summary=summary, result=result)

    # -- the city, once a run ------------------------------------------------------------
    def _read_city(self, store: Store) -> _City:
        if self._city is not None:
            return self._city
        b = canonical_buildings(store)
        radius = float(self.rules.doc["shading"]["radius_m"])
        # neighbours by their boxes: a footprint's box within the radius of this one's box
        # (a little more than the exact distance, and far cheaper to find for a whole city)
        tree = shapely.STRtree(b.footprints)
        grown = b.bounds() + np.array([-radius, -radius, radius, radius])
        pairs = (
            tree.query(shapely.box(grown[:, 0], grown[:, 1], grown[:, 2], grown[:, 3]))
            if len(b)
            else np.empty((2, 0), dtype=np.int64)
        )
        pairs = pairs[:, pairs[0] != pairs[1]]
        pairs = pairs[:, np.lexsort((pairs[1], pairs[0]))]
        cuts = np.searchsorted(pairs[0], np.arange(1, len(b)))
        neighbours = [part.tolist() for part in np.split(pairs[1], cuts)] if len(b) else []
        placed = dict(
            store.con.execute("SELECT source_id, matrix FROM placements").fetchall() or []
        )
        shas = dict(store.con.execute("SELECT id, sha256 FROM sources").fetchall() or [])
        with_meshes = {
            int(r[0])
            for r in store.con.execute(
                "SELECT DISTINCT e.building_id FROM elements e JOIN meshes m "
                "ON m.owner = 'element' AND m.owner_id = e.id WHERE e.building_id IS NOT NULL"
            ).fetchall()
        }
        files = store.con.execute(
            "SELECT s.sha256, f.xmin, f.ymin, f.xmax, f.ymax FROM point_files f "
            "JOIN sources s ON s.id = f.source_id WHERE s.status = 'ingested'"
        ).fetchall()
        bounds = b.bounds() if len(b) else np.empty((0, 4))
        lidar: list[list[str]] = [[] for _ in range(len(b))]
        for sha, x0, y0, x1, y1 in files:
            if x0 is None:
                continue
            xs = (bounds[:, 2] >= x0) & (bounds[:, 0] <= x1)
            meet = xs & (bounds[:, 3] >= y0) & (bounds[:, 1] <= y1)
            for k in np.flatnonzero(meet):
                if sha not in lidar[k]:
                    lidar[k].append(sha)
        digests, ifc_ids = [], set()
        for i, bid in enumerate(b.ids):
            sid = int(b.source_ids[i])
            is_ifc = b.source_kinds[i] == "ifc" and int(bid) in with_meshes
            if is_ifc:
                ifc_ids.add(int(bid))
            digests.append(
                fingerprint(
                    shas.get(sid),
                    list(placed[sid]) if is_ifc and sid in placed else None,
                    hashlib.sha256(shapely.to_wkb(b.footprints[i])).hexdigest()[:16],
                    round(float(b.ground_z[i]), 2),
                    None if not np.isfinite(b.height[i]) else round(float(b.height[i]), 2),
                    sorted(lidar[i]),
                )
            )
        dtms = list(dtms_over(store))
        terrain: list[list[int]] = [[] for _ in range(len(b))]
        for m, d in enumerate(dtms):
            x0, y0 = d.origin_x, d.origin_y
            x1, y1 = x0 + d.nx * d.resolution, y0 + d.ny * d.resolution
            meet = (grown[:, 2] >= x0) & (grown[:, 0] <= x1)
            meet &= (grown[:, 3] >= y0) & (grown[:, 1] <= y1)
            for j in np.flatnonzero(meet):
                terrain[int(j)].append(m)
        index = {int(x): k for k, x in enumerate(b.ids)}
        has_roof = [
            int(bid) in ifc_ids or bool(np.isfinite(b.height[k]) and b.height[k] > 0)
            for k, bid in enumerate(b.ids)
        ]
        dtm_shas = [str(shas.get(d.source_id)) for d in dtms]
        self._city = _City(
            b, index, neighbours, digests, ifc_ids, has_roof, lidar, dtms, dtm_shas, terrain
        )
        return self._city

    def _weather_digest(self) -> str | None:
        if self.weather_path is None:
            return None
        try:
            return hashlib.sha256(self.weather_path.read_bytes()).hexdigest()
        except OSError as err:
            raise InputFileError(f"{self.weather_path}: cannot read the weather file") from err

    def _sky_now(self, store: Store) -> tuple[FacetSky, Weather, SunBins]:
        if self._sky is None or self._weather is None or self._bins is None:
            if self.weather_path is not None:
                weather = weather_file(self.weather_path)
            else:
                lon, lat, alt = site_of(store, self._read_city(store).buildings)
                weather = site_weather(lat, lon, alt, self.rules.doc.get("climate"))
            sh = self.rules.doc["shading"]
            self._weather = weather
            self._sky = FacetSky(
                weather, self.system().get("transposition", "perez"), self.system()["albedo"]
            )
            self._bins = SunBins.of(
                weather.sun_vectors(),
                weather.sun_up,
                float(sh["azimuth_bin_deg"]),
                float(sh["elevation_bin_deg"]),
            )
        return self._sky, self._weather, self._bins

    # -- facets and shadows ---------------------------------------------------------------
    def _facets(self, store: Store, city: _City, i: int) -> tuple[list[Facet], str | None]:
        b = city.buildings
        bid = int(b.ids[i])
        if bid in city.ifc_ids:
            facets = ifc_roof_facets(store, bid)
            if facets:
                return facets, None
        if city.lidar[i]:
            table = points_in_polygon(store, b.footprints[i], classes=[BUILDING])
            if table.num_rows >= MIN_PLANE_POINTS:
                xyz = np.column_stack(
                    [table.column(c).to_numpy().astype(np.float64) for c in ("x", "y", "z")]
                )
                facets = point_facets(xyz, b.footprints[i])
                if facets:
                    return facets, None
        h = float(b.height[i])
        if not np.isfinite(h) or h <= 0:
            return [], "height unknown: no roof to place panels on"
        return [flat_roof(b.footprints[i], float(b.ground_z[i]) + h)], None

    def _geometry(self, store: Store, city: _City, j: int) -> tuple[F64, NDArray[np.int64]]:
        b = city.buildings
        bid = int(b.ids[j])
        hit = city.geometry.get(bid)
        if hit is not None:
            return hit
        if bid in city.ifc_ids:
            v, f, _, _ = building_triangles(store, bid)
            geom = (v, f)
        elif np.isfinite(b.height[j]) and b.height[j] > 0:
            g = float(b.ground_z[j])
            geom = extrude(b.footprints[j], g, g + float(b.height[j]))
        else:
            geom = (np.empty((0, 3)), np.empty((0, 3), dtype=np.int64))
        city.geometry[bid] = geom
        return geom

    def _rays(self, store: Store, city: _City, i: int, facets: list[Facet], bins: SunBins) -> Rays:
        """What shading a building's facets needs: the triangles around them, their sample
        points and normals."""
        sh = self.rules.doc["shading"]
        verts: list[F64] = []
        faces: list[NDArray[np.int64]] = []
        n = 0
        # a building's own IFC meshes shade its roof (parapets, the other roof half); its own
        # LoD1 block would only hide facets found below its top (LiDAR), so it is left out
        own = [i] if facets and int(city.buildings.ids[i]) in city.ifc_ids else []
        for j in [*own, *(city.neighbours[i] if facets else [])]:
            v, tri = self._geometry(store, city, j)
            if len(tri):
                verts.append(v)
                faces.append(tri + n)
                n += len(v)
        if facets and city.terrain[i]:
            v, tri = self._ground(city, i)
            verts.append(v)
            faces.append(tri + n)
        points = [
            f.samples(int(sh["points_per_facet"]), float(sh["min_point_spacing_m"])) for f in facets
        ]
        return Rays(
            vertices=np.vstack(verts) if verts else np.empty((0, 3)),
            faces=np.vstack(faces) if faces else np.empty((0, 3), dtype=np.int64),
            points=points,
            normals=[f.normal for f in facets],
            bins=bins,
            sky_directions=int(sh.get("sky_directions", 0)),
            engine=self.engine,
        )

    def _ground(self, city: _City, i: int) -> tuple[F64, NDArray[np.int64]]:
        """The terrain within the shading radius of building ``i`` as triangles: the DTMs
        sampled on a grid of ``terrain_cell_m`` (the best measured one where they overlap),
        two triangles a cell, none where a corner has no ground."""
        sh = self.rules.doc["shading"]
        radius, cell = float(sh["radius_m"]), float(sh.get("terrain_cell_m", 4.0))
        x0, y0, x1, y1 = city.buildings.bounds()[i] + np.array([-radius, -radius, radius, radius])
        xs = np.arange(x0, x1 + cell, cell)
        ys = np.arange(y0, y1 + cell, cell)
        gx, gy = np.meshgrid(xs, ys)
        z = ground_at([city.dtms[k] for k in city.terrain[i]], gx.ravel(), gy.ravel())
        verts = np.column_stack([gx.ravel(), gy.ravel(), z])
        nx = len(xs)
        r, c = np.meshgrid(np.arange(len(ys) - 1), np.arange(nx - 1), indexing="ij")
        a = (r * nx + c).ravel()
        quads = np.column_stack([a, a + 1, a + nx + 1, a + nx])
        tris = np.vstack([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
        keep = np.isfinite(z)[tris].all(axis=1)
        return np.nan_to_num(verts), tris[keep].astype(np.int64)


def site_of(store: Store, buildings: Buildings) -> tuple[float, float, float]:
    """lon, lat (degrees) and altitude (m) of the site: the buildings' centre (else the
    project origin) from the store's CRS, and their median ground level."""
    from cim.crs import transformer

    if len(buildings):
        x0, y0, x1, y1 = shapely.total_bounds(buildings.footprints)
        x, y = (x0 + x1) / 2, (y0 + y1) / 2
        alt = float(np.nanmedian(buildings.ground_z))
    else:
        x, y = store.project_origin
        alt = 0.0
    lon, lat = transformer(store.crs, "EPSG:4326").transform(x, y)
    return float(lon), float(lat), float(min(max(alt, 0.0), 5000.0))


def building_triangles(
    store: Store, building_id: int
) -> tuple[F64, NDArray[np.int64], list[str], NDArray[np.int64]]:
    """All drawn triangles of an IFC building (project CRS), with each triangle's element."""
    verts: list[F64] = []
    faces: list[NDArray[np.int64]] = []
    owner: list[NDArray[np.int64]] = []
    names: list[str] = []
    n = 0
    for m in element_meshes(store, building_ids=[building_id]):
        if len(m.indices) == 0:
            continue
        verts.append(m.positions)
        faces.append(m.indices.astype(np.int64) + n)
        owner.append(np.full(len(m.indices), len(names), dtype=np.int64))
        names.append(m.global_id)
        n += len(m.positions)
    if not faces:
        return np.empty((0, 3)), np.empty((0, 3), np.int64), [], np.empty(0, np.int64)
    return np.vstack(verts), np.vstack(faces), names, np.concatenate(owner)


def ifc_roof_facets(store: Store, building_id: int) -> list[Facet]:
    """Facets of an IFC building: the upward faces of its roof elements (IfcRoof, IfcSlab
    ROOF, and their parts) that see the sky, else of any element that does."""
    verts, faces, names, owner = building_triangles(store, building_id)
    if len(faces) == 0:
        return []
    roof_ids = {
        r[0]
        for r in store.con.execute(
            "SELECT global_id FROM elements WHERE building_id = ? AND (ifc_class IN "
            "(SELECT unnest(?::VARCHAR[])) OR (ifc_class = 'IfcSlab' AND "
            "upper(predefined_type) = 'ROOF'))",
            [building_id, list(ROOF_CLASSES)],
        ).fetchall()
    }
    tri = verts[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(cross, axis=1)
    nz = np.divide(cross[:, 2], length, out=np.zeros(len(length)), where=length > 0)
    upward = nz > np.cos(np.radians(80.0))
    is_roof = np.array([names[o] in roof_ids for o in owner], dtype=bool)
    pick = upward & is_roof if (upward & is_roof).any() else upward
    idx = np.flatnonzero(pick)
    if len(idx) == 0:
        return []
    # large triangles are cut to about a metre, so that one covered corner (a dormer, a
    # ridge member) does not take a whole roof half with it
    from trimesh.remesh import subdivide_to_size

    sv, sf, parent = subdivide_to_size(  # type: ignore[no-untyped-call]
        verts, faces[idx], max_edge=SKY_CHECK_EDGE, max_iter=12, return_index=True
    )
    sf = np.asarray(sf, dtype=np.int64)
    s_tri = sv[sf]
    s_cross = np.cross(s_tri[:, 1] - s_tri[:, 0], s_tri[:, 2] - s_tri[:, 0])
    s_len = np.linalg.norm(s_cross, axis=1)
    ok = s_len > 1e-9
    sf, s_tri, s_cross, s_len, parent = sf[ok], s_tri[ok], s_cross[ok], s_len[ok], parent[ok]
    scene = intersector(verts, faces)
    # from half a metre up: battens, rafters and tiles lying on a roof do not hide it
    start = s_tri.mean(axis=1) + np.array([0.0, 0.0, SKY_CHECK_LIFT])
    up = np.tile([0.0, 0.0, 1.0], (len(sf), 1))
    covered = np.asarray(scene.intersects_any(start, up), dtype=bool)
    sky = ~covered
    facets = triangle_facets(sv, sf[sky], names, owner[idx][parent[sky]])
    for f in facets:  # what stands on the roof (chimneys, railings, plant) and around it
        element_obstacles(f, verts, faces, owner, names, roof_ids | set(f.elements))
    return facets


# -- rows and reports ----------------------------------------------------------------------


def _facet_row(k: int, f: Facet, rules: PvRules) -> dict[str, Any]:
    row: dict[str, Any] = {
        "facet": k,
        "source": f.source,
        "tilt_deg": round(f.tilt, 1),
        "azimuth_deg": round(f.azimuth, 1),
        "area_m2": round(f.area, 2),
        "usable_area_m2": round(f.usable_area, 2),
        "usable": f.usable is not None,
        "excluded_by": None,
        "obstacle_area_m2": 0.0 if f.obstacles is None else round(float(f.obstacles.area), 2),
        "outline": f.outline_3d(),
        "usable_outline": f.usable_3d(),
        "elements": f.elements[:20],
        "obstacle_elements": f.blockers[:20],
    }
    if f.excluded is not None:
        rule = rules.rule(f.excluded)
        row["excluded_by"] = {
            "rule": f.excluded,
            "why": rule["why"],
            "why_zh": rule.get("why_zh", rule["why"]),
            "clause": rule["clause"],
        }
    return row


def _facet_yield(
    f: Facet,
    lit_by_bin: F64,
    sky: FacetSky,
    weather: Weather,
    bins: SunBins,
    system: dict[str, Any],
) -> dict[str, Any]:
    light = sky.light(f.tilt, f.azimuth)
    lit = np.where(bins.hour_bin >= 0, lit_by_bin[np.maximum(bins.hour_bin, 0)], 0.0)
    clear = light.beam + light.diffuse
    seen = light.diffuse - light.sky * (1.0 - f.sky_view)
    shaded = light.beam * lit + seen
    per_kwp_open, poa_open = pvwatts_yield(clear, weather, system)
    per_kwp, poa = pvwatts_yield(shaded, weather, system)
    kwp = f.usable_area * float(system["module_w_per_m2"]) / 1000.0
    sun_hours = (light.beam > 0).sum()
    blocked_hours = float(((1.0 - lit) * (light.beam > 0)).sum())
    return {
        "kwp": round(kwp, 2),
        "kwh_per_year": round(kwp * per_kwp, 1),
        "kwh_per_kwp": round(per_kwp, 1),
        "kwh_per_kwp_unshaded": round(per_kwp_open, 1),
        "poa_kwh_m2": round(poa, 1),
        "poa_unshaded_kwh_m2": round(poa_open, 1),
        "beam_kwh_m2": round(float(light.beam.sum()) / 1000.0, 1),
        "diffuse_kwh_m2": round(float(light.diffuse.sum()) / 1000.0, 1),
        "diffuse_seen_kwh_m2": round(float(seen.sum()) / 1000.0, 1),
        "sky_view": round(f.sky_view, 3),
        "shading_loss": _loss(per_kwp, per_kwp_open),
        "sun_hours": int(sun_hours),
        "shaded_sun_hours": round(blocked_hours, 1),
        "sample_points": f.sample_count,
    }


def _loss(shaded: float, unshaded: float) -> float:
    """The share lost to shadows, 0..1 (rounding noise of the sums is not a gain)."""
    if unshaded <= 0:
        return 0.0
    return round(min(max(1.0 - shaded / unshaded, 0.0), 1.0), 4)


def _outcome(
    b: Buildings,
    i: int,
    bid: int,
    rows: list[dict[str, Any]],
    why_none: str | None,
    system: dict[str, Any],
    rules: PvRules,
    weather: Weather,
) -> Outcome:
    usable = [r for r in rows if r["usable"]]
    roof = sum(r["area_m2"] for r in rows)
    area = sum(r["usable_area_m2"] for r in usable)
    kwp = sum(r["kwp"] for r in usable)
    kwh = sum(r["kwh_per_year"] for r in usable)
    open_kwh = sum(r["kwp"] * r["kwh_per_kwp_unshaded"] for r in usable)
    ready = rules.doc["pv_ready"]
    specific = kwh / kwp if kwp > 0 else None
    year = b.columns["year_built"][i]
    pv_ready = bool(
        area >= float(ready["min_usable_m2"])
        and specific is not None
        and specific >= float(ready["min_specific_yield_kwh_per_kwp"])
    )
    new = year is not None and int(year) >= int(ready["new_since"])
    result = {
        "building_id": bid,
        "name": b.columns["name"][i],
        "roof_source": rows[0]["source"] if rows else None,
        "no_roof": why_none,
        "roof_area_m2": round(roof, 2),
        "usable_area_m2": round(area, 2),
        "kwp": round(kwp, 2),
        "kwh_per_year": round(kwh, 1),
        "kwh_per_kwp": None if specific is None else round(specific, 1),
        "shading_loss": _loss(kwh, open_kwh) if open_kwh > 0 else None,
        "pv_ready": pv_ready,
        "new_building": new,
        "facets": rows,
        "system": system,
        "weather": {**weather.source, "annual_ghi_kwh_m2": round(weather.annual_ghi(), 1)},
        "site": {"lat": round(weather.lat, 4), "lon": round(weather.lon, 4)},
        "rules": {
            "file": rules.path.name,
            "id": rules.doc["id"],
            "version": rules.doc["file_version"],
        },
        "ray_engine": ray_engine(),
    }
    summary = {
        "name": b.columns["name"][i],
        "roof_area_m2": round(roof, 1),
        "pv_usable_m2": round(area, 1),
        "pv_kwp": round(kwp, 2),
        "pv_kwh": round(kwh, 0),
        "pv_kwh_per_kwp": None if specific is None else round(specific, 0),
        "pv_kwh_per_m2": round(kwh / roof, 1) if roof > 0 else None,
        "pv_shading_loss": result["shading_loss"],
        "pv_ready": pv_ready,
        "new_building": new,
    }
    return Outcome(summary=summary, result=result)
