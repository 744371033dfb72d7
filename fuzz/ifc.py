"""Harness: IFC bytes through the whole ingest up to the store write (``run_ingest`` with a
``SerialExecutor``: the model parsed, meshed, its properties, placement, storeys and buildings
read and written) into a store in EPSG:4550, the CRS of the seeds' georeferences."""

from __future__ import annotations

from fuzz.common import expected, ingest_checked, write

STORE_CRS = "EPSG:4550"


def test_one_input(data: bytes) -> None:
    path = write(data, "fuzz.ifc")
    with expected():
        ingest_checked(path, STORE_CRS)
