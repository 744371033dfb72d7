"""The district's three IFC4 buildings, made with ifcopenshell.api and georeferenced by an
IfcMapConversion to the project CRS: the precast residential tower (whose assembly rate is known
by hand), a school and a public building, each with spaces, windows in openings, U values and a
roof.

``ModelBuilder`` and ``precast_tower`` are the tests' builders too (``tests/ifc_models.py``
imports them from here). ``freeze`` makes a written model the same bytes on every run: the
api draws random GlobalIds and stamps the time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.feature
import ifcopenshell.api.geometry
import ifcopenshell.api.georeference
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.type
import ifcopenshell.api.unit
import ifcopenshell.guid
import ifcopenshell.util.element
import numpy as np

#: the ground's elevation at Tongliao (m): the models' OrthogonalHeight and the LiDAR ground
GROUND_Z = 180.0
#: the precast tower's assembly rate by hand (GB/T 51129-2017), with TOWER_DECLARATION:
#: Q1 22.0 + 20 (vertical 44.1 %, horizontal 91.5 %), Q2 5 + 5 (envelope and partitions
#: non-masonry), Q3 6 + 6 + 4.5 + 5 + 3.5 (declared), Q4 6 (no bathroom): 77 / 94 = 81.9 %
TOWER_ASSEMBLY_RATE = 81.9
TOWER_GRADE = "AA"


class ModelBuilder:
    """A model of boxes built with ifcopenshell.api, in IFC2X3, IFC4 or IFC4X3: a project in
    metres (or without units), a site, a building and storeys, to which the quirks of
    authoring tools are added (tests/test_ifc_quirks.py)."""

    def __init__(
        self,
        schema: Literal["IFC2X3", "IFC4", "IFC4X3"] = "IFC4",
        *,
        units: bool = True,
        building: str = "Block A",
    ) -> None:
        f = ifcopenshell.api.project.create_file(version=schema)
        if schema == "IFC2X3":  # IFC2X3 requires an owner history on every rooted entity
            org = f.createIfcOrganization(None, "Tests")
            f.createIfcPersonAndOrganization(f.createIfcPerson(), org)
            f.createIfcApplication(org, "1", "tests", "tests")
        self.file = f
        self.project = ifcopenshell.api.root.create_entity(f, ifc_class="IfcProject", name="T")
        if units:
            ifcopenshell.api.unit.assign_unit(f, length={"is_metric": True, "raw": "METERS"})
        model_ctx = ifcopenshell.api.context.add_context(f, context_type="Model")
        self.body = ifcopenshell.api.context.add_context(
            f,
            context_type="Model",
            context_identifier="Body",
            target_view="MODEL_VIEW",
            parent=model_ctx,
        )
        self.site = self.root("IfcSite", "Site")
        self.building = self.root("IfcBuilding", building)
        ifcopenshell.api.aggregate.assign_object(
            f, products=[self.site], relating_object=self.project
        )
        ifcopenshell.api.aggregate.assign_object(
            f, products=[self.building], relating_object=self.site
        )
        for product in (self.site, self.building):
            ifcopenshell.api.geometry.edit_object_placement(f, product=product)

    def root(self, ifc_class: str, name: str | None, **attributes: Any) -> Any:
        entity = ifcopenshell.api.root.create_entity(self.file, ifc_class=ifc_class, name=name)
        for key, value in attributes.items():
            setattr(entity, key, value)
        return entity

    def storey(self, name: str, elevation: float) -> Any:
        storey = self.root("IfcBuildingStorey", name, Elevation=elevation)
        ifcopenshell.api.aggregate.assign_object(
            self.file, products=[storey], relating_object=self.building
        )
        matrix = np.eye(4)
        matrix[2, 3] = elevation
        ifcopenshell.api.geometry.edit_object_placement(self.file, product=storey, matrix=matrix)
        return storey

    def box_representation(self, size: tuple[float, float, float], context: Any = None) -> Any:
        dx, dy, dz = size
        return ifcopenshell.api.geometry.add_slab_representation(
            self.file,
            context=context or self.body,
            depth=dz,
            polyline=[(0.0, 0.0), (dx, 0.0), (dx, dy), (0.0, dy)],
        )

    def box(
        self,
        ifc_class: str,
        name: str | None,
        at: tuple[float, float, float],
        size: tuple[float, float, float],
        container: Any = None,
        representation: Any = None,
    ) -> Any:
        """A product of ``ifc_class`` shaped as a box of ``size`` with its corner at ``at``
        (world metres), contained in (an element: aggregated into) ``container``, if any."""
        f = self.file
        product = self.root(ifc_class, name)
        matrix = np.eye(4)
        matrix[:3, 3] = at
        ifcopenshell.api.geometry.edit_object_placement(f, product=product, matrix=matrix)
        rep = representation if representation is not None else self.box_representation(size)
        ifcopenshell.api.geometry.assign_representation(f, product=product, representation=rep)
        if container is None:
            pass
        elif container.is_a("IfcElement") or ifc_class == "IfcSpace":
            ifcopenshell.api.aggregate.assign_object(
                f, products=[product], relating_object=container
            )
        else:
            ifcopenshell.api.spatial.assign_container(
                f, products=[product], relating_structure=container
            )
        return product

    def pset(self, product: Any, name: str, properties: dict[str, Any], qto: bool = False) -> Any:
        if qto:
            definition = ifcopenshell.api.pset.add_qto(self.file, product=product, name=name)
            ifcopenshell.api.pset.edit_qto(self.file, qto=definition, properties=properties)
        else:
            definition = ifcopenshell.api.pset.add_pset(self.file, product=product, name=name)
            ifcopenshell.api.pset.edit_pset(self.file, pset=definition, properties=properties)
        return definition

    def write(self, path: Path) -> Path:
        self.file.write(str(path))
        return path


def _material(b: ModelBuilder, product: Any, name: str) -> None:
    import ifcopenshell.api.material

    cache = b.__dict__.setdefault("_materials", {})
    if name not in cache:
        cache[name] = ifcopenshell.api.material.add_material(b.file, name=name)
    ifcopenshell.api.material.assign_material(b.file, products=[product], material=cache[name])


def _mark(
    b: ModelBuilder, tagging: str, product: Any, storey: Any, precast: bool, kind: str
) -> None:
    """Mark ``product`` precast or cast in place the way ``tagging`` says (precast_tower)."""
    f = b.file
    if tagging == "ifc":
        if kind == "stair" and precast:
            b.pset(product, "Pset_PrecastConcreteElementGeneral", {"TypeDesignation": "ST-1"})
        else:
            b.pset(
                product,
                "Pset_ConcreteElementGeneral",
                {"CastingMethod": "PRECAST" if precast else "INSITU"},
            )
    elif tagging == "tekla":
        if precast:
            assembly = b.root("IfcElementAssembly", f"CU-{product.Name}")
            ifcopenshell.api.spatial.assign_container(
                f, products=[assembly], relating_structure=storey
            )
            ifcopenshell.api.geometry.edit_object_placement(f, product=assembly)
            ifcopenshell.api.spatial.unassign_container(f, products=[product])
            ifcopenshell.api.aggregate.assign_object(
                f, products=[product], relating_object=assembly
            )
            b.pset(assembly, "Tekla Assembly", {"Cast unit type": "Prefab"})
        else:
            b.pset(product, "Tekla Common", {"Cast unit type": "Cast in place"})
    elif tagging == "chinese":
        if not precast:
            b.pset(product, "构件信息", {"是否预制": "否"})
        elif kind == "slab":
            b.pset(product, "构件信息", {"构件类型": "叠合板"})
        elif kind == "stair":
            b.pset(product, "构件信息", {"构件类型": "预制楼梯"})
        else:
            b.pset(product, "构件信息", {"是否预制": "是"})
    elif tagging != "none":
        raise ValueError(tagging)


def precast_tower(
    path: Path,
    tagging: str = "ifc",
    storeys: int = 3,
    origin: tuple[float, float] = (441000.0, 4830000.0),
    crs: str = "EPSG:4550",
    *,
    envelope: bool = False,
    name: str = "Tower 1",
) -> Path:
    """A residential block with known precast members, georeferenced at Tongliao (EPSG:4550).

    Each storey (3 m) holds: four load-bearing concrete walls 6 x 0.2 x 3 m (two precast),
    four cast-in-place concrete columns 0.4 x 0.4 x 3 m, a precast composite floor slab
    6 x 6 m, a precast stair flight 1 x 3 m in plan, two cast-in-place beams 6 x 0.3 m in
    plan, two precast non-load-bearing external wall panels 6 x 3 m, and two internal
    partitions 4 x 3 m (one gypsum board, one aerated-concrete block masonry).

    By hand: vertical 7.2 / 16.32 = 44.1 % -> 22.0 points; horizontal 39 / 42.6 = 91.5 % ->
    20; envelope non-masonry 100 % -> 5; partitions non-masonry 50 % -> 5.

    ``tagging`` says how the precast members are marked: "ifc" (Pset_ConcreteElementGeneral
    CastingMethod, and Pset_PrecastConcreteElementGeneral on the stair), "tekla" (each
    precast member is the part of an IfcElementAssembly with 'Tekla Assembly' / 'Cast unit
    type' = Prefab), "chinese" (是否预制 = 是, 构件类型 = 叠合板 / 预制楼梯), "both" (the IFC
    properties and the Chinese ones), or "none".

    ``envelope`` adds what an energy check and a PV estimate need, without changing a member
    the assembly rate counts: one space a storey, windows in openings of the east and west
    panels (non-load-bearing: the vertical ratio is of load-bearing members only, and the
    envelope ratio stays 100 %), U values on the walls, windows and slabs, and the top
    storey's slab typed as the roof (ROOF slabs count as horizontal members, like FLOOR).
    """
    b = ModelBuilder("IFC4", building=name)
    f = b.file
    _georeference(f, origin, crs)

    def mark(product: Any, storey: Any, precast: bool, kind: str) -> None:
        for how in ("ifc", "chinese") if tagging == "both" else (tagging,):
            _mark(b, how, product, storey, precast, kind)

    def wall(name: str, at: Any, size: Any, storey: Any, bearing: bool, external: bool) -> Any:
        w = b.box("IfcWall", name, at, size, storey)
        b.pset(w, "Pset_WallCommon", {"LoadBearing": bearing, "IsExternal": external})
        return w

    for k in range(storeys):
        z = 3.0 * k
        st = b.storey(f"F{k + 1}", z)
        # load-bearing walls: two precast (south and north), two cast in place (inside)
        for i, (at, size, pre) in enumerate(
            [
                ((0.0, -0.2, z), (6.0, 0.2, 3.0), True),
                ((0.0, 6.0, z), (6.0, 0.2, 3.0), True),
                ((2.0, 0.0, z), (0.2, 6.0, 3.0), False),
                ((4.0, 0.0, z), (0.2, 6.0, 3.0), False),
            ]
        ):
            w = wall(f"LW{k}-{i}", at, size, st, bearing=True, external=i < 2)
            _material(b, w, "C30 混凝土")
            mark(w, st, pre, "wall")
        for i, (x, y) in enumerate([(0.5, 0.5), (5.1, 0.5), (0.5, 5.1), (5.1, 5.1)]):
            c = b.box("IfcColumn", f"C{k}-{i}", (x, y, z), (0.4, 0.4, 3.0), st)
            _material(b, c, "C30 混凝土")
            mark(c, st, False, "column")
        slab = b.box("IfcSlab", f"S{k}", (0.0, 0.0, z + 2.8), (6.0, 6.0, 0.2), st)
        slab.PredefinedType = "FLOOR"
        _material(b, slab, "C30 混凝土")
        mark(slab, st, True, "slab")
        stair = b.box("IfcStairFlight", f"ST{k}", (7.0, 0.0, z), (1.0, 3.0, 2.8), st)
        _material(b, stair, "C30 混凝土")
        mark(stair, st, True, "stair")
        for i, y in enumerate((1.0, 4.0)):
            beam = b.box("IfcBeam", f"B{k}-{i}", (0.0, y, z + 2.4), (6.0, 0.3, 0.4), st)
            _material(b, beam, "C30 混凝土")
            mark(beam, st, False, "beam")
        # non-load-bearing external panels (east and west), precast
        for i, x in enumerate((-0.2, 6.0)):
            p = wall(f"EP{k}-{i}", (x, 0.0, z), (0.2, 6.0, 3.0), st, bearing=False, external=True)
            _material(b, p, "C30 混凝土")
            mark(p, st, True, "panel")
        light = wall("PT-a", (0.2, 3.0, z), (4.0, 0.1, 3.0), st, bearing=False, external=False)
        _material(b, light, "轻钢龙骨石膏板")
        block = wall("PT-b", (0.2, 2.0, z), (4.0, 0.2, 3.0), st, bearing=False, external=False)
        _material(b, block, "加气混凝土砌块")
    if envelope:
        _tower_envelope(b, storeys)
    return b.write(path)


#: the declaration that goes with ``precast_tower`` in the tests (the items a model cannot
#: show): fit-out 6, dry floors 75 % -> 6, kitchens 80 % -> 4.5, no bathroom (Q4 6), pipes
#: 60 % -> 5, envelope integrated 65 % -> 3.5; partitions integrated not declared
TOWER_DECLARATION = {
    "building": "Tower 1",
    "items": {
        "full_fitout": True,
        "dry_floor": 0.75,
        "integrated_kitchen": 0.8,
        "integrated_bathroom": "absent",
        "pipe_separation": 0.6,
        "envelope_integrated": 0.65,
    },
}


def _georeference(f: Any, origin: tuple[float, float], crs: str) -> None:
    """An IfcMapConversion: the model's origin at ``origin`` (E, N) of ``crs``, on the ground;
    its axes along the CRS's."""
    ifcopenshell.api.georeference.add_georeferencing(f, name=crs)
    ifcopenshell.api.georeference.edit_georeferencing(
        f,
        coordinate_operation={
            "Eastings": origin[0],
            "Northings": origin[1],
            "OrthogonalHeight": GROUND_Z,
        },
        projected_crs={"Name": crs},
    )


def _edit_pset(b: ModelBuilder, product: Any, name: str, properties: dict[str, Any]) -> None:
    """Add ``properties`` to the product's own set ``name`` (made when it has none)."""
    found = ifcopenshell.util.element.get_pset(product, name, should_inherit=False)
    if found is None:
        b.pset(product, name, properties)
        return
    pset = b.file.by_id(found["id"])
    ifcopenshell.api.pset.edit_pset(b.file, pset=pset, properties=properties)


def _window(
    b: ModelBuilder,
    wall: Any,
    storey: Any,
    name: str,
    at: tuple[float, float, float],
    size: tuple[float, float, float],
    u_value: float,
) -> Any:
    """A window in an opening through ``wall``: the opening is the wall's thickness, the window
    the middle half of it (``size`` is the opening's box, along x or y by its thinner side)."""
    f = b.file
    opening = b.box("IfcOpeningElement", f"{name}-opening", at, size)
    ifcopenshell.api.feature.add_feature(f, feature=opening, element=wall)
    if size[0] < size[1]:  # in a wall along y
        inner_at, inner = (at[0] + size[0] / 4, at[1], at[2]), (size[0] / 2, size[1], size[2])
        width = size[1]
    else:
        inner_at, inner = (at[0], at[1] + size[1] / 4, at[2]), (size[0], size[1] / 2, size[2])
        width = size[0]
    window = b.box("IfcWindow", name, inner_at, inner, storey)
    window.OverallWidth, window.OverallHeight = width, size[2]
    ifcopenshell.api.feature.add_filling(f, opening=opening, element=window)
    b.pset(window, "Pset_WindowCommon", {"IsExternal": True, "ThermalTransmittance": u_value})
    return window


def _tower_envelope(b: ModelBuilder, storeys: int) -> None:
    """What ``precast_tower(envelope=True)`` adds (see there)."""
    f = b.file
    named = {e.Name: e for e in f.by_type("IfcElement")}
    levels = sorted(f.by_type("IfcBuildingStorey"), key=lambda s: float(s.Elevation))
    b.pset(
        b.building,
        "Pset_BuildingCommon",
        {"OccupancyType": "residential 住宅", "YearOfConstruction": "2024"},
    )
    for k, storey in enumerate(levels):
        z = 3.0 * k
        for i in range(2):
            _edit_pset(b, named[f"LW{k}-{i}"], "Pset_WallCommon", {"ThermalTransmittance": 0.3})
            panel = named[f"EP{k}-{i}"]
            _edit_pset(b, panel, "Pset_WallCommon", {"ThermalTransmittance": 0.3})
            x = -0.2 if i == 0 else 6.0
            for j, y in enumerate((1.0, 3.5)):
                at = (x, y, z + 0.9)
                _window(b, panel, storey, f"WIN{k}-{i}-{j}", at, (0.2, 1.5, 1.5), 1.5)
        space = b.box("IfcSpace", f"住宅 {k + 1}F", (0.0, 0.0, z), (6.0, 6.0, 2.8), storey)
        b.pset(space, "Pset_SpaceCommon", {"IsExternal": False})
    roof = named[f"S{storeys - 1}"]
    roof.PredefinedType = "ROOF"
    b.pset(roof, "Pset_SlabCommon", {"IsExternal": True, "ThermalTransmittance": 0.2})


def civic_building(
    path: Path,
    *,
    name: str,
    occupancy: str,
    room: str,
    size: tuple[float, float],
    storeys: int,
    origin: tuple[float, float],
    crs: str = "EPSG:4550",
    storey_height: float = 3.6,
    rooms: int = 4,
    year: int = 2023,
) -> Path:
    """A cast-in-place concrete building of ``size`` (x by y, m) and ``storeys``: 0.25 m
    external walls (U 0.35), a base slab, floor slabs, a flat roof slab (U 0.25), ``rooms``
    spaces a storey named after ``room``, windows 1.8 x 1.5 m (U 1.8) in openings, 3 m apart
    on the south and north facades and one a storey on the east and west, a stair flight a
    storey, georeferenced with its south-west corner at ``origin``, built in ``year``."""
    width, depth = size
    t, h = 0.25, storey_height
    b = ModelBuilder("IFC4", building=name)
    _georeference(b.file, origin, crs)
    b.pset(
        b.building,
        "Pset_BuildingCommon",
        {"OccupancyType": occupancy, "YearOfConstruction": str(year)},
    )
    walls_u = {"IsExternal": True, "LoadBearing": True, "ThermalTransmittance": 0.35}
    for k in range(storeys):
        z = h * k
        st = b.storey(f"{k + 1}F", z)
        slab_kind = "BASESLAB" if k == 0 else "FLOOR"
        slab = b.box("IfcSlab", f"S{k}", (0.0, 0.0, z - 0.2), (width, depth, 0.2), st)
        slab.PredefinedType = slab_kind
        _material(b, slab, "C30 混凝土")
        walls = {
            "south": b.box("IfcWall", f"S-{k}", (0.0, 0.0, z), (width, t, h), st),
            "north": b.box("IfcWall", f"N-{k}", (0.0, depth - t, z), (width, t, h), st),
            "west": b.box("IfcWall", f"W-{k}", (0.0, t, z), (t, depth - 2 * t, h), st),
            "east": b.box("IfcWall", f"E-{k}", (width - t, t, z), (t, depth - 2 * t, h), st),
        }
        for wall in walls.values():
            b.pset(wall, "Pset_WallCommon", walls_u)
            _material(b, wall, "C30 混凝土")
        n_long = max(1, int((width - 2.0) // 3.0))
        for j in range(n_long):
            x = 1.0 + j * 3.0
            for face, y in (("south", 0.0), ("north", depth - t)):
                if face == "north" and j % 2:
                    continue  # fewer windows to the north
                at = (x, y, z + 0.9)
                _window(b, walls[face], st, f"{face}-{k}-{j}", at, (1.8, t, 1.5), 1.8)
        for face, x in (("west", 0.0), ("east", width - t)):
            at = (x, depth / 2 - 0.9, z + 0.9)
            _window(b, walls[face], st, f"{face}-{k}", at, (t, 1.8, 1.5), 1.8)
        room_w = (width - 2 * t) / rooms
        for r in range(rooms):
            at = (t + r * room_w, t, z)
            space = b.box(
                "IfcSpace", f"{room} {k + 1}0{r + 1}", at, (room_w, depth - 2 * t, h - 0.2), st
            )
            b.pset(space, "Pset_SpaceCommon", {"IsExternal": False})
        if k < storeys - 1:
            stair = b.box(
                "IfcStairFlight", f"ST{k}", (t + 0.2, t + 0.2, z), (1.2, 3.6, h - 0.2), st
            )
            _material(b, stair, "C30 混凝土")
    top = b.storey("Roof", h * storeys)
    roof = b.box("IfcSlab", "Roof", (0.0, 0.0, h * storeys - 0.2), (width, depth, 0.25), top)
    roof.PredefinedType = "ROOF"
    _material(b, roof, "C30 混凝土")
    b.pset(roof, "Pset_SlabCommon", {"IsExternal": True, "ThermalTransmittance": 0.25})
    return b.write(path)


def freeze(path: Path) -> Path:
    """Rewrite the model at ``path`` so the same construction gives the same bytes: GlobalIds
    drawn from the file's name and each entity's id (the api draws them at random), the members
    of every SET in the order of their ids (the api fills some from Python sets, whose order
    changes from one process to the next), and a fixed header (the api stamps the time and the
    path)."""
    model = ifcopenshell.open(str(path))
    _sort_sets(model)
    for entity in model.by_type("IfcRoot"):
        digest = hashlib.sha256(f"{path.name}:{entity.id()}".encode()).hexdigest()[:32]
        entity.GlobalId = ifcopenshell.guid.compress(digest)
    model.header.file_name.name = path.name
    model.header.file_name.time_stamp = "2026-01-01T00:00:00"
    model.write(str(path))
    return path


def _sort_sets(model: Any) -> None:
    """Order the entities of every SET-valued attribute by id (a SET has no order in IFC)."""
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    schema = wrapper.schema_by_name(model.schema)
    for entity in model:
        declaration = schema.declaration_by_name(entity.is_a()).as_entity()
        if declaration is None:
            continue
        for i, attribute in enumerate(declaration.all_attributes()):
            kind = attribute.type_of_attribute()
            if not isinstance(kind, wrapper.aggregation_type):
                continue
            if kind.type_of_aggregation_string() != "set":
                continue
            value = entity[i]
            if value and all(isinstance(v, ifcopenshell.entity_instance) for v in value):
                entity[i] = sorted(value, key=lambda v: v.id())
