"""The city health check (城市体检): the plan's 2025 indicators computed from the store.

Subjects are the built-up areas: each feature of the ``boundary`` role (``boundary:<id>``),
or, when the store has no boundary, one ``builtup`` area, the convex hull of the buildings
(the result says so). Each is measured (``indicator_measures``) and judged against the
targets file (``schemas/standards/tongliao-2025-targets.json``, or a city's own with
``--targets``): value, target, status (met / not_met / no_data), evidence and the buildings a
map shows.

A subject's fingerprint covers what it reads: the sha256 of every source with a building or a
feature within reach of the boundary (its box grown by the longest walking or park distance),
where the buildings there stand and how they are linked (a model placed anew), the targets file,
and the fingerprints of the prefab and PV results of the buildings there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from cim.analyze import indicator_measures as m
from cim.analyze.base import Outcome, Subject, Work, computed_inline, fingerprint
from cim.analyze.standards import STANDARDS, RulesFile, read_checked_json
from cim.errors import NotFound
from cim.model.analyses import stored
from cim.model.buildings import Buildings, canonical_buildings
from cim.model.features import FEATURE_ROLES, features

if TYPE_CHECKING:
    from cim.store import Store

NAME = "indicators"
#: bump when a measure changes: every result goes stale
VERSION = 1
DEFAULT_TARGETS = "tongliao-2025-targets"
SCHEMA = STANDARDS / "targets.schema.json"
GIS_ATTRIBUTES = STANDARDS.parent / "gis_attributes.json"
FLAGS = ("ultra_low_energy", "energy_retrofit")
#: why an indicator has no value, when its measure found nothing to measure
NO_DATA = {
    "road_density": "the built-up area has no area",
    "prefab_share": "no new building scored by the prefab analyzer (run `cim analyze prefab`)",
    "green_star_share": "no new building with a known green star rating",
    "ultra_low_energy_area": "no building carries an ultra-low-energy attribute",
    "retrofit_area": "no building carries an energy-retrofit attribute",
    "pv_renewable_share": "no building with a PV result (`cim analyze pv`) and a floor area",
    "low_rise_share": "no new home with a number of floors and a floor area",
    "permeable_share": "the built-up area has no area",
}
#: the analyzers whose stored results the indicators read
READS = ("prefab", "pv")


class Targets(RulesFile):
    def reach(self) -> float:
        """The longest distance a measure looks beyond the boundary (m)."""
        walks = [float(t["distance_m"]) for t in self.doc["facilities"]["types"]]
        parks = [float(c["distance_m"]) for c in self.doc["parks"]["size_classes"]]
        return max([*walks, *parks])


def load_targets(ref: str | Path | None = None) -> Targets:
    """A targets file by id (``schemas/standards/<id>.json``) or path, checked against
    ``schemas/standards/targets.schema.json``."""
    path = Path(ref or DEFAULT_TARGETS)
    if not path.suffix:
        path = STANDARDS / f"{path}.json"
    doc, digest = read_checked_json(path, SCHEMA, "health check targets")
    return Targets(path=path, doc=doc, sha256=digest)


def _flag_names() -> dict[str, list[str]]:
    attrs = json.loads(GIS_ATTRIBUTES.read_text(encoding="utf-8"))["attributes"]
    return {f: list(attrs.get(f, [f])) for f in FLAGS}


def judge(value: float | None, target: dict[str, Any]) -> str:
    if value is None:
        return "no_data"
    t = float(target["value"])
    ok = {
        ">=": value >= t,
        "<=": value <= t,
        ">": value > t,
        "<": value < t,
    }[target["comparison"]]
    return "met" if ok else "not_met"


@dataclass
class IndicatorsAnalyzer:
    targets: Targets = field(default_factory=load_targets)
    name: str = NAME
    _buildings: Buildings | None = None

    def rules_label(self) -> str:
        return f"{self.targets.label} ({self.targets.path.name})"

    # -- subjects --------------------------------------------------------------------------
    def subjects(self, store: Store, building: int | None = None) -> list[Subject]:
        """The boundaries (``building`` picks one by its feature id) or the built-up area."""
        areas = self._areas(store)
        if building is not None:
            areas = [x for x in areas if x[0] == f"boundary:{building}"]
            if not areas:
                raise NotFound(
                    f"boundary {building}: no such feature of the boundary role "
                    "(`cim analyze indicators` without --boundary lists them)"
                )
        out = []
        for key, source_id, geom, label, origin in areas:
            out.append(
                Subject(
                    key=key,
                    building_id=None,
                    source_id=source_id,
                    fingerprint=self._fingerprint(store, geom),
                    label=label,
                    inputs={"geometry": geom, "origin": origin},
                )
            )
        return out

    def _areas(self, store: Store) -> list[tuple[str, int | None, Any, str, str]]:
        found: list[tuple[str, int | None, Any, str, str]] = [
            (
                f"boundary:{f.id}",
                f.source_id,
                shapely.make_valid(f.geometry),
                f.name or f"boundary {f.id}",
                "boundary layer",
            )
            for f in features(store, "boundary")
            if f.geometry.geom_type.endswith("Polygon")
        ]
        if found:
            return found
        b = self._all_buildings(store)
        if len(b) < 3:
            return []
        hull = shapely.convex_hull(shapely.union_all(b.footprints))
        return [("builtup", None, hull, "built-up area", "convex hull of the buildings")]

    def _all_buildings(self, store: Store) -> Buildings:
        if self._buildings is None:
            self._buildings = canonical_buildings(store)
        return self._buildings

    def _fingerprint(self, store: Store, geom: Any) -> str:
        x0, y0, x1, y1 = shapely.bounds(shapely.buffer(geom, self.targets.reach()))
        box = [x0, x1, y0, y1]
        sources = store.con.execute(
            "SELECT DISTINCT s.sha256 FROM sources s WHERE s.status = 'ingested' AND ("
            " s.id IN (SELECT source_id FROM buildings WHERE xmax >= ? AND xmin <= ? "
            "  AND ymax >= ? AND ymin <= ?)"
            " OR s.id IN (SELECT source_id FROM features WHERE xmax >= ? AND xmin <= ? "
            "  AND ymax >= ? AND ymin <= ?)) ORDER BY 1",
            [*box, *box],
        ).fetchall()
        results = store.con.execute(
            "SELECT a.analyzer, a.subject, a.fingerprint FROM analyses a "
            "JOIN buildings b ON b.id = a.building_id WHERE a.analyzer IN ('prefab', 'pv') "
            "AND b.xmax >= ? AND b.xmin <= ? AND b.ymax >= ? AND b.ymin <= ? ORDER BY 1, 2",
            box,
        ).fetchall()
        # where the buildings stand and how they are linked: a model placed anew, or linked to
        # a footprint, changes what is measured without a new source
        placed = store.con.execute(
            "SELECT md5(string_agg(concat_ws(',', id, same_as, round(xmin, 2), round(ymin, 2), "
            "round(xmax, 2), round(ymax, 2)), ';' ORDER BY id)) FROM buildings "
            "WHERE xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?",
            box,
        ).fetchone()
        return fingerprint(
            [s[0] for s in sources],
            [list(r) for r in results],
            placed[0] if placed else None,
            shapely.to_wkb(geom).hex(),
            self.targets.sha256,
            _flag_names(),
            VERSION,
        )

    # -- compute ---------------------------------------------------------------------------
    def compute(self, store: Store, subject: Subject) -> Outcome:
        return computed_inline(self.plan(store, subject))

    def plan(self, store: Store, subject: Subject) -> Work:
        """The area's buildings, features and stored results from the store, here; the
        measures (centrelines, the walking network) as work for the executor."""
        area = self._area(store, subject.inputs["geometry"])
        return Work(measure, area, lambda found: self._finish(subject, area, found))

    def _finish(self, subject: Subject, area: m.Area, found: dict[str, m.Found]) -> Outcome:
        rows = [_row(spec, found[spec["id"]]) for spec in self.targets.doc["indicators"]]
        counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("met", "not_met")}
        counts["no_data"] = len(rows) - counts["met"] - counts["not_met"]
        doc = self.targets.doc
        result = {
            "subject": subject.key,
            "boundary": {
                "key": subject.key,
                "name": subject.label,
                "origin": subject.inputs["origin"],
                "area_km2": round(area.area_m2 / 1e6, 6),
                "buildings": len(area.buildings),
                "residential": int(area.residential().sum()),
                "note": (
                    "no boundary layer in the store: the built-up area is the convex hull of "
                    "the buildings"
                    if subject.key == "builtup"
                    else None
                ),
            },
            "targets": {
                "id": doc["id"],
                "title": doc["title"],
                "file": self.targets.path.name,
                "version": doc["file_version"],
                "source": doc["source"],
                "sha256": self.targets.sha256,
            },
            "counts": counts,
            "indicators": rows,
        }
        summary = {"name": subject.label, **counts}
        return Outcome(summary=summary, result=result)

    def _area(self, store: Store, geom: Any) -> m.Area:
        b = self._all_buildings(store)
        inside = (
            shapely.covers(geom, shapely.point_on_surface(b.footprints))
            if len(b)
            else np.zeros(0, dtype=bool)
        )
        mine = b.subset(np.flatnonzero(inside))
        box = tuple(float(v) for v in shapely.bounds(shapely.buffer(geom, self.targets.reach())))
        present = {
            role: bool(
                store.con.execute(
                    "SELECT count(*) FROM features WHERE role = ?", [role]
                ).fetchone()[0]  # type: ignore[index]
            )
            for role in FEATURE_ROLES
        }
        ids = [int(i) for i in mine.ids]
        rows = store.con.execute(
            "SELECT id, attributes FROM buildings WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [ids],
        ).fetchall()
        bbox = (box[0], box[1], box[2], box[3])
        return m.Area(
            geometry=geom,
            targets=self.targets.doc,
            buildings=mine,
            roads=features(store, "roads", bbox),
            landcover=features(store, "landcover", bbox),
            parks=features(store, "parks", bbox),
            pois=features(store, "pois", bbox),
            has_role=present,
            prefab=_summaries(store, "prefab"),
            pv=_summaries(store, "pv"),
            attributes={int(i): json.loads(a) if a else {} for i, a in rows},
            flag_names=_flag_names(),
        )

    def rollup(self, store: Store, rows: list[dict[str, Any]]) -> Outcome | None:
        return None


def measure(area: m.Area) -> dict[str, m.Found]:
    """A worker's part (module level, for the executor): every indicator of one area."""
    found = {
        "road_density": m.road_density(area),
        "permeable_share": m.permeable_share(area),
        "park_coverage": m.park_coverage(area),
        "life_circle": m.life_circle(area),
        "prefab_share": m.prefab_share(area),
        "green_star_share": m.green_share(area),
        "ultra_low_energy_area": m.flagged_area(area, "ultra_low_energy"),
        "retrofit_area": m.flagged_area(area, "energy_retrofit"),
        "pv_renewable_share": m.pv_share(area),
    }
    found["homes_over_18_floors"], found["low_rise_share"] = m.heights(area)
    return found


def _summaries(store: Store, analyzer: str) -> dict[int, dict[str, Any]]:
    return {
        int(r["building_id"]): r["summary"]
        for r in stored(store, analyzer).values()
        if r["building_id"] is not None
    }


def _row(spec: dict[str, Any], found: m.Found) -> dict[str, Any]:
    status = judge(found.value, spec["target"])
    if found.no_data is not None:
        status = "no_data"
    value = found.value
    return {
        "id": spec["id"],
        "name_zh": spec["name_zh"],
        "name_en": spec["name_en"],
        "unit": spec["unit"],
        "value": None if value is None else round(float(value), 6),
        "target": spec["target"],
        "status": status,
        "why_no_data": found.no_data
        or (None if value is not None else NO_DATA.get(spec["id"], "nothing to measure")),
        "evidence": found.evidence,
        "method": [spec["computed"], *found.method],
        "map": {"layers": found.layers},
        "definition": spec["definition"],
        "source": spec["source"],
        "verified": spec["verified"],
    }
