"""The page's scripts parse as the ES modules the browser loads (a merge once dropped a brace:
`node --check` on a .js file reads it as CommonJS and did not say)."""

from __future__ import annotations

import json
import re
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


def _js_table(text: str, name: str) -> dict[str, tuple[str, str]]:
    """An i18n.js label table ``export const NAME = {key: {zh, en}, ...}`` as key -> (zh, en)."""
    block = re.search(rf"export const {name} = \{{(.*?)\n\}};", text, re.S)
    assert block is not None, f"i18n.js has no {name} table"
    entries = re.findall(
        r'(?:"([^"]+)"|(\w+)):\s*\{\s*zh:\s*"([^"]+)",\s*en:\s*"([^"]+)",?\s*\}', block.group(1)
    )
    return {quoted or bare: (zh, en) for quoted, bare, zh, en in entries}


def test_every_check_reason_and_sky_has_a_chinese_and_an_english_label() -> None:
    """The energy checks (the limits schema's enum), the facade sides, the PV rules' reasons
    (why_zh in the rules file) and the PV skies: the page never shows a raw key."""
    i18n = (STATIC / "i18n.js").read_text()
    schema = json.loads((ROOT / "schemas" / "standards" / "energy-limits.schema.json").read_text())
    checks = schema["properties"]["limits"]["items"]["properties"]["check"]["enum"]
    table = _js_table(i18n, "CHECKS")
    assert set(table) == set(checks)
    for zh, en in table.values():
        assert re.search(r"[\u4e00-\u9fff]", zh) and not re.search(r"[\u4e00-\u9fff]", en)
    assert set(_js_table(i18n, "SIDES")) == {"north", "east", "south", "west"}
    rules = json.loads((ROOT / "schemas" / "standards" / "pv-rules.json").read_text())
    for rule in rules["usable"]:
        assert re.search(r"[\u4e00-\u9fff]", rule.get("why_zh", "")), rule["id"]
    solar = (ROOT / "cim" / "analyze" / "solar.py").read_text()
    kinds = set(re.findall(r'kind"?[=:] ?"([^"]+)"', solar))
    assert kinds and kinds <= set(_js_table(i18n, "WEATHER"))
    for status in ("pass", "fail", "advisory", "unknown"):
        assert re.search(rf'energy_{status}: "[^"]*[\u4e00-\u9fff]', i18n), status
