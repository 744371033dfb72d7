"""``cim tile``: (re)build the store's tilesets, each in one transaction.

Each tileset has a builder (``BUILDERS``): a function of a ``BuildContext`` that writes the
tileset's content files through the context's ``TilesetWriter`` and returns the root tile (in
the tileset's ENU frame, without the transform) and its figures, or None when the store holds
nothing for it. The tileset is checked (``tiles.tileset.check_tileset``) before its transaction
commits: a tileset that fails a check is never published.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cim.errors import CimError, UsageError
from cim.executor import Executor
from cim.store import Store
from cim.tilefiles import TILESETS, TilesetWriter, inputs_digest, tiles_dir_of
from tiles.context import BuildContext, Builder, Progress
from tiles.frame import frame_for
from tiles.tileset import Tile, Tileset, box_bounds, check_tileset

log = logging.getLogger(__name__)


class TilesetError(CimError, RuntimeError):
    """A tileset failed its structural checks: a bug, never published."""

    code = "tileset_invalid"
    http_status = 500


def builder(name: str) -> Builder:
    """The builder of one tileset (imported when asked for: each pulls in what it needs)."""
    if name == "buildings":
        from tiles.buildings import build_buildings

        return build_buildings
    if name == "bim":
        from tiles.bim import build_bim

        return build_bim
    if name == "points":
        from tiles.points import build_points

        return build_points
    if name == "pv":
        from tiles.pv import build_pv

        return build_pv
    raise UsageError(f"no tileset {name!r}: pick one of {', '.join(TILESETS)}")


def build_tilesets(
    store: Store,
    names: Sequence[str] = TILESETS,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Build the tilesets ``names`` (each in its own transaction); returns each one's figures
    (tiles, bytes, written, reused, seconds ...), ``{"skipped": reason}`` when there is
    nothing to tile."""
    build = {name: builder(name) for name in names}
    frame = frame_for(store.crs.to_wkt(), store.project_origin)
    report: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        base = k / len(names)

        def step(f: float, msg: str | None, base: float = base, name: str = name) -> None:
            if progress is not None:
                progress(base + f / len(names), f"{name}: {msg}" if msg else name)

        started = time.perf_counter()
        with store.transaction():
            writer = TilesetWriter(store, name)
            built = build[name](BuildContext(store, writer, frame, executor, step))
            if built is None:
                _drop(store, name)
                report[name] = {"skipped": f"the store holds nothing for the {name} tileset"}
                continue
            root, stats = built
            root["transform"] = frame.transform
            doc: Tileset = {
                "asset": {
                    "version": "1.1",
                    "generator": "cim-pipeline",
                    "tilesetVersion": str(writer.generation),
                },
                "geometricError": tileset_error(root),
                "root": root,
            }
            problems = check_tileset(writer.folder, document=doc)
            if problems:
                raise TilesetError(
                    f"the {name} tileset failed {len(problems)} structural check(s), so it "
                    f"was not published (first: {problems[0]})",
                    detail="\n".join(problems),
                )
            writer.finish(doc, stats, inputs_digest(store.con, name))
        report[name] = {
            "tiles": writer.tiles,  # content files (a builder may count its tiles itself)
            **stats,
            "generation": writer.generation,
            "files_written": writer.written,
            "files_reused": writer.reused,
            "bytes": writer.size,
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.info("tileset %s: %s", name, report[name])
    return report


def tileset_error(root: Tile) -> float:
    """The tileset's geometric error: the error of drawing nothing at all. Clients draw the
    root only while this error is larger than their screen-space budget, so it is at least the
    diagonal of the root's box (a 500 m district then shows until about 15 km away at
    CesiumJS's defaults), and more than the root's own error."""
    lo, hi = box_bounds(root["boundingVolume"])
    return round(max(float(np.linalg.norm(hi - lo)), 2.0 * float(root["geometricError"]), 1.0), 3)


def _drop(store: Store, name: str) -> None:
    """Forget a tileset the store no longer has content for (its folder goes after commit)."""
    store.con.execute("DELETE FROM tiles WHERE tileset = ?", [name])
    store.con.execute("DELETE FROM tilesets WHERE name = ?", [name])
    folder = tiles_dir_of(store.path) / name
    store.after_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
