"""Heat transfer coefficients (U, K values) of envelope elements, and which openings glaze.

An element's U value comes from its ``Pset_*Common.ThermalTransmittance`` (the ingest keeps it
in ``elements.thermal_transmittance``), else from its material layers when every layer gives
its thickness and its material's thermal conductivity: U = 1 / (Rsi + sum(d / lambda) + Rse),
with the surface resistances of GB 50176-2016 (inside 0.11, outside 0.04 m2.K/W), else it is
unknown: never assumed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from cim.analyze.members import Element

if TYPE_CHECKING:
    from cim.analyze.envelope import Envelope

WALLS = ("IfcWall", "IfcWallStandardCase", "IfcWallElementedCase")
SLABS = ("IfcSlab", "IfcSlabStandardCase", "IfcSlabElementedCase")

#: surface resistances (m2.K/W), GB 50176-2016 Appendix B: inside, outside
R_SI = 0.11
R_SE = 0.04
#: words in a door's names or materials that make it glazed (a balcony or terrace door)
_GLAZED = (
    "glass", "glazed", "glazing", "verglas", "glas", "terrass", "balkon", "balcony",
    "french", "patio", "玻璃", "阳台门", "落地窗",
)  # fmt: skip
_GLASS = ("glass", "glazing", "glas", "玻璃")


def u_value(e: Element) -> tuple[float | None, str, dict[str, Any]]:
    """(U in W/(m2.K) or None, where it came from, the evidence)."""
    if e.thermal_transmittance is not None and e.thermal_transmittance > 0:
        return float(e.thermal_transmittance), "ThermalTransmittance", {}
    if not e.layers:
        return None, "no ThermalTransmittance and no material layers", {}
    missing = [
        layer.get("material") or "(unnamed)"
        for layer in e.layers
        if not layer.get("thickness") or not layer.get("conductivity")
    ]
    if missing:
        return (
            None,
            "material layers without thickness or conductivity: " + ", ".join(missing[:5]),
            {"layers": e.layers},
        )
    r = R_SI + R_SE + sum(float(la["thickness"]) / float(la["conductivity"]) for la in e.layers)
    return 1.0 / r, "material layers", {"layers": e.layers, "r_total": round(r, 4)}


def glazed_door(e: Element) -> bool:
    """A door that counts as a window: its names say so, or Pset_DoorCommon's
    GlazingAreaFraction is at least one half."""
    text = " ".join(str(n) for n in (*e.names, *e.materials) if n).casefold()
    if any(w in text for w in _GLAZED):
        return True
    for values in e.psets.values():
        if isinstance(values, dict):
            f = values.get("GlazingAreaFraction")
            if isinstance(f, int | float) and f >= 0.5:
                return True
    return False


def glass_panel(e: Element) -> bool:
    """A curtain wall's panel (IfcPlate) of glass, or a curtain wall with no panels of its own."""
    text = " ".join(str(n) for n in (*e.names, *e.materials) if n).casefold()
    return (e.predefined or "").upper() == "CURTAIN_PANEL" or any(w in text for w in _GLASS)


def envelope_u_values(
    elements: list[Element], env: Envelope, windows: list[dict[str, Any]], guids: int = 20
) -> dict[str, dict[str, Any]]:
    """Area-weighted U of the outside walls, roofs and floors over outdoor air; the highest U
    of the outside windows. Any element of a kind without a U value makes that kind unknown."""
    kinds = env.kinds()
    area_of: dict[tuple[int, str], float] = {}
    for k in ("wall", "roof", "floor"):
        m = kinds == k
        ids, where = np.unique(env.element[m], return_inverse=True)
        sums = np.bincount(where, weights=env.area[m], minlength=len(ids))
        area_of.update({(int(e), k): float(a) for e, a in zip(ids, sums, strict=True)})
    groups: dict[str, list[tuple[Element, float]]] = defaultdict(list)
    for e in elements:
        if e.ifc_class in WALLS or e.ifc_class == "IfcCurtainWall":
            a = area_of.get((e.id, "wall"), 0.0)
            if a > 0.5:
                groups["wall"].append((e, a))
        elif e.ifc_class == "IfcRoof" or e.ifc_class in SLABS:
            roof = area_of.get((e.id, "roof"), 0.0)
            floor = area_of.get((e.id, "floor"), 0.0)
            if roof > 0.5:
                groups["roof"].append((e, roof))
            elif floor > 0.5 and (e.predefined or "").upper() != "ROOF":
                groups["floor_over_air"].append((e, floor))
    seen = {w["global_id"] for w in windows}
    groups["window"] = [(e, 1.0) for e in elements if e.guid in seen]
    out: dict[str, dict[str, Any]] = {}
    for key in ("roof", "wall", "window", "floor_over_air"):
        members = groups.get(key, [])
        if not members:
            continue
        known: list[tuple[Element, float, float | None]] = []
        missing: list[tuple[Element, float, float | None]] = []
        sources: dict[str, int] = defaultdict(int)
        for e, a in members:
            u, source, _ = u_value(e)
            sources[source if u is not None else "unknown"] += 1
            (known if u is not None else missing).append((e, a, u))
        total = sum(a for _, a, _ in known) + sum(a for _, a, _ in missing)
        ev: dict[str, Any] = {
            "elements": len(members),
            "with_u": len(known),
            "sources": dict(sources),
            "without_u": [e.guid for e, _, _ in missing][:guids],
        }
        if key == "window":
            value = max((u for _, _, u in known if u is not None), default=None)
            ev["rule"] = "the highest U of the outside windows"
        else:
            value = (
                sum(a * u for _, a, u in known if u is not None) / sum(a for _, a, _ in known)
                if known
                else None
            )
            ev["rule"] = "area-weighted over the outside surface of each element"
            ev["area_m2"] = round(total, 2)
        if missing:
            ev["value_of_known"] = None if value is None else round(value, 4)
            out[key] = {
                "value": None,
                "why": f"{len(missing)} of {len(members)} elements have no U value "
                "(no ThermalTransmittance, no complete material layers)",
                **ev,
            }
        else:
            out[key] = {"value": None if value is None else round(value, 4), **ev}
    return out
