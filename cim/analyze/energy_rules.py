"""The energy code's envelope limits and the climate zones of Chinese cities, as data.

``schemas/standards/gb55015-2021.json`` holds the limits (each row: the check, the climate
zones and building type it applies to, its conditions, the limit, the clause and a
``verified`` flag), ``schemas/standards/climate-zones-cn.json`` the cities with their zone and
HDD18. Both are checked against their JSON Schemas when loaded; a local variant of the limits
is another file of the same shape (``--standard FILE``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cim.analyze.standards import STANDARDS, read_checked_json
from cim.errors import InputFileError, NotFound

CLIMATE_FILE = STANDARDS / "climate-zones-cn.json"


def _load(path: Path, schema_name: str, what: str) -> tuple[dict[str, Any], str]:
    return read_checked_json(path, STANDARDS / schema_name, what)


@dataclass(frozen=True)
class Limit:
    id: str
    check: str
    zones: tuple[str, ...]
    building_type: str
    when: dict[str, float]
    max: float
    clause: str
    verified: bool

    def applies(self, zone: str, building_type: str, facts: dict[str, float | None]) -> bool:
        """Whether this row is the limit for a building of this zone and type with these facts
        (storeys, wwr, shape, floor_area); a condition on a fact that is unknown does not
        hold."""
        if zone not in self.zones or building_type != self.building_type:
            return False
        tests: dict[str, tuple[str, Callable[[float, float], bool]]] = {
            "storeys_min": ("storeys", lambda v, x: v >= x),
            "storeys_max": ("storeys", lambda v, x: v <= x),
            "wwr_above": ("wwr", lambda v, x: v > x),
            "wwr_max": ("wwr", lambda v, x: v <= x),
            "shape_above": ("shape", lambda v, x: v > x),
            "shape_max": ("shape", lambda v, x: v <= x),
            "floor_area_above": ("floor_area", lambda v, x: v > x),
            "floor_area_max": ("floor_area", lambda v, x: v <= x),
        }
        for key, bound in self.when.items():
            fact, test = tests[key]
            value = facts.get(fact)
            if value is None or not test(value, bound):
                return False
        return True

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "max": self.max,
            "clause": self.clause,
            "verified": self.verified,
            "when": self.when,
        }


@dataclass(frozen=True)
class Limits:
    id: str
    title: str
    file_version: int
    path: Path
    sha256: str
    zones: dict[str, dict[str, Any]]
    rows: tuple[Limit, ...]

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.id}, file version {self.file_version})"

    def for_check(self, check: str) -> list[Limit]:
        return [r for r in self.rows if r.check == check]


def load_limits(ref: str | Path = "gb55015-2021") -> Limits:
    """The limits by id (``schemas/standards/<id>.json``) or path, checked by their schema."""
    path = Path(ref)
    if not path.suffix:
        path = STANDARDS / f"{ref}.json"
        if not path.is_file():
            raise NotFound(f"no limits table {ref!r} in schemas/standards/")
    doc, digest = _load(path, "energy-limits.schema.json", "energy limits table")
    rows = tuple(
        Limit(
            id=r["id"],
            check=r["check"],
            zones=tuple(r["zones"]),
            building_type=r["building_type"],
            when={k: float(v) for k, v in r["when"].items()},
            max=float(r["max"]),
            clause=r["clause"],
            verified=bool(r["verified"]),
        )
        for r in doc["limits"]
    )
    for r in rows:
        unknown = [z for z in r.zones if z not in doc["climate_zones"]]
        if unknown:
            raise InputFileError(f"{path}: limit {r.id!r} names unknown zones {unknown}")
    return Limits(
        id=doc["id"],
        title=doc["title"],
        file_version=int(doc["file_version"]),
        path=path,
        sha256=digest,
        zones=doc["climate_zones"],
        rows=rows,
    )


@dataclass(frozen=True)
class City:
    name_zh: str
    name_en: str
    province: str
    lon: float
    lat: float
    zone: str
    hdd18: float | None
    verified: bool


@dataclass(frozen=True)
class Cities:
    file_version: int
    path: Path
    sha256: str
    cities: tuple[City, ...] = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.path.name} (file version {self.file_version})"

    def nearest(self, lon: float, lat: float) -> tuple[City, float]:
        """The nearest city (great-circle) and its distance in km."""
        best: tuple[City, float] | None = None
        for c in self.cities:
            d = great_circle_km(lon, lat, c.lon, c.lat)
            if best is None or d < best[1]:
                best = (c, d)
        assert best is not None
        return best


def great_circle_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


@cache
def load_cities(path: Path = CLIMATE_FILE) -> Cities:
    doc, digest = _load(path, "climate.schema.json", "climate zone table")
    return Cities(
        file_version=int(doc["file_version"]),
        path=path,
        sha256=digest,
        cities=tuple(
            City(
                name_zh=c["name_zh"],
                name_en=c["name_en"],
                province=c["province"],
                lon=float(c["lon"]),
                lat=float(c["lat"]),
                zone=c["zone"],
                hdd18=c["hdd18"],
                verified=bool(c["verified"]),
            )
            for c in doc["cities"]
        ),
    )
