"""The energy analyzer's console report: a table of the buildings, or one building's checks
with their evidence, and the city roll-up."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_STYLE = {"pass": "green", "fail": "red", "advisory": "yellow", "unknown": "dim"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_energy(console: Console, report: dict[str, Any]) -> None:
    if report.get("building"):
        print_building(console, report["building"])
        return
    if report["results"]:
        columns = ("id", "building", "scope", "zone", "shape coef.", "status", "fail")
        table = Table(*columns, "advisory", "unknown")
        for r in report["results"]:
            status = r.get("energy_status") or "unknown"
            table.add_row(
                str(r["building_id"]),
                str(r.get("name") or ""),
                str(r.get("scope") or ""),
                str(r.get("zone") or "-"),
                _fmt(r.get("shape_coefficient")),
                f"[{_STYLE[status]}]{status}[/]",
                str(r.get("failing", 0)),
                str(r.get("advisory", 0)),
                str(r.get("unknown", 0)),
            )
        console.print(table)
    city = report.get("city")
    if city:
        share = city["share_passing"]
        console.print(
            f"city: {city['buildings']} buildings, "
            + ", ".join(f"{k} {v}" for k, v in city["by_status"].items())
            + f"; passing {'-' if share is None else f'{100 * share:.1f}%'}; "
            f"{len(city['retrofit_candidates'])} retrofit candidates"
        )


def print_building(console: Console, r: dict[str, Any]) -> None:
    climate = r["climate"]
    city = climate["nearest_city"]
    if not climate["zone"]:
        where = f"zone unknown ({climate.get('why')})"
    elif climate["source"] == "store":
        where = f"zone {climate['zone']} ({climate.get('zone_zh')}, set for the store)"
    else:
        where = (
            f"zone {climate['zone']} ({climate.get('zone_zh')}, nearest city "
            f"{city['city']} {city['distance_km']} km)"
        )
    btype = r["building_type"]
    console.print(
        f"building {r['building_id']} ({r.get('name') or r.get('global_id')}): "
        f"[{_STYLE[r['status']]}]{r['status']}[/], {r['scope']}, {where}, "
        f"{btype['type']}{' (assumed: ' + btype['from'] + ')' if btype['assumed'] else ''}"
    )
    shape = r["shape"]
    if shape.get("value") is not None:
        console.print(
            f"shape coefficient {shape['value']:.4f} = {shape['external_area_m2']} m2 / "
            f"{shape['volume_m3']} m3"
        )
    if r.get("facades"):
        t = Table("orientation", "facade m2", "windows m2", "WWR")
        for s, f in r["facades"].items():
            t.add_row(s, _fmt(f["facade_area_m2"], 2), _fmt(f["window_area_m2"], 2), _fmt(f["wwr"]))
        console.print(t)
    table = Table("check", "value", "limit", "status", "clause", "why")
    for c in r["checks"]:
        table.add_row(
            c["check"],
            _fmt(c["value"]),
            _fmt(c["limit"]),
            f"[{_STYLE[c['status']]}]{c['status']}[/]",
            c.get("clause") or "",
            c.get("why") or "",
        )
    console.print(table)
    console.print(f"rules: {r['rules']['limits']}; {r['rules']['climate']}")
