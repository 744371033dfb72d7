"""Heat transfer coefficients (U, K values) of envelope elements, and which openings glaze.

An element's U value comes from its ``Pset_*Common.ThermalTransmittance`` (the ingest keeps it
in ``elements.thermal_transmittance``), else from its material layers when every layer gives
its thickness and its material's thermal conductivity: U = 1 / (Rsi + sum(d / lambda) + Rse),
with the surface resistances of GB 50176-2016 (inside 0.11, outside 0.04 m2.K/W), else it is
unknown: never assumed.
"""

from __future__ import annotations

from typing import Any

from cim.analyze.members import Element

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
