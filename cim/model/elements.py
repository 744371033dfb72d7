"""What the element rows say beyond their columns: whether an element is precast.

Real exports say it in several places (``../shared/data/README.md``): the IFC standard's
``Pset_ConcreteElementGeneral.CastingMethod`` (PRECAST / INSITU) and
``Pset_PrecastConcreteElementGeneral``, Tekla's "Cast unit type" (Prefab / Cast in place), and
Chinese properties (是否预制: 是 / 否; 施工方式: 预制 / 现浇). ``precast_flag`` reads them all, the
standard first; None when nothing says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_YES = {"true", "yes", "y", "1", "是", "预制", "prefab", "precast", "prefabricated", "装配式"}
_NO = {"false", "no", "n", "0", "否", "现浇", "insitu", "in situ", "cast in place", "cast-in-place"}


def _verdict(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower().replace("_", " ")
    if text in _YES:
        return True
    if text in _NO:
        return False
    if "预制" in text or "precast" in text or "prefab" in text:
        return True
    if "现浇" in text or "in situ" in text or "insitu" in text:
        return False
    return None


def precast_flag(psets: Mapping[str, Mapping[str, Any]]) -> bool | None:
    """True (precast), False (cast in place) or None (not said) from an element's property
    sets (``elements.psets``)."""
    concrete = psets.get("Pset_ConcreteElementGeneral") or {}
    method = concrete.get("CastingMethod")
    if method is not None:
        verdict = _verdict(method)
        if verdict is not None:
            return verdict
    if "Pset_PrecastConcreteElementGeneral" in psets:
        return True
    found: bool | None = None
    for values in psets.values():
        if not isinstance(values, Mapping):
            continue
        for name, value in values.items():
            key = str(name).lower()
            if key in ("cast unit type", "casting method") or any(
                word in str(name) for word in ("预制", "施工方式", "装配")
            ):
                verdict = _verdict(value)
                if verdict is not None:
                    found = verdict
                    if verdict:
                        return True
    return found
