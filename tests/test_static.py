"""The page's scripts parse as the ES modules the browser loads (a merge once dropped a brace:
`node --check` on a .js file reads it as CommonJS and did not say)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

STATIC = ROOT / "viewer" / "static"


@pytest.mark.parametrize("script", sorted(p.name for p in STATIC.glob("*.js")))
def test_each_script_parses_as_a_module(script: str, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make install needs it for the page)")
    copy = tmp_path / (Path(script).stem + ".mjs")
    shutil.copy(STATIC / script, copy)
    run = subprocess.run([node, "--check", str(copy)], capture_output=True, text=True)
    assert run.returncode == 0, f"{script}: {run.stderr}"
