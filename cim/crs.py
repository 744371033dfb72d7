"""Coordinate reference systems: parsing what users type, cached transformers, and the best
transformation usable here between two datums (PROJ's best may need a grid that is not
installed, and the ingest never downloads one)."""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError as _PyprojCRSError
from pyproj.exceptions import ProjError
from pyproj.transformer import AreaOfInterest, TransformerGroup

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


def transformer(src: CRS | str, dst: CRS | str, *, what: str | None = None) -> Transformer:
    """A cached always_xy transformer (x=easting/longitude first) from src to dst.

    A CRS that parses may still have no transformation (a WKT missing a parameter its
    projection needs): that is a ``CrsError`` naming both CRSs, after ``what`` (the file)."""
    s = src.to_wkt() if isinstance(src, CRS) else src
    d = dst.to_wkt() if isinstance(dst, CRS) else dst
    try:
        return _transformer(s, d)
    except (ProjError, _PyprojCRSError) as exc:
        names = [CRS.from_user_input(c).name if isinstance(c, str) else c.name for c in (src, dst)]
        reason = str(exc).split(": (Internal Proj Error: ")[-1].removesuffix(")")
        raise CrsError(
            f"{what + ': ' if what else ''}no transformation from {names[0]!r} to "
            f"{names[1]!r} ({reason}); check the CRS (--crs overrides the file's)",
            detail=repr(exc),
        ) from exc


def check_in_project_area(
    project: CRS, bounds: tuple[float, float, float, float], what: str, margin_deg: float = 1.0
) -> None:
    """Refuse data lying outside the project CRS's area of use (a wrong CRS, or the wrong store).

    ``bounds`` (xmin, ymin, xmax, ymax) are in the project CRS. Far outside its area, a
    projection such as Gauss-Kruger distorts beyond use, and the data is almost surely
    mislabelled: say so instead of storing it.
    """
    area = project.area_of_use
    xmin, ymin, xmax, ymax = bounds
    if area is None or not all(map(math.isfinite, bounds)):
        if not all(map(math.isfinite, bounds)):
            raise CrsError(f"{what}: coordinates do not map into the project CRS; check --crs")
        return
    xs = [xmin, xmax, xmin, xmax, (xmin + xmax) / 2]
    ys = [ymin, ymin, ymax, ymax, (ymin + ymax) / 2]
    lon, lat = transformer(project, CRS.from_epsg(4326)).transform(xs, ys)
    ok = all(
        math.isfinite(lo)
        and math.isfinite(la)
        and area.west - margin_deg <= lo <= area.east + margin_deg
        and area.south - margin_deg <= la <= area.north + margin_deg
        for lo, la in zip(lon, lat, strict=True)
    )
    if not ok:
        name = area.name.rstrip(".")
        raise CrsError(
            f"{what} lies around lon {lon[4]:.4f}, lat {lat[4]:.4f}, outside the area of the "
            f"project CRS {crs_label(project)} ({name}: {area.west:g}..{area.east:g}E, "
            f"{area.south:g}..{area.north:g}N): check the file's CRS (--crs), or use a store "
            f"whose CRS covers it"
        )


@dataclass(frozen=True)
class Transformation:
    """The operation chosen from ``src`` to ``dst`` around a place, and what PROJ says of it.

    ``accuracy_m`` is PROJ's stated accuracy (None when it states none, as for a ballpark);
    ``best_known`` and ``missing_grids`` name the better operation PROJ knows when the grids it
    needs are not installed here (they are never downloaded: PROJ_NETWORK stays off).
    """

    transformer: Transformer
    name: str
    proj: str
    accuracy_m: float | None
    best_known: str | None = None
    best_known_accuracy_m: float | None = None
    missing_grids: tuple[str, ...] = ()

    @property
    def ballpark(self) -> bool:
        """PROJ found no datum transformation and only lines up the two datums' coordinates."""
        return "ballpark" in self.name.lower()

    def transform(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.transformer.transform(x, y)
        return np.asarray(out[0], dtype=np.float64), np.asarray(out[1], dtype=np.float64)


def _accuracy(value: float | None) -> float | None:
    return float(value) if value is not None and value >= 0 else None


@functools.lru_cache(maxsize=64)
def _group(src: str, dst: str, lon: float, lat: float) -> TransformerGroup:
    aoi = AreaOfInterest(
        max(lon - 0.1, -180.0), max(lat - 0.1, -90.0), min(lon + 0.1, 180.0), min(lat + 0.1, 90.0)
    )
    with warnings.catch_warnings():
        # pyproj warns when the best operation is unavailable: the caller records it instead
        warnings.simplefilter("ignore", UserWarning)
        return TransformerGroup(
            CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True, area_of_interest=aoi
        )


def best_transformation(
    src: CRS, dst: CRS, lon: float, lat: float, probe_xy: np.ndarray
) -> Transformation | None:
    """The best operation from ``src`` to ``dst`` that is usable here, around lon/lat (degrees).

    PROJ's own choice (``Transformer.from_crs``) is its best operation even when that needs a
    grid that is not installed, and then it gives infinities; ``TransformerGroup`` lists the
    candidates for the area, best first, and which are available. The first available one that
    maps every ``probe_xy`` point (n x 2, x first, in ``src``) to finite coordinates is chosen;
    None when none does.
    """
    # candidates depend on the place only through which operations' areas cover it: a tenth of
    # a degree is finer than those areas, and lets repeated ingests reuse the group
    group = _group(src.to_wkt(), dst.to_wkt(), round(lon, 1), round(lat, 1))
    best_known: str | None = None
    best_accuracy: float | None = None
    grids: tuple[str, ...] = ()
    if not group.best_available and group.unavailable_operations:
        op = group.unavailable_operations[0]
        best_known, best_accuracy = str(op.name), _accuracy(op.accuracy)
        grids = tuple(g.short_name for g in op.grids if not g.available)
    xy = np.asarray(probe_xy, dtype=np.float64).reshape(-1, 2)
    for candidate in group.transformers:
        x, y = candidate.transform(xy[:, 0], xy[:, 1], errcheck=False)
        if np.all(np.isfinite(x)) and np.all(np.isfinite(y)):
            return Transformation(
                candidate,
                str(candidate.description),
                str(candidate.definition),
                _accuracy(candidate.accuracy),
                best_known,
                best_accuracy,
                grids,
            )
    return None


def datum_name(crs: CRS) -> str:
    """The name of a CRS's datum (or datum ensemble), for messages."""
    datum = crs.datum
    return str(datum.name) if datum is not None else str(crs.name)
