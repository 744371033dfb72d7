"""Tiles from the files beside the store: ``/tiles/{tileset}/{file}``.

Content files are named by their sha256, so they never change: they are sent with
``Cache-Control: immutable`` and a year's max-age. ``tileset.json`` is replaced when a tileset
is rebuilt, so clients revalidate it (``no-cache``; its ETag answers 304 while it is unchanged).
Starlette's static files give ETags, conditional GET and byte ranges; the app's gzip middleware
compresses the JSON. Only the store's own tilesets are served: nothing outside the tiles folder.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from cim.tilefiles import TILESET_JSON, tiles_dir_of

mimetypes.add_type("model/gltf-binary", ".glb")
mimetypes.add_type("application/wasm", ".wasm")
IMMUTABLE = "public, max-age=31536000, immutable"


class TileFiles(StaticFiles):
    """The store's tiles folder as static files, with the caching rules above."""

    def __init__(self, store_path: Path) -> None:
        folder = tiles_dir_of(store_path)
        folder.mkdir(exist_ok=True)
        super().__init__(directory=folder, check_dir=False)

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = Path(str(full_path)).name
        response.headers["Cache-Control"] = "no-cache" if name == TILESET_JSON else IMMUTABLE
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response
