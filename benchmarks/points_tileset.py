"""Point tileset build (``tiles.points.build_points``) on stores already ingested: the six
Montpellier LAZ tiles (406k points, EPSG:2154) and a generated cloud (default 5 M points, the
synthetic town of tests/test_tiles_points.py). The ingest is not timed.

Printed per store: points/s of the whole build, tiles, levels, bytes, and each phase's wall and
CPU seconds (read = Parquet -> NumPy + project -> ENU; sort = Morton codes + argsort; octree =
the level-by-level partition; encode_write = gathering each tile's points, glb encoding, sha256
and writing the files). Best of ``--repeat`` runs. Usage::

    .venv/bin/python benchmarks/points_tileset.py
    .venv/bin/python benchmarks/points_tileset.py --points 2e7 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cim.executor import SerialExecutor  # noqa: E402
from cim.store import Store  # noqa: E402
from cim.tilefiles import TilesetWriter  # noqa: E402
from ingest import IngestOptions, run_ingest  # noqa: E402
from tests.test_tiles_points import generated_las  # noqa: E402
from tiles.context import BuildContext  # noqa: E402
from tiles.frame import Frame  # noqa: E402
from tiles.points import build_points  # noqa: E402

MONTPELLIER = sorted((ROOT / "samples" / "lidar" / "montpellier").glob("*.laz"))


def make_store(path: Path, files: list[Path]) -> Store:
    store = Store.create(path, "EPSG:2154")
    for f in files:
        run_ingest(store, f, IngestOptions(), SerialExecutor())
    return store


def run(store: Store, repeat: int) -> dict[str, Any]:
    frame = Frame(store.crs, store.project_origin)
    runs = []
    for _ in range(repeat):
        with store.transaction():
            writer = TilesetWriter(store, "points")
            built = build_points(BuildContext(store, writer, frame, None, lambda f, m: None))
            assert built is not None
            _, stats = built
            stats["bytes"] = writer.size
        runs.append(stats)
    return max(runs, key=lambda s: s["points_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=float, default=5e6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "montpellier (6 LAZ)": MONTPELLIER,
            f"generated ({args.points:,.0f})": [
                generated_las(Path(tmp) / "gen.las", int(args.points))
            ],
        }
        for k, (name, files) in enumerate(cases.items()):
            store = make_store(Path(tmp) / f"s{k}.duckdb", files)
            try:
                stats = run(store, args.repeat)
            finally:
                store.close()
            print(f"{name}: {stats['points_per_second']:,} points/s")
            print("  " + json.dumps(stats))


if __name__ == "__main__":
    main()
