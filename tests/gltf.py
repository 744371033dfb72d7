"""The Khronos glTF validator from the tests: every glb the pipeline writes must pass it.

`validate_glb(paths)` runs `tests/gltf_validator.mjs` once for all the files (one node process,
so a tileset of hundreds of tiles costs one start-up) and returns one report per file, in order.
`assert_valid_glb(paths)` fails listing every error (file, code, JSON pointer, message); warnings,
infos and hints are allowed. The validator does not know `EXT_mesh_features` or
`EXT_structural_metadata` and says so with UNSUPPORTED_EXTENSION at severity info, which is not an
error (checked by tests/test_harness.py).

The validator comes from npm (`viewer/package.json`, installed by `make install`); without node
or `viewer/node_modules` these helpers raise `ValidatorMissing` (tests turn that into a skip
unless CIM_REQUIRE_BROWSER=1 or CI is set, see `require_validator`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "gltf_validator.mjs"
VALIDATOR_PACKAGE = ROOT / "viewer" / "node_modules" / "gltf-validator"

ERROR, WARNING, INFO, HINT = 0, 1, 2, 3
SEVERITY_NAMES = {ERROR: "error", WARNING: "warning", INFO: "info", HINT: "hint"}


class ValidatorMissing(RuntimeError):
    """node or the npm package gltf-validator is not installed."""


def node_executable() -> str | None:
    return shutil.which("node")


def validator_missing_reason() -> str | None:
    """Why the validator cannot run here, or None when it can."""
    if node_executable() is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (VALIDATOR_PACKAGE / "package.json").is_file():
        return f"{VALIDATOR_PACKAGE} is missing: run `make install` (npm ci in viewer/)"
    return None


def must_not_skip() -> bool:
    """In CI (CI or CIM_REQUIRE_BROWSER set) a missing tool fails a test instead of skipping it."""
    return os.environ.get("CIM_REQUIRE_BROWSER", "") not in ("", "0") or os.environ.get(
        "CI", ""
    ).lower() not in ("", "0", "false")


def require_validator() -> None:
    """Skip the calling test when the validator is missing; fail instead in CI."""
    reason = validator_missing_reason()
    if reason is None:
        return
    if must_not_skip():
        pytest.fail(f"glTF validator required (CI / CIM_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(reason)


def validate_glb(
    paths: Iterable[Path | str], *, max_issues: int = 200, timeout: float = 600
) -> list[dict[str, Any]]:
    """One validator report per file, in the order given.

    Each report: {"path", "numErrors", "numWarnings", "numInfos", "numHints", "truncated",
    "messages": [{"code", "severity", "message", "pointer"?, "offset"?}]} (severity 0 error,
    1 warning, 2 info, 3 hint). A file that cannot be read or is not glTF at all comes back
    with one error (code READ_ERROR or NOT_GLTF).
    """
    files = [str(Path(p)) for p in paths]
    if not files:
        return []
    reason = validator_missing_reason()
    if reason is not None:
        raise ValidatorMissing(reason)
    node = node_executable()
    assert node is not None
    proc = subprocess.run(
        [node, str(SCRIPT), "--max-issues", str(max_issues), "--list", "-"],
        input="\n".join(files) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(
            f"gltf_validator.mjs failed (exit {proc.returncode}): {proc.stderr.strip()}"
        )
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if len(reports) != len(files):
        raise RuntimeError(
            f"gltf_validator.mjs gave {len(reports)} reports for {len(files)} files: "
            f"{proc.stderr.strip()}"
        )
    return reports


def errors_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in report["messages"] if m["severity"] == ERROR]


def format_errors(reports: Iterable[dict[str, Any]]) -> str:
    lines: list[str] = []
    for r in reports:
        if r["numErrors"] == 0:
            continue
        shown = errors_of(r)
        lines.append(f"{r['path']}: {r['numErrors']} error(s)")
        for m in shown:
            where = m.get("pointer") or (f"@{m['offset']}" if "offset" in m else "")
            lines.append(f"  {m['code']} {where}: {m['message']}")
        if r.get("truncated") or len(shown) < r["numErrors"]:
            lines.append("  ... (more not listed)")
    return "\n".join(lines)


def assert_valid_glb(paths: Iterable[Path | str], *, max_issues: int = 200) -> list[dict[str, Any]]:
    """Fails the test listing each validator error; warnings are allowed. Returns the reports."""
    files = list(paths)
    assert files, "assert_valid_glb: no files given"
    reports = validate_glb(files, max_issues=max_issues)
    bad = [r for r in reports if r["numErrors"] > 0]
    if bad:
        pytest.fail(
            f"glTF validator: {len(bad)} of {len(reports)} file(s) with errors\n"
            + format_errors(bad),
            pytrace=False,
        )
    return reports
