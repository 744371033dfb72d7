"""The console report of `cim analyze pv`: a table of buildings, or one building's facets."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _num(value: Any, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def print_pv(console: Console, report: dict[str, Any]) -> None:
    building = report.get("building")
    if building:
        _print_building(console, building)
        return
    if report["results"]:
        table = Table(
            "id",
            "building",
            "roof m2",
            "usable m2",
            "kWp",
            "kWh/yr",
            "kWh/kWp",
            "shading",
            "PV-ready",
        )
        for r in report["results"]:
            loss = r.get("pv_shading_loss")
            table.add_row(
                str(r["building_id"]),
                str(r.get("name") or ""),
                _num(r.get("roof_area_m2")),
                _num(r.get("pv_usable_m2")),
                _num(r.get("pv_kwp"), ",.1f"),
                _num(r.get("pv_kwh")),
                _num(r.get("pv_kwh_per_kwp")),
                "-" if loss is None else f"{100 * loss:.1f}%",
                "yes" if r.get("pv_ready") else "no",
            )
        console.print(table)
    city = report.get("city")
    if city:
        console.print(
            f"city: {city['buildings']} buildings, {city['usable_area_m2']:,.0f} m2 usable roof, "
            f"{city['kwp']:,.0f} kWp, {city['mwh_per_year']:,.0f} MWh/yr "
            f"({_num(city['kwh_per_kwp'])} kWh/kWp); PV-ready: {city['pv_ready']} "
            f"({city['new_pv_ready']} of {city['new_buildings']} new buildings)"
        )


def _print_building(console: Console, r: dict[str, Any]) -> None:
    console.print(
        f"building {r['building_id']} ({r.get('name') or '-'}): roof {r['roof_area_m2']:,.1f} "
        f"m2 from {r['roof_source'] or '-'}, usable {r['usable_area_m2']:,.1f} m2, "
        f"{r['kwp']:,.1f} kWp, {r['kwh_per_year']:,.0f} kWh/yr "
        f"({_num(r['kwh_per_kwp'])} kWh/kWp), PV-ready: {'yes' if r['pv_ready'] else 'no'}"
    )
    if r.get("no_roof"):
        console.print(f"  {r['no_roof']}")
    table = Table(
        "facet",
        "tilt",
        "azimuth",
        "area m2",
        "usable m2",
        "kWp",
        "kWh/yr",
        "kWh/kWp",
        "shading",
        "note",
    )
    for f in r["facets"]:
        ex = f.get("excluded_by")
        loss = f.get("shading_loss")
        table.add_row(
            str(f["facet"]),
            f"{f['tilt_deg']:.1f}",
            f"{f['azimuth_deg']:.0f}",
            f"{f['area_m2']:,.1f}",
            f"{f['usable_area_m2']:,.1f}",
            _num(f.get("kwp"), ",.1f"),
            _num(f.get("kwh_per_year")),
            _num(f.get("kwh_per_kwp")),
            "-" if loss is None else f"{100 * loss:.1f}%",
            f"left out: {ex['why']}" if ex else "",
        )
    console.print(table)
    w = r["weather"]
    console.print(
        f"weather: {w['kind']} ({w['annual_ghi_kwh_m2']:,.0f} kWh/m2 a year, "
        f"{'verified' if w.get('verified') else 'not verified'}); rules: {r['rules']['file']} "
        f"v{r['rules']['version']}; rays: {r['ray_engine']}"
    )
