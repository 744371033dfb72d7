"""The health check dashboard (viewer/static/indicators.js) in headless Chromium: the page
lists the stored indicators of the Tongliao district (``tests/page_city.py``) with their status,
and a click on one colours the buildings of its map layer; a second click gives the map back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from cim.analyze import ANALYZERS, run_analyzer
from cim.model.analyses import stored
from tests.browser import require_browser
from tests.page_city import AppServer, build_city
from tests.test_page import Browser, browser, map_area, shot, wait_ready  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, dict[str, Any]]]:
    require_browser()
    store = build_city(tmp_path_factory.mktemp("indicators") / "city.duckdb")
    report = run_analyzer(store, ANALYZERS["indicators"](store=store))
    assert report["computed"] == 1 and not report["failed"]
    (row,) = stored(store, "indicators").values()
    server = AppServer(store).start()
    try:
        yield server, row["result"]
    finally:
        server.close()


def test_the_dashboard_lists_and_colours(
    served: tuple[AppServer, dict[str, Any]],
    browser: Browser,  # noqa: F811  (the fixture of test_page)
    tmp_path: Any,
) -> None:
    server, result = served
    page = browser.page()
    page.goto(server.url + "/", wait_until="load")
    wait_ready(page)
    page.wait_for_selector("#indicators li", timeout=30_000)
    items = page.eval_on_selector_all(
        "#indicators li", "els => els.map(e => [e.dataset.id, e.innerText])"
    )
    assert [i for i, _ in items] == [r["id"] for r in result["indicators"]]
    text = dict(items)
    assert "建成区路网密度" in text["road_density"]
    by_id = {r["id"]: r for r in result["indicators"]}
    assert ("达标" if by_id["road_density"]["status"] == "met" else "未达标") in text[
        "road_density"
    ]
    assert "无数据" in text["pv_renewable_share"]  # no PV results in this store
    before = map_area(shot(page, tmp_path / "before.png"))
    # the life circle's homes without a kindergarten within 300 m, in red
    assert by_id["life_circle"]["map"]["layers"][0]["building_ids"]
    page.click("#indicators li[data-id=life_circle]")
    page.wait_for_selector("#indicators li.picked[data-id=life_circle]")
    coloured = map_area(shot(page, tmp_path / "life-circle.png"))
    changed = (np.abs(coloured - before).sum(axis=2) > 40).mean()
    assert changed > 0.02, f"only {changed:.1%} of the scene changed colour"
    page.click("#indicators li[data-id=life_circle]")
    assert page.query_selector("#indicators li.picked") is None
    # the map's own colouring again ("none": no style at all)
    assert page.evaluate("() => window.cim.state.tilesets.buildings.style === undefined")
    browser.assert_clean()
    page.close()
