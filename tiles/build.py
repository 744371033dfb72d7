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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cim.errors import CimError
from cim.executor import Executor
from cim.store import Store
from cim.tilefiles import TILESETS, TilesetWriter, inputs_digest, tiles_dir_of
from tiles.frame import Frame
from tiles.tileset import Tile, Tileset, check_tileset

log = logging.getLogger(__name__)

Progress = Callable[[float, str | None], None]


class TilesetError(CimError, RuntimeError):
    """A tileset failed its structural checks: a bug, never published."""

    code = "tileset_invalid"
    http_status = 500


@dataclass
class BuildContext:
    store: Store
    writer: TilesetWriter
    frame: Frame
    executor: Executor | None
    progress: Progress

    def step(self, fraction: float, message: str | None = None) -> None:
        self.progress(fraction, message)


Builder = Callable[[BuildContext], tuple[Tile, dict[str, Any]] | None]


def _builders() -> dict[str, Builder]:
    # imported here: each builder pulls in what it needs (shapely, the point reader ...)
    from tiles.bim import build_bim
    from tiles.buildings import build_buildings
    from tiles.points import build_points

    return {"buildings": build_buildings, "bim": build_bim, "points": build_points}


def build_tilesets(
    store: Store,
    names: Sequence[str] = TILESETS,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Build the tilesets ``names`` (each in its own transaction); returns each one's figures
    (tiles, bytes, written, reused, seconds ...), ``{"skipped": reason}`` when there is
    nothing to tile."""
    builders = _builders()
    frame = Frame(store.crs, store.project_origin)
    report: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        base = k / len(names)

        def step(f: float, msg: str | None, base: float = base, name: str = name) -> None:
            if progress is not None:
                progress(base + f / len(names), f"{name}: {msg}" if msg else name)

        started = time.perf_counter()
        with store.transaction():
            writer = TilesetWriter(store, name)
            built = builders[name](BuildContext(store, writer, frame, executor, step))
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
                "geometricError": float(root["geometricError"]) * 2 or 1.0,
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
            **stats,
            "generation": writer.generation,
            "files_written": writer.written,
            "files_reused": writer.reused,
            "bytes": writer.bytes,
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.info("tileset %s: %s", name, report[name])
    return report


def _drop(store: Store, name: str) -> None:
    """Forget a tileset the store no longer has content for (its folder goes after commit)."""
    store.con.execute("DELETE FROM tiles WHERE tileset = ?", [name])
    store.con.execute("DELETE FROM tilesets WHERE name = ?", [name])
    folder = tiles_dir_of(store.path) / name
    store.after_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
