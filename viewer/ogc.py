"""OGC API - Features (Part 1: Core, GeoJSON) under ``/ogc``: the buildings and every GIS role
as collections, in CRS84, with ``bbox``, ``limit``, ``offset`` and ``next``/``prev`` links.

pygeoapi is the reference for what clients (QGIS, GDAL's OAPIF driver) expect: a landing page
with its links, conformance classes, collections with spatial extents, items as a
FeatureCollection with ``numberMatched``/``numberReturned``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import shapely
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pyproj import CRS

from cim.crs import transformer
from cim.errors import NotFound
from cim.model.buildings import SUMMARY_COLUMNS, building_page
from cim.model.features import FEATURE_ROLES
from cim.tokens import Token
from viewer.api import parse_bbox
from viewer.auth import reader, state_of
from viewer.state import ServerState

router = APIRouter(prefix="/ogc", tags=["OGC API - Features"])
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
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


class GeoJSONResponse(JSONResponse):
    media_type = "application/geo+json"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


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
    return {
        "id": c["id"],
        "title": TITLES[c["id"]],
        "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": {"bbox": [c["bbox"]], "crs": CRS84}},
        "links": [
            {
                "rel": "items",
                "type": "application/geo+json",
                "href": f"{base}/collections/{c['id']}/items",
            },
            {"rel": "self", "type": "application/json", "href": f"{base}/collections/{c['id']}"},
        ],
    }


@router.get("", summary="Landing page")
@router.get("/", include_in_schema=False)
def landing(request: Request, _: Token | None = Depends(reader)) -> dict[str, Any]:
    base = _base(request)
    root = str(request.base_url).rstrip("/")
    return {
        "title": "cim one map: OGC API - Features",
        "description": "The city's buildings and GIS layers, in CRS84.",
        "links": [
            {"rel": "self", "type": "application/json", "href": base},
            {
                "rel": "service-desc",
                "type": "application/vnd.oai.openapi+json;version=3.0",
                "href": f"{root}/openapi.json",
            },
            {"rel": "service-doc", "type": "text/html", "href": f"{root}/docs"},
            {"rel": "conformance", "type": "application/json", "href": f"{base}/conformance"},
            {"rel": "data", "type": "application/json", "href": f"{base}/collections"},
        ],
    }


@router.get("/conformance", summary="Conformance classes")
def conformance(_: Token | None = Depends(reader)) -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


@router.get("/collections", summary="The collections: buildings and each GIS role")
def collections(request: Request, _: Token | None = Depends(reader)) -> dict[str, Any]:
    base = _base(request)
    return {
        "collections": [_collection_doc(base, c) for c in _collections(state_of(request))],
        "links": [{"rel": "self", "type": "application/json", "href": f"{base}/collections"}],
    }


def _known(state: ServerState, collection: str) -> dict[str, Any]:
    for c in _collections(state):
        if c["id"] == collection:
            return c
    raise NotFound(f"no collection {collection!r}: see /ogc/collections")


@router.get("/collections/{collection}", summary="One collection")
def collection(
    request: Request, collection: str, _: Token | None = Depends(reader)
) -> dict[str, Any]:
    return _collection_doc(_base(request), _known(state_of(request), collection))


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
)
def items(
    request: Request,
    collection: str,
    bbox: str | None = Query(None, description="minlon,minlat,maxlon,maxlat (CRS84)"),
    limit: int = Query(10, ge=1, le=10000),
    offset: int = Query(0, ge=0, le=2**31),
    _: Token | None = Depends(reader),
) -> GeoJSONResponse:
    state = state_of(request)
    _known(state, collection)
    total, feats = _page(state, collection, parse_bbox(state, bbox), limit, offset)
    for f in feats:
        f["geometry"] = json.loads(shapely.to_geojson(f["geometry"]))
    url = f"{_base(request)}/collections/{collection}/items"
    keep = f"&bbox={bbox}" if bbox else ""
    links = [
        {
            "rel": "self",
            "type": "application/geo+json",
            "href": f"{url}?limit={limit}&offset={offset}{keep}",
        }
    ]
    if offset + len(feats) < total:
        links.append(
            {
                "rel": "next",
                "type": "application/geo+json",
                "href": f"{url}?limit={limit}&offset={offset + limit}{keep}",
            }
        )
    if offset > 0:
        links.append(
            {
                "rel": "prev",
                "type": "application/geo+json",
                "href": f"{url}?limit={limit}&offset={max(0, offset - limit)}{keep}",
            }
        )
    return GeoJSONResponse(
        {
            "type": "FeatureCollection",
            "numberMatched": total,
            "numberReturned": len(feats),
            "features": feats,
            "links": links,
        }
    )


@router.get(
    "/collections/{collection}/items/{item_id}",
    summary="One feature (GeoJSON, CRS84)",
    response_class=GeoJSONResponse,
)
def item(
    request: Request, collection: str, item_id: int, _: Token | None = Depends(reader)
) -> GeoJSONResponse:
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
    base = _base(request)
    return GeoJSONResponse(
        {
            "type": "Feature",
            "id": item_id,
            "properties": props,
            "geometry": json.loads(shapely.to_geojson(geom)),
            "links": [
                {"rel": "self", "href": f"{base}/collections/{collection}/items/{item_id}"},
                {"rel": "collection", "href": f"{base}/collections/{collection}"},
            ],
        }
    )
