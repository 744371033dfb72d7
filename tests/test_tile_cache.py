"""The tile server's memory: a rebuilt tileset's old tiles leave the cache with it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from cim.tilefiles import tiles_dir_of
from viewer.tiles import TileFiles


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a new inode, as the tile writer does


def test_a_new_generation_drops_the_old_tiles_from_memory(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    folder = tiles_dir_of(store) / "buildings"
    folder.mkdir(parents=True)
    _write(folder / "a.glb", b"a" * 5000)
    _write(folder / "b.glb", b"b" * 7000)
    _write(folder / "tileset.json", json.dumps({"uris": ["a.glb", "b.glb"]}).encode())
    files = TileFiles(FastAPI(), store_path=store)
    client = TestClient(files)
    for name in ("tileset.json", "a.glb", "b.glb"):
        assert client.get(f"/tiles/buildings/{name}").status_code == 200
    held = files.cache.held
    assert held >= 12000
    # the tileset is rebuilt: b.glb is kept, a.glb replaced by c.glb
    (folder / "a.glb").unlink()
    _write(folder / "c.glb", b"c" * 3000)
    _write(folder / "tileset.json", json.dumps({"uris": ["c.glb", "b.glb"]}).encode())
    assert client.get("/tiles/buildings/tileset.json").status_code == 200
    assert client.get("/tiles/buildings/c.glb").status_code == 200
    routes = set(files.cache._entries)
    assert routes == {"buildings/tileset.json", "buildings/b.glb", "buildings/c.glb"}
    entries = files.cache._entries.values()
    assert files.cache.held == sum(len(e.data or b"") + len(e.gz or b"") for e in entries)
    assert client.get("/tiles/buildings/a.glb").status_code == 404
