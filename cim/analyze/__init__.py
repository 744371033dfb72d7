"""The analyzers: functions of the store that write their results beside it (``analyses``).

Each reads the store only through ``Store`` and ``cim/model/``, never through an ingester.
``ANALYZERS`` lists those that exist; `cim analyze NAME` and the server's upload jobs run them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cim.analyze.base import Analyzer, run_analyzer, stale_counts
from cim.analyze.standards import STANDARDS

if TYPE_CHECKING:
    from cim.store import Store


#: where a store keeps the scoring table it was last told to use (`--standard`)
PREFAB_STANDARD_KEY = "prefab_standard"


def _prefab(store: Store | None = None, standard: str | None = None, **_: Any) -> Analyzer:
    """The prefab analyzer with ``standard`` (an id or a file), else the table the store was
    last told to use, else GB/T 51129-2017. A table given is remembered by the store, so the
    next run without ``--standard`` scores by it too (and finds nothing stale)."""
    from cim.analyze.prefab import PrefabAnalyzer
    from cim.analyze.standards import load_standard

    if standard is None and store is not None:
        with contextlib.suppress(KeyError):
            standard = store.meta(PREFAB_STANDARD_KEY)
    table = load_standard(standard or "gbt51129-2017")
    if store is not None and standard is not None:
        ref = table.id if table.path.parent == STANDARDS else str(table.path.resolve())
        store.set_meta(PREFAB_STANDARD_KEY, ref)
    return PrefabAnalyzer(standard=table)


def _energy(**options: Any) -> Analyzer:
    from cim.analyze.energy import EnergyAnalyzer
    from cim.analyze.energy_rules import load_limits

    standard = options.get("standard")
    return EnergyAnalyzer(limits=load_limits(standard or "gb55015-2021"))


def _pv(
    store: Store | None = None,
    weather: str | Path | None = None,
    module_w_per_m2: float | None = None,
    system_losses_pct: float | None = None,
    **_: Any,
) -> Analyzer:
    """The rooftop PV analyzer with the site's climate from the rules file, or ``weather`` (a
    TMY3 or EPW file)."""
    from cim.analyze.pv import PvAnalyzer

    return PvAnalyzer(
        weather_path=None if weather is None else Path(weather),
        module_w_per_m2=module_w_per_m2,
        system_losses_pct=system_losses_pct,
    )


#: where a store keeps the targets file it was last told to use (`--targets`)
INDICATORS_TARGETS_KEY = "indicators_targets"


def _indicators(
    store: Store | None = None, targets: str | Path | None = None, **_: Any
) -> Analyzer:
    """The city health check against ``targets`` (an id or a file), else the file the store
    was last told to use, else Tongliao's 2025 targets; a file given is remembered."""
    from cim.analyze.indicators import DEFAULT_TARGETS, IndicatorsAnalyzer, load_targets

    ref: str | None = None if targets is None else str(targets)
    if ref is None and store is not None:
        with contextlib.suppress(KeyError):
            ref = store.meta(INDICATORS_TARGETS_KEY)
    loaded = load_targets(ref or DEFAULT_TARGETS)
    if store is not None and targets is not None:  # only when given: a read stays a read
        keep = loaded.doc["id"] if loaded.path.parent == STANDARDS else str(loaded.path.resolve())
        store.set_meta(INDICATORS_TARGETS_KEY, keep)
    return IndicatorsAnalyzer(targets=loaded)


#: name -> a factory taking the store and the analyzer's options (None: its default)
ANALYZERS: dict[str, Callable[..., Analyzer]] = {
    "prefab": _prefab,
    "energy": _energy,
    "pv": _pv,
    # last: it reads the results of the others
    "indicators": _indicators,
}

__all__ = ["ANALYZERS", "Analyzer", "run_analyzer", "stale_counts"]
