"""A DuckDB connection to a store file, with the spatial extension and nothing fetched.

The spatial extension is loaded from the pinned ``duckdb-extension-spatial`` wheel's file, never
installed from the network (autoinstall and autoload are off). A locked file is a
``StoreLocked`` naming the process that holds it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import duckdb

from cim.errors import StoreError, StoreLocked
from cim.processes import alive


def spatial_extension_path() -> Path:
    """The spatial extension file shipped inside the pinned ``duckdb-extension-spatial`` wheel."""
    try:
        import duckdb_extension_spatial
    except ImportError as exc:  # pragma: no cover - an install problem, not a user error
        raise StoreError(
            "the duckdb-extension-spatial package is not installed: run `make install`"
        ) from exc
    version = duckdb.__version__
    for base in duckdb_extension_spatial.__path__:
        candidate = Path(base) / "extensions" / f"v{version}" / "spatial.duckdb_extension"
        if candidate.is_file():
            return candidate
    raise StoreError(
        f"no spatial extension for DuckDB {version} in duckdb-extension-spatial: "
        f"install duckdb-extension-spatial=={version} (the two versions must match)"
    )


class _AbsentModule(importlib.abc.MetaPathFinder):
    """Answers "no such module" for a module known to be absent, without searching sys.path.

    DuckDB's client tries ``import pandas`` twice per parameter value of every statement, and
    each failed import searches the whole path, which doubled the cost of a small statement.
    Installed only when the module is really absent, so ``import pandas`` raises
    the same ModuleNotFoundError as before, just sooner (putting None in sys.modules instead
    breaks pyarrow's pandas shim).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == self.name:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _skip_absent_pandas() -> None:
    if any(isinstance(f, _AbsentModule) for f in sys.meta_path):
        return
    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.meta_path.insert(0, _AbsentModule("pandas"))


def serve_file_of(store_path: Path) -> Path:
    """Where a running `cim serve` says it holds the store: ``<store>.serve.json`` (its pid,
    address, and the store's status document as of its last job)."""
    return store_path.with_name(store_path.name + ".serve.json")


def server_holding(path: Path) -> dict[str, Any] | None:
    """What a running `cim serve` says beside the store (``<store>.serve.json``), if it lives."""
    try:
        doc: dict[str, Any] = json.loads(serve_file_of(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    return doc if alive(doc.get("pid"), doc.get("pid_started")) else None


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the spatial extension loaded from its file (no network)."""
    _skip_absent_pandas()
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            holder = re.search(r"PID (\d+)", text)
            who = f"process {holder.group(1)}" if holder else "another process"
            server = server_holding(Path(path))
            if server is not None:
                raise StoreLocked(
                    f"store {path} is held by `cim serve` (pid {server['pid']}) at "
                    f"{server['url']}: use its API instead (uploads: POST {server['url']}"
                    f"/api/uploads, jobs: {server['url']}/api/jobs), or stop the server",
                    detail=text,
                ) from exc
            raise StoreLocked(
                f"store {path} is in use by {who}: wait for its job to finish",
                detail=text,
            ) from exc
        raise StoreError(f"cannot open store {path}: {text}") from exc
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    con.execute(f"LOAD '{spatial_extension_path()}'")
    quiet(con)
    return con


def quiet(con: duckdb.DuckDBPyConnection) -> None:
    """No progress bar: DuckDB draws one on stdout for a query that runs over two seconds, and
    on a loaded machine it landed before `cim status --json`'s document. A connection's own
    setting (each cursor is a connection of its own)."""
    con.execute("SET enable_progress_bar = false")
