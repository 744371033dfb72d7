"""The demo's one map in headless Chromium: the sample district loads, the precast tower is
picked on the map and its panel shows the assembly rate the generator built it to have; the
screenshot is the README's (docs/demo-map.png).

The district is made by the demo's own pipeline (``cim.cli.demo.run_pipeline``) and served by
the app of `cim serve` in a thread (``tests.page_city.AppServer``); the browser harness (every
request kept on 127.0.0.1, page errors fail) is the page tests' (``tests.test_page``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.cli.demo import DemoRun, run_pipeline
from cim.executor import SerialExecutor
from district import read_manifest
from tests.page_city import AppServer
from tests.test_page import DOCS, Browser, browser, map_area, shot, wait_ready

__all__ = ["browser"]  # the fixture, shared with the page tests

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: the scene scanned for the tower on a grid of this many cells a side
PICK_GRID = 24


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, Path]]:
    from tests.browser import require_browser

    require_browser()
    run = DemoRun(tmp_path_factory.mktemp("demo-page"))
    server = AppServer(run_pipeline(run, SerialExecutor())).start()
    try:
        yield server, run.data
    finally:
        server.close()  # the store too


def _find(page: Any, building_id: int) -> dict[str, float] | None:
    """A page pixel over the building ``building_id`` (its city block or a BIM element)."""
    found: dict[str, float] | None = page.evaluate(
        """([id, steps]) => {
            const canvas = document.querySelector('.cesium-widget canvas');
            const rect = canvas.getBoundingClientRect();
            const cells = [];
            for (let j = 1; j < steps; j += 1)
              for (let i = 1; i < steps; i += 1) cells.push([i / steps, j / steps]);
            const off = (c) => Math.hypot(c[0] - 0.5, c[1] - 0.5);
            cells.sort((a, b) => off(a) - off(b));
            for (const [fx, fy] of cells) {
              const x = canvas.clientWidth * fx, y = canvas.clientHeight * fy;
              const hit = window.cim.pickAt(x, y);
              if (hit && (hit.properties.building_id === id || hit.properties.id === id))
                return { x: rect.left + x, y: rect.top + y };
            }
            return null;
        }""",
        [building_id, PICK_GRID],
    )
    return found


def test_the_tower_is_picked_on_the_demo_map(
    demo_server: tuple[AppServer, Path], browser: Browser
) -> None:
    server, data = demo_server
    tower = read_manifest(data)["tower"]
    [(bid,)] = server.query("SELECT id FROM buildings WHERE name = ?", [tower["building"]])
    page = browser.page()
    page.goto(server.url + "/", wait_until="load")
    ready = wait_ready(page)
    assert {"buildings", "bim", "points"} <= set(ready["tilesets"])
    city = map_area(shot(page, data.parent / "shots" / "city.png"))
    assert (np.abs(city - city[0, 0]).sum(axis=2) > 30).mean() > 0.2, "the scene looks empty"
    # find it by name (the camera flies to it), close the panel, then pick it on the map
    page.fill("#search-input", tower["building"])
    page.wait_for_selector(f"#search-results li[data-id='{bid}']", timeout=15_000)
    page.press("#search-input", "Enter")
    page.wait_for_selector(f"#detail[data-id='{bid}']", timeout=15_000)
    page.evaluate("() => window.cim.flights")
    page.click("#detail-close")
    page.fill("#search-input", "")
    at = _find(page, bid)
    assert at is not None, "the tower is not under the camera"
    page.mouse.click(at["x"], at["y"])
    page.wait_for_selector(f"#detail[data-id='{bid}'] .prefab-verdict", timeout=30_000)
    verdict = page.inner_text("#detail .prefab-verdict")
    assert f"{tower['assembly_rate']}" in verdict and tower["grade"] in verdict
    assert page.inner_text("#detail-title") == tower["building"]
    # the panel scrolled to its assembly rate, the tower and the district beside it
    page.evaluate(
        "() => { const p = document.querySelector('#detail');"
        " const v = document.querySelector('#detail .prefab-verdict');"
        " p.scrollTop = v.offsetTop - p.querySelector('header').offsetHeight - 40; }"
    )
    shot(page, data.parent / "shots" / "demo-map.png")
    DOCS.mkdir(exist_ok=True)
    shutil.copy(data.parent / "shots" / "demo-map.png", DOCS / "demo-map.png")
    browser.assert_clean()
    page.close()
