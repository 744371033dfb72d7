"""What the element rows say beyond their columns: whether an element is prefabricated.

Real exports say it in many places (``../shared/data/README.md``): the IFC standard's
``Pset_ConcreteElementGeneral.CastingMethod`` (PRECAST / INSITU) and
``Pset_PrecastConcreteElementGeneral``, Tekla's "Cast unit type" (Prefab / Cast in place) on
the assembly, Chinese properties (是否预制: 是 / 否; 施工方式: 预制 / 现浇; 构件类型: 叠合板),
names, and materials (steel and timber members are factory-made). The rules are data
(``schemas/standards/precast-rules.json``), tried in order; each verdict names its rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

RULES_FILE = Path(__file__).resolve().parents[2] / "schemas" / "standards" / "precast-rules.json"


def _norm(value: Any) -> str:
    return " ".join(str(value).replace("_", " ").split()).casefold()


@dataclass(frozen=True)
class Rule:
    id: str
    verdict: str  # precast | cast_in_place | factory_made
    pset: str | None
    prop: str | None
    equals: frozenset[str]
    contains: tuple[str, ...]
    name_contains: tuple[str, ...]
    material_contains: tuple[str, ...]
    material_excludes: tuple[str, ...]
    applies_to_parts: bool
    clause: str
    verified: bool

    def _value_matches(self, value: Any) -> bool:
        text = _norm(value)
        if self.equals and text in self.equals:
            return True
        return any(c in text for c in self.contains)

    def matches(
        self,
        psets: Mapping[str, Any],
        names: Sequence[str],
        materials: Sequence[str],
    ) -> bool:
        if self.material_contains:
            # a layered element with concrete anywhere (a composite slab on steel deck, a
            # timber-concrete floor) is not a steel or timber member
            texts = [_norm(m) for m in materials]
            if any(x in t for t in texts for x in self.material_excludes):
                return False
            return any(c in t for t in texts for c in self.material_contains)
        if self.name_contains:
            return any(c in _norm(n) for n in names for c in self.name_contains)
        sets = psets.items()
        if self.pset is not None:
            key = _norm(self.pset)
            sets = [(n, v) for n, v in psets.items() if _norm(n) == key]  # type: ignore[assignment]
            if not sets:
                return False
            if self.prop is None:
                return True
        wanted = _norm(self.prop or "")
        for _, values in sets:
            if not isinstance(values, Mapping):
                continue
            for name, value in values.items():
                if _norm(name) == wanted and value is not None and self._value_matches(value):
                    return True
        return False


@dataclass(frozen=True)
class Verdict:
    verdict: str  # precast | cast_in_place | factory_made
    rule: str
    via: str | None = None  # the assembly's GlobalId when inherited from it

    @property
    def prefabricated(self) -> bool:
        return self.verdict in ("precast", "factory_made")

    def as_json(self) -> dict[str, Any]:
        out = {"verdict": self.verdict, "rule": self.rule}
        if self.via:
            out["via"] = self.via
        return out


@dataclass(frozen=True)
class PrecastRules:
    id: str
    file_version: int
    path: Path
    rules: tuple[Rule, ...]

    @property
    def label(self) -> str:
        return f"{self.path.name} (file version {self.file_version})"

    def classify(
        self,
        psets: Mapping[str, Any] | None,
        names: Iterable[str | None] = (),
        materials: Iterable[str] = (),
    ) -> Verdict | None:
        """The first rule that matches an element (None: nothing says)."""
        name_list = [n for n in names if n]
        material_list = [str(m) for m in materials if m]
        for rule in self.rules:
            if rule.matches(psets or {}, name_list, material_list):
                return Verdict(rule.verdict, rule.id)
        return None

    def inherits(self, verdict: Verdict) -> bool:
        """Whether an assembly's verdict passes to its parts."""
        return any(r.id == verdict.rule and r.applies_to_parts for r in self.rules)


def _rule(raw: Mapping[str, Any]) -> Rule:
    m = raw["match"]
    return Rule(
        id=raw["id"],
        verdict=raw["verdict"],
        pset=m.get("pset"),
        prop=m.get("property"),
        equals=frozenset(_norm(v) for v in m.get("equals", [])),
        contains=tuple(_norm(v) for v in m.get("contains", [])),
        name_contains=tuple(_norm(v) for v in m.get("name_contains", [])),
        material_contains=tuple(_norm(v) for v in m.get("material_contains", [])),
        material_excludes=tuple(_norm(v) for v in m.get("material_excludes", [])),
        applies_to_parts=bool(raw.get("applies_to_parts", False)),
        clause=raw.get("clause", ""),
        verified=bool(raw.get("verified", False)),
    )


@cache
def precast_rules(path: Path = RULES_FILE) -> PrecastRules:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return PrecastRules(
        id=doc["id"],
        file_version=int(doc["file_version"]),
        path=path,
        rules=tuple(_rule(r) for r in doc["rules"]),
    )


def precast_flag(psets: Mapping[str, Mapping[str, Any]], name: str | None = None) -> bool | None:
    """True (precast concrete), False (cast in place) or None (not said) from an element's
    property sets (``elements.psets``) and name, by the rules; steel and timber say None here
    (the tiles' flag is about concrete)."""
    verdict = precast_rules().classify(psets, [name])
    if verdict is None or verdict.verdict == "factory_made":
        return None
    return verdict.verdict == "precast"
