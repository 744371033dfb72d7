"""The page's energy and PV panels and the PV facet tileset, in headless Chromium.

The Tongliao city of ``tests/page_city.py`` with the energy and PV analyzers run (and the PV
facet tileset built), served by the real app: a building's panel shows each stored check with
its Chinese label, value, limit and status, and no analyzer key or English status; the PV report
shows each facet's area and yield and, for a facet left out, the rules file's Chinese reason;
the PV layer loads with no failed tile, and picking a facet shows its stored figures.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser import require_browser
from tests.conftest import ROOT
from tests.page_city import AppServer, build_city
from tests.test_page import DOCS, Browser, browser, map_area, shot, wait_ready
from tests.test_static import _js_table

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, shared with test_page

I18N = (ROOT / "viewer" / "static" / "i18n.js").read_text()
CHECKS = _js_table(I18N, "CHECKS")
STATUS_ZH = {
    s: re.search(rf'energy_{s}: "([^"]+)"', I18N).group(1)  # type: ignore[union-attr]
    for s in ("pass", "fail", "advisory", "unknown")
}
PV_RULES = json.loads((ROOT / "schemas" / "standards" / "pv-rules.json").read_text())
#: what the page must never show as text: the analyzers' keys and English words
RAW = [
    *CHECKS,
    *(r["id"] for r in PV_RULES["usable"]),
    *(r["why"] for r in PV_RULES["usable"]),
    r"\bpass\b",
    r"\bfail\b",
    r"\badvisory\b",
    r"\bunknown\b",
    r"\bnorth\b",
    r"\bsouth\b",
    r"\beast\b",
    r"\bwest\b",
    "clear sky",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    require_browser()
    folder = tmp_path_factory.mktemp("panels")
    store = build_city(folder / "city.duckdb", gis=False, analyses=("energy", "pv"))
    app = AppServer(store).start()
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def page(server: AppServer, browser: Browser) -> Iterator[Any]:
    p = browser.page()
    p.goto(server.url + "/", wait_until="load")
    wait_ready(p)
    yield p
    p.close()


def zh_number(v: float, digits: int) -> str:
    """A number as the page's fmt() writes it in zh-CN (grouped, at most ``digits`` decimals)."""
    text = f"{round(v, digits):,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def open_building(page: Any, bid: int, query: str) -> None:
    page.fill("#search-input", query)
    page.wait_for_selector(f"#search-results li[data-id='{bid}']", timeout=15_000)
    page.dispatch_event(f"#search-results li[data-id='{bid}']", "mousedown")
    page.wait_for_selector(f"#detail[data-id='{bid}'] .energy-verdict", timeout=15_000)
    page.evaluate("() => window.cim.flights")


def stored(server: AppServer, analyzer: str, bid: int) -> dict[str, Any]:
    [(result,)] = server.query(
        "SELECT result FROM analyses WHERE analyzer = ? AND building_id = ?", [analyzer, bid]
    )
    out: dict[str, Any] = json.loads(result)
    return out


def assert_no_raw_text(text: str) -> None:
    for pattern in RAW:
        assert not re.search(pattern, text), f"the panel shows {pattern!r}"


def test_the_energy_panel_shows_every_stored_check_in_chinese(
    server: AppServer, browser: Browser, page: Any
) -> None:
    rows = server.query("SELECT building_id, result FROM analyses WHERE analyzer = 'energy'")
    # the IFC model with the most checks (duplex: WWR per side, skylights, U values)
    bid, r = max(
        ((int(b), json.loads(res)) for b, res in rows if b is not None),
        key=lambda x: (x[1]["scope"] == "model", len(x[1]["checks"])),
    )
    assert r["scope"] == "model" and len(r["checks"]) >= 6
    open_building(page, bid, str(bid))
    verdict = page.inner_text("#detail .energy-verdict")
    assert verdict.startswith(STATUS_ZH[r["status"]])
    for ch in r["checks"]:
        tr = page.query_selector(f"#detail tr[data-check='{ch['check']}']")
        assert tr is not None, ch["check"]
        assert tr.get_attribute("data-status") == ch["status"]
        label, value = (td.inner_text() for td in tr.query_selector_all("td"))
        zh, en = CHECKS[ch["check"]]
        assert label == zh
        assert tr.query_selector("td").get_attribute("title") == en
        shown = "—" if ch["value"] is None else zh_number(ch["value"], 3)
        limit = "—" if ch["limit"] is None else zh_number(ch["limit"], 2)
        assert value == f"{shown} / {limit} · {STATUS_ZH[ch['status']]}"
    sides = page.query_selector_all("#detail tr[data-side]")
    assert {s.get_attribute("data-side") for s in sides} == set(r["facades"])
    assert_no_raw_text(page.inner_text("#detail-body"))


def test_the_pv_panel_shows_each_facet_and_the_chinese_reason(
    server: AppServer, browser: Browser, page: Any
) -> None:
    [(bid,)] = server.query("SELECT id FROM buildings WHERE name = 'Tower 1'")
    r = stored(server, "pv", bid)
    left_out = [f for f in r["facets"] if not f["usable"]]
    used = [f for f in r["facets"] if f["usable"]]
    assert left_out and used
    open_building(page, bid, "Tower 1")
    body = page.inner_text("#detail-body")
    assert zh_number(r["kwh_per_year"], 0) in body and zh_number(r["kwp"], 1) in body
    for f in used:
        text = page.inner_text(f"#detail li[data-facet='{bid}.{f['facet']}']")
        assert zh_number(f["usable_area_m2"], 1) in text
        assert zh_number(f["kwh_per_kwp"], 0) in text
    for f in left_out:
        li = page.query_selector(f"#detail li[data-facet='{bid}.{f['facet']}']")
        assert li is not None and li.get_attribute("data-rule") == f["excluded_by"]["rule"]
        assert f["excluded_by"]["why_zh"] in li.inner_text()
        assert li.get_attribute("title") == f["excluded_by"]["why"]
    assert_no_raw_text(body)
    page.click("#detail-close")
    browser.assert_clean()


@pytest.mark.slow
def test_the_pv_facets_load_colour_the_roofs_and_pick(
    server: AppServer, browser: Browser, page: Any, tmp_path: Path
) -> None:
    page.fill("#search-input", "")
    before = map_area(shot(page, tmp_path / "pv-before.png"))
    page.check("#layers li[data-layer='pv'] input")
    assert page.evaluate("() => window.cim.state.visible.pv") is True
    assert len(page.query_selector_all("#pv-legend li")) == 7  # six buckets and grey
    after = map_area(shot(page, tmp_path / "pv-after.png"))
    assert (np.abs(after - before).sum(axis=2) > 40).mean() > 0.005  # roofs took colours
    found = page.evaluate("() => window.cim.findFeature('pv', 'facet_id')")
    assert found, "no PV facet under the camera"
    page.mouse.click(found["x"], found["y"])
    fid = found["properties"]["facet_id"]
    page.wait_for_selector(f"#detail[data-kind='pv_facet_kind'][data-id='{fid}']", timeout=15_000)
    bid, k = (int(v) for v in fid.split("."))
    f = stored(server, "pv", bid)["facets"][k]
    assert page.inner_text("#detail tr[data-field='facet_id'] td:last-child") == fid
    area = page.inner_text("#detail tr[data-field='usable_area_m2'] td:last-child")
    assert area == f"{zh_number(f['usable_area_m2'], 1)} m²"
    if f["usable"]:
        kwh = page.inner_text("#detail tr[data-field='kwh_per_year'] td:last-child")
        assert kwh == f"{zh_number(f['kwh_per_year'], 0)} kWh"
    assert_no_raw_text(page.inner_text("#detail-body"))
    shot(page, tmp_path / "pv-facets.png")
    shutil.copy(tmp_path / "pv-facets.png", DOCS / "pv-facets.png")
    errors = page.evaluate("() => window.cim.errors")
    assert not [e for e in errors if e.startswith("pv:")], errors  # no tileFailed
    browser.assert_clean()
