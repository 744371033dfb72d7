"""Where an IFC model stands on the map: its placement, and re-placing it later.

A model is placed by, in order: the anchor given to the ingest, its IfcMapConversion (or
IfcRigidOperation) to a named projected CRS, its site's RefLatitude/RefLongitude; without any,
it stays at the project origin with the status ``needs_placement``. ``place`` moves an ingested
model to an anchor without re-reading its file: the meshes stay in model coordinates, and
what is derived in the project CRS (element boxes, building footprints and ground levels) is
computed again from them and from each building's model-frame outline kept at ingest.

The JSON this writes and returns has its shape in TypedDicts: ``placements.params`` (one per
placement method, ``PlacementParams``), a building's ``model_frame`` and ``place``'s outcome.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, cast

import ifcopenshell
import ifcopenshell.util.geolocation as ugeo
import ifcopenshell.util.placement as uplace
import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from cim.errors import CrsError, InputFileError
from cim.georef import (
    Placement,
    apply_affine,
    geographic_placement,
    geographic_target_placement,
    is_geographic,
    map_conversion_placement,
    near_default_site,
    origin_placement,
)
from cim.model.heights import heights_from_points
from cim.model.linking import link_buildings
from ingest.base import Anchor
from ingest.ifc.quirks import number

if TYPE_CHECKING:
    from cim.store import Store

#: what a model without a placement needs, for the warnings (the CLI says how to give it)
NEEDS_ANCHOR = "it needs placement: give it an anchor (longitude, latitude)"


class TransformationParams(TypedDict, total=False):
    """The transformation used from the model's CRS to the project CRS (``cim.crs``): PROJ's
    name and pipeline, its stated accuracy in metres (None when PROJ states none, as for a
    ballpark), and, when PROJ knows a better one that needs a grid not installed here, that one
    with its accuracy and the missing grids. Recorded for every map conversion; for an anchor
    or a site only when the best transformation was not available."""

    transformation: str
    transformation_proj: str
    transformation_accuracy_m: float | None
    best_transformation: str
    best_transformation_accuracy_m: float | None
    missing_grids: list[str]


class GeographicParams(TransformationParams):
    """``placements.params`` of a model placed at a longitude/latitude (WGS84 degrees) by an
    anchor: its origin's elevation (m) and the rotation of its +x axis from east (degrees)."""

    lon: float
    lat: float
    elevation: float
    rotation_deg: float


class SiteParams(GeographicParams):
    """``placements.params`` of a model placed by its site's RefLatitude/RefLongitude."""

    true_north_deg: float


class HelmertParams(TypedDict):
    """An IfcMapConversion's (or IfcRigidOperation's) parameters, model units to map CRS."""

    eastings: float
    northings: float
    orthogonal_height: float
    x_axis_abscissa: float
    x_axis_ordinate: float
    scale: float
    factor_x: float
    factor_y: float
    factor_z: float


class MapConversionParams(HelmertParams, TransformationParams):
    """``placements.params`` of a model placed by its map conversion: the map CRS it names."""

    map_crs: str


class GeographicTargetParams(GeographicParams):
    """``placements.params`` of a model placed by a map conversion or rigid operation whose
    target CRS is geographic: that CRS, and the origin's longitude/latitude in it."""

    map_crs: str


class UnplacedParams(TypedDict, total=False):
    """``placements.params`` of a model left at the project origin: its site's longitude and
    latitude when it has them, or its georeference (the map CRS, the conversion's eastings and
    northings, where that lies in longitude/latitude) when it could not be used."""

    site_lon: float
    site_lat: float
    map_crs: str
    eastings: float
    northings: float
    map_lon: float
    map_lat: float


PlacementParams = (
    GeographicParams | SiteParams | MapConversionParams | GeographicTargetParams | UnplacedParams
)


class ModelFrame(TypedDict):
    """``buildings.attributes.model_frame``: a building's footprint and levels in model
    coordinates (metres), from which ``place`` derives them in the project CRS again."""

    footprint_wkt: str
    ground_z: float
    top_z: float


class PlaceOutcome(TypedDict):
    """What ``place`` returns."""

    source_id: int
    method: str
    elements: int
    buildings: int
    linked: int
    anchor: GeographicParams


def stored_params(placement: Placement) -> PlacementParams:
    """A placement's params as ``placements.params`` stores them (see the TypedDicts): the keys
    of the method's TypedDict that the placement has."""
    p = placement.params
    shape: type
    if placement.method == "anchor":
        shape = GeographicParams
    elif placement.method == "site_reflatlon":
        shape = SiteParams
    elif placement.method in ("map_conversion", "rigid_operation"):
        shape = MapConversionParams if "eastings" in p else GeographicTargetParams
    else:
        shape = UnplacedParams
    return cast(PlacementParams, {k: p[k] for k in shape.__annotations__ if k in p})


def _geographic_params(p: Mapping[str, Any]) -> GeographicParams:
    return {
        "lon": p["lon"],
        "lat": p["lat"],
        "elevation": p["elevation"],
        "rotation_deg": p["rotation_deg"],
    }


def model_schema(model: ifcopenshell.file) -> str:
    return str(getattr(model, "schema_identifier", None) or model.schema)


def model_placement(
    model: ifcopenshell.file,
    store: Store,
    anchor: Anchor | None,
    unit_scale: float,
    center: np.ndarray,
    half_extent: float,
) -> Placement:
    """The model's placement in the project CRS: by ``anchor`` if given, else by its own
    georeference (see the module docstring); ``center`` and ``half_extent`` (model metres)
    are where the affine is fitted."""
    project_crs = store.crs
    if anchor is not None:
        return anchor_placement(project_crs, anchor, half_extent)
    notes: list[str] = []
    placement = _map_conversion_placement(model, store, unit_scale, center, half_extent, notes)
    if placement is not None and placement.needs_placement:
        placement.warnings[-1] += f"; {NEEDS_ANCHOR}"
    if placement is None or placement.needs_placement:
        site = next(iter(model.by_type("IfcSite")), None)
        lat = getattr(site, "RefLatitude", None) if site else None
        lon = getattr(site, "RefLongitude", None) if site else None
        if site is not None and lat and lon:
            by_site = _site_placement(
                model, store, project_crs, site, unit_scale, half_extent, notes
            )
            if by_site is not None and (placement is None or not by_site.needs_placement):
                # a georeference that cannot be used gives way to the site's, saying so
                notes.extend(placement.warnings if placement is not None else [])
                placement = by_site
    if placement is None:
        placement = origin_placement(store.project_origin, {})
        placement.warnings.append(
            "the model has no usable georeference (no IfcMapConversion, no site RefLatitude/"
            "RefLongitude): placed at the project origin; it needs placement: give it an anchor "
            "(longitude, latitude, and if need be the elevation and rotation of its origin)"
        )
    placement.warnings[:0] = notes
    return placement


def _map_conversion_placement(
    model: ifcopenshell.file,
    store: Store,
    unit_scale: float,
    center: np.ndarray,
    half_extent: float,
    notes: list[str],
) -> Placement | None:
    """By the model's IfcMapConversion / IfcRigidOperation (IFC2X3: ePSet_MapConversion), to a
    projected or a geographic CRS; None, with a line in ``notes``, when it has none that can be
    read or its CRS is not one PROJ knows (the site's RefLatitude/RefLongitude come next)."""
    try:
        helmert = ugeo.get_helmert_transformation_parameters(model)
    except (AssertionError, AttributeError, TypeError, ValueError) as exc:
        # ifcopenshell asserts on an operation it does not know, and reads a missing coordinate
        # as None: a georeference it cannot read is skipped, not the file
        notes.append(
            f"the model's coordinate operation cannot be read ({exc or type(exc)}); ignored"
        )
        return None
    if helmert is None:
        return None
    ops = [] if model_schema(model) == "IFC2X3" else model.by_type("IfcCoordinateOperation")
    method = "rigid_operation" if ops and ops[0].is_a("IfcRigidOperation") else "map_conversion"
    try:
        info = ugeo.get_crs(model) or {}
    except (AttributeError, TypeError, ValueError):
        # a coordinate operation whose TargetCRS is null (required by the schema)
        notes.append(
            f"the model's {method.replace('_', ' ')} has no target CRS (its TargetCRS is "
            f"unset); ignored"
        )
        return None
    name = info.get("Name") if isinstance(info, dict) else None
    map_crs = _map_crs(name)
    if map_crs is None:
        notes.append(
            f"the model's {method.replace('_', ' ')} names the CRS {name!r}, which PROJ does not "
            f"know (give its EPSG code in the model, e.g. EPSG:4550); ignored"
        )
        return None
    read = {
        "eastings": helmert.e,
        "northings": helmert.n,
        "orthogonal_height": helmert.h,
        "x_axis_abscissa": helmert.xaa,
        "x_axis_ordinate": helmert.xao,
        "scale": helmert.scale,
        "factor_x": helmert.factor_x,
        "factor_y": helmert.factor_y,
        "factor_z": helmert.factor_z,
    }
    params = {k: number(v) for k, v in read.items()}
    odd = sorted(k for k, v in params.items() if v is None)
    if odd:
        # a value that is not a finite number (text where the schema wants a real, found by
        # fuzzing: it reached float()): the georeference cannot be used, the file can
        notes.append(
            f"the model's {method.replace('_', ' ')} has values that are not numbers "
            f"({', '.join(odd)}); ignored"
        )
        return None
    values = {k: float(v) for k, v in params.items() if v is not None}
    if is_geographic(map_crs):
        return geographic_target_placement(
            store.crs,
            map_crs,
            values["eastings"],
            values["northings"],
            values,
            half_extent,
            method,
            store.project_origin,
        )
    return map_conversion_placement(
        store.crs, map_crs, values, unit_scale, center, half_extent, method, store.project_origin
    )


def _site_placement(
    model: ifcopenshell.file,
    store: Store,
    project_crs: CRS,
    site: Any,
    unit_scale: float,
    half_extent: float,
    notes: list[str],
) -> Placement | None:
    """By the site's RefLatitude/RefLongitude, unless it is outside the project CRS (then at
    the project origin) or a default site of an authoring tool (then with a warning); None,
    with a line in ``notes``, when they are not angles (the site's reference is ignored)."""
    lat_d = compound_angle(site.RefLatitude, 90.0)
    lon_d = compound_angle(site.RefLongitude, 180.0)
    if lat_d is None or lon_d is None:
        # a number, an entity or text where the schema has degrees, minutes and seconds
        # (found by fuzzing: dms2dd's TypeError failed the file)
        odd = [
            f"{name} is {_described(value)}"
            for name, value, degrees in (
                ("RefLatitude", site.RefLatitude, lat_d),
                ("RefLongitude", site.RefLongitude, lon_d),
            )
            if degrees is None
        ]
        notes.append(
            f"the site's RefLatitude/RefLongitude cannot be read as a latitude and longitude "
            f"({'; '.join(odd)}); ignored"
        )
        return None
    elev = number(site.RefElevation)
    if elev is None and site.RefElevation is not None:
        notes.append(
            f"the site's RefElevation is {_described(site.RefElevation)}, not a length; read as 0"
        )
    elev = (elev or 0.0) * unit_scale
    rot = -float(ugeo.get_true_north(model))
    origin = np.zeros(3)
    if site.ObjectPlacement is not None:
        try:
            origin = uplace.get_local_placement(site.ObjectPlacement)[:3, 3] * unit_scale
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            # a placement whose parts are not placements (fuzzing found one for a storey)
            notes.append(
                f"the site's placement cannot be read ({type(exc).__name__}); its origin "
                f"taken as the model's"
            )
    default = near_default_site(lon_d, lat_d)
    try:
        placement = geographic_placement(
            project_crs,
            lon_d,
            lat_d,
            elev,
            rot,
            origin,
            half_extent,
            "site_reflatlon",
            {"true_north_deg": -rot},
        )
    except CrsError:
        placement = origin_placement(store.project_origin, {"site_lon": lon_d, "site_lat": lat_d})
        placement.warnings.append(
            f"the site's RefLatitude/RefLongitude ({lat_d:.5f}, {lon_d:.5f}) lies outside "
            f"the project CRS {store.crs_label}"
            + (f" and is {default}" if default else "")
            + f"; placed at the project origin; {NEEDS_ANCHOR}"
        )
        return placement
    if default:
        placement.warnings.append(
            f"the site's RefLatitude/RefLongitude is {default}, not a real site; {NEEDS_ANCHOR}"
        )
    return placement


def compound_angle(value: Any, limit: float) -> float | None:
    """An IfcCompoundPlaneAngleMeasure (degrees, minutes, seconds and, optionally, millionths
    of a second, all of one sign) in decimal degrees; None when it is not one (a number, an
    entity, text, mixed signs) or lies beyond +-``limit`` degrees."""
    if not isinstance(value, tuple | list) or not 3 <= len(value) <= 4:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    if not (all(v >= 0 for v in value) or all(v <= 0 for v in value)):
        return None  # dms2dd asserts
    try:
        degrees = float(ugeo.dms2dd(*value))
    except OverflowError:
        return None
    return degrees if math.isfinite(degrees) and abs(degrees) <= limit else None


def _described(value: Any) -> str:
    """What an attribute holds, for a note: ``an IfcApplication``, ``the int 17``, ..."""
    if isinstance(value, ifcopenshell.entity_instance):
        return f"an {value.is_a()}"
    shown = repr(value)
    return f"the {type(value).__name__} {shown[:40] + ('...' if len(shown) > 40 else '')}"


def place(store: Store, source_id: int, anchor: Anchor) -> PlaceOutcome:
    """Re-place an ingested model at ``anchor`` without re-reading its file.

    Rewrites the placement and everything derived from it in the project CRS: element bounding
    boxes (from the stored meshes) and building footprints and ground levels (from the model-frame
    outline kept at ingest). Call inside a transaction.
    """
    con = store.con
    src = store.source(source_id)
    if src.kind != "ifc":
        raise InputFileError(f"source {source_id} ({src.name}) is {src.kind}, not an IFC model")
    ext = con.execute(
        "SELECT min(origin_x), min(origin_y), max(origin_x), max(origin_y) FROM meshes "
        "WHERE source_id = ? AND owner = 'element'",
        [source_id],
    ).fetchone()
    half = 100.0
    if ext and ext[0] is not None:
        half = max(50.0, (ext[2] - ext[0]) / 2 + 50, (ext[3] - ext[1]) / 2 + 50)
    placement = anchor_placement(store.crs, anchor, half)
    con.execute(
        "UPDATE placements SET method = ?, matrix = ?, params = ?, placed_at = current_timestamp "
        "WHERE source_id = ?",
        [
            placement.method,
            placement.matrix.ravel().tolist(),
            json.dumps(stored_params(placement)),
            source_id,
        ],
    )
    boxes = []
    for owner_id, ox, oy, oz, positions in con.execute(
        "SELECT owner_id, origin_x, origin_y, origin_z, positions FROM meshes "
        "WHERE source_id = ? AND owner = 'element'",
        [source_id],
    ).fetchall():
        local = np.frombuffer(positions, dtype=np.float32).reshape(-1, 3).astype(np.float64)
        pv = placement.apply(local + np.array([ox, oy, oz]))
        boxes.append((owner_id, *pv.min(axis=0).tolist(), *pv.max(axis=0).tolist()))
    if boxes:
        table = pa.table(
            {
                k: [b[i] for b in boxes]
                for i, k in enumerate(("id", "xmin", "ymin", "zmin", "xmax", "ymax", "zmax"))
            }
        )
        with _registered(store, "_placed_boxes", table):
            con.execute(
                "UPDATE elements SET xmin = b.xmin, ymin = b.ymin, zmin = b.zmin, xmax = b.xmax, "
                "ymax = b.ymax, zmax = b.zmax FROM _placed_boxes b WHERE elements.id = b.id"
            )
    moved = []
    for bid, attrs in con.execute(
        "SELECT id, attributes FROM buildings WHERE source_id = ?", [source_id]
    ).fetchall():
        frame: ModelFrame | None = (json.loads(attrs) if attrs else {}).get("model_frame")
        if not frame:
            continue
        outline = shapely.from_wkt(frame["footprint_wkt"])
        fp = to_project(outline, placement.matrix)
        gx, gy = center_of(outline)
        ground = float(placement.apply(np.array([[gx, gy, frame["ground_z"]]]))[0, 2])
        minx, miny, maxx, maxy = fp.bounds
        con.execute(
            "UPDATE buildings SET footprint = ST_GeomFromWKB(?), ground_z = ?, xmin = ?, "
            "ymin = ?, xmax = ?, ymax = ? WHERE id = ?",
            [shapely.to_wkb(fp), ground, minx, miny, maxx, maxy, bid],
        )
        moved.append(bid)
    con.execute(
        "UPDATE sources SET status = 'ingested', crs = ?, warnings = '[]' WHERE id = ?",
        [store.crs_label, source_id],
    )
    heights_from_points(store, moved)
    linked = link_buildings(store, moved)
    return {
        "source_id": source_id,
        "method": "anchor",
        "elements": len(boxes),
        "buildings": len(moved),
        "linked": linked,
        "anchor": _geographic_params(placement.params),
    }


def to_project(outline: BaseGeometry, matrix: np.ndarray) -> BaseGeometry:
    return shapely.transform(
        outline,
        lambda xy: apply_affine(matrix, np.column_stack([xy, np.zeros(len(xy))]))[:, :2],
    )


def anchor_placement(project_crs: CRS, anchor: Anchor, half_extent: float = 100.0) -> Placement:
    try:
        return geographic_placement(
            project_crs,
            anchor.lon,
            anchor.lat,
            anchor.elevation,
            anchor.rotation_deg,
            np.zeros(3),
            half_extent,
            "anchor",
            {},
        )
    except CrsError as exc:
        raise CrsError(
            f"--anchor {anchor.lon},{anchor.lat} lies outside the project CRS's area of use; "
            f"check the order (LON,LAT) or the store's CRS"
        ) from exc


@contextlib.contextmanager
def _registered(store: Store, name: str, data: pa.Table) -> Iterator[str]:
    """An Arrow table visible to SQL as ``name`` for the duration of the block."""
    store.con.register(name, data)
    try:
        yield name
    finally:
        store.con.unregister(name)


def center_of(geom: BaseGeometry) -> tuple[float, float]:
    c = geom.centroid
    return (float(c.x), float(c.y)) if not c.is_empty else (0.0, 0.0)


def _map_crs(name: Any) -> CRS | None:
    """The CRS an IfcProjectedCRS names: "EPSG:4550", "EPSG 4550", or a registered name such as
    "CGCS2000 / 3-degree Gauss-Kruger CM 123E" (PROJ looks names up in its database)."""
    if not name:
        return None
    text = str(name).strip()
    for candidate in (text, text.replace(" ", ""), text.replace(" ", ":", 1)):
        try:
            return CRS.from_user_input(candidate)
        except CRSError:  # try the next spelling
            continue
    return None
