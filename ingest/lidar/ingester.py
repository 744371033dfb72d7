"""``LidarIngester``: a LAS/LAZ point cloud into the store, with its terrain model and the
heights of the buildings it covers.

The ingester reads the file's header and CRS (``reader``), has the cloud encoded in parts by the
executor's workers or, a small one, in this process (``encode``), names each part's point file
in the store, writes the cloud's summary (``lidar_sources``) and its DTM (``dtm``), then
refreshes the heights of the buildings the cloud overlaps or no longer covers
(``cim.model.heights``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import laspy
import numpy as np
from pyproj import CRS

from cim.errors import InputFileError
from cim.model.heights import affected_buildings, derive_building_heights
from cim.model.points import BUILDING, GROUND
from ingest.base import IngestContext, IngestResult
from ingest.lidar.dtm import DtmGrid, GroundGrid
from ingest.lidar.encode import ROW_GROUP, Part, PartSpec, encode_part, part_ranges
from ingest.lidar.reader import (
    CloudCrs,
    check_header_sizes,
    check_scales,
    horizontal_crs,
    is_decoder_error,
    project_bounds,
    resolve_crs,
)
from ingest.lidar.sort import raw_grid
from ingest.sniff import LASF

if TYPE_CHECKING:
    from cim.store import Store

log = logging.getLogger(__name__)

#: files with at least this many points (about 1M) are encoded by the executor's workers, in
#: parts; a smaller one in this process. With the workers started (`cim ingest` starts them
#: ahead for LAS/LAZ files; otherwise their first use costs their start), two workers win from
#: about 1M points; below that the parts do not pay for themselves.
PARALLEL_MIN_POINTS = 8 * ROW_GROUP
PARALLEL_MIN_WORKERS = 2

_RGB_FORMATS = {2, 3, 5, 7, 8, 10}


class _CloudStats:
    """Class counts and bounds of the whole cloud, from the chunks' summaries."""

    def __init__(self) -> None:
        self.classes = np.zeros(256, dtype=np.int64)
        self.lo = np.full(3, np.iinfo(np.int64).max, dtype=np.int64)
        self.hi = np.full(3, np.iinfo(np.int64).min, dtype=np.int64)

    def add(self, part: Part) -> None:
        self.classes += part.classes
        np.minimum(self.lo, part.lo, out=self.lo)
        np.maximum(self.hi, part.hi, out=self.hi)

    def bbox(self) -> list[float | None]:
        if self.lo[0] > self.hi[0]:
            return [None] * 6  # no points
        return [float(v) / 1000.0 for v in (*self.lo, *self.hi)]


def _read_header(path: Path) -> laspy.LasHeader:
    """The file's header; refuses a file that is not LAS/LAZ or declares no points."""
    check_header_sizes(path)
    try:
        with laspy.open(path) as reader:
            header = reader.header
    except BaseException as exc:  # a panic of lazrs's too (is_decoder_error)
        if not is_decoder_error(exc):
            raise
        raise InputFileError(
            f"{path}: not a readable LAS/LAZ file ({exc}); export it again",
            detail=repr(exc),
        ) from exc
    if int(header.point_count) == 0:
        raise InputFileError(f"{path}: the header says the cloud has no points; export it again")
    check_scales(header, path)
    return header


def _whole_cloud(
    path: Path, header: laspy.LasHeader, cloud_crs: CloudCrs, store: Store
) -> tuple[PartSpec, DtmGrid]:
    """The whole cloud as one part (a template for its parts: start, count and out are set per
    part), and its DTM grid over the header's bounds in the project CRS."""
    dst = horizontal_crs(store.crs)
    bounds = project_bounds(header, cloud_crs, dst, path)
    src_wkt = cloud_crs.horizontal_wkt
    dst_wkt = dst.to_wkt()
    if CRS.from_wkt(src_wkt) == dst:
        src_wkt = dst_wkt  # same CRS: skip the transformation
    dtm = DtmGrid.over(*bounds)
    has_rgb = int(header.point_format.id) in _RGB_FORMATS
    spec = PartSpec(
        str(path),
        0,
        int(header.point_count),
        src_wkt,
        dst_wkt,
        cloud_crs.z_factor,
        has_rgb,
        raw_grid(header),
        dtm,
        None,
    )
    return spec, dtm


def _encoded_parts(
    whole: PartSpec, store: Store, ctx: IngestContext
) -> Iterator[tuple[Part, Path | None]]:
    """The cloud's parts as they are encoded, each with its file (None: the part's bytes came
    back from a remote worker and are still to be written)."""
    n_header = whole.count
    workers = ctx.executor.workers
    if workers >= PARALLEL_MIN_WORKERS and n_header >= PARALLEL_MIN_POINTS:
        ranges = part_ranges(n_header, workers)
        # workers on this machine write their files; a Dask cluster's send the bytes
        outs: list[Path | None] = [
            None if ctx.executor.distributed else store.new_point_file(ctx.source_id, i)
            for i in range(len(ranges))
        ]
        specs = [
            dataclasses.replace(
                whole, start=start, count=count, out=None if out is None else str(out)
            )
            for (start, count), out in zip(ranges, outs, strict=True)
        ]
        results = ctx.executor.map(encode_part, specs, window=workers + 1)
        return zip(results, outs, strict=True)
    # the whole cloud as one part, encoded in this process straight to its file
    out = store.new_point_file(ctx.source_id, 0)
    return iter([(encode_part(dataclasses.replace(whole, out=str(out))), out)])


def _store_parts(
    parts: Iterator[tuple[Part, Path | None]],
    store: Store,
    ctx: IngestContext,
    n_header: int,
    dtm: DtmGrid,
) -> tuple[_CloudStats, GroundGrid, int]:
    """Names each part's file in the store (writing it first when its bytes came back) and adds
    up the parts' summaries: the cloud's statistics, its ground points and its point count."""
    stats = _CloudStats()
    ground = GroundGrid(dtm)
    done = 0
    for i, (part, file) in enumerate(parts):
        if file is None:  # from a remote worker: this process writes its bytes
            assert part.data is not None
            file = store.new_point_file(ctx.source_id, i)
            with file.open("wb") as f:
                f.write(part.data)
            part.data = None
        store.add_point_file(ctx.source_id, file, part.points, part.row_groups, part.bbox())
        stats.add(part)
        ground.add(part)
        done += part.points
        ctx.progress(0.9 * done / n_header, f"stored {done:,} of {n_header:,} points")
    return stats, ground, done


def _insert_source(
    store: Store,
    ctx: IngestContext,
    header: laspy.LasHeader,
    cloud_crs: CloudCrs,
    has_rgb: bool,
    done: int,
    classes: dict[int, int],
    bbox: list[float | None],
) -> None:
    """The cloud's row in ``lidar_sources``."""
    store.con.execute(
        "INSERT INTO lidar_sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?)",
        [
            ctx.source_id,
            f"{header.version.major}.{header.version.minor}",
            int(header.point_format.id),
            bool(header.are_points_compressed),
            int(header.point_count),
            done,
            cloud_crs.label,
            cloud_crs.found_in,
            cloud_crs.z_factor,
            has_rgb,
            classes.get(GROUND, 0) > 0,
            classes.get(BUILDING, 0) > 0,
            json.dumps({str(k): v for k, v in classes.items()}),
            *bbox,
        ],
    )


class LidarIngester:
    """LAS/LAZ point clouds (see the package docstring)."""

    kind = "lidar"
    description = "a LiDAR cloud"
    options = ("crs",)
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    worker_module = "ingest.lidar.encode"
    extensions = (".las", ".laz")

    def supports(self, path: Path) -> bool:
        """A file that starts with the LAS signature, whatever its name (a LAZ saved as .bin)."""
        try:
            with path.open("rb") as f:
                return f.read(4) == LASF
        except OSError:  # a folder, or unreadable
            return False

    def ingest(self, path: Path, store: Store, ctx: IngestContext) -> IngestResult:
        t0 = time.perf_counter()
        header = _read_header(path)
        n_header = int(header.point_count)
        version = f"{header.version.major}.{header.version.minor}"
        pf = int(header.point_format.id)
        compressed = bool(header.are_points_compressed)
        fmt = f"LAS {version} PF{pf}" + (" (LAZ)" if compressed else "")
        cloud_crs = resolve_crs(header, path, ctx.options.crs)
        warnings: list[str] = []
        if cloud_crs.z_factor != 1.0:
            log.info("%s: z in %s, scaled by %s", path.name, cloud_crs.z_unit, cloud_crs.z_factor)
        whole, dtm = _whole_cloud(path, header, cloud_crs, store)
        ctx.progress(0.0, f"{path.name}: {n_header:,} points, {fmt}, {cloud_crs.label}")
        parts = _encoded_parts(whole, store, ctx)
        stats, ground, done = _store_parts(parts, store, ctx, n_header, dtm)
        if done != n_header:
            raise InputFileError(
                f"{path}: the header says {n_header} points but {done} were read; "
                f"the file is truncated, export or download it again"
            )
        store.refresh_point_view()
        bbox = stats.bbox()
        if not dtm.covers(bbox):
            warnings.append(
                f"{path.name}: points lie outside the bounds in the file's header; the terrain "
                f"model covers the header's bounds only"
            )
        classes = {int(c): int(n) for c, n in enumerate(stats.classes) if n}
        has_ground = classes.get(GROUND, 0) > 0
        has_building = classes.get(BUILDING, 0) > 0
        _insert_source(store, ctx, header, cloud_crs, whole.has_rgb, done, classes, bbox)
        ctx.progress(0.9, "terrain model")
        dtm_cells = 0
        if has_ground:
            dtm_cells = ground.save(store, ctx.source_id)
        else:
            warnings.append(f"{path.name}: no ground points (class 2): no terrain model")
        ctx.progress(0.95, "building heights")
        if not has_building:
            warnings.append(
                f"{path.name}: no building points (class 6): building heights unavailable"
            )
        if done == 0:
            warnings.append(f"{path.name}: the file holds no points")
        with_heights = derive_building_heights(store, affected_buildings(store, bbox))
        ctx.progress(1.0, f"{done:,} points")
        seconds = time.perf_counter() - t0
        log.info(
            "%s: %d points in %.1f s (%.0f points/s)", path.name, done, seconds, done / seconds
        )
        counts: dict[str, Any] = {
            "points": done,
            "header_points": n_header,
            "ground_points": classes.get(GROUND, 0),
            "building_points": classes.get(BUILDING, 0),
            "dtm_cells": dtm_cells,
            "buildings_with_heights": with_heights,
            "classes": {str(k): v for k, v in classes.items()},
        }
        return IngestResult(format=fmt, crs=cloud_crs.label, counts=counts, warnings=warnings)


INGESTER = LidarIngester()
