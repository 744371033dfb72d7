"""The one map's page (viewer/static/) in headless Chromium, served by the real app.

One Tongliao store per module (``tests/page_city.py``: the sample IFC models among a street grid
of footprints, roads, parks, land cover, facilities, a boundary; tiled), served by the app of
`cim serve` under uvicorn in a thread, and one Chromium (Debian's, through Playwright, with the
harness's flags) whose every request is recorded: one leaving 127.0.0.1 is aborted and fails.
The tests run in order on one page, as a user would: load, click, colour, switch language,
search, sign in and upload, watch jobs; the empty store has its own server.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.store import Store
from cim.tokens import create_token
from tests.browser import CHROMIUM_ARGS, chromium_path, png_pixels, require_browser
from tests.conftest import ROOT
from tests.page_city import ORIGIN, AppServer, build_city, upload_model

pytestmark = pytest.mark.browser
DOCS = ROOT / "docs"
VIEWPORT = {"width": 1000, "height": 650}
LOAD_TIMEOUT_MS = 90_000


@dataclass
class City:
    server: AppServer
    store: Store
    designer: str
    operator: str
    shots: Path


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    require_browser()
    folder = tmp_path_factory.mktemp("page")
    store = build_city(folder / "city.duckdb")
    _, designer = create_token(store, "designer", "page test designer")
    _, operator = create_token(store, "operator", "page test operator")
    server = AppServer(store).start()
    try:
        yield City(server, store, designer, operator, folder / "shots")
    finally:
        server.close()  # closes the store too


def _is_local(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.hostname == "127.0.0.1"


@dataclass
class Browser:
    """One Chromium profile; the pages it opened and everything they did."""

    context: Any
    requests: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def page(self) -> Any:
        page = self.context.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on(
            "response",
            lambda r: self.failed.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
        )
        return page

    def problems(self) -> list[str]:
        return (
            [f"request off 127.0.0.1: {u}" for u in self.offsite]
            + [f"page error: {e}" for e in self.page_errors]
            + [f"console error: {e}" for e in self.console_errors]
            + self.failed
        )

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "the page was not clean:\n  " + "\n  ".join(problems)


@pytest.fixture(scope="module")
def browser(_playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_browser()
    profile = tmp_path_factory.mktemp("page-profile")
    context = _playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path(),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
        device_scale_factor=1,
        service_workers="block",
    )
    b = Browser(context)

    def route(r: Any) -> None:
        if _is_local(r.request.url):
            r.continue_()
        else:
            b.offsite.append(r.request.url)
            r.abort("blockedbyclient")

    context.route("**/*", route)
    try:
        yield b
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


def wait_ready(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """(ms) => Promise.race([window.cim.ready, new Promise((_, no) =>
            setTimeout(() => no(new Error(`not ready in ${ms} ms`)), ms))])""",
        LOAD_TIMEOUT_MS,
    )
    return result


def settle(page: Any) -> None:
    page.evaluate("() => window.cim.settle()")


def shot(page: Any, path: Path) -> np.ndarray:
    settle(page)
    path.parent.mkdir(parents=True, exist_ok=True)
    png: bytes = page.screenshot(path=str(path), animations="disabled", caret="hide")
    return png_pixels(png)


def map_area(px: np.ndarray) -> np.ndarray:
    """The scene between the side panel and the right edge, under the bar."""
    return px[60:640, 270:990, :3].astype(np.int32)


@pytest.fixture(scope="module")
def page(city: City, browser: Browser) -> Iterator[Any]:
    p = browser.page()
    p.goto(city.server.url + "/", wait_until="load")
    wait_ready(p)
    yield p
    p.close()


def test_page_loads_the_city_clean_and_offline(city: City, browser: Browser, page: Any) -> None:
    ready = page.evaluate("() => window.cim.ready")
    assert {"buildings", "bim"} <= set(ready["tilesets"])
    # ready waits for the shown tilesets' initialTilesLoaded: the buildings were raised
    assert page.evaluate("() => window.cim.state.tilesets.buildings.tilesLoaded !== undefined")
    layers = page.eval_on_selector_all(
        "#layers li", "els => els.map(e => [e.dataset.layer, e.classList.contains('missing')])"
    )
    assert dict(layers) == {
        "buildings": False,
        "bim": False,
        "points": True,  # no point cloud in this store: greyed out
        "pv": True,  # no PV results: no facet tileset
        "roads": False,
        "landcover": False,
        "parks": False,
        "pois": False,
        "boundary": False,
    }
    # the GIS layers came from the OGC API, every page of them
    assert page.evaluate("() => window.cim.state.sources.roads.entities.values.length") == 18
    # Chinese by default
    assert page.inner_text("#layers li[data-layer=roads]").strip() == "道路"
    px = shot(page, city.shots / "city.png")
    scene = map_area(px)
    assert (np.abs(scene - scene[0, 0]).sum(axis=2) > 30).mean() > 0.2, "the scene looks empty"
    DOCS.mkdir(exist_ok=True)
    shutil.copy(city.shots / "city.png", DOCS / "one-map.png")
    assert any("/tiles/buildings/" in u for u in browser.requests)
    assert any("/ogc/collections/roads/items" in u for u in browser.requests)
    browser.assert_clean()


def test_clicking_a_building_opens_its_panel(city: City, browser: Browser, page: Any) -> None:
    found = page.evaluate("() => window.cim.findFeature('buildings', 'id')")
    assert found, "no building under the camera"
    page.mouse.click(found["x"], found["y"])
    bid = int(found["properties"]["id"])
    page.wait_for_selector(f"#detail[data-id='{bid}'] td", timeout=30_000)
    [(name,)] = city.server.query("SELECT name FROM buildings WHERE id = ?", [bid])
    assert page.inner_text("#detail-title") == (name or f"#{bid}")
    body = page.inner_text("#detail-body")
    assert "尚未计算" in body  # the analyses, until the analyzers exist
    assert "district.gpkg" in body or ".ifc" in body  # its source
    shot(page, city.shots / "building-panel.png")
    page.click("#detail-close")
    assert page.is_hidden("#detail")
    browser.assert_clean()


@pytest.mark.slow
def test_colouring_by_an_attribute_changes_the_pixels(
    city: City, browser: Browser, page: Any
) -> None:
    before = map_area(shot(page, city.shots / "colour-none.png"))
    page.select_option("#colour", "height")
    assert page.is_visible("#legend")
    assert len(page.query_selector_all("#legend li")) == 7  # six buckets and "unknown"
    by_height = map_area(shot(page, city.shots / "colour-height.png"))
    changed = (np.abs(by_height - before).sum(axis=2) > 40).mean()
    assert changed > 0.02, f"only {changed:.1%} of the scene changed colour"
    page.select_option("#colour", "use")
    page.wait_for_function("() => document.querySelector('#legend').innerText.includes('住宅')")
    legend = page.inner_text("#legend")
    assert "住宅" in legend and "学校" in legend
    by_use = map_area(shot(page, city.shots / "colour-use.png"))
    assert (np.abs(by_use - by_height).sum(axis=2) > 40).mean() > 0.01
    page.select_option("#colour", "none")
    assert page.is_hidden("#legend")
    back = map_area(shot(page, city.shots / "colour-back.png"))
    assert (np.abs(back - before).sum(axis=2) > 40).mean() < 0.005, "'none' did not restore"
    browser.assert_clean()


@pytest.mark.slow
def test_a_click_in_the_bim_layer_shows_the_element_and_its_building(
    city: City, browser: Browser, page: Any
) -> None:
    page.check("#layers li[data-layer=bim] input")
    assert page.evaluate("() => window.cim.state.tilesets.bim.show")
    # the city hides the buildings the BIM layer now draws element by element
    assert "BIM" in page.evaluate("() => window.cim.state.tilesets.buildings.style.show.expression")
    page.evaluate(
        """() => window.cim.viewer.zoomTo(window.cim.state.tilesets.bim,
            new Cesium.HeadingPitchRange(0.4, -0.6, 160))"""
    )
    settle(page)
    found = page.evaluate("() => window.cim.findFeature('bim', 'global_id')")
    assert found, "no BIM element under the camera"
    page.mouse.click(found["x"], found["y"])
    guid = found["properties"]["global_id"]
    page.wait_for_selector("#detail[data-kind=element]", timeout=15_000)
    assert page.get_attribute("#detail", "data-id") == guid
    [row] = city.server.query(
        "SELECT ifc_class, building_id FROM elements WHERE global_id = ?", [guid]
    )
    body = page.inner_text("#detail-body")
    assert guid in body and row[0] in body and f"#{row[1]}" in body
    page.wait_for_function(
        "() => document.querySelector('#detail-body').innerText.includes('所属建筑:')"
    )
    shot(page, city.shots / "bim-element.png")
    page.click("#detail-close")
    page.uncheck("#layers li[data-layer=bim] input")
    assert page.evaluate("() => window.cim.state.tilesets.buildings.style === undefined")
    page.click(".cesium-home-button")
    page.evaluate("() => new Promise((r) => setTimeout(r, 2000))")
    browser.assert_clean()


@pytest.mark.slow
def test_the_language_switch_changes_the_labels_and_is_remembered(
    city: City, browser: Browser, page: Any
) -> None:
    assert page.text_content("#layers-section h2") == "图层"
    page.click("#lang")
    assert page.text_content("#layers-section h2") == "Layers"
    assert page.inner_text("#layers li[data-layer=roads]").strip() == "Roads"
    assert page.get_attribute("#search-input", "placeholder") == "Search buildings by name or id"
    assert page.inner_text("#signin") == "Sign in"
    assert page.evaluate("() => document.documentElement.lang") == "en"
    page.reload(wait_until="load")
    wait_ready(page)
    assert page.text_content("#layers-section h2") == "Layers"  # kept in localStorage
    shot(page, city.shots / "english.png")
    page.click("#lang")
    assert page.text_content("#layers-section h2") == "图层"
    browser.assert_clean()


@pytest.mark.slow
def test_search_by_name_flies_to_the_building(city: City, browser: Browser, page: Any) -> None:
    [(bid, name)] = city.server.query("SELECT id, name FROM buildings WHERE name = '楼 12'")
    page.fill("#search-input", "楼 12")
    page.wait_for_selector(f"#search-results li[data-id='{bid}']", timeout=15_000)
    page.press("#search-input", "Enter")
    page.wait_for_selector(f"#detail[data-id='{bid}'] td", timeout=15_000)
    assert page.inner_text("#detail-title") == name
    page.evaluate("() => window.cim.flights")
    # the camera looks at it: the building is at the centre of the view
    centre = page.evaluate(
        """() => { const c = window.cim.viewer.scene.canvas;
                   return window.cim.pickAt(c.clientWidth / 2, c.clientHeight / 2); }"""
    )
    assert centre is not None and centre["properties"].get("id") == bid
    # and by id
    page.fill("#search-input", str(bid))
    page.wait_for_selector(f"#search-results li[data-id='{bid}']", timeout=15_000)
    page.click("#detail-close")
    page.fill("#search-input", "")
    browser.assert_clean()


def test_the_precast_tower_shows_its_assembly_rate_and_colours_the_city(
    city: City, browser: Browser, page: Any
) -> None:
    [(bid,)] = city.server.query("SELECT id FROM buildings WHERE name = 'Tower 1'")
    page.fill("#search-input", "Tower 1")
    page.wait_for_selector(f"#search-results li[data-id='{bid}']", timeout=15_000)
    page.press("#search-input", "Enter")
    page.wait_for_selector(f"#detail[data-id='{bid}'] .prefab-verdict", timeout=15_000)
    verdict = page.inner_text("#detail .prefab-verdict")
    assert "81.9" in verdict and "AA" in verdict and "装配式建筑" in verdict
    body = page.inner_text("#detail-body")
    assert "柱、支撑、承重墙、延性墙板等竖向构件" in body and "44.1 %" in body
    assert "未申报" in body  # partitions integrated: not declared
    page.evaluate("() => window.cim.flights")
    page.evaluate(
        "() => { const p = document.querySelector('#detail');"
        " const h = document.querySelector('#detail-body h4');"
        " p.scrollTop = h.offsetTop - p.querySelector('header').offsetHeight - 8; }"
    )
    shot(page, city.shots / "prefab-panel.png")
    shutil.copy(city.shots / "prefab-panel.png", DOCS / "prefab-panel.png")
    page.click("#detail-close")
    page.fill("#search-input", "")
    before = map_area(shot(page, city.shots / "prefab-none.png"))
    page.select_option("#colour", "prefab")
    assert len(page.query_selector_all("#legend li")) == 7  # six buckets and "unknown"
    coloured = map_area(shot(page, city.shots / "prefab-colour.png"))
    # the district has no rate: it turns the unknown grey; the tower turns the AA colour
    assert (np.abs(coloured - before).sum(axis=2) > 40).mean() > 0.01
    page.select_option("#colour", "none")
    browser.assert_clean()


def submit_upload(page: Any) -> dict[str, Any]:
    """Sends the upload form and waits for the upload to end (on the map, or failed)."""
    page.click("#upload-button")
    page.wait_for_function(
        "() => window.cim.upload && (window.cim.upload.shown || "
        "['failed', 'needs_placement'].includes(window.cim.upload.status))",
        timeout=110_000,
        polling=500,
    )
    upload: dict[str, Any] = page.evaluate("() => window.cim.upload")
    assert upload["status"] == "done", upload
    return upload


@pytest.mark.slow
def test_a_designer_uploads_an_ifc_and_sees_the_new_building(
    city: City, browser: Browser, page: Any, tmp_path: Path
) -> None:
    model = upload_model(tmp_path / "upload-tower.ifc")
    assert page.is_hidden("#upload-section")
    page.click("#signin")
    page.fill("#token-input", "not-a-token")
    page.click("#signin-submit")
    page.wait_for_selector("#signin-error:not([hidden])")
    # the refused token's 401 is the point (Chromium logs every failed request as an error)
    browser.failed[:] = [f for f in browser.failed if not f.startswith("HTTP 401 ")]
    browser.console_errors[:] = [e for e in browser.console_errors if "401" not in e]
    page.fill("#token-input", city.designer)
    page.click("#signin-submit")
    page.wait_for_selector("#who:not([hidden])")
    assert page.get_attribute("#who", "data-role") == "designer"
    assert page.is_visible("#upload-section") and page.is_visible("#jobs-section")
    page.set_input_files("#upload-file", str(model))
    assert page.inner_text("#upload-name") == "upload-tower.ifc"
    declaration = tmp_path / "upload-tower.prefab.json"
    declaration.write_text(json.dumps({"items": {"full_fitout": True}}))
    page.set_input_files("#upload-declaration", str(declaration))
    assert page.inner_text("#upload-declaration-name") == "upload-tower.prefab.json"
    upload = submit_upload(page)
    bid = upload["building"]
    rows = city.server.query(
        "SELECT b.name FROM buildings b JOIN sources s ON s.id = b.source_id "
        "WHERE b.id = ? AND s.name = 'upload-tower.ifc'",
        [bid],
    )
    assert rows == [("Upload Tower",)]
    # its panel is open and the camera flew to it: it is on the map, pickable
    assert page.get_attribute("#detail", "data-id") == str(bid)
    assert page.inner_text("#detail-title") == "Upload Tower"
    settle(page)
    found = page.evaluate("() => window.cim.findFeature('buildings', 'id', 18)")
    ids = {found["properties"]["id"]} if found else set()
    centre = page.evaluate(
        """() => { const c = window.cim.viewer.scene.canvas;
                   return window.cim.pickAt(c.clientWidth / 2, c.clientHeight / 2); }"""
    )
    if centre:
        ids.add(centre["properties"].get("id"))
    assert bid in ids, f"the new building {bid} is not under the camera ({ids})"
    assert "IfcWall" in page.inner_text("#detail-body")
    # scored on upload, with its declaration: full fit-out declared, so it is not "not declared"
    panel = page.inner_text("#detail-body")
    assert "装配率 (GB/T 51129-2017)" in panel and "全装修" in panel
    full = page.inner_text("#detail-body tr[data-item='full_fitout']")
    assert "✓" in full and "6" in full
    page.wait_for_selector("#jobs li[data-job] .status.done")
    shot(page, city.shots / "upload.png")
    browser.assert_clean()


@pytest.mark.slow
def test_a_designer_replaces_the_model_of_the_picked_building(
    city: City, browser: Browser, page: Any, tmp_path: Path
) -> None:
    # (after the upload above: the designer is signed in, their building's panel open)
    old = page.evaluate("() => window.cim.upload.building")
    assert page.get_attribute("#detail", "data-id") == str(old)
    page.wait_for_selector("#upload-replace-row:not([hidden])")
    assert page.inner_text("#upload-replace-name") == "upload-tower.ifc"
    assert not page.is_checked("#upload-replace")
    revised = upload_model(tmp_path / "upload-tower-v2.ifc", name="Upload Tower B")
    page.set_input_files("#upload-file", str(revised))
    page.check("#upload-replace")
    upload = submit_upload(page)
    assert upload["replaced"]["name"] == "upload-tower.ifc"
    assert "upload-tower.ifc" in page.inner_text("#upload-message")
    assert city.server.query("SELECT id FROM sources WHERE name = 'upload-tower.ifc'") == []
    rows = city.server.query(
        "SELECT b.id, b.name FROM buildings b JOIN sources s ON s.id = b.source_id "
        "WHERE s.name = 'upload-tower-v2.ifc'"
    )
    assert rows == [(upload["building"], "Upload Tower B")] and upload["building"] != old
    assert page.inner_text("#detail-title") == "Upload Tower B"
    # the new model is the designer's own: it may be revised again, the box starts unticked
    page.wait_for_function(
        "() => document.getElementById('upload-replace-name').textContent === 'upload-tower-v2.ifc'"
    )
    assert not page.is_checked("#upload-replace")
    browser.assert_clean()


def test_an_operator_sees_every_job(city: City, browser: Browser, page: Any) -> None:
    page.click("#signout")
    assert page.is_hidden("#jobs-section")
    page.click("#signin")
    page.fill("#token-input", city.operator)
    page.click("#signin-submit")
    page.wait_for_selector("#who[data-role=operator]")
    page.click("#jobs-refresh")
    page.wait_for_selector("#jobs li[data-job]")
    jobs = page.inner_text("#jobs")
    assert "upload" in jobs and "upload-tower.ifc" in jobs
    browser.assert_clean()


@pytest.mark.slow
def test_an_empty_store_shows_the_globe_and_a_hint(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = Store.create(tmp_path_factory.mktemp("empty") / "empty.duckdb", "EPSG:4550", ORIGIN)
    server = AppServer(store).start()
    page = browser.page()
    try:
        started = time.monotonic()
        page.goto(server.url + "/", wait_until="load")
        ready = wait_ready(page)
        assert ready["tilesets"] == []
        assert page.is_visible("#hint")
        assert "cim tile" in page.inner_text("#hint")
        assert page.is_hidden("#detail")
        lon, lat, height = page.evaluate(
            """() => { const c = window.cim.viewer.camera.positionCartographic;
                       return [c.longitude * 180 / Math.PI, c.latitude * 180 / Math.PI,
                               c.height]; }"""
        )
        assert abs(lon - ORIGIN[0]) < 0.5 and abs(lat - ORIGIN[1]) < 0.5 and height > 1e6
        # every layer greyed out, none an error
        missing = page.eval_on_selector_all(
            "#layers li", "els => els.every(e => e.classList.contains('missing'))"
        )
        assert missing
        px = shot(page, tmp_path_factory.mktemp("empty-shots") / "empty.png")
        assert (np.abs(map_area(px) - map_area(px)[0, 0]).sum(axis=2) > 30).mean() > 0.05
        assert time.monotonic() - started < 100
        browser.assert_clean()
    finally:
        page.close()
        server.close()
