"""Assessment tables as data (``schemas/standards/*.json``) and how they score.

A table (GB/T 51129-2017 Table 4.0.1, or a province's variant of it) lists items with the
ratio bounds and points of each, and says what makes a prefabricated building and a grade.
The scoring here knows no item by name except through the table: a local variant is another
file, checked against ``schemas/standards/standard.schema.json`` when it is loaded.

Points interpolate linearly between the bounds (one decimal, half up, as the table's note
says); below the lower bound an item scores 0; an item the building does not have adds its
highest points to Q4; an item nobody declared scores 0 and is listed as not declared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

from cim.errors import InputFileError, NotFound

STANDARDS = Path(__file__).resolve().parents[2] / "schemas" / "standards"

#: ratios within this of a bound are on it: areas and volumes come from float32 meshes, so
#: 12 m2 of 24 m2 may read 0.4999999
_TOLERANCE = 1e-6
#: what is known of one item of a building
State = Literal["ratio", "absent", "unknown"]


def round1(value: float, decimals: int = 1) -> float:
    """Half-up rounding as the standards do (Python's round() goes to even: 23.25 -> 23.2)."""
    q = Decimal(1).scaleb(-decimals)
    return float(Decimal(repr(value)).quantize(q, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Item:
    key: str
    group: str
    name_zh: str
    name_en: str
    measure: str
    lower: float | None
    upper: float | None
    points_lower: float
    points_upper: float
    interpolate: bool
    source: str
    clause: str
    verified: bool

    @property
    def max_points(self) -> float:
        return max(self.points_lower, self.points_upper)

    def points(self, ratio: float | bool) -> float:
        """The item's points for a ratio (0-1) or, for a yes/no item, a bool."""
        if self.measure == "yes_no" or isinstance(ratio, bool):
            return self.points_lower if bool(ratio) else 0.0
        if self.lower is None:
            return self.points_lower if ratio > 0 else 0.0
        if ratio < self.lower - _TOLERANCE:
            return 0.0
        if self.upper is None or not self.interpolate or ratio >= self.upper - _TOLERANCE:
            return self.points_upper
        span = (ratio - self.lower) / (self.upper - self.lower)
        return round1(self.points_lower + span * (self.points_upper - self.points_lower))

    def ratio_for(self, points: float) -> float | None:
        """The least ratio that scores ``points`` (for what-ifs); None when out of reach."""
        if points <= 0:
            return 0.0
        if points > self.max_points:
            return None
        if self.lower is None:
            return 1e-9
        if self.upper is None or not self.interpolate or points <= self.points_lower:
            return self.lower
        frac = (points - self.points_lower) / (self.points_upper - self.points_lower)
        return self.lower + frac * (self.upper - self.lower)


@dataclass
class RulesFile:
    """A rules or targets file as read (``read_checked_json``): its path, its document and
    the sha256 of its bytes (what results name and fingerprints cover)."""

    path: Path
    doc: dict[str, Any]
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.doc['id']} v{self.doc['file_version']}"


@dataclass(frozen=True)
class Standard:
    id: str
    title: str
    version: str
    file_version: int
    path: Path
    sha256: str
    items: tuple[Item, ...]
    groups: dict[str, float]
    min_group_points: dict[str, float]
    required_items: tuple[str, ...]
    min_rate: float
    grade_levels: tuple[tuple[str, float], ...]  # highest first
    grade_min_ratio: dict[str, float]
    document: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def label(self) -> str:
        """What a report names: the file and its version."""
        return f"{self.path.name} ({self.id}, file version {self.file_version})"

    def grade_for(self, rate: float) -> str | None:
        """The grade band a rate falls in (the conditions for grading aside)."""
        for name, least in self.grade_levels:
            if rate >= least:
                return name
        return None

    def item(self, key: str) -> Item:
        for it in self.items:
            if it.key == key:
                return it
        raise KeyError(key)


@dataclass
class ItemInput:
    """What the model or a declaration says of one item."""

    state: State
    ratio: float | bool | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    why: str | None = None  # for 'unknown' and 'absent': the reason, for the report


@dataclass
class Assessment:
    standard: Standard
    items: dict[str, dict[str, Any]]
    groups: dict[str, float]
    q4: float
    rate: float | None
    prefabricated: bool
    reasons: list[str]
    grade: str | None
    missing: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "standard": {
                "id": self.standard.id,
                "title": self.standard.title,
                "file": self.standard.path.name,
                "file_version": self.standard.file_version,
            },
            "rate": self.rate,
            "grade": self.grade,
            "prefabricated": self.prefabricated,
            "verdict_reasons": self.reasons,
            "groups": {**self.groups, "Q4": self.q4},
            "items": self.items,
            "missing": self.missing,
        }


def assess(standard: Standard, inputs: dict[str, ItemInput]) -> Assessment:
    """Scores a building: P = (Q1 + Q2 + Q3) / (100 - Q4) x 100%, the prefabricated-building
    verdict and the grade."""
    items: dict[str, dict[str, Any]] = {}
    groups = {g: 0.0 for g in standard.groups}
    q4 = 0.0
    missing: list[str] = []
    for it in standard.items:
        given = inputs.get(it.key) or ItemInput("unknown", why="not declared")
        row: dict[str, Any] = {
            "group": it.group,
            "name_zh": it.name_zh,
            "name_en": it.name_en,
            "clause": it.clause,
            "verified": it.verified,
            "max_points": it.max_points,
            "state": given.state,
            "ratio": None,
            "points": 0.0,
            "evidence": given.evidence,
        }
        if given.why:
            row["why"] = given.why
        if given.state == "ratio" and given.ratio is not None:
            value = given.ratio
            row["ratio"] = value if isinstance(value, bool) else round(float(value), 4)
            row["points"] = it.points(value)
            groups[it.group] = round1(groups[it.group] + row["points"])
        elif given.state == "absent":
            q4 += it.max_points
            row["why"] = given.why or "the building has none"
        else:
            row["why"] = given.why or "not declared"
            missing.append(it.key)
        items[it.key] = row
    q4 = round1(q4)
    earned = sum(groups.values())
    rate = round1(earned / (100.0 - q4) * 100.0) if q4 < 100 else None
    reasons: list[str] = []
    for g, least in standard.min_group_points.items():
        if groups.get(g, 0.0) < least:
            reasons.append(f"{g} = {groups.get(g, 0.0):g} points, under {least:g}")
    for key in standard.required_items:
        found = items.get(key)
        if found is None or not found["points"]:
            reasons.append(f"{key} is required ({'not declared' if key in missing else 'no'})")
    if rate is None or rate < standard.min_rate:
        reasons.append(f"P = {rate if rate is not None else '-'}%, under {standard.min_rate:g}%")
    prefabricated = not reasons
    grade: str | None = None
    if prefabricated and rate is not None:
        fits = all(
            items.get(k, {}).get("ratio") is not None and float(items[k]["ratio"]) >= least
            for k, least in standard.grade_min_ratio.items()
        )
        if fits:
            grade = standard.grade_for(rate)
    return Assessment(standard, items, groups, q4, rate, prefabricated, reasons, grade, missing)


def read_checked_json(path: Path, schema: Path, what: str) -> tuple[dict[str, Any], str]:
    """A JSON file a user gives (a rules table, a declaration), checked against ``schema``:
    the document and the sha256 of its bytes, or an InputFileError naming the file, the place
    in it and the schema."""
    import jsonschema

    try:
        raw = path.read_bytes()
        doc: dict[str, Any] = json.loads(raw)
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: no such {what} file") from err
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path} is not a readable JSON {what}: {err}") from err
    try:
        jsonschema.validate(doc, json.loads(schema.read_text(encoding="utf-8")))
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise InputFileError(
            f"{path} is not a valid {what} at {where}: {err.message} "
            f"(see {schema.relative_to(STANDARDS.parents[1])})"
        ) from err
    return doc, hashlib.sha256(raw).hexdigest()


def load_standard(ref: str | Path) -> Standard:
    """A table by id (``gbt51129-2017`` -> ``schemas/standards/gbt51129-2017.json``) or by
    path (a local variant), checked against the schema."""

    path = Path(ref)
    if not path.suffix:
        path = STANDARDS / f"{ref}.json"
        if not path.is_file():
            known = sorted(
                p.stem for p in STANDARDS.glob("*.json") if not p.name.endswith(".schema.json")
            )
            raise NotFound(f"no standard table {ref!r}: known tables are {', '.join(known)}")
    doc, digest = read_checked_json(path, STANDARDS / "standard.schema.json", "standard table")
    groups = {g["key"]: float(g["max_points"]) for g in doc["groups"]}
    items = tuple(
        Item(
            key=i["key"],
            group=i["group"],
            name_zh=i.get("name_zh", i["key"]),
            name_en=i.get("name_en", i["key"]),
            measure=i["measure"],
            lower=i["lower"],
            upper=i["upper"],
            points_lower=float(i["points_lower"]),
            points_upper=float(i["points_upper"]),
            interpolate=bool(i["interpolate"]),
            source=i["source"],
            clause=i["clause"],
            verified=bool(i["verified"]),
        )
        for i in doc["items"]
    )
    for it in items:
        if it.group not in groups:
            raise InputFileError(f"{path}: item {it.key!r} is in unknown group {it.group!r}")
    fab = doc["prefabricated_building"]
    grades = doc["grades"]
    levels = sorted(
        ((lv["grade"], float(lv["min_rate"])) for lv in grades["levels"]),
        key=lambda g: -g[1],
    )
    return Standard(
        id=doc["id"],
        title=doc["title"],
        version=doc["version"],
        file_version=int(doc["file_version"]),
        path=path,
        sha256=digest,
        items=items,
        groups=groups,
        min_group_points={k: float(v) for k, v in fab["min_group_points"].items()},
        required_items=tuple(fab["required_items"]),
        min_rate=float(fab["min_rate"]),
        grade_levels=tuple(levels),
        grade_min_ratio={
            k: float(v) for k, v in (grades.get("requires") or {}).get("min_ratio", {}).items()
        },
        document=doc,
    )
