"""Storeys and buildings of an IFC model: the ``storeys`` and ``buildings`` rows.

A building's footprint is the union of its shell elements' outlines (walls, slabs, columns...:
not footings, proxies or furniture), its height from its ground floor to the top of those
elements. Its storeys are counted as floors by GB 50096-2011's rule (a storey lower than
MIN_FLOOR_HEIGHT is none, nor one holding only the roof), above or below the ground floor,
and its gross floor area is the sum of the counted storeys' outlines above ground, unless the
model gives it in a Qto set. Elements outside any IfcBuilding make one more building.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypedDict

import ifcopenshell
import ifcopenshell.util.element as uel
import ifcopenshell.util.placement as uplace
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from cim.georef import Placement, apply_affine
from ingest.ifc.elements import ElementRow
from ingest.ifc.mesh import is_shell, union_of_polygons
from ingest.ifc.placement import ModelFrame, center_of, to_project
from ingest.ifc.properties import attr
from ingest.ifc.quirks import OddItems, label, number, text

if TYPE_CHECKING:
    from cim.store import Store

#: elements whose presence makes a storey a floor (not a roof level of slabs alone...)
_FLOOR_MAKERS = ("IfcWall", "IfcColumn", "IfcCurtainWall", "IfcSlab", "IfcSpace")

#: a storey lower than this is no floor of its own (m): GB 50096-2011 4.0.5, "层高小于2.20m的
#: 架空层和设备层不应计入自然层数" (a foundation level, a parapet level above the roof)
MIN_FLOOR_HEIGHT = 2.2

#: a storey as read from the model, then measured by write_buildings (height, floor area,
#: whether it counts as a floor, above ground): the ``storeys`` row
Storey = dict[str, Any]


class BuildingAttributes(TypedDict):
    """``buildings.attributes`` of a building from an IFC model."""

    ifc_name: str | None
    model_frame: ModelFrame
    ifc_class: str | None
    gfa_source: str  # "qto" or "storey_outlines"


def read_storeys(
    model: ifcopenshell.file, unit_scale: float, odd: OddItems | None = None
) -> dict[int, Storey]:
    """IfcBuildingStorey entity id -> its storey (name, elevation in metres, building)."""
    out: dict[int, Storey] = {}
    for st in model.by_type("IfcBuildingStorey"):
        building = building_of(st, odd)
        elev = number(st.Elevation)
        if elev is None and st.Elevation is not None and odd is not None:
            # a list or a string where the schema has a length (found by fuzzing)
            odd.add("odd_elevation", st, type(st.Elevation).__name__)
        if elev is None and st.ObjectPlacement is not None:
            try:
                elev = uplace.get_local_placement(st.ObjectPlacement)[2, 3]
            except (AttributeError, TypeError, ValueError, IndexError) as exc:
                # a placement whose parts are not placements (found by fuzzing)
                if odd is not None:
                    odd.add("unreadable_placement", st, type(exc).__name__)
                elev = None
        out[st.id()] = {
            "global_id": label(st),
            "name": text(st.Name),
            "elevation": float(elev or 0.0) * unit_scale,
            "building": building.id() if building else None,
            "building_ref": label(building) if building else None,
        }
    return out


def write_buildings(
    store: Store,
    model: ifcopenshell.file,
    source_id: int,
    rows: dict[int, ElementRow],
    storeys: dict[int, Storey],
    placement: Placement,
) -> dict[int | None, int | None]:
    """One row per IfcBuilding, and the storeys' rows; returns IfcBuilding entity id ->
    buildings.id (None for a building without shell elements: no row)."""
    groups: dict[int | None, list[ElementRow]] = defaultdict(list)
    storey_members: dict[int, list[ElementRow]] = defaultdict(list)
    for r in rows.values():
        st, b = r.storey, r.building
        groups[b.id() if b else None].append(r)
        if st is not None:
            storey_members[st.id()].append(r)
    keys: list[int | None] = [b.id() for b in model.by_type("IfcBuilding")]
    # elements outside any building (or no IfcBuilding at all) make one more building
    if not keys or any(is_shell(r.product) for r in groups.get(None, [])):
        keys.append(None)
    result: dict[int | None, int | None] = {}
    for key in keys:
        shell = [r for r in groups.get(key, []) if r.outline is not None and r.mesh is not None]
        if not shell:
            result[key] = None
            continue
        b_storeys = [(sid, s) for sid, s in storeys.items() if s["building"] == key or key is None]
        ent = model.by_id(key) if key is not None else None
        result[key] = _write_building(
            store, source_id, ent, shell, b_storeys, storey_members, placement
        )
    _write_storeys(store, source_id, storeys)
    return result


def _write_building(
    store: Store,
    source_id: int,
    ent: Any,
    shell: list[ElementRow],
    b_storeys: list[tuple[int, Storey]],
    storey_members: dict[int, list[ElementRow]],
    placement: Placement,
) -> int:
    """The ``buildings`` row of one IfcBuilding (``ent``; None for the elements outside any)
    from its shell elements and storeys; returns its id."""
    outline = union_of_polygons(r.outline for r in shell)
    outline = _fill_small_holes(outline, 4.0)
    zs = np.concatenate([r.mesh.verts[:, 2] for r in shell if r.mesh is not None])
    ground_local = _ground_elevation([s["elevation"] for _, s in b_storeys], float(zs.min()))
    above, below, gfa = _count_floors(b_storeys, storey_members, ground_local)
    qto_gfa = _qto_value(ent, ("GrossFloorArea",)) if ent is not None else None
    top_local = float(zs.max())
    fp = to_project(outline, placement.matrix)
    ground_z = float(
        apply_affine(placement.matrix, np.array([[*center_of(outline), ground_local]]))[0, 2]
    )
    minx, miny, maxx, maxy = fp.bounds
    given_name = text(attr(ent, "LongName")) or text(attr(ent, "Name"))
    frame: ModelFrame = {
        "footprint_wkt": shapely.to_wkt(outline, rounding_precision=4),
        "ground_z": ground_local,
        "top_z": top_local,
    }
    attrs: BuildingAttributes = {
        "ifc_name": given_name,
        "model_frame": frame,
        "ifc_class": ent.is_a() if ent is not None else None,
        "gfa_source": "qto" if qto_gfa else "storey_outlines",
    }
    row = store.con.execute(
        "INSERT INTO buildings (source_id, source_ref, name, use, year_built, footprint, "
        "ground_z, height, height_source, storeys_above, storeys_below, gross_floor_area, lod, "
        "attributes, xmin, ymin, xmax, ymax) VALUES (?, ?, ?, ?, ?, ST_GeomFromWKB(?), ?, ?, "
        "'ifc', ?, ?, ?, 'BIM', ?, ?, ?, ?, ?) RETURNING id",
        [
            source_id,
            label(ent) if ent is not None else None,
            building_name(given_name),
            _building_use(ent) if ent is not None else None,
            building_year(ent) if ent is not None else None,
            shapely.to_wkb(fp),
            ground_z,
            top_local - ground_local,
            above,
            below,
            float(qto_gfa) if qto_gfa else round(gfa, 3),
            json.dumps(attrs),
            minx,
            miny,
            maxx,
            maxy,
        ],
    ).fetchone()
    assert row is not None
    return int(row[0])


def _count_floors(
    b_storeys: list[tuple[int, Storey]],
    storey_members: dict[int, list[ElementRow]],
    ground_local: float,
) -> tuple[int, int, float]:
    """Measure a building's storeys (height, floor area, counted, above ground: set on each)
    and count its floors: (above ground, below, gross floor area above ground)."""
    above = below = 0
    gfa = 0.0
    b_storeys.sort(key=lambda item: item[1]["elevation"])
    for k, (sid, s) in enumerate(b_storeys):
        members = storey_members.get(sid, [])
        # storey height: to the next storey; the top one's to the top of its building
        # elements (as the building's height: not its spaces, which some exporters
        # draw as boxes above the roof)
        if k + 1 < len(b_storeys):
            s["height"] = b_storeys[k + 1][1]["elevation"] - s["elevation"]
        else:
            tops = [
                float(r.mesh.verts[:, 2].max())
                for r in members
                if r.mesh is not None and r.outline is not None
            ]
            s["height"] = max(tops) - s["elevation"] if tops else None
        # the roof is no floor: a storey holding only the roof (Revit's "Roof" level)
        # is not counted, and a roof's overhang is no floor area
        mem = [r for r in members if not _is_roof(r)]
        outlines = [r.outline for r in mem if r.outline is not None]
        area = _fill_small_holes(union_of_polygons(outlines), 1e9).area if outlines else 0
        s["floor_area"] = round(float(area), 3)
        low = s["height"] is not None and s["height"] < MIN_FLOOR_HEIGHT - 0.005
        s["counted"] = _makes_floor(mem) and not low
        s["above_ground"] = s["elevation"] >= ground_local - 0.01
        if not s["counted"]:
            continue
        if s["above_ground"]:
            above += 1
            gfa += area
        else:
            below += 1
    return above, below, gfa


def _write_storeys(store: Store, source_id: int, storeys: dict[int, Storey]) -> None:
    storey_rows = []
    for s in storeys.values():
        storey_rows.append(
            (
                source_id,
                s["building_ref"],
                s["global_id"],
                s["name"],
                s["elevation"],
                s.get("above_ground"),
                s.get("height"),
                s.get("floor_area"),
                s.get("counted"),
            )
        )
    store.insert_rows(
        "storeys",
        (
            "source_id",
            "building_ref",
            "global_id",
            "name",
            "elevation",
            "above_ground",
            "height",
            "floor_area",
            "counted",
        ),
        storey_rows,
    )


def _makes_floor(members: Iterable[ElementRow]) -> bool:
    return any(r.product.is_a(c) for r in members for c in _FLOOR_MAKERS)


def _is_roof(row: ElementRow) -> bool:
    """An IfcRoof, a part of one (Revit exports roofs as an IfcRoof of NOTDEFINED slabs), or
    a slab or covering typed ROOF / ROOFING."""
    p = row.product
    if p.is_a("IfcRoof"):
        return True
    if (p.is_a("IfcSlab") or p.is_a("IfcCovering")) and (row.props or {}).get(
        "predefined_type"
    ) in ("ROOF", "ROOFING"):
        return True
    whole = _aggregate(p)
    return bool(whole is not None and whole.is_a("IfcRoof"))


def _ground_elevation(storey_elevations: list[float], zmin: float) -> float:
    """The ground floor: the lowest storey at or above the model's +-0.00, else the lowest."""
    if not storey_elevations:
        return zmin
    above = [e for e in storey_elevations if e >= -0.01]
    return min(above) if above else max(storey_elevations)


def _fill_small_holes(geom: BaseGeometry, max_area: float) -> BaseGeometry:
    polys = getattr(geom, "geoms", [geom])
    out = []
    for p in polys:
        if p.geom_type != "Polygon" or p.is_empty:
            continue
        holes = [h for h in p.interiors if shapely.Polygon(h).area > max_area]
        out.append(shapely.Polygon(p.exterior, holes))
    if not out:
        return shapely.Polygon()
    return union_of_polygons(out) if len(out) > 1 else out[0]


def _relating(
    entity: Any, inverse: str, rel_class: str, attribute: str, odd: OddItems | None
) -> Any:
    """``attribute`` of the first of ``entity``'s ``inverse`` relations, as
    ifcopenshell.util.element.get_container and get_aggregate read it; a "relation" of another
    class there (a property, an owner history: a corrupt reference) is ignored, and recorded in
    ``odd``."""
    for rel in getattr(entity, inverse, None) or ():
        if isinstance(rel, ifcopenshell.entity_instance) and rel.is_a(rel_class):
            target = getattr(rel, attribute)
            if target is None or isinstance(target, ifcopenshell.entity_instance):
                return target
            rel = target  # the relation points at a value, not an entity: ignored
        if odd is not None:
            odd.add_once("ignored_relation", _ref(rel), f"{inverse} of {label(entity)}")
    return None


def _ref(item: Any) -> str:
    if isinstance(item, ifcopenshell.entity_instance):
        return f"{label(item)} ({item.is_a()})"
    return repr(item)[:40]


def _container(entity: Any, odd: OddItems | None = None) -> Any:
    """ifcopenshell.util.element.get_container, without its slow getattr on classes that have
    no ContainedInStructure (see attr), ignoring a containment that is not one."""
    if entity.get_attribute_category("ContainedInStructure") != 2:  # inverse
        return None
    return _relating(
        entity,
        "ContainedInStructure",
        "IfcRelContainedInSpatialStructure",
        "RelatingStructure",
        odd,
    )


def _aggregate(entity: Any, odd: OddItems | None = None) -> Any:
    """ifcopenshell.util.element.get_aggregate, ignoring a Decomposes that is not an
    IfcRelAggregates (IFC2X3's nests, or a corrupt reference)."""
    if entity.get_attribute_category("Decomposes") != 2:  # inverse
        return None
    return _relating(entity, "Decomposes", "IfcRelAggregates", "RelatingObject", odd)


def storey_of(product: Any, odd: OddItems | None = None) -> Any:
    """The IfcBuildingStorey a product stands in, through the assemblies it is a part of."""
    seen = 0
    p = product
    while p is not None and seen < 20:
        c = _container(p, odd)
        if c is not None:
            if c.is_a("IfcBuildingStorey"):
                return c
            return None
        p = _aggregate(p, odd)
        if p is not None and p.is_a("IfcBuildingStorey"):
            return p
        seen += 1
    return None


def building_of(entity: Any, odd: OddItems | None = None) -> Any:
    """The IfcBuilding above an entity (a storey, an element), or None."""
    seen = 0
    p = entity
    while p is not None and seen < 20:
        if p.is_a("IfcBuilding"):
            return p
        nxt = _aggregate(p, odd)
        if nxt is None:
            nxt = _container(p, odd)
        p = nxt
        seen += 1
    return None


#: names authoring tools put in their templates, not a building's name (Revit's project
#: information placeholder "// BUILDING/NAME //", ArchiCAD's and others' defaults)
_PLACEHOLDER_NAME = re.compile(
    r"^\s*(//.*//|default building|building|unnamed|untitled|bâtiment|gebäude|建筑物?)\s*$",
    re.IGNORECASE,
)


def building_name(name: Any) -> str | None:
    """The building's name for the map; None for an empty name or a template placeholder (the
    name as given stays in ``attributes.ifc_name``)."""
    text = str(name).strip() if name is not None else ""
    if not text or _PLACEHOLDER_NAME.match(text):
        return None
    return text


def _building_use(ent: Any) -> str | None:
    psets = uel.get_psets(ent)
    common = psets.get("Pset_BuildingCommon", {})
    for key in ("OccupancyType", "MarketCategory"):
        if common.get(key):
            return str(common[key])
    value = attr(ent, "ObjectType")
    return str(value) if value else None


#: a year of construction as the tools write it: "2024", "2024-05", "建于2024年"
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d|2100)(?!\d)")


def building_year(ent: Any) -> int | None:
    """The year of construction from ``Pset_BuildingCommon.YearOfConstruction`` (a label in
    IFC2X3 and IFC4, so any text with a year in it); None when the model does not say."""
    value = uel.get_psets(ent).get("Pset_BuildingCommon", {}).get("YearOfConstruction")
    found = _YEAR.search(str(value)) if value is not None else None
    return int(found.group(1)) if found else None


def _qto_value(ent: Any, names: tuple[str, ...]) -> float | None:
    for props in uel.get_psets(ent, qtos_only=True).values():
        for n in names:
            v = props.get(n)
            if isinstance(v, int | float) and v > 0:
                return float(v)
    return None
