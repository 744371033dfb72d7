"""`cim analyze NAME`: run an analyzer on what is stale, print its results."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cim.analyze import ANALYZERS
from cim.cli.base import (
    cluster_option,
    emit_json,
    json_option,
    open_store,
    progress_bar,
    workers_option,
)


@click.command()
@click.argument("name", type=click.Choice([*ANALYZERS, "all"]))
@click.option("--building", type=int, help="Only this building (its id); prints its full report.")
@click.option(
    "--all", "everything", is_flag=True, help="Recompute everything, not only what is stale."
)
@click.option(
    "--declaration",
    type=click.Path(dir_okay=False, path_type=Path),
    help="prefab: a designer's declaration (schemas/prefab-declaration.schema.json), kept "
    "in the store for the building it names (or --building).",
)
@click.option(
    "--standard",
    help="The rules table, by id (schemas/standards/) or as a file (a local variant; "
    "prefab's is remembered by the store). Default: gbt51129-2017 (prefab), gb55015-2021 "
    "(energy).",
)
@click.option(
    "--zone",
    help="energy: fix the store's climate zone (e.g. severe_cold_C) instead of the nearest "
    "city's; 'auto' goes back to the nearest city. Kept in the store.",
)
@click.option(
    "--weather",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="pv: a TMY3 (.csv) or EPW (.epw) weather file for the site (pvlib's readers); "
    "default: the clear sky scaled to the site's monthly climate "
    "(schemas/standards/pv-rules.json).",
)
@cluster_option
@workers_option
@click.option(
    "--targets",
    help="indicators: the health check's targets, by id (schemas/standards/) or as a file "
    "(another city's; remembered by the store). Default: tongliao-2025-targets.",
)
@click.option(
    "--boundary",
    type=int,
    help="indicators: only this boundary (its feature id); default: every boundary.",
)
@json_option("Print one JSON document (schemas/analyze.schema.json).")
@click.pass_context
def analyze(
    ctx: click.Context,
    name: str,
    building: int | None,
    everything: bool,
    declaration: Path | None,
    standard: str | None,
    zone: str | None,
    weather: Path | None,
    cluster: str | None,
    workers: int | None,
    targets: str | None,
    boundary: int | None,
    as_json: bool,
) -> None:
    """Run an analyzer (prefab: the assembly rate by GB/T 51129-2017; energy: the envelope
    checks of GB 55015-2021; pv: rooftop PV area, kWp and yearly kWh with shading from the
    city) on every building whose inputs changed since it last ran, and keep the results in
    the store.

    The results are read by the tiles, the API and the one map. A second run with nothing
    changed recomputes nothing; --all recomputes everything. The heavy part of each building
    (energy: its envelope; pv: the shading rays) runs on the worker pool (--workers, or a Dask
    cluster with --cluster).
    """
    from cim.analyze import run_analyzer
    from cim.errors import UsageError
    from cim.jobs import run_job

    names = list(ANALYZERS) if name == "all" else [name]
    if standard is not None and len(names) > 1:
        raise UsageError("--standard names one analyzer's table: give it with one analyzer")
    if declaration is not None and "prefab" not in names:
        raise UsageError("--declaration is for `cim analyze prefab`")
    if zone is not None and "energy" not in names:
        raise UsageError("--zone is for `cim analyze energy`")
    if weather is not None and "pv" not in names:
        raise UsageError("--weather is for `cim analyze pv`")
    from cim.executor import get_executor

    if (targets is not None or boundary is not None) and "indicators" not in names:
        raise UsageError("--targets and --boundary are for `cim analyze indicators`")
    if building is not None and name == "indicators":
        raise UsageError("the indicators are for boundaries: give --boundary, not --building")
    reports: dict[str, Any] = {}
    executor = get_executor(cluster, workers)  # the pool starts when first used
    with open_store(ctx) as store, contextlib.closing(executor):
        if declaration is not None:
            from cim.analyze.prefab import declare

            with store.transaction():
                declared = declare(store, declaration, building)
            if not as_json:
                for d in declared:
                    click.echo(
                        f"declaration {declaration.name} kept for building {d['building_id']} "
                        f"({d['name'] or d['global_id']})"
                    )
        if zone is not None:
            from cim.analyze.energy import set_store_zone
            from cim.analyze.energy_rules import load_limits

            limits = load_limits(standard or "gb55015-2021")
            with store.transaction():
                set_store_zone(store, None if zone == "auto" else zone, limits)
        for n in names:
            options: dict[str, Any] = {"store": store, "standard": standard}
            if n == "pv":
                options["weather"] = weather
            if n == "indicators":
                options["targets"] = targets
            analyzer = ANALYZERS[n](**options)
            # the indicators' subjects are boundaries: --boundary picks one as --building does
            one = boundary if n == "indicators" else building
            args = {"analyzer": n, "building": one, "all": everything}
            with (
                progress_bar(f"analyze {n}", enabled=not as_json) as bar,
                run_job(store, "analyze", args, on_progress=bar) as job,
            ):
                report = run_analyzer(
                    store,
                    analyzer,
                    building=one,
                    everything=everything,
                    job_id=job.id,
                    progress=job.update,
                    executor=executor,
                )
                job.result = {k: v for k, v in report.items() if k != "results"}
            if n == "indicators":
                from cim.cli.indicators_report import with_boundaries

                with_boundaries(store, report)
            elif building is not None:
                from cim.model.analyses import stored

                row = stored(store, n).get(f"building:{building}")
                report["building"] = row["result"] if row else None
            reports[n] = report
    if as_json:
        emit_json({"analyses": reports})
        return
    console = Console(highlight=False)
    for n, report in reports.items():
        _print(console, n, report)


def _print(console: Console, name: str, report: dict[str, Any]) -> None:
    console.print(
        f"[bold]{name}[/]: {report['subjects']} "
        f"{'areas' if name == 'indicators' else 'buildings'}, {report['computed']} computed, "
        f"{report['unchanged']} unchanged ({report['rules']})"
    )
    for f in report.get("failed", []):
        console.print(f"[red]building {f['building_id']}: not analysed ({f['error']})[/]")
    if name == "energy":
        from cim.cli.energy_report import print_energy

        print_energy(console, report)
        return
    if name == "indicators":
        from cim.cli.indicators_report import print_indicators

        print_indicators(console, report)
        return
    if name == "pv":
        from cim.cli.pv_report import print_pv

        print_pv(console, report)
        return
    if report.get("building"):
        _print_building(console, report["building"])
        return
    if report["results"]:
        table = Table("id", "building", "P %", "grade", "prefabricated", "missing")
        for r in report["results"]:
            table.add_row(
                str(r["building_id"]),
                str(r.get("name") or ""),
                "-" if r.get("prefab_rate") is None else f"{r['prefab_rate']:.1f}",
                r.get("prefab_grade") or "-",
                "yes" if r.get("prefabricated") else "no",
                str(r.get("missing", "")),
            )
        console.print(table)
    city = report.get("city")
    if city:
        value = "-" if city["value"] is None else f"{100 * city['value']:.1f}%"
        console.print(
            f"city: {city['indicator']}: {value} (target {100 * city['target']:.0f}%, "
            f"{city['status']}); {city['new_buildings']} new buildings since "
            f"{city['new_since']}, {city['new_floor_area_m2']:,.0f} m2"
        )


def _print_building(console: Console, r: dict[str, Any]) -> None:
    rate = "-" if r["rate"] is None else f"{r['rate']:.1f}%"
    console.print(
        f"building {r['building_id']} ({r.get('name') or r.get('global_id')}): P = {rate}, "
        f"grade {r['grade'] or '-'}, "
        f"{'prefabricated' if r['prefabricated'] else 'not a prefabricated building'}"
    )
    for reason in r["verdict_reasons"]:
        console.print(f"  - {reason}")
    table = Table("item", "group", "ratio", "points", "max", "note")
    for key, it in r["items"].items():
        ratio = it["ratio"]
        shown = (
            "-"
            if ratio is None
            else ("yes" if ratio is True else "no" if ratio is False else f"{100 * ratio:.1f}%")
        )
        table.add_row(
            f"{it['name_zh']} ({key})",
            it["group"],
            shown,
            f"{it['points']:g}",
            f"{it['max_points']:g}",
            it.get("why") or "",
        )
    console.print(table)
    g = r["groups"]
    console.print(f"Q1 {g['Q1']:g} + Q2 {g['Q2']:g} + Q3 {g['Q3']:g}, Q4 {g['Q4']:g}")
    for w in r["what_if"]:
        if w.get("already"):
            console.print(f"what-if {w['target']:g}%: already reached")
        elif not w["reached"]:
            console.print(f"what-if {w['target']:g}%: out of reach ({w['why']})")
        else:
            groups = "; ".join(
                f"{s['group']} ({s['members']} members, {s['quantity']:g} {s['unit']})"
                for s in w["switch"]
            )
            console.print(
                f"what-if {w['target']:g}%: switch to precast {groups} -> P {w['rate_after']}%"
            )
    console.print(f"rules: {r['rules']['table']}; {r['rules']['precast']}")
