"""LiDAR ingest: LAS/LAZ point clouds into the store, with a terrain model per cloud and the
heights of the buildings they cover.

The modules, in the order a cloud goes through them:

* ``reader``: a file's CRS and units, and opening its point data;
* ``sort``: the Hilbert order the points are stored in;
* ``encode``: a part of a cloud as a Parquet point file (what the executor's workers run);
* ``dtm``: the terrain model from the ground points;
* ``ingester``: ``LidarIngester``, which has a cloud encoded, stores its files and summary, and
  derives its terrain model and the building heights.

The read side (points in a box or a polygon, the terrain, building heights) is ``cim.model``.
"""

from ingest.lidar.ingester import INGESTER, LidarIngester

__all__ = ["INGESTER", "LidarIngester"]
