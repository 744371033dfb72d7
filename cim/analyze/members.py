"""The members of a modelled building as GB/T 51129-2017 scores them.

Each element row of an IFC building (``cim/model``) is classified into the table's items by
IFC class, predefined type, LoadBearing, IsExternal and material; its prefabrication verdict
comes from the rules in ``schemas/standards/precast-rules.json`` (inherited from the assembly
it is part of, as Tekla writes it); and it is measured: vertical members by volume, horizontal
members by horizontal projected area, walls by the area of one face with openings not
deducted (4.0.5: the quantity set's GrossSideArea, else the long side of the smallest
rectangle around the wall's plan times its height, from its mesh).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from cim.model.elements import PrecastRules, Verdict
from cim.model.meshes import element_meshes

if TYPE_CHECKING:
    from cim.store import Store

_WALLS = ("IfcWall", "IfcWallStandardCase", "IfcWallElementedCase")
_COLUMNS = ("IfcColumn", "IfcColumnStandardCase")
_BEAMS = ("IfcBeam", "IfcBeamStandardCase")
_SLABS = ("IfcSlab", "IfcSlabStandardCase", "IfcSlabElementedCase")
_STAIRS = ("IfcStair", "IfcStairFlight")
_MASONRY = (
    "masonry", "brick", "block", "砌", "砖", "mauerwerk", "ziegel", "kalksandstein",
    "porenbeton", "aerated", "加气",
)  # fmt: skip
_CONCRETE = ("concrete", "混凝土", "砼", "beton", "c20", "c25", "c30", "c35", "c40", "c50")
_ON_GROUND = ("on grade", "slab-on-grade", "地坪", "垫层", "foundation", "基础")
_FINISH = ("finish", "面层", "装饰层", "screed", "找平", "covering")
_BALCONY = ("阳台", "balcony", "balkon")
_AC_SLAB = ("空调板", "ac slab", "空调")
_YES = {"是", "true", "yes", "y", "1", "有"}


def _text(values: Iterable[Any]) -> str:
    return " ".join(str(v) for v in values if v).casefold()


@dataclass
class Element:
    id: int
    guid: str
    ifc_class: str
    predefined: str | None
    name: str | None
    object_type: str | None
    type_name: str | None
    materials: list[str]
    is_external: bool | None
    load_bearing: bool | None
    psets: dict[str, Any]
    qsets: dict[str, Any]
    volume: float | None
    projected_area: float | None
    bbox: tuple[float, ...] | None
    status: str
    verdict: Verdict | None = None
    item: str | None = None
    why: str = ""
    quantity: float | None = None
    notes: list[str] = field(default_factory=list)
    thermal_transmittance: float | None = None  # W/(m2.K), Pset_*Common
    attributes: dict[str, Any] = field(default_factory=dict)  # OverallWidth ... (m)
    layers: list[dict[str, Any]] = field(default_factory=list)  # material layers (m)

    @property
    def names(self) -> list[str | None]:
        return [self.name, self.type_name, self.object_type]

    @property
    def group(self) -> str:
        """The member group a what-if switches at once: class and type (or predefined type)."""
        kind = self.type_name or self.predefined or self.object_type
        return f"{self.ifc_class} {kind}" if kind else f"{self.ifc_class} (untyped)"


# ---- reading ---------------------------------------------------------------------------


def read_elements(store: Store, building_id: int) -> list[Element]:
    rows = store.con.execute(
        "SELECT id, global_id, ifc_class, predefined_type, name, object_type, type_name, "
        "materials, is_external, load_bearing, psets, qsets, volume, projected_area, "
        "xmin, ymin, zmin, xmax, ymax, zmax, geometry_status, thermal_transmittance, "
        "attributes, layers FROM elements "
        "WHERE building_id = ? ORDER BY id",
        [building_id],
    ).fetchall()
    out = []
    for r in rows:
        box = tuple(float(v) for v in r[14:20]) if all(v is not None for v in r[14:20]) else None
        out.append(
            Element(
                id=int(r[0]),
                guid=r[1],
                ifc_class=r[2],
                predefined=(r[3] or None),
                name=r[4],
                object_type=r[5],
                type_name=r[6],
                materials=[str(m) for m in json.loads(r[7])] if r[7] else [],
                is_external=r[8],
                load_bearing=r[9],
                psets=json.loads(r[10]) if r[10] else {},
                qsets=json.loads(r[11]) if r[11] else {},
                volume=r[12],
                projected_area=r[13],
                bbox=box,
                status=r[20],
                thermal_transmittance=r[21],
                attributes=json.loads(r[22]) if r[22] else {},
                layers=json.loads(r[23]) if r[23] else [],
            )
        )
    return out


def assemblies(store: Store, source_id: int) -> dict[str, str]:
    """part GlobalId -> the GlobalId of the element it is aggregated into."""
    rows = store.con.execute(
        "SELECT related_guid, relating_guid FROM element_relations "
        "WHERE source_id = ? AND kind = 'aggregates'",
        [source_id],
    ).fetchall()
    return {a: b for a, b in rows}


def verdicts(rules: PrecastRules, elements: list[Element], parent: dict[str, str]) -> None:
    by_guid = {e.guid: e for e in elements}
    for e in elements:
        e.verdict = rules.classify(e.psets, e.names, e.materials)
    for e in elements:
        if e.verdict is not None:
            continue
        seen = {e.guid}
        up = parent.get(e.guid)
        while up is not None and up not in seen:
            seen.add(up)
            owner = by_guid.get(up)
            if owner is not None and owner.verdict is not None and rules.inherits(owner.verdict):
                e.verdict = Verdict(owner.verdict.verdict, owner.verdict.rule, via=up)
                break
            up = parent.get(up)


# ---- classifying -----------------------------------------------------------------------


def _is_concrete(e: Element) -> bool:
    return any(c in _text(e.materials) for c in _CONCRETE)


def is_masonry(e: Element) -> bool | None:
    """True, False, or None when no material is known."""
    if e.verdict is not None and e.verdict.prefabricated:
        return False
    if e.ifc_class == "IfcCurtainWall":
        return False
    text = _text(e.materials)
    if not text:
        return None
    return any(m in text for m in _MASONRY)


def external(e: Element, outline: Any) -> tuple[bool | None, str]:
    if e.is_external is not None:
        return e.is_external, "IsExternal"
    if outline is None or e.bbox is None:
        return None, "no IsExternal and no footprint"
    x0, y0, _, x1, y1, _ = e.bbox
    box = shapely.box(x0, y0, x1, y1)
    # the model says nothing: a wall reaching the building's outline is on its outer shell
    near = shapely.distance(box, outline) <= 0.1
    return bool(near), "on the footprint's outline (no IsExternal)"


def classify(e: Element, outline: Any) -> None:
    cls = e.ifc_class
    text = _text(e.names)
    pre = (e.predefined or "").upper()
    if e.status == "none" and cls != "IfcCurtainWall":
        e.item, e.why = None, "no shape of its own (its parts are measured)"
        return
    if cls in _COLUMNS or (cls == "IfcMember" and pre in ("BRACE", "STRUT")):
        e.item, e.why = "vertical", f"{cls} {pre}".strip()
        return
    if cls in _WALLS or cls == "IfcCurtainWall":
        bearing = e.load_bearing
        why = "LoadBearing"
        if cls == "IfcCurtainWall":
            bearing, why = False, "curtain wall"
        elif bearing is None:
            if pre == "SHEAR" or "剪力墙" in text:
                bearing, why = True, "shear wall (no LoadBearing)"
            elif pre in ("PARTITIONING", "PARAPET") or "隔墙" in text:
                bearing, why = False, f"{pre or '隔墙'} (no LoadBearing)"
            elif _is_concrete(e):
                bearing, why = True, "concrete wall taken as load-bearing (no LoadBearing)"
            else:
                bearing, why = False, "taken as non-load-bearing (no LoadBearing, not concrete)"
        if bearing:
            e.item, e.why = "vertical", f"load-bearing wall ({why})"
            return
        outside, how = external(e, outline)
        if outside is None:
            e.item, e.why = None, f"non-load-bearing wall, inside or outside unknown ({how})"
            e.notes.append("unknown_exposure")
            return
        e.item = "envelope" if outside else "partition"
        e.why = f"non-load-bearing {'external' if outside else 'internal'} wall ({why}; {how})"
        return
    if cls in _BEAMS:
        e.item, e.why = "horizontal", cls
        return
    if cls in _SLABS:
        if pre == "BASESLAB" or any(w in text for w in _ON_GROUND):
            e.item, e.why = None, "base slab or slab on grade (not a floor slab: not scored)"
            return
        if any(w in text for w in _FINISH):
            e.item, e.why = None, "a finish layer modelled as a slab (not a structural member)"
            return
        e.item, e.why = "horizontal", f"slab {pre or ''}".strip()
        return
    if cls in _STAIRS:
        e.item, e.why = "horizontal", "stair"
        return
    if any(w in text for w in _BALCONY):
        e.item, e.why = "horizontal", "balcony (by name)"
        return
    if any(w in text for w in _AC_SLAB):
        e.item, e.why = "horizontal", "AC slab (by name)"
        return
    e.item, e.why = None, "not scored"


# ---- measuring -------------------------------------------------------------------------


def qto(e: Element, *names: str) -> float | None:
    for values in e.qsets.values():
        if not isinstance(values, dict):
            continue
        for n in names:
            v = values.get(n)
            if isinstance(v, int | float) and v > 0:
                return float(v)
    return None


def wall_faces(store: Store, building_id: int, walls: list[Element]) -> dict[int, float]:
    """One face of each wall with its openings not deducted: the long side of the smallest
    rectangle around its plan times its height, from its mesh."""
    if not walls:
        return {}
    wanted = {w.id for w in walls}
    out: dict[int, float] = {}
    for m in element_meshes(store, building_ids=[building_id], exclude=()):
        if m.element_id not in wanted or len(m.positions) < 3:
            continue
        xy = m.positions[:, :2]
        rect = shapely.minimum_rotated_rectangle(shapely.multipoints(xy))
        coords = np.asarray(shapely.get_coordinates(rect))
        if len(coords) < 4:
            continue
        sides = np.linalg.norm(np.diff(coords[:3], axis=0), axis=1)
        height = float(m.positions[:, 2].max() - m.positions[:, 2].min())
        out[m.element_id] = out.get(m.element_id, 0.0) + float(sides.max()) * height
    return out


def measure(e: Element, faces: dict[int, float]) -> None:
    if e.item == "vertical":
        e.quantity = e.volume if e.volume and e.volume > 0 else qto(e, "NetVolume", "GrossVolume")
    elif e.item == "horizontal":
        e.quantity = (
            e.projected_area
            if e.projected_area and e.projected_area > 0
            else qto(e, "GrossArea", "NetArea", "ProjectedArea")
        )
    elif e.item in ("envelope", "partition"):
        e.quantity = qto(e, "GrossSideArea", "GrossSideAreaLeft", "GrossArea") or faces.get(e.id)
        if e.quantity is None:
            length, height = qto(e, "Length"), qto(e, "Height")
            if length and height:
                e.quantity = length * height


def integrated(e: Element) -> bool:
    for values in e.psets.values():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            said = "一体化" in str(name) or "integrated" in str(name).casefold()
            if said and str(value).strip().casefold() in _YES:
                return True
    return False
