"""The one map's server: a FastAPI app over one store (``create_app``), run by `cim serve`.

* ``/api/...`` the JSON API (``viewer/api.py``), OpenAPI at ``/docs``;
* ``/tiles/{tileset}/...`` the tile files beside the store (``viewer/tiles.py``);
* ``/`` the CesiumJS page (``viewer/static/``) and ``/cesium/`` the Cesium build from npm.

Errors have one shape everywhere, ``{"code", "message", "detail"}``, translated in one place
(``_error``): a ``CimError`` keeps its HTTP status and code, a validation error is 422, an
unknown route 404, and anything unexpected a 500 whose message says nothing of the internals.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cim import __version__
from cim.errors import CimError
from viewer.state import ServerState
from viewer.tiles import TileFiles

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: the Cesium build installed by `make` (npm, pinned in viewer/package-lock.json)
CESIUM = Path(__file__).parent / "node_modules" / "cesium" / "Build" / "Cesium"


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "detail": detail}


def _error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, CimError):
        status, body = exc.http_status, error_body(exc.code, exc.message, exc.detail)
    elif isinstance(exc, RequestValidationError):
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        status = 422
        body = error_body("invalid_request", "; ".join(problems) or "invalid request")
    elif isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        body = error_body(code, str(exc.detail))
    else:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        status = 500
        body = error_body("internal", "the server failed on this request; see its log")
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


#: room for a multipart request's boundaries and headers around the file it carries
MULTIPART_SLACK = 64 * 1024


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a request body over the upload limit before anything spools it to disk: at once
    by its Content-Length, else (a chunked body) as soon as the bytes received pass the limit.
    The app's own answer to a cut-off body is dropped and a 413 sent in its place."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.state.settings.max_upload_bytes + MULTIPART_SLACK
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await self._refuse(send)
            return
        received = 0
        over = started = False

        async def limited() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:
                return
            started = True
            await send(message)

        with suppress(_BodyTooLarge):
            await self.app(scope, limited, guarded)
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        mb = self.state.settings.max_upload_bytes / (1 << 20)
        body = error_body(
            "payload_too_large", f"the upload is over this server's limit of {mb:g} MB"
        )
        response = JSONResponse(body, status_code=413, headers={"Connection": "close"})
        await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def create_app(state: ServerState) -> FastAPI:
    """The app over a server's state (the store it holds, its writer, its settings). The state
    belongs to whoever made it (`cim serve` closes it when uvicorn returns): an app may be
    started and stopped more than once over one state (a test client per test)."""
    from viewer import api, ogc
    from viewer.auth import current_token, reader

    app = FastAPI(
        title="cim one map",
        version=__version__,
        description="The city information model: buildings, BIM models, point clouds, GIS "
        "layers and their analyses, as 3D Tiles and JSON.",
    )
    app.state.cim = state
    for kind in (CimError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _error)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(BodyLimit, state=state)

    async def private(scope: Scope) -> None:
        if state.settings.private:
            request = StarletteRequest(scope)
            await anyio.to_thread.run_sync(lambda: reader(request, current_token(request)))

    # last added, so first to see a request: tiles skip the router and the other middleware
    app.add_middleware(TileFiles, store_path=state.store.path, guard=private)
    app.include_router(api.router)
    app.include_router(ogc.router)
    if CESIUM.is_dir():
        app.mount("/cesium", StaticFiles(directory=CESIUM), name="cesium")
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app
