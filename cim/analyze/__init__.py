"""The analyzers: functions of the store that write their results beside it (``analyses``).

Each reads the store only through ``Store`` and ``cim/model/``, never through an ingester.
``ANALYZERS`` lists those that exist; `cim analyze NAME` and the server's upload jobs run them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cim.analyze.base import Analyzer, run_analyzer, stale_counts


def _prefab(**options: Any) -> Analyzer:
    from cim.analyze.prefab import PrefabAnalyzer
    from cim.analyze.standards import load_standard

    standard = options.get("standard")
    return PrefabAnalyzer(standard=load_standard(standard or "gbt51129-2017"))


def _energy(**options: Any) -> Analyzer:
    from cim.analyze.energy import EnergyAnalyzer
    from cim.analyze.energy_rules import load_limits

    standard = options.get("standard")
    return EnergyAnalyzer(limits=load_limits(standard or "gb55015-2021"))


#: name -> a factory taking the analyzer's options (None means its default)
ANALYZERS: dict[str, Callable[..., Analyzer]] = {"prefab": _prefab, "energy": _energy}

__all__ = ["ANALYZERS", "Analyzer", "run_analyzer", "stale_counts"]
