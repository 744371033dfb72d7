"""The odd items of real exports: each degrades itself, never the file.

Authoring tools write what the schema allows rarely or not at all: property sets without a name
(ArchiCAD 9 and 11), ``*`` (a derived value) where the schema has an attribute (Renga, in the
Name of its openings, windows, doors, railings, slabs and stair flights), units without their
conversion, elements without a GlobalId. Each such item is kept with what could be read and
recorded here (``OddItems``): counted by kind in the source's counts and listed once per kind in
its warnings, with a few GlobalIds, rather than once per element.

``repair`` is shared with the workers (ingest.ifc.mesh): the geometry kernel reads an
element's Name as a string and fails on a ``*`` there, and its iterator stops at (or, with
threads, hangs on) an element without a GlobalId, so every process that meshes a model first
reads such attributes as unset and names such elements ``#<entity id>``.
"""

from __future__ import annotations

import math
import mmap
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.unit as uunit

#: what each kind of odd item is, and what became of it (the warnings' text)
KINDS = {
    "unnamed_set": "property or quantity sets without a name, kept as '(unnamed <GlobalId>)'",
    "unnamed_property": "properties without a name, kept as '(unnamed)'",
    "unreadable_property": "properties ifcopenshell cannot read, left out of their set",
    "starred_attribute": (
        "entities with an attribute written '*' (derived) where the schema has a value, "
        "read as unset"
    ),
    "missing_global_id": "elements without a GlobalId, kept as '#<entity id>'",
    "unknown_unit": "units without a usable conversion to SI, read as SI units",
    "meshed_alone": (
        "elements the geometry iterator passed over (a body in another context), meshed one by one"
    ),
    "ignored_relation": (
        "references to an entity of another class where a containment or aggregation "
        "relation belongs, ignored (the element read as outside that container)"
    ),
    "list_value": "properties whose value is a list, kept as the list of values",
    "unreadable_placement": (
        "storeys whose placement cannot be read, their elevation taken as 0 (the model's base)"
    ),
    "odd_elevation": (
        "storeys whose Elevation is not a number, their elevation read from their placement "
        "(else 0)"
    ),
    "odd_set_member": "members of a property set that are not properties, left out",
    "odd_relation": (
        "relations holding a number, text or a list where the schema has an entity, "
        "those ends ignored"
    ),
    "not_meshed": "elements the geometry kernel cannot mesh, kept without geometry",
    "kernel_crash": (
        "elements the geometry kernel crashed on (a native fault, in a child process), "
        "kept without geometry"
    ),
    "space_not_meshed": (
        "spaces the geometry kernel cannot mesh, kept with their quantities "
        "(geometry_status 'none')"
    ),
}

#: GlobalIds named in a warning, per kind
EXAMPLES = 3


def text(value: Any) -> str | None:
    """An attribute read as text: itself if it is a string, else None (a fuzzed or broken
    file can put an entity, a number or a list where the schema has a label)."""
    return value if isinstance(value, str) else None


def number(value: Any) -> float | None:
    """An attribute read as a length: a finite real number, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def is_reference(value: Any) -> bool:
    """Whether an attribute holds a reference to an entity (not a number, text, a list, or a
    value of a defined type such as IfcLabel('x'))."""
    return isinstance(value, ifcopenshell.entity_instance) and value.id() != 0


def related_one(rel: Any, name: str, odd: OddItems, value: Any = None) -> Any:
    """The entity a relation's attribute ``name`` refers to (``value``, when already read);
    None when unset, or when it holds something else (a corrupt reference: found by fuzzing),
    then recorded in ``odd``."""
    if value is None:
        value = getattr(rel, name)
    if value is None or is_reference(value):
        return value
    odd.add_once("odd_relation", rel, f"{rel.is_a()}.{name}: {type(value).__name__}")
    return None


def related_many(rel: Any, name: str, odd: OddItems, value: Any = None) -> list[Any]:
    """The entities a relation's set attribute ``name`` refers to (``value``, when already
    read): its members that are references, the others recorded in ``odd``; one entity
    where the schema has a set is taken as a set of one, recorded."""
    if value is None:
        value = getattr(rel, name)
    if value is None:
        return []
    members = value if isinstance(value, tuple | list) else (value,)
    refs = [m for m in members if is_reference(m)]
    if len(refs) != len(members) or members is not value:
        odd.add_once("odd_relation", rel, f"{rel.is_a()}.{name}: {type(value).__name__}")
    return refs


def label(entity: Any) -> str:
    """An entity's GlobalId, else its entity id (``#12``)."""
    if entity.get_attribute_category("GlobalId") == 1:
        guid = entity.GlobalId
        if guid:
            return str(guid)
    return f"#{entity.id()}"


@dataclass
class OddItems:
    """The odd items of one model, by kind (see KINDS)."""

    items: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, kind: str, entity: Any, detail: str | None = None) -> None:
        """Record ``entity`` (an IFC entity, or its label) as an odd item of ``kind``;
        ``detail``: what was odd about it, counted per kind (e.g. the kernel's error)."""
        assert kind in KINDS, kind
        self.items.setdefault(kind, []).append(entity if isinstance(entity, str) else label(entity))
        if detail:
            self.details.setdefault(kind, Counter())[detail] += 1

    def add_once(self, kind: str, entity: Any, detail: str | None = None) -> None:
        """``add``, unless ``entity`` is already recorded as of ``kind`` (an item met again
        on another path through the model)."""
        ref = entity if isinstance(entity, str) else label(entity)
        if ref not in self.items.get(kind, ()):
            self.add(kind, ref, detail)

    def counts(self) -> dict[str, int]:
        return {kind: len(refs) for kind, refs in self.items.items()}

    def warnings(self, name: str) -> list[str]:
        """One line per kind: how many, what became of them, the commonest details and a
        few GlobalIds."""
        out = []
        for kind, refs in self.items.items():
            unique = list(dict.fromkeys(refs))
            examples = ", ".join(unique[:EXAMPLES]) + (", ..." if len(unique) > EXAMPLES else "")
            detail = ""
            if kind in self.details:
                common = self.details[kind].most_common(EXAMPLES)
                detail = "; " + "; ".join(f"{n} x {text[:160]}" for text, n in common)
            out.append(f"{name}: {len(refs)} {KINDS[kind]}{detail} (e.g. {examples})")
        return out


def unit_scale(model: ifcopenshell.file, unit_type: str, odd: OddItems) -> float:
    """ifcopenshell's scale of the model's ``unit_type`` to SI; 1 (an SI unit) when the unit
    cannot be converted (a conversion-based unit without its factor), recorded in ``odd``."""
    try:
        return float(uunit.calculate_unit_scale(model, unit_type))
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        try:
            unit = uunit.get_project_unit(model, unit_type)
        except (AttributeError, TypeError, ValueError):  # the units are not IfcUnitAssignment
            unit = None
        name = getattr(unit, "Name", None) if unit is not None else None
        odd.add("unknown_unit", f"{unit_type} {name or '?'}")
        return 1.0


#: a ``*`` standing for a whole attribute: between "(" or "," and "," or ")"
_STAR = re.compile(rb"[(,]\s*\*\s*(?=[,)])")
_ENTITY_ID = re.compile(rb"\s*#(\d+)\s*=")
#: an entity whose first attribute (an IfcRoot's GlobalId) is unset
_FIRST_UNSET = re.compile(rb"#(\d+)\s*=\s*[A-Za-z0-9_]+\s*\(\s*\$")


def repair(model: ifcopenshell.file, path: Path) -> list[tuple[str, Any]]:
    """What the geometry kernel cannot read, made readable: attributes written ``*`` (see
    repair_starred) and IfcRoot entities without a GlobalId, which get ``#<entity id>`` (as
    ``label`` names them). Returns (kind of odd item, entity) of each entity changed."""
    changed = [("starred_attribute", e) for e in repair_starred(model, path)]
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            return changed
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            ids = [int(m.group(1)) for m in _FIRST_UNSET.finditer(data)]
    for i in ids:
        try:
            entity = model.by_id(i)
        except RuntimeError:
            continue
        if entity.is_a("IfcRoot") and not entity.GlobalId:
            entity.GlobalId = f"#{i}"
            changed.append(("missing_global_id", entity))
    return changed


def repair_starred(model: ifcopenshell.file, path: Path) -> list[Any]:
    """Read as unset (``$``) every attribute written ``*`` where the entity's schema does not
    derive it; returns the entities changed.

    ifcopenshell's Python reading gives None for both, but its geometry kernel reads a Name
    written ``*`` as a derived value and refuses the element. ifcopenshell does not say which
    of the two a None was, so the file's text is searched for ``*`` (a regular expression
    over the mapped file: the entities holding one are few, and a full pass over the model's
    attributes would cost far more); of those entities, the attributes that are None and not
    derived are unset, which changes only the ones written ``*``."""
    ids: set[int] = set()
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            return []
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for m in _STAR.finditer(data):
                start = data.rfind(b";", 0, m.start()) + 1
                head = _ENTITY_ID.match(data, start)
                if head is not None:  # not in the header section
                    ids.add(int(head.group(1)))
    changed = []
    for i in sorted(ids):
        try:
            entity = model.by_id(i)
        except RuntimeError:
            continue
        before = entity.to_string()
        derived_flags = entity.declaration.derived()  # type: ignore[attr-defined]
        for index, derived in enumerate(derived_flags):
            if not derived and entity.get_argument(index) is None:
                entity.unset_attribute_value(index)
        if entity.to_string() != before:
            changed.append(entity)
    return changed
