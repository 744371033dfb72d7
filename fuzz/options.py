"""Harness: the option parsers users type into: ``--anchor`` (``Anchor.parse``) and ``--crs`` /
``cim init --crs`` (``parse_crs``, ``check_project_crs``).

Besides raising only ``CimError``, a parsed anchor must be finite: a NaN or infinite
elevation or rotation would place a model nowhere.
"""

from __future__ import annotations

import math

from cim.crs import check_project_crs, parse_crs
from fuzz.common import expected
from ingest.base import Anchor


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    with expected():
        anchor = Anchor.parse(text)
        values = (anchor.lon, anchor.lat, anchor.elevation, anchor.rotation_deg)
        assert all(map(math.isfinite, values)), f"--anchor {text!r} parsed to {values}"
    with expected():
        crs = parse_crs(text)
        check_project_crs(crs, text)
