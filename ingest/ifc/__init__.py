"""IFC ingest (see ingest.ifc.ingester)."""

from ingest.ifc.ingester import INGESTER, IfcIngester, open_model, place

__all__ = ["INGESTER", "IfcIngester", "open_model", "place"]
