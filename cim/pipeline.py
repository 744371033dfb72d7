"""What a server asks of the layers it may not import: ingest a file, analyze, rebuild the tiles.

The viewer never parses IFC or writes tiles itself (DESIGN.md): `cim serve`, the command line,
which knows every layer, hands the app an object with these methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cim.executor import Executor
    from cim.store import Store

Progress = Callable[[float | None, str | None], None]


class Pipeline(Protocol):
    def ingest(
        self,
        store: Store,
        path: Path,
        executor: Executor,
        progress: Progress,
        job_id: int,
        replaces: int | None = None,
    ) -> dict[str, Any]:
        """Ingest one file (its own transaction), replacing the source ``replaces`` when given
        (``ingest.run_ingest``); the ingest report as JSON."""
        ...

    def tile(
        self, store: Store, names: Sequence[str], executor: Executor, progress: Progress
    ) -> dict[str, Any]:
        """Bring the tilesets ``names`` up to date; each one's figures."""
        ...

    def analyze(
        self,
        store: Store,
        progress: Progress,
        job_id: int,
        declaration: Path | None = None,
        source_id: int | None = None,
        executor: Executor | None = None,
    ) -> dict[str, Any]:
        """Keep a designer's declaration for the buildings of ``source_id`` (or the building
        it names), then run every analyzer on what is stale (the heavy parts on ``executor``);
        each one's figures."""
        ...

    def check_declaration(self, path: Path) -> None:
        """Raise a clear error (InputFileError) when ``path`` is not a valid declaration."""
        ...

    def analyses_state(self, store: Store) -> dict[str, dict[str, int]]:
        """Per analyzer: buildings with a current, stale or no result (`cim status`)."""
        ...

    def fingerprints(self, store: Store, analyzer: str) -> dict[str, str]:
        """An analyzer's subjects and the fingerprints of their inputs now (a stored result
        with another fingerprint is stale)."""
        ...
