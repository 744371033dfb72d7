"""What a tileset builder is given (``BuildContext``) and what it is (``Builder``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cim.executor import Executor
from cim.store import Store
from cim.tilefiles import TilesetWriter
from tiles.frame import Frame
from tiles.tileset import Tile

Progress = Callable[[float, str | None], None]


@dataclass
class BuildContext:
    """One tileset's build: the store it reads, the writer of its files, its frame, the
    executor for CPU work (None: in this process) and a progress callback (0..1, message)."""

    store: Store
    writer: TilesetWriter
    frame: Frame
    executor: Executor | None
    progress: Progress

    def step(self, fraction: float, message: str | None = None) -> None:
        self.progress(fraction, message)


#: a tileset's builder: the root tile (ENU frame, no transform) and its figures, or None when
#: the store holds nothing for it
Builder = Callable[[BuildContext], tuple[Tile, dict[str, Any]] | None]
