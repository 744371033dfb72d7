"""The city model's read and derive side: what tiles, analyzers and the server read.

Each module takes a ``Store`` and reads (or derives from) what the ingesters wrote, so no
consumer of the store imports an ingester:

* ``points``: LiDAR points in a box or a polygon, the ASPRS class codes;
* ``terrain``: the DTMs and the ground elevation anywhere;
* ``heights``: building heights from the points (roof percentiles, ground level);
* ``linking``: one building, several sources (footprints that describe the same building);
* ``features``: the GIS roles and the features of a role.

The modules are imported by name (``from cim.model.points import points_in_box``): this
package hands nothing on, so importing one does not pull in the others' dependencies.
"""
