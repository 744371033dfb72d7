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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

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


def create_app(state: ServerState) -> FastAPI:
    """The app over a server's state (the store it holds, its writer, its settings)."""
    from viewer import api, ogc

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="cim one map",
        version=__version__,
        description="The city information model: buildings, BIM models, point clouds, GIS "
        "layers and their analyses, as 3D Tiles and JSON.",
        lifespan=lifespan,
    )
    app.state.cim = state
    for kind in (CimError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _error)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.include_router(api.router)
    app.include_router(ogc.router)
    app.mount("/tiles", TileFiles(state.store.path), name="tiles")
    if CESIUM.is_dir():
        app.mount("/cesium", StaticFiles(directory=CESIUM), name="cesium")
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app
