from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cim.store import Store
from tests.browser import _playwright, tiles_browser  # noqa: F401  (fixtures: CesiumJS in Chromium)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "city.duckdb"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    s = Store.create(store_path, "EPSG:4550")
    try:
        yield s
    finally:
        s.close()


MakeStore = Callable[[str], Store]


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[MakeStore]:
    """Stores in any project CRS, closed at the end of the test."""
    opened: list[Store] = []

    def make(crs: str) -> Store:
        s = Store.create(tmp_path / f"s{len(opened)}.duckdb", crs)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def snapshot(store: Store) -> dict[str, object]:
    """Every table's full content, to compare a store before and after a failed operation."""
    tables = [
        r[0]
        for r in store.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "ORDER BY table_name"
        ).fetchall()
    ]
    out: dict[str, object] = {}
    for t in tables:
        if t == "jobs":
            continue  # jobs record the failure itself
        cols = [r[0] for r in store.con.execute(f'DESCRIBE "{t}"').fetchall()]
        select = ", ".join(
            f'ST_AsText("{c}")' if c in ("footprint", "geom") else f'"{c}"' for c in cols
        )
        out[t] = sorted(map(repr, store.con.execute(f'SELECT {select} FROM "{t}"').fetchall()))
    return out
