"""GIS layers: building footprints become LoD1 buildings, other layers become ``features``.

The modules, in the order a layer goes through them:

* ``readers``: OGR formats via pyogrio and GeoParquet via pyarrow, into ``Layer`` records;
  ``cityjson`` reads CityJSON into the same record (GDAL has no driver for it);
* ``attributes``: what the fields mean and which role a layer plays
  (``schemas/gis_attributes.json``);
* ``geometry``: 2D, the project CRS (``gcj02`` for Chinese web maps), repaired;
* ``writing``: attribute values parsed and one bulk insert per layer;
* ``ingester``: ``GisIngester``, which runs the steps for every layer of a file.

The roles and the read side of the ``features`` table are ``cim.model.features``.
"""

from ingest.gis.attributes import guess_role, map_attributes
from ingest.gis.ingester import INGESTER, GisIngester, read_layers
from ingest.gis.readers import Layer

__all__ = ["INGESTER", "GisIngester", "Layer", "guess_role", "map_attributes", "read_layers"]
