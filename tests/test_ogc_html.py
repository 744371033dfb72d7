"""The OGC API's HTML form (``f=html``, or a browser's ``Accept``): every page renders, its links
resolve (landing -> collections -> items -> item, paging that keeps bbox and limit), each JSON
document links its HTML twin and each page its JSON one, values from the user's files are
escaped, and an unknown ``f`` is a 400 in the one error shape.

Same store as ``tests/test_viewer_api.py`` (``tests/viewer_fixtures.py``), plus, for the escaping
test, a GeoJSON layer whose names and values are markup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from cim.executor import SerialExecutor
from cim.store import Store
from ingest import IngestOptions, run_ingest
from tests.test_viewer_api import assert_error, serve
from tests.viewer_fixtures import City, build_city

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PAGES = [
    "/ogc",
    "/ogc/conformance",
    "/ogc/collections",
    "/ogc/collections/buildings",
    "/ogc/collections/roads/items",
]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return build_city(tmp_path_factory.mktemp("city"))


@pytest.fixture(scope="module")
def client(city: City, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serve(city.copy_to(tmp_path_factory.mktemp("served"))) as c:
        yield c


class Page(HTMLParser):
    """A page's links: ``<a href>`` (with their rel, their text, and whether they are in the
    sketch, the SVG) and ``<link>`` elements."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.anchors: list[dict[str, str]] = []
        self.links: list[dict[str, str]] = []
        self.scripts = 0
        self._open: dict[str, str] | None = None
        self._svg = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._svg = True
        elif tag == "a" and "href" in a:
            self._open = {**a, "text": "", "in_svg": "yes" if self._svg else ""}
            self.anchors.append(self._open)
        elif tag == "link":
            self.links.append(a)
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open = None
        elif tag == "svg":
            self._svg = False

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data

    def hrefs(self, text: str) -> list[str]:
        return [a["href"] for a in self.anchors if text in a["text"] and not a["in_svg"]]

    def features(self, in_svg: bool = False) -> list[tuple[int, str]]:
        """The (id, href) of the features linked from the table (or from the sketch)."""
        return [
            (int(a["text"]), a["href"])
            for a in self.anchors
            if "/items/" in a["href"] and bool(a["in_svg"]) == in_svg
        ]


def local(href: str) -> str:
    assert href.startswith("http://testserver/"), href
    return href.removeprefix("http://testserver")


def html(client: TestClient, url: str, **headers: str) -> Page:
    r = client.get(local(url) if url.startswith("http") else url, headers=headers)
    assert r.status_code == 200, (url, r.text[:300])
    assert r.headers["content-type"] == "text/html; charset=utf-8", url
    assert "Accept" in r.headers["vary"]
    assert r.text.startswith("<!doctype html>")
    return Page(r.text)


def alternate_json(client: TestClient, page: Page, media: str) -> Any:
    """The page's ``<link rel=alternate>`` to its JSON form, followed."""
    [alt] = [x for x in page.links if x.get("rel") == "alternate"]
    assert alt["type"] == media
    r = client.get(local(alt["href"]))
    assert r.status_code == 200 and r.headers["content-type"] == media
    return r.json()


@pytest.mark.parametrize("url", PAGES)
def test_every_page_renders_self_contained_and_names_its_json(client: TestClient, url: str) -> None:
    page = html(client, f"{url}?f=html")
    media = "application/geo+json" if url.endswith("/items") else "application/json"
    doc = alternate_json(client, page, media)
    assert doc == client.get(url).json()
    # nothing fetched from elsewhere: no scripts, no stylesheets, every link on this server
    assert page.scripts == 0
    assert all(x.get("rel") != "stylesheet" for x in page.links)
    for a in page.anchors:
        assert a["href"].startswith("http://testserver/"), a


def test_the_pages_lead_from_the_landing_page_to_one_feature(client: TestClient) -> None:
    landing = html(client, "/ogc", Accept=BROWSER)
    [collections] = landing.hrefs("Collections")
    assert html(client, landing.hrefs("Conformance")[0]).hrefs("OGC API")
    listing = html(client, collections)
    json_ids = [c["id"] for c in client.get("/ogc/collections").json()["collections"]]
    browse = listing.hrefs("browse")
    assert len(browse) == len(json_ids) == 3
    for cid, href in zip(json_ids, browse, strict=True):
        assert f"/collections/{cid}/items" in href
        one = html(client, next(h for h in listing.hrefs("") if h.endswith(f"/{cid}?f=html")))
        assert one.hrefs("Browse the items") == [href]
    items = html(client, browse[0] + "&limit=5")
    rows = items.features()
    first = client.get("/ogc/collections/buildings/items?limit=5").json()["features"]
    assert [i for i, _ in rows] == [f["id"] for f in first]
    assert items.features(in_svg=True) == rows  # the sketch links the same features
    feature = html(client, rows[0][1])
    doc = alternate_json(client, feature, "application/geo+json")
    assert doc["id"] == first[0]["id"] and doc["geometry"] == first[0]["geometry"]
    # the breadcrumbs lead back up
    assert feature.hrefs("Collections") == [collections]
    assert any(h.startswith(browse[0].split("?")[0]) for h in feature.hrefs("Items"))


def test_html_paging_keeps_the_box_and_the_limit_to_the_last_page(client: TestClient) -> None:
    everything = client.get("/ogc/collections/buildings/items?limit=1000").json()
    box = "14.3,50.0,14.5,50.2"
    url = f"/ogc/collections/buildings/items?f=html&limit=40&bbox={box}"
    ids: list[int] = []
    pages: list[Page] = []
    while url:
        page = html(client, url)
        pages.append(page)
        ids += [i for i, _ in page.features()]
        nxt = sorted({a["href"] for a in page.anchors if a.get("rel") == "next"})
        for href in nxt + [a["href"] for a in page.anchors if a.get("rel") == "prev"]:
            query = parse_qs(urlsplit(href).query)
            assert query["bbox"] == [box] and query["limit"] == ["40"] and query["f"] == ["html"]
        url = nxt[0] if nxt else ""
        assert len(pages) < 20
    assert ids == sorted(f["id"] for f in everything["features"])
    assert len(pages) == -(-everything["numberMatched"] // 40)
    assert not [a for a in pages[0].anchors if a.get("rel") == "prev"]
    back = [a["href"] for a in pages[-1].anchors if a.get("rel") == "prev"]
    assert back and "offset=80" in back[0]
    html(client, back[0])


def test_every_json_document_links_its_html_twin(client: TestClient) -> None:
    road = client.get("/ogc/collections/roads/items?limit=1").json()["features"][0]
    for url in [
        "/ogc",
        "/ogc/collections",
        "/ogc/collections/roads",
        "/ogc/collections/roads/items?limit=3&offset=3",
        f"/ogc/collections/roads/items/{road['id']}",
    ]:
        doc = client.get(url).json()
        [alt] = [x for x in doc["links"] if x["rel"] == "alternate"]
        assert alt["type"] == "text/html" and "f=html" in alt["href"]
        [self_link] = [x for x in doc["links"] if x["rel"] == "self"]
        assert self_link["href"].replace("f=json", "f=html") == alt["href"]
        back = alternate_json(client, html(client, alt["href"]), self_link["type"])
        assert back == doc
    for c in client.get("/ogc/collections").json()["collections"]:
        item_links = {x["type"]: x["href"] for x in c["links"] if x["rel"] == "items"}
        assert set(item_links) == {"application/geo+json", "text/html"}
        html(client, item_links["text/html"])


def test_accept_chooses_the_form_and_f_wins(client: TestClient) -> None:
    def kind(url: str, **headers: str) -> str:
        r = client.get(url, headers=headers)
        assert r.status_code == 200 and "Accept" in r.headers["vary"]
        return r.headers["content-type"].split(";")[0]

    items = "/ogc/collections/roads/items"
    assert kind(items) == "application/geo+json"
    assert kind(items, Accept=BROWSER) == "text/html"
    assert kind("/ogc", Accept=BROWSER) == "text/html"
    assert kind("/ogc", Accept="*/*") == "application/json"
    assert kind("/ogc", Accept="application/json") == "application/json"
    assert kind("/ogc", Accept="application/json, text/html;q=0.5") == "application/json"
    assert kind("/ogc", Accept="text/html;q=0.9, application/json;q=0.8") == "text/html"
    assert kind("/ogc", Accept="text/html;q=bogus, */*") == "application/json"
    assert kind("/ogc?f=json", Accept=BROWSER) == "application/json"
    assert kind(f"{items}?f=json", Accept=BROWSER) == "application/geo+json"
    assert kind("/ogc?f=html", Accept="application/json") == "text/html"


@pytest.mark.parametrize("url", [*PAGES, "/ogc/collections/roads/items/1"])
def test_an_unknown_f_is_a_400_in_the_one_error_shape(client: TestClient, url: str) -> None:
    for accept in (BROWSER, "application/json"):
        body = assert_error(client.get(url, params={"f": "xml"}, headers={"Accept": accept}), 400)
        assert body["code"] == "usage" and "f=json or f=html" in body["message"]


def test_values_from_the_users_files_are_escaped(city: City, tmp_path: Path) -> None:
    script = "<script>alert(1)</script>"
    layer = tmp_path / "pois.geojson"
    layer.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {
                            "name": script,
                            "note": '"><img src=x onerror=alert(2)>',
                            "<b>field</b>": "x & y",
                        },
                        "geometry": {"type": "Point", "coordinates": [14.403, 50.103]},
                    }
                ],
            }
        )
    )
    path = city.copy_to(tmp_path / "served")
    with Store.open(path) as store:
        run_ingest(store, layer, IngestOptions(role="pois"), SerialExecutor())
    with serve(path) as c:
        [feature] = c.get("/ogc/collections/pois/items").json()["features"]
        assert feature["properties"]["name"] == script  # the JSON keeps the value as it is
        for url in ("/ogc/collections/pois/items", f"/ogc/collections/pois/items/{feature['id']}"):
            r = c.get(url, params={"f": "html"})
            assert r.status_code == 200
            assert script not in r.text and "<img" not in r.text and "<b>" not in r.text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
            assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in r.text
            assert "&lt;b&gt;field&lt;/b&gt;" in r.text and "x &amp; y" in r.text
            assert Page(r.text).scripts == 0
