"""Small IFC models built with ifcopenshell.api for the tests (no committed fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.georeference
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.type
import ifcopenshell.api.unit
import numpy as np


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
