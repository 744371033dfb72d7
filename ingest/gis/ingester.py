"""The GIS ingester: footprint layers become LoD1 buildings, other layers become ``features``.

Every layer of a file takes the same vectorised path: read (``readers``, ``cityjson``) ->
2D, project CRS, repaired (``geometry``) -> role and attributes mapped (``attributes``) ->
one bulk insert (``writing``). Then buildings get roof heights from LiDAR points already in
the store, and are linked to the same buildings from other sources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import shapely

from cim.crs import check_in_project_area
from cim.errors import InputFileError, UsageError
from cim.model.features import FEATURE_ROLES, ROLES
from cim.model.heights import heights_from_points
from cim.model.linking import link_buildings
from ingest.base import IngestContext, IngestResult
from ingest.gis.attributes import guess_role, load_config
from ingest.gis.cityjson import is_cityjson, read_cityjson
from ingest.gis.datasets import CSV_SUFFIXES, FORMATS, format_of, is_dataset, locate
from ingest.gis.geometry import prepare_geometries, reprojector
from ingest.gis.readers import NOT_UTF8_VALUES, Layer, read_geoparquet, read_ogr
from ingest.gis.writing import insert_buildings, insert_features
from ingest.sniff import LASF, read_head, step_schema

if TYPE_CHECKING:
    from cim.store import Store

_GEOJSON = re.compile(rb'"type"\s*:\s*"(FeatureCollection|Feature)"')

#: how many skipped/repaired feature ids a warning lists before "... and N more"
MAX_LISTED = 50


def read_layers(path: Path, only: str | None = None) -> tuple[str, list[Layer]]:
    """The format name and the layers of a GIS file (every layer, or only the one named)."""
    if is_cityjson(path):
        return read_cityjson(path, only)
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        return read_geoparquet(path, only)
    return read_ogr(locate(path, read_head(path)), only)


def _lidar_heights(store: Store, source_id: int) -> int:
    """Roof heights of this source's buildings from LiDAR points already in the store: every
    building gets its roof percentiles (for PV), unknown heights are filled (others are kept)."""
    rows = store.con.execute(
        "SELECT id FROM buildings WHERE source_id = ? ORDER BY id", [source_id]
    ).fetchall()
    return int(heights_from_points(store, [r[0] for r in rows]))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


class GisIngester:
    """GIS vector files: footprints -> LoD1 buildings, other layers -> features."""

    kind = "gis"
    description = "a GIS file"
    options = ("crs", "layer", "role")
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"role": ROLES}
    worker_module = None
    #: the suffixes claimed by name, the common ones first (messages list the first few); any
    #: other file, or a .gdb folder, is GIS when GDAL opens it
    extensions = tuple(
        dict.fromkeys(
            (
                *(".gpkg", ".shp", ".geojson", ".sqlite", ".gdb", ".csv", ".kml", ".dxf"),
                *(".tab", ".city.json", ".fgb", ".gml", ".parquet", *FORMATS, *CSV_SUFFIXES),
                *(".json", ".geoparquet", ".cityjson", ".city.jsonl"),
            )
        )
    )

    def supports(self, path: Path) -> bool:
        """By name (a .gpkg, a .gdb folder ...), else by content: GeoJSON or CityJSON text, a
        GeoParquet's metadata, or whatever GDAL opens as a vector dataset with geometries.
        Reads a file's first bytes, a Parquet schema, or a dataset's header and catalogue."""
        name = path.name.lower()
        if path.is_dir():
            return format_of(path) == ".gdb"
        if is_cityjson(path):
            return True
        if name.endswith((".parquet", ".geoparquet")):
            return self._is_geoparquet(path)
        head = read_head(path)
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and _GEOJSON.search(head[:4096]):
            return True  # GeoJSON by its first bytes, whatever its name
        if format_of(path) is not None:
            return True
        if head.startswith(LASF) or step_schema(head) is not None:
            return False  # a point cloud or a STEP model, GDAL has no say
        return is_dataset(path, head)

    @staticmethod
    def _is_geoparquet(path: Path) -> bool:
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(path).metadata or {}
        except (OSError, pa.ArrowException):
            return True  # let ingest() say what is wrong with it
        return b"geo" in meta

    def ingest(self, path: Path, store: Store, ctx: IngestContext) -> IngestResult:
        opts = ctx.options
        if opts.role is not None and opts.role not in ROLES:
            raise UsageError(f"--role {opts.role!r}: pick one of {', '.join(ROLES)}")
        storey_height = float(load_config().get("storey_height_m", 3.0))
        ctx.progress(0.0, f"reading {path.name}")
        fmt, layers = read_layers(path, opts.layer)
        if sum(len(layer.geoms) for layer in layers) == 0:
            raise InputFileError(f"{path}: no features in this file; export it again")
        result = IngestResult(format=fmt)
        counts: dict[str, Any] = {role: 0 for role in ROLES}
        counts.update({"repaired": 0, "skipped": 0, "linked": 0})
        heights: dict[str, int] = {}
        per_layer: dict[str, dict[str, Any]] = {}
        crs_found: list[str] = []
        for i, layer in enumerate(layers):
            step = f"layer {layer.name} ({len(layer.geoms)} features)"
            ctx.progress(0.1 + 0.8 * i / len(layers), step)
            if opts.role is not None:
                role = opts.role
            else:
                role, why = guess_role(layer.name, layer.attrs.column_names, layer.geometry_type)
                if layer.lod is not None:
                    role, why = "buildings", "CityJSON buildings"
                else:
                    result.warnings.append(
                        f"layer {layer.name!r}: role guessed as {role} ({why}); "
                        f"pass --role to set it"
                    )
            label, reproject = reprojector(path, layer, opts.crs, store.crs)
            if label not in crs_found:
                crs_found.append(label)
            prepared = prepare_geometries(
                layer.geoms, layer.refs, reproject, polygons_only=(role == "buildings")
            )
            kept = prepared.geoms[prepared.keep]
            if len(kept):
                check_in_project_area(
                    store.crs,
                    tuple(shapely.total_bounds(kept)),
                    f"{path}: layer {layer.name!r} ({label})",
                )
            if role == "buildings":
                by_source = insert_buildings(store, ctx.source_id, layer, prepared, storey_height)
                for k, v in by_source.items():
                    heights[k] = heights.get(k, 0) + v
                written = sum(by_source.values())
            else:
                written = insert_features(store, ctx.source_id, layer, prepared, role)
            counts[role] += written
            not_utf8 = layer.extra_counts.get(NOT_UTF8_VALUES, 0)
            if not_utf8:
                counts[NOT_UTF8_VALUES] = counts.get(NOT_UTF8_VALUES, 0) + not_utf8
                result.warnings.append(
                    f"layer {layer.name!r}: {not_utf8} attribute values are not UTF-8 text; "
                    f"kept, each byte sequence that is not UTF-8 replaced by U+FFFD (export the "
                    f"layer as UTF-8 to keep them whole)"
                )
            counts["repaired"] += len(prepared.repaired)
            counts["skipped"] += len(prepared.skipped)
            per_layer[layer.name] = {"role": role, "read": len(layer.geoms), "written": written}
            if prepared.repaired:
                result.warnings.append(
                    f"layer {layer.name!r}: repaired {len(prepared.repaired)} invalid "
                    f"geometries (feature ids {_listing(prepared.repaired)})"
                )
            if prepared.skipped:
                result.warnings.append(
                    f"layer {layer.name!r}: skipped {len(prepared.skipped)} features: "
                    + _listing([f"{ref} ({why})" for ref, why in prepared.skipped])
                )
        if counts["buildings"]:
            ctx.progress(0.9, "building heights from LiDAR")
            if _lidar_heights(store, ctx.source_id):
                heights = {
                    str(k): int(v)
                    for k, v in store.con.execute(
                        "SELECT coalesce(height_source, 'unknown'), count(*) FROM buildings "
                        "WHERE source_id = ? GROUP BY 1 ORDER BY 1",
                        [ctx.source_id],
                    ).fetchall()
                }
            if heights.get("unknown"):
                result.warnings.append(
                    f"{heights['unknown']} buildings have no height (no height or floors "
                    f"attribute, no LiDAR roof under them): stored as unknown (NULL), not 0"
                )
        # always: a replaced source may have left other sources' links pointing at its rows
        ids = store.con.execute(
            "SELECT id FROM buildings WHERE source_id = ? ORDER BY id", [ctx.source_id]
        ).fetchnumpy()["id"]
        counts["linked"] = link_buildings(store, ids.tolist())
        counts = {k: v for k, v in counts.items() if v or k not in FEATURE_ROLES}
        counts["heights"] = heights
        counts["layers"] = per_layer
        result.counts = counts
        result.crs = ", ".join(crs_found)
        ctx.progress(1.0, f"{path.name}: done")
        return result


INGESTER = GisIngester()
