"""IFC ingest: designers' building models into the store, placed on the map.

The package hands on the names its callers use; the work is in its modules:

* ``ingester``: ``IfcIngester`` (``INGESTER``) and the run of one ingest, the meshing scheduled
  on the executor's workers;
* ``mesh``: what those workers run (meshing chunks of products, a mesh's quantities and
  outline);
* ``properties``: property and quantity sets, with type inheritance;
* ``placement``: georeferencing a model, and ``place`` (re-placing it without re-reading it);
* ``buildings``: storeys, floors and buildings; ``elements``: element rows, meshes, relations.

The ingester's names are imported on first use (PEP 562), not with the package: a worker
process imports ``ingest.ifc.mesh`` (``IfcIngester.worker_module``) and, with it, this package,
and has no use for the ingester's dependencies (the store writes, LiDAR heights, linking).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.ifc.ingester import INGESTER, IfcIngester, open_model
    from ingest.ifc.mesh import MeshData
    from ingest.ifc.placement import place

__all__ = ["INGESTER", "IfcIngester", "MeshData", "open_model", "place"]

_LAZY = {
    "INGESTER": "ingest.ifc.ingester",
    "IfcIngester": "ingest.ifc.ingester",
    "MeshData": "ingest.ifc.mesh",
    "open_model": "ingest.ifc.ingester",
    "place": "ingest.ifc.placement",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
