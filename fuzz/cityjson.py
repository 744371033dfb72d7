"""Harness: CityJSON (``ingest.gis.cityjson``) through the GIS ingester: the bytes as a
``.city.json`` file, read as a layer, then ingested into a UTM 33N store (the seeds lie in
Prague, as the tests' buildings do)."""

from __future__ import annotations

from fuzz.common import expected, ingest_checked, write
from ingest.gis import read_layers

STORE_CRS = "EPSG:32633"


def test_one_input(data: bytes) -> None:
    path = write(data, "fuzz.city.json")
    with expected():
        read_layers(path)
        ingest_checked(path, STORE_CRS)
