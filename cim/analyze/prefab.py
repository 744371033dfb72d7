"""The assembly rate (装配率) of each building modelled in IFC, by GB/T 51129-2017.

Reads the element rows of each IFC building (``cim/model``), classifies each element into
the table's items by IFC class, predefined type, LoadBearing, IsExternal and material, decides
whether it is prefabricated by the rules in ``schemas/standards/precast-rules.json``, measures
it (vertical members by volume, horizontal members by horizontal projected area, walls by the
area of one face with openings not deducted), and scores the building with the table
(``cim/analyze/standards.py``). What a model cannot show (full fit-out, integrated kitchens
...) comes from the designer's declaration (``schemas/prefab-declaration.schema.json``);
undeclared items score 0 and are listed, never assumed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shapely

from cim.analyze.base import Outcome, Subject, fingerprint
from cim.analyze.members import (
    Element,
    assemblies,
    classify,
    integrated,
    is_masonry,
    measure,
    qto,
    read_elements,
    verdicts,
    wall_faces,
)
from cim.analyze.standards import (
    ItemInput,
    Standard,
    assess,
    load_standard,
    read_checked_json,
)
from cim.errors import InputFileError, NotFound
from cim.model.elements import PrecastRules, precast_rules

if TYPE_CHECKING:
    from cim.store import Store

NAME = "prefab"
#: bump when the way ratios are measured changes: every stored result goes stale
VERSION = 1
DECLARATION_SCHEMA = (
    Path(__file__).resolve().parents[2] / "schemas" / "prefab-declaration.schema.json"
)
#: items a declaration may give (the table's declaration items and the integrated walls)
GIVEN_ITEMS = {"vertical", "horizontal"}  # never declared: they come from the model
#: how many GlobalIds a piece of evidence lists
GUIDS = 20
_YES = {"是", "true", "yes", "y", "1", "有"}

# ---- the declaration -------------------------------------------------------------------


def read_declaration(path: Path) -> dict[str, Any]:
    """A designer's declaration, checked against its schema (a clear error naming the file)."""
    doc, _ = read_checked_json(path, DECLARATION_SCHEMA, "prefab declaration")
    return doc


def declare(store: Store, path: Path, building: int | None = None) -> list[dict[str, Any]]:
    """Keeps a declaration in the store for the building it names (a GlobalId, name or id) or
    for ``building``; returns which buildings it applies to. Call inside a transaction."""
    doc = read_declaration(path)
    ref = doc.get("building")
    rows = store.con.execute(
        "SELECT b.id, b.source_ref, b.name FROM buildings b JOIN sources s ON s.id = b.source_id "
        "WHERE s.kind = 'ifc' ORDER BY b.id"
    ).fetchall()
    if building is not None:
        rows = [r for r in rows if r[0] == building]
        if not rows:
            raise NotFound(f"building {building} is not from an IFC model: nothing to declare for")
    elif ref is not None:
        rows = [r for r in rows if ref in (r[1], r[2], str(r[0]))]
        if not rows:
            raise NotFound(
                f"{path}: no IFC building {ref!r} in the store (give its GlobalId, name or id; "
                "`cim status` lists the sources)"
            )
    else:
        raise InputFileError(
            f'{path} names no building: add "building" (GlobalId or name) or pass --building'
        )
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()
    for _, guid, _ in rows:
        store.con.execute(
            "INSERT OR REPLACE INTO declarations (analyzer, building_ref, document, sha256, "
            "file, declared_at) VALUES (?, ?, ?, ?, ?, current_timestamp)",
            [NAME, guid, text, digest, str(path)],
        )
    return [{"building_id": int(b), "global_id": g, "name": n} for b, g, n in rows]


def _declarations(store: Store) -> dict[str, tuple[dict[str, Any], str]]:
    rows = store.con.execute(
        "SELECT building_ref, document, sha256 FROM declarations WHERE analyzer = ?", [NAME]
    ).fetchall()
    return {r[0]: (json.loads(r[1]), r[2]) for r in rows}


# ---- the analyzer ----------------------------------------------------------------------


@dataclass
class PrefabAnalyzer:
    standard: Standard = field(default_factory=lambda: load_standard("gbt51129-2017"))
    rules: PrecastRules = field(default_factory=precast_rules)
    new_since: int = 2021  # new buildings for the city roll-up: built this year or later
    target_share: float = 0.30  # prefabricated share of new floor area (the plan, by 2025)
    name: str = NAME

    def rules_label(self) -> str:
        return f"{self.standard.label}; {self.rules.label}"

    def subjects(self, store: Store, building: int | None = None) -> list[Subject]:
        rows = store.con.execute(
            "SELECT b.id, b.source_id, b.source_ref, coalesce(b.name, s.name), s.sha256 "
            "FROM buildings b "
            "JOIN sources s ON s.id = b.source_id WHERE s.kind = 'ifc' "
            "AND EXISTS (SELECT 1 FROM elements e WHERE e.building_id = b.id) ORDER BY b.id"
        ).fetchall()
        if building is not None:
            rows = [r for r in rows if r[0] == building]
            if not rows:
                raise NotFound(
                    f"building {building} has no IFC elements to score "
                    "(the assembly rate is read from IFC models)"
                )
        declared = _declarations(store)
        rules_digest = fingerprint(self.standard.sha256, self.rules.file_version, VERSION)
        out = []
        for bid, sid, guid, name, sha in rows:
            decl = declared.get(guid)
            out.append(
                Subject(
                    key=f"building:{bid}",
                    building_id=int(bid),
                    source_id=int(sid),
                    fingerprint=fingerprint(sha, rules_digest, decl[1] if decl else None),
                    label=name or guid,
                    inputs={"declaration": decl[0] if decl else None, "guid": guid},
                )
            )
        return out

    def compute(self, store: Store, subject: Subject) -> Outcome:
        assert subject.building_id is not None and subject.source_id is not None
        bid = subject.building_id
        elements = read_elements(store, bid)
        verdicts(self.rules, elements, assemblies(store, subject.source_id))
        outline_row = store.con.execute(
            "SELECT ST_AsWKB(ST_Boundary(footprint)) FROM buildings WHERE id = ?", [bid]
        ).fetchone()
        outline = (
            shapely.from_wkb(bytes(outline_row[0])) if outline_row and outline_row[0] else None
        )
        for e in elements:
            classify(e, outline)
        walls = [e for e in elements if e.item in ("envelope", "partition")]
        faces = wall_faces(store, bid, [w for w in walls if not qto(w, "GrossSideArea")])
        for e in elements:
            measure(e, faces)
        inputs, evidence = self._inputs(elements, subject.inputs.get("declaration"))
        a = assess(self.standard, inputs)
        what_if = self._what_if(elements, inputs)
        result = {
            "building_id": bid,
            "global_id": subject.inputs.get("guid"),
            "name": subject.label,
            "rules": {"table": self.standard.label, "precast": self.rules.label},
            **a.as_json(),
            "elements": evidence,
            "what_if": what_if,
        }
        summary = {
            "name": subject.label,
            "missing": len(a.missing),
            "prefab_rate": a.rate,
            "prefab_grade": a.grade,
            "prefabricated": a.prefabricated,
            "q1": a.groups.get("Q1"),
            "vertical_ratio": a.items["vertical"]["ratio"] if "vertical" in a.items else None,
        }
        return Outcome(summary=summary, result=result)

    # -- the items from the elements ----------------------------------------------------
    def _inputs(
        self, elements: list[Element], declaration: dict[str, Any] | None
    ) -> tuple[dict[str, ItemInput], dict[str, Any]]:
        inputs: dict[str, ItemInput] = {}
        by_item: dict[str, list[Element]] = defaultdict(list)
        for e in elements:
            if e.item is not None:
                by_item[e.item].append(e)
        rules_seen: dict[str, int] = defaultdict(int)
        for e in elements:
            if e.verdict is not None:
                rules_seen[e.verdict.rule] += 1
        unit = {"vertical": "m3", "horizontal": "m2", "envelope": "m2", "partition": "m2"}

        def ratio_of(
            members: list[Element], counts: Any, key: str, label: str
        ) -> tuple[ItemInput, dict[str, Any]]:
            measured = [m for m in members if m.quantity]
            total = float(sum(m.quantity or 0.0 for m in measured))
            hit = [m for m in measured if counts(m)]
            part = float(sum(m.quantity or 0.0 for m in hit))
            ev: dict[str, Any] = {
                "members": len(members),
                "measured": len(measured),
                "unit": unit.get(key.split("_")[0], "m2"),
                "total": round(total, 3),
                label: round(part, 3),
                "members_counted": len(hit),
                "global_ids": [m.guid for m in hit[:GUIDS]],
                "not_measured": [m.guid for m in members if not m.quantity][:GUIDS],
            }
            if not measured:
                return ItemInput(
                    "unknown", why="no measurable members in the model", evidence=ev
                ), ev
            return ItemInput("ratio", part / total, evidence=ev), ev

        def prefab(m: Element) -> bool:
            return m.verdict is not None and m.verdict.prefabricated

        for key in ("vertical", "horizontal"):
            members = by_item.get(key, [])
            if not members:
                inputs[key] = ItemInput("unknown", why=f"the model has no {key} members")
                continue
            given, ev = ratio_of(members, prefab, key, "prefabricated")
            ev["by_rule"] = dict(
                sorted(
                    _count(
                        m.verdict.rule for m in members if m.verdict and m.verdict.prefabricated
                    ).items()
                )
            )
            if given.state == "ratio" and not any(prefab(m) for m in members):
                said = [m for m in members if m.verdict is not None]
                given.why = (
                    "no member is marked prefabricated"
                    if said
                    else "no member carries precast information (IFC CastingMethod, the precast "
                    "property sets, Tekla 'Cast unit type', 是否预制 / 构件类型, names, steel or "
                    "timber materials): all are counted as cast in place"
                )
            inputs[key] = given
        # walls: non-masonry shares; absent when the building has none (-> Q4)
        for key, item_key in (
            ("envelope", "envelope_non_masonry"),
            ("partition", "partition_non_masonry"),
        ):
            members = by_item.get(key, [])
            if not members:
                inputs[item_key] = ItemInput(
                    "absent", why=f"the model has no non-load-bearing {key} walls"
                )
                continue
            given, ev = ratio_of(members, lambda m: is_masonry(m) is False, item_key, "non_masonry")
            unknown = [m.guid for m in members if is_masonry(m) is None]
            ev["material_unknown"] = unknown[:GUIDS]
            if unknown:
                given.why = (
                    f"{len(unknown)} of {len(members)} walls name no material and are not "
                    "prefabricated: counted as masonry"
                )
            inputs[item_key] = given
            integrated_key = f"{key}_integrated"
            flagged = [m for m in members if integrated(m)]
            if flagged:
                g2, _ = ratio_of(members, integrated, integrated_key, "integrated")
                inputs[integrated_key] = g2
            else:
                inputs[integrated_key] = ItemInput(
                    "unknown", why="not declared (no member says it is integrated)"
                )
        self._declared(inputs, declaration, by_item)
        return inputs, _evidence(elements, by_item, rules_seen)

    def _declared(
        self,
        inputs: dict[str, ItemInput],
        declaration: dict[str, Any] | None,
        by_item: dict[str, list[Element]],
    ) -> None:
        """The declaration's items (what the model cannot show); the rest 'not declared'."""
        declared = (declaration or {}).get("items", {})
        for it in self.standard.items:
            if it.key in GIVEN_ITEMS or it.key not in declared:
                continue
            value = declared[it.key]
            base = it.key.split("_")[0]
            if value == "absent":
                if base in ("envelope", "partition") and by_item.get(base):
                    continue  # the model shows walls there: the declaration cannot remove them
                inputs[it.key] = ItemInput(
                    "absent", why="declared absent", evidence={"declared": True}
                )
            elif it.source == "model":
                continue  # a share the model measures is not taken from a declaration
            elif isinstance(value, bool):
                inputs[it.key] = ItemInput("ratio", value, evidence={"declared": True})
            elif isinstance(value, int | float):
                inputs[it.key] = ItemInput("ratio", float(value), evidence={"declared": True})
        for it in self.standard.items:
            if it.key not in inputs:
                inputs[it.key] = ItemInput("unknown", why="not declared")

    # -- what-if ------------------------------------------------------------------------
    def _what_if(
        self, elements: list[Element], inputs: dict[str, ItemInput]
    ) -> list[dict[str, Any]]:
        """The fewest member groups (class and type, largest first) to switch to precast for
        P to reach 50% and 60%, the other items as they are."""
        groups: dict[tuple[str, str], float] = defaultdict(float)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        totals: dict[str, float] = defaultdict(float)
        done: dict[str, float] = defaultdict(float)
        for e in elements:
            if e.item in ("vertical", "horizontal") and e.quantity:
                totals[e.item] += e.quantity
                if e.verdict is not None and e.verdict.prefabricated:
                    done[e.item] += e.quantity
                else:
                    groups[(e.item, e.group)] += e.quantity
                    counts[(e.item, e.group)] += 1
        per_item = {
            k: sorted(((g, q) for (i, g), q in groups.items() if i == k), key=lambda x: -x[1])
            for k in ("vertical", "horizontal")
        }
        out = []
        for target in (50.0, 60.0):
            best: tuple[int, float, int, int, float] | None = None
            for nv in range(len(per_item["vertical"]) + 1):
                for nh in range(len(per_item["horizontal"]) + 1):
                    trial = dict(inputs)
                    share = 0.0
                    for key, n in (("vertical", nv), ("horizontal", nh)):
                        if totals[key] > 0:
                            added = sum(q for _, q in per_item[key][:n])
                            trial[key] = ItemInput("ratio", (done[key] + added) / totals[key])
                            share += added / totals[key]
                    rate = assess(self.standard, trial).rate
                    if rate is not None and rate >= target:
                        cand = (nv + nh, share, nv, nh, rate)
                        if best is None or cand[:2] < best[:2]:
                            best = cand
            current = assess(self.standard, inputs).rate
            if current is not None and current >= target:
                out.append({"target": target, "reached": True, "already": True, "switch": []})
            elif best is None:
                out.append(
                    {
                        "target": target,
                        "reached": False,
                        "why": "switching every cast-in-place structural member is not enough: "
                        "the envelope, partitions and fit-out items must score too",
                        "switch": [],
                    }
                )
            else:
                _, _, nv, nh, rate = best
                switch = [
                    {
                        "item": key,
                        "group": g,
                        "members": counts[(key, g)],
                        "quantity": round(q, 3),
                        "unit": "m3" if key == "vertical" else "m2",
                    }
                    for key, n in (("vertical", nv), ("horizontal", nh))
                    for g, q in per_item[key][:n]
                ]
                out.append(
                    {"target": target, "reached": True, "rate_after": rate, "switch": switch}
                )
        return out

    # -- the city -----------------------------------------------------------------------
    def rollup(self, store: Store, rows: list[dict[str, Any]]) -> Outcome | None:
        """Prefabricated share of new building floor area against the plan's 30%."""
        verdicts = {
            int(r["building_id"]): bool(r["summary"].get("prefabricated"))
            for r in rows
            if r["building_id"] is not None
        }
        found = store.con.execute(
            "SELECT b.id, coalesce(c.id, b.id), b.year_built, b.gross_floor_area, b.attributes "
            "FROM buildings b LEFT JOIN buildings c ON c.id = b.same_as "
            "JOIN sources s ON s.id = b.source_id WHERE s.status = 'ingested'"
        ).fetchall()
        groups: dict[int, dict[str, Any]] = {}
        for bid, canon, year, gfa, attrs in found:
            g = groups.setdefault(int(canon), {"year": None, "gfa": None, "prefab": None})
            g["year"] = g["year"] or year
            g["gfa"] = g["gfa"] or gfa
            if bid in verdicts:
                g["prefab"] = verdicts[bid]
            elif g["prefab"] is None and attrs:
                said = _attribute_prefab(json.loads(attrs))
                if said is not None:
                    g["prefab"] = said
        new = {
            k: g for k, g in groups.items() if g["year"] is not None and g["year"] >= self.new_since
        }
        area = sum(g["gfa"] or 0.0 for g in new.values())
        prefab_area = sum(g["gfa"] or 0.0 for g in new.values() if g["prefab"])
        unknown = [k for k, g in new.items() if g["prefab"] is None]
        no_area = [k for k, g in new.items() if not g["gfa"]]
        share = prefab_area / area if area > 0 else None
        status = (
            "no data" if share is None else ("met" if share >= self.target_share else "not met")
        )
        result = {
            "indicator": "prefabricated share of new building floor area",
            "target": self.target_share,
            "new_since": self.new_since,
            "value": None if share is None else round(share, 4),
            "status": status,
            "new_buildings": len(new),
            "new_floor_area_m2": round(area, 1),
            "prefabricated_floor_area_m2": round(prefab_area, 1),
            "scored_from_models": sum(1 for k in new if k in verdicts),
            "unknown": unknown[:100],
            "without_floor_area": no_area[:100],
            "no_year": sum(1 for g in groups.values() if g["year"] is None),
        }
        summary = {"value": result["value"], "status": status, "target": self.target_share}
        return Outcome(summary=summary, result=result)


def _evidence(
    elements: list[Element], by_item: dict[str, list[Element]], rules_seen: dict[str, int]
) -> dict[str, Any]:
    """What the elements say, for the report: counts, the rules that matched, each scored
    element's item, reason, quantity and verdict (the first 200)."""
    return {
        "total": len(elements),
        "scored": sum(1 for e in elements if e.item),
        "by_item": {k: len(v) for k, v in sorted(by_item.items())},
        "rules_matched": dict(sorted(rules_seen.items())),
        "exposure_unknown": [e.guid for e in elements if "unknown_exposure" in e.notes][:GUIDS],
        "classified": [
            {
                "global_id": e.guid,
                "class": e.ifc_class,
                "item": e.item,
                "why": e.why,
                "quantity": None if e.quantity is None else round(e.quantity, 3),
                **({"precast": e.verdict.as_json()} if e.verdict else {}),
            }
            for e in elements
            if e.item is not None
        ][:200],
    }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(out)


def _attribute_prefab(attrs: dict[str, Any]) -> bool | None:
    """A GIS building's own word on being prefabricated (装配式 / prefab attributes)."""
    for key in ("prefab", "prefabricated", "装配式", "is_prefab"):
        if key in attrs and attrs[key] is not None:
            text = str(attrs[key]).strip().casefold()
            if text in _YES or text in ("prefab", "装配式"):
                return True
            if text in ("否", "false", "no", "n", "0", "现浇"):
                return False
    return None
