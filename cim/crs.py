"""Coordinate reference systems: parsing what users type, and cached transformers."""

from __future__ import annotations

import functools

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError as _PyprojCRSError

from cim.errors import CrsError

DEFAULT_PROJECT_CRS = "EPSG:4550"


def parse_crs(text: str, *, what: str = "CRS") -> CRS:
    """Parse an EPSG code ("EPSG:4550", "4550"), WKT, or PROJ string; raise CrsError if unknown."""
    s = text.strip()
    if s.isdigit():
        s = f"EPSG:{s}"
    try:
        return CRS.from_user_input(s)
    except _PyprojCRSError as exc:
        raise CrsError(
            f"unknown {what} {text!r}: give an EPSG code such as EPSG:4550, or a WKT string"
        ) from exc


def crs_label(crs: CRS) -> str:
    """A short, stable label: 'EPSG:n' when the CRS has an EPSG code, else its WKT."""
    epsg = crs.to_epsg(min_confidence=90)
    if epsg is not None:
        return f"EPSG:{epsg}"
    auth = crs.to_authority(min_confidence=90)
    if auth is not None:
        return f"{auth[0]}:{auth[1]}"
    return str(crs.to_wkt())


def check_project_crs(crs: CRS, text: str) -> None:
    """The project CRS must be projected and in metres (every geometry is stored in it)."""
    base = crs.sub_crs_list[0] if crs.is_compound and crs.sub_crs_list else crs
    if not base.is_projected:
        raise CrsError(
            f"project CRS {text!r} is not projected: pick a projected CRS in metres, "
            f"e.g. EPSG:4550 (CGCS2000 / 3-degree Gauss-Kruger CM 123E)"
        )
    unit = base.axis_info[0].unit_name if base.axis_info else ""
    if unit not in ("metre", "meter"):
        raise CrsError(f"project CRS {text!r} has units {unit!r}: pick a projected CRS in metres")


@functools.lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def transformer(src: CRS | str, dst: CRS | str) -> Transformer:
    """A cached always_xy transformer (x=easting/longitude first) from src to dst."""
    s = src.to_wkt() if isinstance(src, CRS) else src
    d = dst.to_wkt() if isinstance(dst, CRS) else dst
    return _transformer(s, d)
