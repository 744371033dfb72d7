"""OGC API - Features (Part 1: Core, GeoJSON) under ``/ogc``: the buildings and every GIS role
as collections, in CRS84, with ``bbox``, ``limit``, ``offset`` and ``next``/``prev`` links.

pygeoapi is the reference for what clients (QGIS, GDAL's OAPIF driver) expect: a landing page
with its links, conformance classes, collections with spatial extents, items as a
FeatureCollection with ``numberMatched``/``numberReturned``.

Every endpoint answers in JSON or HTML (``f=json|html``, else the ``Accept`` header:
``viewer/pages.py``); each JSON document links its HTML twin (``rel: alternate``) and each page
its JSON one, as pygeoapi does.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import numpy as np
import shapely
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pyproj import CRS

from cim.crs import transformer
from cim.errors import NotFound
from cim.model.buildings import SUMMARY_COLUMNS, building_page
from cim.model.features import FEATURE_ROLES
from cim.tokens import Token
from viewer.api import parse_bbox
from viewer.auth import reader, state_of
from viewer.pages import SKETCH_H, SKETCH_W, Format, output_format, render, sketch
from viewer.state import ServerState

router = APIRouter(prefix="/ogc", tags=["OGC API - Features"])
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
TITLES = {
    "buildings": "Buildings (one per building, linked sources merged)",
    "roads": "Roads",
    "landcover": "Land cover",
    "parks": "Parks",
    "pois": "Points of interest and facilities",
    "boundary": "Boundaries",
}
JSON = "application/json"
GEOJSON = "application/geo+json"
HTML = "text/html"
#: the OpenAPI document's word on the two forms of every endpoint
BOTH: dict[int | str, dict[str, Any]] = {200: {"content": {JSON: {}, HTML: {}}}}
BOTH_GEO: dict[int | str, dict[str, Any]] = {200: {"content": {GEOJSON: {}, HTML: {}}}}


class GeoJSONResponse(JSONResponse):
    media_type = "application/geo+json"


class _Json(JSONResponse):
    """A JSON document that, like its HTML twin, depends on the ``Accept`` header."""

    def __init__(self, content: Any, media_type: str = JSON) -> None:
        super().__init__(content, media_type=media_type, headers={"Vary": "Accept"})


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def _url(path: str, fmt: Format | None = None, **params: Any) -> str:
    """``path`` with its query: the given parameters that are set, then ``f``."""
    query = {k: v for k, v in params.items() if v is not None}
    if fmt is not None:
        query["f"] = fmt
    return f"{path}?{urlencode(query, safe=',')}" if query else path


def _link(rel: str, type_: str, href: str, title: str | None = None) -> dict[str, str]:
    out = {"rel": rel, "type": type_, "href": href}
    if title:
        out["title"] = title
    return out


def _wgs84(state: ServerState, geoms: Any) -> Any:
    t = transformer(state.crs, CRS.from_epsg(4326))

    def move(xy: Any) -> Any:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)


def _collections(state: ServerState) -> list[dict[str, Any]]:
    with state.reader() as store:
        rows = store.con.execute(
            # the buildings the map draws (cim.model.buildings): a model waiting for its
            # placement sits at the project origin, not where it belongs, so it is left out
            "SELECT 'buildings', min(b.xmin), min(b.ymin), max(b.xmax), max(b.ymax), count(*) "
            "FROM buildings b JOIN sources s ON s.id = b.source_id "
            "WHERE b.same_as IS NULL AND b.footprint IS NOT NULL AND s.status = 'ingested' "
            "UNION ALL SELECT role, min(xmin), min(ymin), max(xmax), max(ymax), count(*) "
            "FROM features GROUP BY role"
        ).fetchall()
    out = []
    for name, x0, y0, x1, y1, n in rows:
        if not n:
            continue
        box = _wgs84(state, shapely.box(x0, y0, x1, y1)).bounds
        out.append({"id": name, "count": int(n), "bbox": [round(float(v), 7) for v in box]})
    return sorted(out, key=lambda c: ("buildings", *FEATURE_ROLES).index(c["id"]))


def _collection_doc(base: str, c: dict[str, Any]) -> dict[str, Any]:
    url = f"{base}/collections/{c['id']}"
    return {
        "id": c["id"],
        "title": TITLES[c["id"]],
        "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": {"bbox": [c["bbox"]], "crs": CRS84}},
        "links": [
            _link("items", GEOJSON, _url(f"{url}/items", "json"), "the items as GeoJSON"),
            _link("items", HTML, _url(f"{url}/items", "html"), "the items as HTML"),
            _link("self", JSON, _url(url, "json")),
            _link("alternate", HTML, _url(url, "html"), "this collection as HTML"),
        ],
    }


def _pages(request: Request) -> dict[str, str]:
    """The hrefs every page's breadcrumbs and links use."""
    base = _base(request)
    return {
        "home_href": _url(base, "html"),
        "collections_href": _url(f"{base}/collections", "html"),
    }


@router.get("", summary="Landing page", response_model=None, responses=BOTH)
@router.get("/", include_in_schema=False, response_model=None)
def landing(
    request: Request,
    fmt: Format = Depends(output_format),
    _: Token | None = Depends(reader),
) -> JSONResponse | HTMLResponse:
    base = _base(request)
    root = str(request.base_url).rstrip("/")
    doc = {
        "title": "cim one map: OGC API - Features",
        "description": "The city's buildings and GIS layers, in CRS84.",
        "links": [
            _link("self", JSON, _url(base, "json"), "this document"),
            _link("alternate", HTML, _url(base, "html"), "this document as HTML"),
            _link(
                "service-desc",
                "application/vnd.oai.openapi+json;version=3.0",
                f"{root}/openapi.json",
                "the API definition",
            ),
            _link("service-doc", HTML, f"{root}/docs", "the API documentation"),
            _link("conformance", JSON, _url(f"{base}/conformance", "json"), "conformance"),
            _link("data", JSON, _url(f"{base}/collections", "json"), "the collections"),
        ],
    }
    if fmt == "json":
        return _Json(doc)
    return render(
        "landing.html",
        _url(base, "json"),
        JSON,
        doc=doc,
        conformance_href=_url(f"{base}/conformance", "html"),
        docs_href=f"{root}/docs",
        openapi_href=f"{root}/openapi.json",
        map_href=f"{root}/",
        **_pages(request),
    )


@router.get("/conformance", summary="Conformance classes", response_model=None, responses=BOTH)
def conformance(
    request: Request,
    fmt: Format = Depends(output_format),
    _: Token | None = Depends(reader),
) -> JSONResponse | HTMLResponse:
    doc = {"conformsTo": CONFORMANCE}
    if fmt == "json":
        return _Json(doc)
    url = f"{_base(request)}/conformance"
    return render("conformance.html", _url(url, "json"), JSON, doc=doc, **_pages(request))


@router.get(
    "/collections",
    summary="The collections: buildings and each GIS role",
    response_model=None,
    responses=BOTH,
)
def collections(
    request: Request,
    fmt: Format = Depends(output_format),
    _: Token | None = Depends(reader),
) -> JSONResponse | HTMLResponse:
    base = _base(request)
    url = f"{base}/collections"
    found = _collections(state_of(request))
    if fmt == "json":
        return _Json(
            {
                "collections": [_collection_doc(base, c) for c in found],
                "links": [
                    _link("self", JSON, _url(url, "json"), "this document"),
                    _link("alternate", HTML, _url(url, "html"), "this document as HTML"),
                ],
            }
        )
    rows = [
        {
            **c,
            "title": TITLES[c["id"]],
            "href": _url(f"{url}/{c['id']}", "html"),
            "items_href": _url(f"{url}/{c['id']}/items", "html"),
            "geojson_href": _url(f"{url}/{c['id']}/items", "json"),
        }
        for c in found
    ]
    return render("collections.html", _url(url, "json"), JSON, collections=rows, **_pages(request))


def _known(state: ServerState, collection: str) -> dict[str, Any]:
    for c in _collections(state):
        if c["id"] == collection:
            return c
    raise NotFound(f"no collection {collection!r}: see /ogc/collections")


@router.get(
    "/collections/{collection}", summary="One collection", response_model=None, responses=BOTH
)
def collection(
    request: Request,
    collection: str,
    fmt: Format = Depends(output_format),
    _: Token | None = Depends(reader),
) -> JSONResponse | HTMLResponse:
    found = _known(state_of(request), collection)
    base = _base(request)
    doc = _collection_doc(base, found)
    if fmt == "json":
        return _Json(doc)
    url = f"{base}/collections/{collection}"
    return render(
        "collection.html",
        _url(url, "json"),
        JSON,
        doc=doc,
        count=found["count"],
        collection_href=_url(url, "html"),
        items_href=_url(f"{url}/items", "html"),
        geojson_href=_url(f"{url}/items", "json"),
        **_pages(request),
    )


def _page(
    state: ServerState, collection: str, box: Any, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    if collection == "buildings":
        with state.reader() as store:
            total, items, shapes = building_page(store, box, None, limit, offset)
        geoms = _wgs84(state, shapes) if len(shapes) else []
        feats = [
            {"type": "Feature", "id": it["id"], "properties": it, "geometry": g}
            for it, g in zip(items, geoms, strict=True)
        ]
        return total, feats
    where, params = "role = ?", [collection]
    if box is not None:
        where += " AND xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?"
        params += [box[0], box[2], box[1], box[3]]
    with state.reader() as store:
        row = store.con.execute(f"SELECT count(*) FROM features WHERE {where}", params).fetchone()
        rows = store.con.execute(
            f"SELECT id, name, kind, layer, attributes, ST_AsWKB(geom) FROM features "
            f"WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
    geoms = _wgs84(state, shapely.from_wkb([bytes(r[5]) for r in rows])) if rows else []
    feats = [
        {
            "type": "Feature",
            "id": r[0],
            "properties": {"name": r[1], "kind": r[2], "layer": r[3], **json.loads(r[4] or "{}")},
            "geometry": g,
        }
        for r, g in zip(rows, geoms, strict=True)
    ]
    return int(row[0]) if row else 0, feats


@router.get(
    "/collections/{collection}/items",
    summary="Features of a collection (GeoJSON, CRS84)",
    response_class=GeoJSONResponse,
    response_model=None,
    responses=BOTH_GEO,
)
def items(
    request: Request,
    collection: str,
    bbox: str | None = Query(None, description="minlon,minlat,maxlon,maxlat (CRS84)"),
    limit: int = Query(10, ge=1, le=10000),
    offset: int = Query(0, ge=0, le=2**31),
    fmt: Format = Depends(output_format),
    _: Token | None = Depends(reader),
) -> JSONResponse | HTMLResponse:
    state = state_of(request)
    _known(state, collection)
    total, feats = _page(state, collection, parse_bbox(state, bbox), limit, offset)
    url = f"{_base(request)}/collections/{collection}/items"
    has_next = offset + len(feats) < total
    prev_offset = max(0, offset - limit) if offset > 0 else None

    def at(fmt_: Format, at_offset: int) -> str:
        return _url(url, fmt_, limit=limit, offset=at_offset, bbox=bbox or None)

    if fmt == "html":
        columns: dict[str, None] = {}
        for f in feats:
            columns.update(dict.fromkeys(k for k in f["properties"] if k != "id"))
        item_url = f"{_base(request)}/collections/{collection}/items"
        rows = [{**f, "href": _url(f"{item_url}/{f['id']}", "html")} for f in feats]
        return render(
            "items.html",
            at("json", offset),
            GEOJSON,
            title=TITLES[collection],
            collection_href=_url(f"{_base(request)}/collections/{collection}", "html"),
            self_href=at("html", offset),
            features=rows,
            columns=list(columns),
            matched=total,
            first=offset + 1,
            last=offset + len(feats),
            bbox=bbox,
            limit=limit,
            next_href=at("html", offset + limit) if has_next else None,
            prev_href=at("html", prev_offset) if prev_offset is not None else None,
            shapes=sketch([(r["href"], str(r["id"]), r["geometry"]) for r in rows]),
            sketch_w=SKETCH_W,
            sketch_h=SKETCH_H,
            **_pages(request),
        )
    for f in feats:
        f["geometry"] = json.loads(shapely.to_geojson(f["geometry"]))
    links = [
        _link("self", GEOJSON, at("json", offset), "this document"),
        _link("alternate", HTML, at("html", offset), "this document as HTML"),
        _link(
            "collection",
            JSON,
            _url(f"{_base(request)}/collections/{collection}", "json"),
            TITLES[collection],
        ),
    ]
    if has_next:
        links.append(_link("next", GEOJSON, at("json", offset + limit), "the next page"))
    if prev_offset is not None:
        links.append(_link("prev", GEOJSON, at("json", prev_offset), "the previous page"))
    return _Json(
        {
            "type": "FeatureCollection",
            "numberMatched": total,
            "numberReturned": len(feats),
            "features": feats,
            "links": links,
        },
        GEOJSON,
    )


@router.get(
    "/collections/{collection}/items/{item_id}",
    summary="One feature (GeoJSON, CRS84)",
    response_class=GeoJSONResponse,
    response_model=None,
    responses=BOTH_GEO,
)
def item(
    request: Request,
    collection: str,
    item_id: int,
    fmt: Format = Depends(output_format),
    _: Token | None = Depends(reader),
) -> JSONResponse | HTMLResponse:
    state = state_of(request)
    _known(state, collection)
    if not 0 < item_id < 2**62:
        raise NotFound(f"no feature {item_id} in {collection}")
    with state.reader() as store:
        if collection == "buildings":
            row = store.con.execute(
                f"SELECT {', '.join('b.' + c for c in SUMMARY_COLUMNS)}, "
                "ST_AsWKB(b.footprint) FROM buildings b JOIN sources s ON s.id = b.source_id "
                "WHERE b.id = ? AND b.footprint IS NOT NULL AND b.same_as IS NULL "
                "AND s.status = 'ingested'",
                [item_id],
            ).fetchone()
            props = dict(zip(SUMMARY_COLUMNS, row[:-1], strict=True)) if row else {}
        else:
            row = store.con.execute(
                "SELECT name, kind, layer, attributes, ST_AsWKB(geom) FROM features "
                "WHERE id = ? AND role = ?",
                [item_id, collection],
            ).fetchone()
            props = (
                {"name": row[0], "kind": row[1], "layer": row[2], **json.loads(row[3] or "{}")}
                if row
                else {}
            )
    if row is None:
        raise NotFound(f"no feature {item_id} in {collection}")
    geom = _wgs84(state, shapely.from_wkb(bytes(row[-1])))
    coll_url = f"{_base(request)}/collections/{collection}"
    url = f"{coll_url}/items/{item_id}"
    if fmt == "html":
        return render(
            "item.html",
            _url(url, "json"),
            GEOJSON,
            title=TITLES[collection],
            feature_id=item_id,
            name=props.get("name"),
            properties={k: v for k, v in props.items() if k != "id"},
            geometry_type=geom.geom_type,
            collection_href=_url(coll_url, "html"),
            items_href=_url(f"{coll_url}/items", "html"),
            shapes=sketch([("", str(item_id), geom)]),
            sketch_w=SKETCH_W,
            sketch_h=SKETCH_H,
            **_pages(request),
        )
    return _Json(
        {
            "type": "Feature",
            "id": item_id,
            "properties": props,
            "geometry": json.loads(shapely.to_geojson(geom)),
            "links": [
                _link("self", GEOJSON, _url(url, "json"), "this document"),
                _link("alternate", HTML, _url(url, "html"), "this document as HTML"),
                _link("collection", JSON, _url(coll_url, "json"), TITLES[collection]),
            ],
        },
        GEOJSON,
    )
