"""Small IFC models built with ifcopenshell.api for the tests (no committed fixtures).

The builder of boxes (``ModelBuilder``) and the precast tower with its declaration live in the
demo's generator (``district.bim``), which ships them; the tests take them from there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
import numpy as np

from district.bim import TOWER_DECLARATION, ModelBuilder, precast_tower

__all__ = ["TOWER_DECLARATION", "ModelBuilder", "precast_tower"]


def wall_model(
    path: Path,
    *,
    length: float = 5.0,
    height: float = 3.0,
    thickness: float = 0.2,
    schema: str = "IFC4",
    map_conversion: dict[str, Any] | None = None,
    crs_name: str = "EPSG:4550",
    millimetres: bool = False,
    wall_at: tuple[float, float, float] = (0.0, 0.0, 0.0),
    site_latlon: tuple[float, float] | None = None,
) -> Path:
    """One storey with one wall of the given size (metres), typed with Pset_WallCommon."""
    f = ifcopenshell.api.project.create_file(version=schema)
    project = ifcopenshell.api.root.create_entity(f, ifc_class="IfcProject", name="Test")
    # geometry arguments of ifcopenshell.api are SI metres, converted to the project's unit
    length_unit = "MILLIMETERS" if millimetres else "METERS"
    ifcopenshell.api.unit.assign_unit(f, length={"is_metric": True, "raw": length_unit})
    scale = 1000.0 if millimetres else 1.0
    model_ctx = ifcopenshell.api.context.add_context(f, context_type="Model")
    body = ifcopenshell.api.context.add_context(
        f,
        context_type="Model",
        context_identifier="Body",
        target_view="MODEL_VIEW",
        parent=model_ctx,
    )
    site = ifcopenshell.api.root.create_entity(f, ifc_class="IfcSite", name="Site")
    building = ifcopenshell.api.root.create_entity(f, ifc_class="IfcBuilding", name="Block A")
    storey = ifcopenshell.api.root.create_entity(f, ifc_class="IfcBuildingStorey", name="F1")
    storey.Elevation = 0.0
    ifcopenshell.api.aggregate.assign_object(f, products=[site], relating_object=project)
    ifcopenshell.api.aggregate.assign_object(f, products=[building], relating_object=site)
    ifcopenshell.api.aggregate.assign_object(f, products=[storey], relating_object=building)
    for product in (site, building, storey):
        ifcopenshell.api.geometry.edit_object_placement(f, product=product)
    if site_latlon is not None:
        import ifcopenshell.util.geolocation as ugeo

        site.RefLatitude = ugeo.dd2dms(site_latlon[0])
        site.RefLongitude = ugeo.dd2dms(site_latlon[1])
        site.RefElevation = 0.0

    wall_type = ifcopenshell.api.root.create_entity(f, ifc_class="IfcWallType", name="EXT-200")
    pset = ifcopenshell.api.pset.add_pset(f, product=wall_type, name="Pset_WallCommon")
    ifcopenshell.api.pset.edit_pset(
        f, pset=pset, properties={"IsExternal": True, "ThermalTransmittance": 0.35}
    )
    wall = ifcopenshell.api.root.create_entity(f, ifc_class="IfcWall", name="W1")
    ifcopenshell.api.type.assign_type(f, related_objects=[wall], relating_type=wall_type)
    occ = ifcopenshell.api.pset.add_pset(f, product=wall, name="Pset_WallCommon")
    ifcopenshell.api.pset.edit_pset(f, pset=occ, properties={"LoadBearing": True})
    matrix = np.eye(4)
    matrix[:3, 3] = np.array(wall_at) * scale  # placements are in project units
    ifcopenshell.api.geometry.edit_object_placement(f, product=wall, matrix=matrix, is_si=False)
    rep = ifcopenshell.api.geometry.add_wall_representation(
        f, context=body, length=length, height=height, thickness=thickness
    )
    ifcopenshell.api.geometry.assign_representation(f, product=wall, representation=rep)
    ifcopenshell.api.spatial.assign_container(f, products=[wall], relating_structure=storey)
    if map_conversion is not None:
        ifcopenshell.api.georeference.add_georeferencing(f, name=crs_name)
        ifcopenshell.api.georeference.edit_georeferencing(
            f, coordinate_operation=map_conversion, projected_crs={"Name": crs_name}
        )
    f.write(str(path))
    return path


def to_rigid_operation(
    path: Path, first: float, second: float, height: float, geographic_crs: str | None = None
) -> Path:
    """Replace the IfcMapConversion of an IFC4X3 model at ``path`` by an IfcRigidOperation
    (the api writes none): to its IfcProjectedCRS (lengths), or with ``geographic_crs`` to an
    IfcGeographicCRS of that name (angles, in the CRS's axis order)."""
    model = ifcopenshell.open(str(path))
    for conversion in model.by_type("IfcMapConversion"):
        model.remove(conversion)
    if geographic_crs is None:
        target = model.by_type("IfcProjectedCRS")[0]
        measure = "IfcLengthMeasure"
    else:
        for crs in model.by_type("IfcProjectedCRS"):
            model.remove(crs)
        target = model.create_entity("IfcGeographicCRS", Name=geographic_crs)
        measure = "IfcPlaneAngleMeasure"
    model.create_entity(
        "IfcRigidOperation",
        SourceCRS=model.by_type("IfcGeometricRepresentationContext")[0],
        TargetCRS=target,
        FirstCoordinate=model.create_entity(measure, first),
        SecondCoordinate=model.create_entity(measure, second),
        Height=height,
    )
    model.write(str(path))
    return path


def storeyed(schema: str = "IFC4", *, units: bool = True) -> tuple[ModelBuilder, Any]:
    """A builder with one storey "F1" at 0 m holding a 5 x 4 m room of four walls."""
    b = ModelBuilder(schema, units=units)
    storey = b.storey("F1", 0.0)
    wall = "IfcWallStandardCase" if schema == "IFC2X3" else "IfcWall"
    for k, (at, size) in enumerate(
        [
            ((0.0, 0.0, 0.0), (5.0, 0.2, 3.0)),
            ((0.0, 3.8, 0.0), (5.0, 0.2, 3.0)),
            ((0.0, 0.2, 0.0), (0.2, 3.6, 3.0)),
            ((4.8, 0.2, 0.0), (0.2, 3.6, 3.0)),
        ]
    ):
        b.box(wall, f"W{k}", at, size, storey)
    return b, storey


def unnamed_sets_model(path: Path, schema: str = "IFC2X3") -> Path:
    """ArchiCAD 9 / 11: property and quantity sets without a Name (optional in IFC), on an
    element and on its type, beside named ones."""
    b, storey = storeyed(schema)
    slab = b.box("IfcSlab", "S1", (0.0, 0.0, -0.2), (5.0, 4.0, 0.2), storey)
    b.pset(slab, "Pset_SlabCommon", {"IsExternal": False, "LoadBearing": True})
    b.pset(slab, "ArchiCAD", {"Layer": "Slab 1"}).Name = None
    b.pset(slab, "AC_Pset", {"Renovation Status": "New"}).Name = None
    b.pset(slab, "BaseQuantities", {"NetVolume": 4.0}, qto=True)
    b.pset(slab, "Unnamed quantities", {"Width": 0.2}, qto=True).Name = None
    b.pset(slab, "Last", {"Zone": "A"}).Name = None
    slab_type = b.root("IfcSlabType", "SL-200", PredefinedType="FLOOR")
    b.pset(slab_type, "Type set", {"Code": "SL"}).Name = None
    ifcopenshell.api.type.assign_type(b.file, related_objects=[slab], relating_type=slab_type)
    return b.write(path)


#: what Renga writes as ``*`` (an attribute the schema derives) in place of these elements' Name
RENGA_STARRED = (
    "IfcOpeningElement",
    "IfcWindow",
    "IfcDoor",
    "IfcRailing",
    "IfcSlab",
    "IfcStairFlight",
)


def derived_names_model(path: Path, schema: str = "IFC2X3") -> Path:
    """Renga: the Name of openings, windows, doors, railings, slabs and stair flights written
    as ``*`` (derived), which the geometry kernel refuses to read as a string."""
    b, storey = storeyed(schema)
    f = b.file
    wall = f.by_type("IfcWall")[0]
    opening = b.box(
        "IfcOpeningElement", "STAR-IfcOpeningElement", (1.0, -0.1, 1.0), (1.2, 0.4, 1.2)
    )
    ifcopenshell.api.feature.add_feature(f, feature=opening, element=wall)
    window = b.box("IfcWindow", "STAR-IfcWindow", (1.0, 0.0, 1.0), (1.2, 0.2, 1.2), storey)
    ifcopenshell.api.feature.add_filling(f, opening=opening, element=window)
    b.box("IfcDoor", "STAR-IfcDoor", (3.0, 3.8, 0.0), (0.9, 0.2, 2.1), storey)
    b.box("IfcSlab", "STAR-IfcSlab", (0.0, 0.0, -0.2), (5.0, 4.0, 0.2), storey)
    b.box("IfcRailing", "STAR-IfcRailing", (0.0, 4.0, 0.0), (5.0, 0.05, 1.0), storey)
    b.box("IfcStairFlight", "STAR-IfcStairFlight", (0.3, 0.3, 0.0), (1.0, 2.5, 2.8), storey)
    b.write(path)
    text = path.read_text()
    for cls in RENGA_STARRED:
        text = text.replace(f"'STAR-{cls}'", "*")
    path.write_text(text)
    return path


def spaces_model(path: Path, schema: str = "IFC4") -> Path:
    """Spaces as exporters write them, with Chinese names (written as \\X2\\ escapes): an
    extruded body, a body in the Plan context (which the geometry iterator passes over), and a
    2D footprint only (which the kernel cannot mesh), each with its Qto quantities."""
    b = ModelBuilder(schema, building="通辽大厦")
    storey = b.storey("一层", 0.0)
    b.box(
        "IfcWallStandardCase" if schema == "IFC2X3" else "IfcWall",
        "外墙",
        (0, 0, 0),
        (8, 0.2, 3),
        storey,
    )
    f = b.file
    plan = ifcopenshell.api.context.add_context(f, context_type="Plan")
    plan_body = ifcopenshell.api.context.add_context(
        f, context_type="Plan", context_identifier="Body", target_view="PLAN_VIEW", parent=plan
    )
    bedroom = b.box("IfcSpace", "卧室", (0.0, 0.2, 0.0), (4.0, 3.0, 2.8), storey)
    kitchen = b.box(
        "IfcSpace",
        "厨房",
        (4.0, 0.2, 0.0),
        (4.0, 3.0, 2.8),
        storey,
        representation=b.box_representation((4.0, 3.0, 2.8), plan_body),
    )
    footprint_ctx = ifcopenshell.api.context.add_context(
        f,
        context_type="Model",
        context_identifier="FootPrint",
        target_view="SKETCH_VIEW",
        parent=b.body.ParentContext,
    )
    ring = [(0.0, 0.0), (3.0, 0.0), (3.0, 2.0), (0.0, 2.0), (0.0, 0.0)]
    curve = f.createIfcPolyline([f.createIfcCartesianPoint(p) for p in ring])
    footprint = f.createIfcShapeRepresentation(
        footprint_ctx, "FootPrint", "GeometricCurveSet", [f.createIfcGeometricCurveSet([curve])]
    )
    hall = b.box("IfcSpace", "门厅", (0.0, 3.2, 0.0), (3.0, 2.0, 2.8), storey, footprint)
    for space, area in ((bedroom, 12.0), (kitchen, 12.0), (hall, 6.0)):
        b.pset(
            space,
            "Qto_SpaceBaseQuantities",
            {"NetFloorArea": area, "GrossVolume": area * 2.8},
            qto=True,
        )
        b.pset(space, "Pset_SpaceCommon", {"IsExternal": False})
    return b.write(path)


def structure_model(path: Path, schema: str = "IFC4", *, units: bool = True) -> Path:
    """Nested assemblies (an assembly of an assembly of beams and a plate), columns of one type
    drawn as mapped items (IfcMappedItem), an empty storey, a proxy contained in the building
    rather than a storey and furniture contained nowhere; ``units=False``: no
    IfcUnitAssignment at all."""
    b, storey = storeyed(schema, units=units)
    b.storey("F2 (empty)", 3.0)
    f = b.file
    truss = b.box("IfcElementAssembly", "Truss", (0.0, 0.0, 0.0), (0.1, 0.1, 0.1), storey)
    truss.Representation = None
    chord = b.root("IfcElementAssembly", "Chord")
    ifcopenshell.api.aggregate.assign_object(f, products=[chord], relating_object=truss)
    ifcopenshell.api.geometry.edit_object_placement(f, product=chord)
    for k in range(2):
        b.box("IfcBeam", f"B{k}", (0.0, 1.0 + k, 2.7), (5.0, 0.2, 0.3), chord)
    b.box("IfcPlate", "P", (0.0, 0.9, 3.0), (5.0, 1.4, 0.02), truss)
    column_type = b.root("IfcColumnType", "C-300", PredefinedType="COLUMN")
    ifcopenshell.api.geometry.assign_representation(
        f, product=column_type, representation=b.box_representation((0.3, 0.3, 3.0))
    )
    for k in range(2):
        column = b.box("IfcColumn", f"C{k}", (1.0 + 2 * k, 2.0, 0.0), (0.3, 0.3, 3.0), storey)
        ifcopenshell.api.geometry.unassign_representation(
            f, product=column, representation=column.Representation.Representations[0]
        )
        ifcopenshell.api.type.assign_type(f, related_objects=[column], relating_type=column_type)
    proxy = "IfcBuildingElementProxy"
    b.box(proxy, "Outside storeys", (6.0, 0.0, 0.0), (1.0, 1.0, 1.0), b.building)
    furniture = "IfcFurnishingElement" if schema == "IFC2X3" else "IfcFurniture"
    b.box(furniture, "Nowhere", (1.0, 1.0, 0.0), (1.0, 0.5, 0.8))
    return b.write(path)


def odd_values_model(path: Path, schema: str = "IFC4") -> Path:
    """Properties of every kind and the odd ones: a list, enumerations (one without values), a
    bounded value, a complex property without parts, a property without a name; a type object
    without property sets; a length unit without its conversion factor (an unknown unit); a
    proxy without a GlobalId and a storey whose Elevation is written ``*``."""
    b, storey = storeyed(schema)
    f = b.file
    wall = f.by_type("IfcWall")[0]
    label, real = f.createIfcLabel, f.createIfcReal
    props = [
        f.createIfcPropertyListValue("Layers", None, [label("gypsum"), label("brick")], None),
        f.createIfcPropertyEnumeratedValue("Finish", None, [label("Matte")], None),
        f.createIfcPropertyEnumeratedValue("Colour", None, None, None),
        f.createIfcPropertyBoundedValue("Range", None, real(2.0), real(1.0), None, None),
        f.createIfcComplexProperty("Empty", None, "none", None),
        f.createIfcPropertySingleValue(None, None, real(7.0), None),
        f.createIfcPropertySingleValue("Plain", None, label("yes"), None),
    ]
    pset = f.createIfcPropertySet(ifcopenshell.guid.new(), None, "Odd", None, props)
    f.createIfcRelDefinesByProperties(ifcopenshell.guid.new(), None, None, None, [wall], pset)
    wall_type = b.root("IfcWallType", "Bare type", PredefinedType="STANDARD")
    ifcopenshell.api.type.assign_type(f, related_objects=[wall], relating_type=wall_type)
    b.box("IfcBuildingElementProxy", "NO-GUID", (6.0, 0.0, 0.0), (1.0, 1.0, 1.0), storey)
    units = f.by_type("IfcUnitAssignment")[0]
    metre = next(u for u in units.Units if getattr(u, "UnitType", None) == "LENGTHUNIT")
    dims = f.createIfcDimensionalExponents(1, 0, 0, 0, 0, 0, 0)
    rod = f.createIfcConversionBasedUnit(dims, "LENGTHUNIT", "ROD", None)
    units.Units = [rod if u == metre else u for u in units.Units]
    b.write(path)
    text = path.read_text()
    guid = f.by_type("IfcBuildingElementProxy")[0].GlobalId
    text = text.replace(f"'{guid}'", "$")
    # the storey's Elevation, its last attribute, written as derived
    text = re.sub(r"(IFCBUILDINGSTOREY\('[^']*',[^,]*,'F1',.*),0\.\);", r"\1,*);", text)
    path.write_text(text)
    return path


#: the energy box: (face, window width, height, count); gross facades 10 x 6 m (south, north)
#: and 8 x 6 m (east, west)
ENERGY_BOX_WINDOWS = (
    ("south", 2.4, 1.5, 4),
    ("north", 1.5, 1.2, 2),
    ("east", 2.0, 1.5, 5),
    ("west", 1.0, 1.2, 2),
)


def energy_box(
    path: Path,
    *,
    true_north_deg: float = 0.0,
    u_values: bool = True,
    site_latlon: tuple[float, float] = (43.65, 122.24),
) -> Path:
    """A two-storey residential box of 10 x 8 x 6 m (walls 0.2 m thick, a 0.2 m roof slab on
    top, the ground slab below ground) at Tongliao, with the windows of ENERGY_BOX_WINDOWS in
    openings of the walls' thickness. U values: walls 0.28 (ThermalTransmittance), windows 1.5
    (ThermalTransmittance), the roof from its layers (0.2 m concrete at 1.74 W/(m.K), 0.15 m
    EPS at 0.04). ``true_north_deg``: true north lies that many degrees counter-clockwise from
    the model's +y (IfcGeometricRepresentationContext.TrueNorth)."""
    import ifcopenshell.api.material
    import ifcopenshell.util.geolocation as ugeo

    b = ModelBuilder("IFC4", building="Energy Box")
    f = b.file
    b.site.RefLatitude = [int(v) for v in ugeo.dd2dms(site_latlon[0])]
    b.site.RefLongitude = [int(v) for v in ugeo.dd2dms(site_latlon[1])]
    b.site.RefElevation = 0.0
    b.pset(b.building, "Pset_BuildingCommon", {"OccupancyType": "residential 住宅"})
    theta = np.radians(true_north_deg)
    for ctx in f.by_type("IfcGeometricRepresentationContext"):
        if not ctx.is_a("IfcGeometricRepresentationSubContext"):
            ctx.TrueNorth = f.createIfcDirection((float(-np.sin(theta)), float(np.cos(theta))))
    f1, f2 = b.storey("F1", 0.0), b.storey("F2", 3.0)
    walls = {
        "south": b.box("IfcWall", "south", (0.0, 0.0, 0.0), (10.0, 0.2, 6.0), f1),
        "north": b.box("IfcWall", "north", (0.0, 7.8, 0.0), (10.0, 0.2, 6.0), f1),
        "west": b.box("IfcWall", "west", (0.0, 0.2, 0.0), (0.2, 7.6, 6.0), f1),
        "east": b.box("IfcWall", "east", (9.8, 0.2, 0.0), (0.2, 7.6, 6.0), f1),
    }
    for wall in walls.values():
        props = {"IsExternal": True, "ThermalTransmittance": 0.28} if u_values else {}
        b.pset(wall, "Pset_WallCommon", {"LoadBearing": True, **props})
    b.box("IfcSlab", "ground", (0.0, 0.0, -0.2), (10.0, 8.0, 0.2), f1).PredefinedType = "BASESLAB"
    b.box("IfcSlab", "floor", (0.2, 0.2, 2.8), (9.6, 7.6, 0.2), f2).PredefinedType = "FLOOR"
    roof = b.box("IfcSlab", "roof", (0.0, 0.0, 6.0), (10.0, 8.0, 0.2), f2)
    roof.PredefinedType = "ROOF"
    if u_values:
        layers = ifcopenshell.api.material.add_material_set(
            f, name="roof", set_type="IfcMaterialLayerSet"
        )
        for name, thickness, conductivity in (("concrete", 0.2, 1.74), ("EPS", 0.15, 0.04)):
            material = ifcopenshell.api.material.add_material(f, name=name)
            layer = ifcopenshell.api.material.add_layer(f, layer_set=layers, material=material)
            layer.LayerThickness = thickness
            b.pset(material, "Pset_MaterialThermal", {"ThermalConductivity": conductivity})
        ifcopenshell.api.material.assign_material(
            f, products=[roof], type="IfcMaterialLayerSet", material=layers
        )
    for face, width, height, count in ENERGY_BOX_WINDOWS:
        for k in range(count):
            storey, z = (f1, 1.0) if k < 3 else (f2, 4.0)
            along = 0.6 + (k % 3) * (width + 0.4)
            if face in ("south", "north"):
                y = 0.0 if face == "south" else 7.8
                at, size = (along, y, z), (width, 0.2, height)
                inner_at, inner = (along, y + 0.05, z), (width, 0.1, height)
            else:
                x = 0.0 if face == "west" else 9.8
                at, size = (x, along, z), (0.2, width, height)
                inner_at, inner = (x + 0.05, along, z), (0.1, width, height)
            opening = b.box("IfcOpeningElement", f"{face}-opening-{k}", at, size)
            ifcopenshell.api.feature.add_feature(f, feature=opening, element=walls[face])
            window = b.box("IfcWindow", f"{face}-{k}", inner_at, inner, storey)
            window.OverallWidth, window.OverallHeight = width, height
            ifcopenshell.api.feature.add_filling(f, opening=opening, element=window)
            if u_values:
                b.pset(window, "Pset_WindowCommon", {"ThermalTransmittance": 1.5})
    return b.write(path)
