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
from pathlib import Path
from typing import Any

import shapely
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pyproj import CRS

from cim.crs import transformer
from cim.errors import CimError, Conflict, InputFileError, NotFound, UsageError
from cim.executor import SerialExecutor
from cim.jobs import JobJson, list_jobs
from cim.model.analyses import result_counts, stored
from cim.model.buildings import building_detail, building_page
from cim.status import status_document
from cim.store import SourceRow
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


@router.get(
    "/sources",
    summary="The ingested files",
    description="Each source with `replaceable`: whether the request's token may replace it "
    "with a revised model (`POST /api/uploads` with `replaces`): an operator's any IFC source, "
    "a designer's the IFC models uploaded with that token; false without a token.",
)
def sources(request: Request, token: Token | None = Depends(reader)) -> dict[str, Any]:
    with state_of(request).reader() as store:
        rows = store.sources()
        owners = dict(
            store.con.execute(
                "SELECT s.id, j.token_id FROM sources s JOIN jobs j ON j.id = s.job_id "
                "WHERE j.kind = 'upload'"
            ).fetchall()
        )

    def replaceable(s: SourceRow) -> bool:
        if token is None or s.kind != "ifc":
            return False
        return token.role == "operator" or owners.get(s.id) == token.id

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
                "replaceable": replaceable(s),
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
    state = state_of(request)
    with state.reader() as store:
        return status_document(store, state.pipeline.analyses_state if state.pipeline else None)


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


#: the largest declaration sent with an upload
MAX_DECLARATION_BYTES = 1 << 20

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._\-\u4e00-\u9fff]+")


UPLOAD_DESCRIPTION = """\
Upload an IFC model (multipart, the file under `file`). It is streamed to disk under the
server's size limit (413), checked to be IFC by its header (422, nothing kept), and becomes a
job: ingest, then the city and BIM tilesets brought up to date. The answer (202) names the job
and, when the model replaces one, the source it replaces; the job's result says so too
(`replaced`).

**A revised model replaces the one it revises** (its buildings, elements and meshes go, in the
one transaction that adds the new ones; then the tiles are rebuilt):

* `replaces` (a source id): the model replaces that source. A designer may replace only a source
  uploaded with their own token, an operator any IFC source. A revised model keeps the old
  one's anchor when that model was placed by one (`cim place`).
* Without `replaces`, an upload with the same file name as one of the same token's earlier
  uploads replaces it, unless `new=true` is given (then both stay).
* If the new file fails to ingest, the old source stays exactly as it was, its file too. The
  same bytes as a source already in the store change nothing.

Errors: 400 `replaces` together with `new=true`; 403 the source was not uploaded with this
(designer's) token; 404 no source with that id; 409 the source is not an IFC model (a GIS layer
or a point cloud), or the file name matches several of this token's uploads (give `replaces`);
413 over the size limit; 422 not an IFC file, or a malformed field.
"""


def _owner(store: Any, source_id: int) -> int | None:
    """The token that uploaded a source (through its upload job), or None."""
    row = store.con.execute(
        "SELECT j.token_id FROM sources s JOIN jobs j ON j.id = s.job_id "
        "WHERE s.id = ? AND j.kind = 'upload'",
        [source_id],
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def replaced_by_upload(
    store: Any, token: Token, name: str, replaces: int | None, new: bool
) -> SourceRow | None:
    """The source an upload of ``name`` replaces: the one named by ``replaces`` (if the token
    may replace it), else, unless ``new``, the token's own earlier upload of that name."""
    if replaces is not None:
        if new:
            raise UsageError(
                f"{name}: give `replaces` (the source the model replaces) or `new=true` (keep "
                f"both), not both"
            )
        src: SourceRow = store.source(replaces)
        if src.kind != "ifc":
            raise Conflict(
                f"source {src.id} ({src.name}) is a {src.kind} source, not an IFC model: an "
                f"uploaded model replaces only an IFC source; upload {name} without `replaces`"
            )
        if token.role != "operator" and _owner(store, src.id) != token.id:
            raise Forbidden(
                f"source {src.id} ({src.name}) was not uploaded with token {token.name!r}: a "
                f"designer replaces only their own uploads (an operator may replace any)"
            )
        return src
    if new:
        return None
    rows = store.con.execute(
        "SELECT s.id FROM sources s JOIN jobs j ON j.id = s.job_id "
        "WHERE j.kind = 'upload' AND j.token_id = ? AND s.name = ? AND s.kind = 'ifc' "
        "ORDER BY s.id",
        [token.id, name],
    ).fetchall()
    if len(rows) > 1:
        ids = ", ".join(str(r[0]) for r in rows)
        raise Conflict(
            f"{name} names {len(rows)} of your uploads (sources {ids}): give `replaces` with "
            f"the one this model revises, or `new=true` to keep them all"
        )
    return store.source(int(rows[0][0])) if rows else None


def _upload_folder(state: ServerState, src: SourceRow) -> Path | None:
    """The folder an uploaded source's file was saved in (None for a file from elsewhere)."""
    folder = Path(src.path).parent
    uploads = state.uploads_dir.resolve()
    return folder if folder.resolve().parent == uploads else None


@router.post(
    "/uploads",
    status_code=202,
    summary="Upload an IFC model (or a revision of one): ingested, then tiled",
    description=UPLOAD_DESCRIPTION,
    responses={
        400: {"description": "`replaces` together with `new=true`"},
        401: {"description": "no token, or a wrong one"},
        403: {"description": "a designer's token, and a source it did not upload"},
        404: {"description": "no source with the id in `replaces`"},
        409: {"description": "the source is not an IFC model, or the name matches several"},
        413: {"description": "over the server's upload limit"},
        422: {"description": "not an IFC file, or a malformed field"},
    },
)
async def upload(
    request: Request,
    file: UploadFile,
    replaces: int | None = Form(
        None, ge=1, le=2**31 - 1, description="the id of the source this model replaces"
    ),
    new: bool = Form(
        False,
        description="keep an earlier upload of the same file name beside this one instead of "
        "replacing it",
    ),
    declaration: UploadFile | None = File(
        None,
        description="what the model cannot show for its assembly rate (full fit-out, "
        "integrated kitchens ...): JSON, schemas/prefab-declaration.schema.json; for the "
        "building it names, else every building of the model",
    ),
    token: Token = Depends(writer),
) -> JSONResponse:
    state = state_of(request)
    if state.pipeline is None:
        raise NotFound("this server takes no uploads (started without a pipeline)")
    name = _SAFE_NAME.sub("_", os.path.basename(file.filename or "model.ifc")) or "model.ifc"

    def find_replaced() -> SourceRow | None:
        with state.reader() as store:
            return replaced_by_upload(store, token, name, replaces, new)

    old = await asyncio.to_thread(find_replaced)
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
        declared = None
        if declaration is not None and declaration.filename:
            declared = folder / "declaration.json"
            body = await declaration.read(MAX_DECLARATION_BYTES + 1)
            if len(body) > MAX_DECLARATION_BYTES:
                raise PayloadTooLarge("the declaration is over 1 MB: send only the items")
            declared.write_bytes(body)
            await asyncio.to_thread(state.pipeline.check_declaration, declared)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    pipeline = state.pipeline
    executor = state.executor or SerialExecutor()
    replaced = None if old is None else {"id": old.id, "name": old.name}
    old_folder = None if old is None else _upload_folder(state, old)

    def work(job: Any) -> dict[str, Any]:
        def ingest_step(f: float | None, m: str | None) -> None:
            job.update(None if f is None else 0.7 * f, m)

        def analyze_step(f: float | None, m: str | None) -> None:
            job.update(None if f is None else 0.7 + 0.1 * f, m)

        def tile_step(f: float | None, m: str | None) -> None:
            job.update(None if f is None else 0.8 + 0.2 * f, m)

        try:
            report = pipeline.ingest(
                state.store,
                target,
                executor,
                ingest_step,
                job.id,
                None if old is None else old.id,
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # the store is as it was: so is the folder
            raise
        analyses = pipeline.analyze(
            state.store, analyze_step, job.id, declared, report.get("source_id"), executor
        )
        if report.get("outcome") == "unchanged":  # the same model again: nothing new was kept
            shutil.rmtree(folder, ignore_errors=True)
        elif declared is not None:
            declared.unlink(missing_ok=True)  # kept in the store (declarations)
        done = old is not None and old.id in report.get("replaced", [])
        if done and old_folder is not None:  # the old model's file went with its rows
            shutil.rmtree(old_folder, ignore_errors=True)
        tiles = pipeline.tile(state.store, ["buildings", "bim", "pv"], executor, tile_step)
        return {
            "ingest": report,
            "analyses": analyses,
            "tiles": tiles,
            "replaced": replaced if done else None,
        }

    args: dict[str, Any] = {"file": name, "bytes": size}
    if old is not None:
        args["replaces"] = old.id
    job_id = state.submit("upload", args, work, token.id)
    return JSONResponse(
        {
            "job_id": job_id,
            "file": name,
            "bytes": size,
            "job": f"/api/jobs/{job_id}",
            "replaces": replaced,
        },
        status_code=202,
    )


@router.get("/analyses", summary="How many results each analyzer has stored")
def analyses(request: Request, _: Token | None = Depends(reader)) -> dict[str, Any]:
    """``{"analyses": {name: count}}``: which analyses a page can read (none: not run yet)."""
    state = state_of(request)
    with state.reader() as store:
        return {"analyses": result_counts(store)}


@router.get("/indicators", summary="The city health check's indicators (城市体检)")
def indicators(
    request: Request,
    boundary: int | None = Query(None, ge=0, le=2**62, description="one boundary's feature id"),
    _: Token | None = Depends(reader),
) -> dict[str, Any]:
    """What `cim analyze indicators` stored for each built-up area (schemas/indicators.schema.json),
    each with ``stale``: whether its inputs changed since."""
    state = state_of(request)
    with state.reader() as store:
        rows = stored(store, "indicators")
        now = state.pipeline.fingerprints(store, "indicators") if state.pipeline else {}
    if not rows:
        raise NotFound("no health check indicators in this store yet: run `cim analyze indicators`")
    if boundary is not None:
        rows = {k: r for k, r in rows.items() if k == f"boundary:{boundary}"}
        if not rows:
            raise NotFound(
                f"no indicators for boundary {boundary}: run `cim analyze indicators "
                f"--boundary {boundary}` (GET /api/indicators lists those computed)"
            )
    areas = []
    for key, r in sorted(rows.items()):
        doc = dict(r["result"])
        doc["stale"] = now.get(key) != r["fingerprint"] if state.pipeline else False
        doc["computed_at"] = r["computed_at"]
        areas.append(doc)
    return {"areas": areas}
