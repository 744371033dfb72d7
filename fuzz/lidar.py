"""Harness: LAS/LAZ through the LiDAR ingester: the header, its CRS records, the points
(decoded, reprojected, sorted and encoded in this process), the terrain model and the
heights. The bytes are the file (``.laz`` when the header's point format says compressed);
the store is in Lambert-93 (EPSG:2154), the CRS of the seeds."""

from __future__ import annotations

from fuzz.common import expected, ingest_checked, write

STORE_CRS = "EPSG:2154"
_POINT_FORMAT_BYTE = 104  # in the LAS header: bit 7 set means LAZ-compressed


def test_one_input(data: bytes) -> None:
    compressed = len(data) > _POINT_FORMAT_BYTE and data[_POINT_FORMAT_BYTE] & 0x80
    path = write(data, "fuzz.laz" if compressed else "fuzz.las")
    with expected():
        ingest_checked(path, STORE_CRS)
