"""The JSON API under ``/api``: buildings, sources, tilesets, jobs (with a server-sent event
stream), uploads and the health-check indicators.

Reads go through a cursor of their own (``ServerState.reader``); an upload is streamed to disk
under the size limit, checked to be IFC by its header, and becomes a queued job on the writer
thread: ingest, then the affected tilesets brought up to date (only tiles whose inputs changed
are written).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import shapely
from fastapi import APIRouter, Depends, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pyproj import CRS

from cim.crs import transformer
from cim.errors import CimError, InputFileError, NotFound, UsageError
from cim.executor import SerialExecutor
from cim.jobs import JobJson, list_jobs
from cim.model.buildings import building_detail, building_page
from cim.status import status_document
from cim.tilefiles import tileset_states
from cim.tokens import Forbidden, Token
from viewer.auth import operator, reader, state_of, writer
from viewer.state import ServerState

router = APIRouter(prefix="/api")
WGS84 = CRS.from_epsg(4326)


class PayloadTooLarge(CimError):
    http_status = 413
    code = "payload_too_large"


def _to_wgs84(state: ServerState, geom: Any) -> Any:
    t = transformer(state.crs, WGS84)
    return shapely.transform(geom, lambda xy: _xy(t, xy))


def _xy(t: Any, xy: Any) -> Any:
    import numpy as np

    x, y = t.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def parse_bbox(state: ServerState, bbox: str | None) -> tuple[float, float, float, float] | None:
    """``minlon,minlat,maxlon,maxlat`` (CRS84) -> a box in the project CRS."""
    if not bbox:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in bbox.split(","))
    except ValueError as exc:
        raise UsageError(f"bbox {bbox!r}: give minlon,minlat,maxlon,maxlat in degrees") from exc
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise UsageError(
            f"bbox {bbox!r}: longitudes in -180..180, latitudes in -90..90, min <= max"
        )
    t = transformer(WGS84, state.crs)
    xs, ys = t.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
    return (min(xs), min(ys), max(xs), max(ys))


@router.get("/me", summary="Who the request's token belongs to")
def me(token: Token | None = Depends(reader)) -> dict[str, Any]:
    if token is None:
        return {"signed_in": False, "role": None, "name": None}
    return {"signed_in": True, "role": token.role, "name": token.name, "id": token.id}


@router.get("/buildings", summary="Buildings in a box or matching a name, paged")
def buildings(
    request: Request,
    bbox: str | None = Query(None, description="minlon,minlat,maxlon,maxlat (CRS84)"),
    q: str | None = Query(None, max_length=200, description="an id, or part of a name"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=2**31),
    _: Token | None = Depends(reader),
) -> dict[str, Any]:
    state = state_of(request)
    box = parse_bbox(state, bbox)
    with state.reader() as store:
        total, items, shapes = building_page(store, box, q, limit, offset)
    if len(shapes):
        centres = shapely.get_coordinates(_to_wgs84(state, shapely.point_on_surface(shapes)))
        for item, (lon, lat) in zip(items, centres, strict=True):
            item["lon"], item["lat"] = round(float(lon), 7), round(float(lat), 7)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get("/buildings/{building_id}", summary="One building with its sources and analyses")
def building(
    request: Request, building_id: int, _: Token | None = Depends(reader)
) -> dict[str, Any]:
    state = state_of(request)
    if not 0 < building_id < 2**62:
        raise NotFound(f"no building {building_id}")
    with state.reader() as store:
        found = building_detail(store, building_id)
    if found is None:
        raise NotFound(f"no building {building_id} in this store")
    footprint = _to_wgs84(state, found.pop("footprint"))
    lon, lat = shapely.get_coordinates(shapely.point_on_surface(footprint))[0]
    found["footprint"] = json.loads(shapely.to_geojson(footprint))
    found["lon"], found["lat"] = float(lon), float(lat)
    return found


@router.get("/sources", summary="The ingested files")
def sources(request: Request, _: Token | None = Depends(reader)) -> dict[str, Any]:
    with state_of(request).reader() as store:
        rows = store.sources()
    return {
        "sources": [
            {
                "id": s.id,
                "name": s.name,
                "kind": s.kind,
                "format": s.format,
                "status": s.status,
                "counts": s.counts,
                "warnings": s.warnings,
                "ingested_at": s.ingested_at.isoformat(timespec="seconds"),
            }
            for s in rows
        ]
    }


@router.get("/tilesets", summary="The 3D Tiles this server streams")
def tilesets(request: Request, _: Token | None = Depends(reader)) -> dict[str, Any]:
    state = state_of(request)
    with state.reader() as store:
        states = tileset_states(store.con, store.path)
    return {
        "tilesets": [{**t, "url": f"/tiles/{t['name']}/tileset.json"} for t in states],
        "origin": _origin(state),
    }


def _origin(state: ServerState) -> dict[str, float]:
    lon, lat = transformer(state.crs, WGS84).transform(*state.origin)
    return {"lon": float(lon), "lat": float(lat)}


@router.get("/status", summary="The store's status document (operators)")
def status(request: Request, _: Token = Depends(operator)) -> Any:
    with state_of(request).reader() as store:
        return status_document(store)


def _jobs_for(store: Any, token: Token) -> list[JobJson]:
    jobs = [j.as_json() for j in list_jobs(store, limit=200)]
    if token.role == "operator":
        return jobs
    own = {
        r[0]
        for r in store.con.execute("SELECT id FROM jobs WHERE token_id = ?", [token.id]).fetchall()
    }
    return [j for j in jobs if j["id"] in own]


@router.get("/jobs", summary="Jobs, newest first (a designer sees their own)")
def jobs(request: Request, token: Token = Depends(writer)) -> dict[str, Any]:
    with state_of(request).reader() as store:
        return {"jobs": _jobs_for(store, token)}


def _job(request: Request, job_id: int, token: Token) -> JobJson:
    with state_of(request).reader() as store:
        found = [j for j in _jobs_for(store, token) if j["id"] == job_id]
        if not found:
            exists = store.con.execute("SELECT 1 FROM jobs WHERE id = ?", [job_id]).fetchone()
            if exists:
                raise Forbidden(f"job {job_id} is someone else's")
            raise NotFound(f"no job {job_id}")
    return found[0]


@router.get("/jobs/{job_id}", summary="One job and its progress")
def job(request: Request, job_id: int, token: Token = Depends(writer)) -> dict[str, Any]:
    if not 0 < job_id < 2**31:
        raise NotFound(f"no job {job_id}")
    return dict(_job(request, job_id, token))


@router.get("/jobs/{job_id}/events", summary="A job's progress as server-sent events")
async def job_events(
    request: Request, job_id: int, token: Token = Depends(writer)
) -> StreamingResponse:
    if not 0 < job_id < 2**31:
        raise NotFound(f"no job {job_id}")
    first = await asyncio.to_thread(_job, request, job_id, token)

    async def stream() -> AsyncIterator[str]:
        current: JobJson = first
        last = None
        while True:
            text = json.dumps(current, default=str)
            if text != last:
                yield f"event: job\ndata: {text}\n\n"
                last = text
            if current["status"] in ("done", "failed") or await request.is_disconnected():
                return
            await asyncio.sleep(0.25)
            current = await asyncio.to_thread(_job, request, job_id, token)

    return StreamingResponse(stream(), media_type="text/event-stream")


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._\-\u4e00-\u9fff]+")


@router.post("/uploads", status_code=202, summary="Upload an IFC model: ingested, then tiled")
async def upload(
    request: Request, file: UploadFile, token: Token = Depends(writer)
) -> JSONResponse:
    state = state_of(request)
    if state.pipeline is None:
        raise NotFound("this server takes no uploads (started without a pipeline)")
    name = _SAFE_NAME.sub("_", os.path.basename(file.filename or "model.ifc")) or "model.ifc"
    folder = state.uploads_dir / uuid.uuid4().hex[:12]
    folder.mkdir()
    target = folder / name
    size = 0
    try:
        with target.open("wb") as out:
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > state.settings.max_upload_bytes:
                    raise PayloadTooLarge(
                        f"{name} is over the upload limit of "
                        f"{state.settings.max_upload_bytes // (1 << 20)} MB"
                    )
                out.write(chunk)
        with target.open("rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \r\n\t")
        if not head.startswith(b"ISO-10303-21;"):
            raise InputFileError(
                f"{name} is not an IFC file (no ISO-10303-21 header): upload a .ifc model"
            )
    except BaseException:
        target.unlink(missing_ok=True)
        folder.rmdir()
        raise
    pipeline = state.pipeline
    executor = state.executor or SerialExecutor()

    def work(job: Any) -> dict[str, Any]:
        def ingest_step(f: float | None, m: str | None) -> None:
            job.update(None if f is None else 0.8 * f, m)

        def tile_step(f: float | None, m: str | None) -> None:
            job.update(None if f is None else 0.8 + 0.2 * f, m)

        try:
            report = pipeline.ingest(state.store, target, executor, ingest_step, job.id)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # the store is as it was: so is the folder
            raise
        if report.get("outcome") == "unchanged":  # the same model again: nothing new was kept
            shutil.rmtree(folder, ignore_errors=True)
        tiles = pipeline.tile(state.store, ["buildings", "bim"], executor, tile_step)
        return {"ingest": report, "tiles": tiles}

    job_id = state.submit("upload", {"file": name, "bytes": size}, work, token.id)
    return JSONResponse(
        {"job_id": job_id, "file": name, "bytes": size, "job": f"/api/jobs/{job_id}"},
        status_code=202,
    )


@router.get("/indicators", summary="The city health check's indicators (城市体检)")
def indicators(_: Token | None = Depends(reader)) -> Any:
    raise NotFound(
        "the city health check is not built yet (cim analyze indicators, issue #28): "
        "no indicators to show"
    )
