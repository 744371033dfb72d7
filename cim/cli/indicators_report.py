"""The console report of `cim analyze indicators`: per built-up area, a table of the
indicators (Chinese and English names, value, target, status)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from cim.store import Store

_STATUS = {"met": "[green]met[/]", "not_met": "[red]not met[/]", "no_data": "[yellow]no data[/]"}


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "share":
        return f"{100 * value:.1f}%"
    if unit in ("m2", "buildings"):
        return f"{value:,.0f} {unit}"
    return f"{value:,.2f} {unit}"


def with_boundaries(store: Store, report: dict[str, Any]) -> dict[str, Any]:
    """The run's report with each area's whole stored result (``boundaries``), which the
    console table and the JSON document show."""
    from cim.model.analyses import stored

    rows = stored(store, "indicators")
    report["boundaries"] = [
        rows[r["subject"]]["result"] for r in report["results"] if r["subject"] in rows
    ]
    return report


def print_indicators(console: Console, report: dict[str, Any]) -> None:
    for area in report.get("boundaries", []):
        b = area["boundary"]
        console.print(
            f"[bold]{b['name']}[/] ({b['key']}, {b['origin']}): {b['area_km2']:,.3f} km2, "
            f"{b['buildings']} buildings, {b['residential']} homes"
        )
        if b.get("note"):
            console.print(f"  {b['note']}")
        table = Table("indicator", "", "value", "target", "status", "note")
        for r in area["indicators"]:
            t = r["target"]
            table.add_row(
                r["name_zh"],
                r["name_en"],
                _value(r["value"], r["unit"]),
                f"{t['comparison']} {_value(t['value'], r['unit'])}",
                _STATUS.get(r["status"], r["status"]),
                r.get("why_no_data") or ("" if r["verified"] else "target not verified"),
            )
        console.print(table)
        c, t = area["counts"], area["targets"]
        console.print(
            f"{c['met']} met, {c['not_met']} not met, {c['no_data']} no data; targets: "
            f"{t['file']} v{t['version']} ({t['source']})"
        )
