"""What a GIS layer's fields mean and what the layer is, from ``schemas/gis_attributes.json``.

The config lists, for each concept (height, storeys, use, name, year_built, green_star, kind),
the field names it goes by in the wild, and for each role (buildings, roads, landcover, parks,
pois, boundary) the words in layer names and the fields that give it away. Names are compared
case-insensitively. When ``--role`` is not given, the role is guessed from the layer's name,
fields and geometry type, and the ingester reports the guess in its warnings.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from cim.model.features import ROLES


@functools.lru_cache(maxsize=1)
def load_config() -> dict[str, Any]:
    """The attribute-name and role-word tables (``schemas/gis_attributes.json``)."""
    text = resources.files("schemas").joinpath("gis_attributes.json").read_text(encoding="utf-8")
    config: dict[str, Any] = json.loads(text)
    return config


def norm_name(name: str) -> str:
    return name.strip().lower()


def map_attributes(fields: list[str]) -> dict[str, str]:
    """Concept (height, storeys, use, name, year_built, green_star, kind) -> the layer's field."""
    by_norm: dict[str, str] = {}
    for f in fields:
        by_norm.setdefault(norm_name(f), f)
    out: dict[str, str] = {}
    for concept, names in load_config()["attributes"].items():
        for n in names:
            if norm_name(n) in by_norm:
                out[concept] = by_norm[norm_name(n)]
                break
    return out


def guess_role(layer: str, fields: list[str], geometry_type: str | None) -> tuple[str, str]:
    """The role of a layer and why: the longest role word in its name, else its fields, else
    its geometry type (points -> pois, lines -> roads, polygons -> buildings)."""
    roles_cfg = load_config()["roles"]
    name = norm_name(layer)
    best: tuple[int, str, str] | None = None
    for role in ROLES:
        for word in roles_cfg[role]["layer_words"]:
            if word in name and (best is None or len(word) > best[0]):
                best = (len(word), role, word)
    if best is not None:
        return best[1], f"layer name {layer!r} contains {best[2]!r}"
    norm_fields = {norm_name(f): f for f in fields}
    for role in ROLES:
        for f in roles_cfg[role]["fields"]:
            if norm_name(f) in norm_fields:
                return role, f"field {norm_fields[norm_name(f)]!r}"
    base = (geometry_type or "").replace(" Z", "").replace(" M", "").replace("3D ", "")
    role = roles_cfg["geometry"].get(base)
    if role is not None:
        return role, f"geometry type {geometry_type}"
    return "landcover", "nothing else to go by"
