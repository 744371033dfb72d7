"""The layers' arrows, read from the source: no import circle, the core imports no layer above
it, the layers above never import each other sideways, and no file or function grows past what
one reader can hold. Each failure lists the offending file, line and import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import imports as graph

MAX_FILE_LINES = 700
MAX_FUNCTION_LINES = 120
#: the layers above the core: each sits on `cim/` and never imports another (the demo's
#: generator, `district/`, is one: it writes files for the ingesters, never calls them)
LAYERS = ("ingest", "tiles", "cim.analyze", "viewer", "district")


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _layer(module: str) -> str | None:
    return next((layer for layer in LAYERS if _in(module, layer)), None)


def violations(edges: list[graph.Import]) -> list[str]:
    """Every import that breaks an arrow of docs/architecture.md, with the rule it breaks."""
    out = []
    for e in edges:
        src, dst = e.source, e.target
        core = _in(src, "cim") and not _in(src, "cim.cli") and _layer(src) is None
        if core and (_layer(dst) is not None or _in(dst, "cim.cli")):
            out.append(f"{e}: the core (cim/) imports no layer above it")
            continue
        if _in(src, "cim.model") and _in(dst, "cim.analyze"):
            out.append(f"{e}: the model is read by the analyzers, not the other way")
        layer, other = _layer(src), _layer(dst)
        if layer is not None and other is not None and layer != other:
            out.append(f"{e}: {layer} and {other} never import each other (only through cim/)")
        if layer is not None and _in(dst, "cim.cli"):
            out.append(f"{e}: only the command line knows it is one")
    return out


def test_no_import_circle() -> None:
    found = graph.cycles(graph.imports())
    assert not found, "import circles:\n" + "\n\n".join(
        "\n".join(str(e) for e in circle) for circle in found
    )


def test_layers_import_only_downwards() -> None:
    bad = violations(graph.imports())
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_files_and_functions_stay_readable() -> None:
    long = []
    for module, path in graph.project_modules().items():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(graph.ROOT)
        if (n := len(text.splitlines())) > MAX_FILE_LINES:
            long.append(f"{rel}: {n} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(
                        f"{rel}:{node.lineno}: {module}.{node.name} is {size} lines "
                        f"(at most {MAX_FUNCTION_LINES})"
                    )
    assert not long, "\n".join(long)


def test_the_picture_in_docs_is_current() -> None:
    text = graph.DOC.read_text(encoding="utf-8")
    assert graph.current_picture(text) == graph.render(), (
        "docs/architecture.md's import graph is stale: run `python -m tests.imports --write`"
    )


# ---- the checker itself finds what it must --------------------------------------------------
def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_circle_and_a_core_importing_an_ingester(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "cim/__init__.py": "",
            "cim/store.py": "def features():\n    from ingest.gis import read\n",
            "cim/cli/__init__.py": "import ingest.gis\n",
            "ingest/__init__.py": "",
            "ingest/gis.py": "from __future__ import annotations\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from cim.store import Store\n",
            "tiles/__init__.py": "from . import writer\n",
            "tiles/writer.py": "from ingest import gis\nfrom ..cim import store\n",
            "viewer/__init__.py": "",
        },
    )
    edges = graph.imports(tmp_path)
    assert {(e.source, e.target) for e in edges} == {
        ("cim.store", "ingest.gis"),
        ("cim.cli", "ingest.gis"),
        ("ingest.gis", "cim.store"),
        ("tiles", "tiles.writer"),
        ("tiles.writer", "ingest.gis"),
        ("tiles.writer", "cim.store"),
    }
    circles = graph.cycles(edges)
    assert [[(e.source, e.target) for e in c] for c in circles] == [
        [("cim.store", "ingest.gis"), ("ingest.gis", "cim.store")]
    ]
    bad = violations(edges)
    assert len(bad) == 2
    assert bad[0].startswith("cim/store.py:2: cim.store imports ingest.gis: the core")
    assert bad[1].startswith("tiles/writer.py:1: tiles.writer imports ingest.gis: tiles and")


@pytest.mark.parametrize(
    ("source", "target", "ok"),
    [
        ("cim.cli.ingest", "ingest.run", True),
        ("cim.model.heights", "cim.store", True),
        ("cim.analyze.pv", "cim.model.points", True),
        ("cim.analyze.pv", "ingest.lidar", False),
        ("cim.model.points", "ingest.lidar", False),
        ("cim.model.points", "cim.analyze.pv", False),
        ("viewer.app", "tiles.writer", False),
        ("viewer.app", "cim.cli", False),
        ("ingest.ifc.ingester", "cim.model.heights", True),
        ("ingest.ifc.ingester", "ingest.base", True),
        ("district.lidar", "cim.crs", True),
        ("district.bim", "ingest.ifc", False),
        ("district.gis", "cim.analyze.pv", False),
        ("cim.store", "district.plan", False),
        ("cim.cli.demo", "district", True),
    ],
)
def test_the_rules(source: str, target: str, ok: bool) -> None:
    edge = graph.Import(source, target, "x.py", 1)
    assert (violations([edge]) == []) is ok


def test_every_name_a_package_hands_on_exists() -> None:
    import importlib

    missing = []
    for module in graph.project_modules():
        if module.endswith(".__main__"):
            continue  # runs the program
        mod = importlib.import_module(module)
        missing += [f"{module}.{n}" for n in getattr(mod, "__all__", []) if not hasattr(mod, n)]
    assert not missing, f"__all__ names that do not exist: {missing}"
