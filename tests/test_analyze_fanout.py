"""The analyzers' heavy parts on the executor's workers (run_analyzer with an executor): the
same results as in one process, a building whose work fails in a worker fails alone, a user's
mistake found in a worker stops the run with the store as it was, and a pool that breaks
leaves the rest to this process."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.analyze import ANALYZERS, run_analyzer
from cim.analyze.base import Outcome, Subject, Work, computed_inline
from cim.errors import InputFileError
from cim.executor import LocalExecutor, SerialExecutor
from cim.model.analyses import stored
from cim.store import Store
from ingest import IngestOptions, run_ingest
from tests.conftest import snapshot
from tests.ifc_models import energy_box
from tests.test_pv import _layer


@pytest.fixture(scope="module")
def pool() -> Iterator[LocalExecutor]:
    executor = LocalExecutor(2)
    yield executor
    executor.close()


def _results(store: Store, name: str) -> dict[str, Any]:
    rows = stored(store, name)
    return {k: json.dumps(r["result"], sort_keys=True) for k, r in rows.items()}


def test_energy_and_pv_on_the_workers_give_the_results_of_one_process(
    tmp_path: Path, pool: LocalExecutor
) -> None:
    store = Store.create(tmp_path / "t.duckdb", "EPSG:4550")
    for path in (
        energy_box(tmp_path / "a.ifc"),
        energy_box(tmp_path / "b.ifc", true_north_deg=40.0, site_latlon=(43.66, 122.25)),
    ):
        run_ingest(store, path, IngestOptions(), SerialExecutor())
    blocks = _layer(tmp_path / "c.geojson", [(0, 0, 10, 10, 6.0), (14, 0, 10, 10, 18.0)])
    run_ingest(store, blocks, IngestOptions(role="buildings"), SerialExecutor())
    for name in ("energy", "pv"):
        one = run_analyzer(store, ANALYZERS[name](store=store))
        alone = _results(store, name)
        fanned = run_analyzer(store, ANALYZERS[name](store=store), everything=True, executor=pool)
        assert fanned["computed"] == one["computed"] == len(alone) - 1 >= 2, name
        assert not fanned["failed"]
        assert _results(store, name) == alone, name
    store.close()


def test_the_indicators_of_two_areas_on_the_workers(tmp_path: Path, pool: LocalExecutor) -> None:
    from tests.test_indicators import CRS, box, grid_city, write_layer

    store = Store.create(tmp_path / "t.duckdb", CRS)
    run_ingest(store, grid_city(tmp_path / "town.gpkg"), IngestOptions(), SerialExecutor())
    far = tmp_path / "far.gpkg"
    write_layer(far, [box(5000, 0, 6000, 1000)], CRS, "boundary", name=np.array(["far"]))
    write_layer(far, [box(5100, 100, 5120, 120)], CRS, "buildings", floors=np.array([3]))
    run_ingest(store, far, IngestOptions(), SerialExecutor())
    one = run_analyzer(store, ANALYZERS["indicators"](store=store))
    alone = _results(store, "indicators")
    again = run_analyzer(
        store, ANALYZERS["indicators"](store=store), everything=True, executor=pool
    )
    assert one["computed"] == again["computed"] == len(alone) == 2 and not again["failed"]
    assert _results(store, "indicators") == alone
    store.close()


# -- an analyzer made for the test: its work fails as told -----------------------------------


def _work(item: tuple[int, str]) -> dict[str, Any]:
    n, how = item
    in_worker = multiprocessing.parent_process() is not None
    if how == "raise":
        raise ValueError(f"building {n} is beyond me")
    if how == "user":
        raise InputFileError(f"weather.epw: unreadable (building {n})")
    if how == "die" and in_worker:
        os._exit(3)  # a crash in native code, say: the pool breaks
    return {"n": n, "square": n * n, "in_worker": in_worker}


class Told:
    name = "told"

    def __init__(self, how: dict[int, str]) -> None:
        self.how = how

    def rules_label(self) -> str:
        return "test"

    def subjects(self, store: Store, building: int | None = None) -> list[Subject]:
        ids = [
            int(r[0]) for r in store.con.execute("SELECT id FROM buildings ORDER BY id").fetchall()
        ]
        return [Subject(f"building:{i}", i, None, f"v1:{i}", inputs={"n": i}) for i in ids]

    def plan(self, store: Store, subject: Subject) -> Outcome | Work:
        n = int(subject.inputs["n"])

        def finish(out: dict[str, Any]) -> Outcome:
            return Outcome({"square": out["square"]}, out)

        return Work(_work, (n, self.how.get(n, "ok")), finish)

    def compute(self, store: Store, subject: Subject) -> Outcome:
        return computed_inline(self.plan(store, subject))

    def rollup(self, store: Store, rows: list[dict[str, Any]]) -> Outcome | None:
        return Outcome({"n": len(rows)}, {"n": len(rows)})


@pytest.fixture
def city(tmp_path: Path) -> Iterator[Store]:
    store = Store.create(tmp_path / "t.duckdb", "EPSG:4550")
    boxes = [(30.0 * k, 0, 10, 10, 6.0) for k in range(6)]
    run_ingest(store, _layer(tmp_path / "c.geojson", boxes), IngestOptions(role="buildings"),
               SerialExecutor())  # fmt: skip
    yield store
    store.close()


def test_a_building_failing_in_a_worker_fails_alone(city: Store, pool: LocalExecutor) -> None:
    report = run_analyzer(city, Told({3: "raise"}), executor=pool)  # type: ignore[arg-type]
    assert [f["building_id"] for f in report["failed"]] == [3]
    assert "beyond me" in report["failed"][0]["error"]
    rows = stored(city, "told")
    assert sorted(k for k in rows if k != "city") == [f"building:{i}" for i in (1, 2, 4, 5, 6)]
    assert all(rows[f"building:{i}"]["result"]["in_worker"] for i in (1, 2, 4, 5, 6))
    assert rows["building:5"]["summary"] == {"square": 25}
    # it stays stale: the next run computes only it (here it works)
    again = run_analyzer(city, Told({}), executor=pool)  # type: ignore[arg-type]
    assert (again["computed"], again["unchanged"], again["failed"]) == (1, 5, [])


def test_a_users_mistake_found_in_a_worker_stops_the_run(city: Store, pool: LocalExecutor) -> None:
    run_analyzer(city, Told({}))  # type: ignore[arg-type]
    before = snapshot(city)
    with pytest.raises(InputFileError, match=r"weather\.epw"):
        run_analyzer(city, Told({4: "user"}), everything=True, executor=pool)  # type: ignore[arg-type]
    assert snapshot(city) == before


def test_a_broken_pool_leaves_the_rest_to_this_process(city: Store) -> None:
    executor = LocalExecutor(2)
    try:
        report = run_analyzer(city, Told({2: "die"}), executor=executor)  # type: ignore[arg-type]
    finally:
        executor.close()
    assert report["failed"] == [] and report["computed"] == 6
    rows = stored(city, "told")
    # computed here once the pool broke (so were the items in flight with it: which ones is
    # the pool's timing)
    assert not rows["building:2"]["result"]["in_worker"]
    assert [rows[f"building:{i}"]["summary"]["square"] for i in range(1, 7)] == [
        i * i for i in range(1, 7)
    ]
