"""The district's GIS layers in one GeoPackage, named so the ingest guesses each layer's role.

Layers and fields (the vocabulary shared with the indicators analyzer): ``buildings`` (name,
use, floors, height, year, green_star, ultra_low_energy, energy_retrofit, roof), ``roads``
(highway, name), ``landcover`` (landcover, name), ``parks`` (name), ``pois`` (amenity, name),
``boundary`` (name). Coordinates are rounded to the centimetre.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely

from district.plan import CRS, District, Feature

#: the layers in the order they are written, and the geometry type each is written as
LAYERS = {
    "buildings": "Polygon",
    "roads": "LineString",
    "landcover": "MultiPolygon",
    "parks": "MultiPolygon",
    "pois": "Point",
    "boundary": "Polygon",
}
#: GeoPackage stamps its tables with the time of writing; GDAL takes this date instead
FIXED_DATE = "2026-01-01T00:00:00Z"


def write_gis(path: Path, district: District) -> dict[str, int]:
    """Write every layer of ``district`` to the GeoPackage ``path`` (replaced); features per
    layer."""
    path.unlink(missing_ok=True)
    counts = {}
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": FIXED_DATE})
    try:
        for layer, gtype in LAYERS.items():
            features: list[Feature] = getattr(district, layer)
            _write_layer(path, layer, gtype, features)
            counts[layer] = len(features)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})
    return counts


def _write_layer(path: Path, layer: str, gtype: str, features: list[Feature]) -> None:
    geoms = np.array([shapely.set_precision(f.geometry, 0.01) for f in features], dtype=object)
    if gtype == "MultiPolygon":
        geoms = np.array([_multi(g) for g in geoms], dtype=object)
    names = list(features[0].fields)
    data: list[Any] = []
    for name in names:
        values = [f.fields[name] for f in features]
        kind = object if isinstance(values[0], str) else type(values[0])
        data.append(np.array(values, dtype=np.int32 if kind is int else kind))
    pyogrio.raw.write(
        str(path),
        geometry=np.asarray(shapely.to_wkb(geoms), dtype=object),
        field_data=data,
        fields=names,
        crs=CRS,
        geometry_type=gtype,
        layer=layer,
        driver="GPKG",
        append=path.exists(),
    )


def _multi(geom: Any) -> Any:
    if isinstance(geom, shapely.MultiPolygon):
        return geom
    if isinstance(geom, shapely.Polygon):
        return shapely.MultiPolygon([geom])
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, shapely.Polygon)]
    return shapely.MultiPolygon(parts)
