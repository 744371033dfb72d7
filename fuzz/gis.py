"""Harness: GIS layers through the layer reader (``ingest.gis.read_layers``) and the GIS
ingester.

The first byte picks the format (low 3 bits) and the store's CRS (bits 4-5); the rest is the
file: GeoJSON, GeoPackage, FlatGeobuf, GeoParquet, or a Shapefile whose .shp, .shx, .dbf and
.prj are four parts, each after its 4-byte little-endian length. The seeds
(``fuzz/seeds.py``) are cut from the samples, each with the CRS of its region.
"""

from __future__ import annotations

import struct

from fuzz.common import expected, ingest_checked, scratch, write
from ingest.gis import read_layers

SUFFIXES = (".geojson", ".gpkg", ".fgb", ".parquet", ".shp")
STORE_CRSS = ("EPSG:32618", "EPSG:32633", "EPSG:2154", "EPSG:4550")


def split_parts(data: bytes, n: int) -> list[bytes]:
    """``n`` parts, each after its 4-byte length (what is missing is empty)."""
    parts = []
    for _ in range(n):
        size = struct.unpack("<I", data[:4].ljust(4, b"\0"))[0]
        parts.append(data[4 : 4 + size])
        data = data[4 + size :]
    return parts


def join_parts(parts: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    suffix = SUFFIXES[data[0] & 7] if data[0] & 7 < len(SUFFIXES) else SUFFIXES[0]
    crs = STORE_CRSS[(data[0] >> 4) & 3]
    body = data[1:]
    if suffix == ".shp":
        for old in scratch().glob("fuzz.*"):
            old.unlink()
        for part, ext in zip(split_parts(body, 4), (".shp", ".shx", ".dbf", ".prj"), strict=True):
            path = write(part, "fuzz" + ext)
        path = scratch() / "fuzz.shp"
    else:
        path = write(body, "fuzz" + suffix)
    with expected():
        read_layers(path)
        ingest_checked(path, crs)
