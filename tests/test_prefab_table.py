"""GB/T 51129-2017 Table 4.0.1 as data: bounds, interpolation, Q4, the verdict and grades."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cim.analyze.standards import ItemInput, assess, load_standard, round1
from cim.errors import InputFileError, NotFound


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return load_standard("gbt51129-2017")


def test_the_whole_table_is_there(table) -> None:  # type: ignore[no-untyped-def]
    keys = [i.key for i in table.items]
    assert keys == [
        "vertical", "horizontal", "envelope_non_masonry", "envelope_integrated",
        "partition_non_masonry", "partition_integrated", "full_fitout", "dry_floor",
        "integrated_kitchen", "integrated_bathroom", "pipe_separation",
    ]  # fmt: skip
    assert sum(i.max_points for i in table.items if i.group == "Q1") == 50
    assert sum(i.max_points for i in table.items if i.group == "Q2") == 20
    assert sum(i.max_points for i in table.items if i.group == "Q3") == 30
    assert all(i.verified and i.clause for i in table.items)


@pytest.mark.parametrize(
    ("key", "ratio", "points"),
    [
        ("vertical", 0.50, 23.3),  # 20 + (50-35)/(80-35) x 10 = 23.33
        ("vertical", 0.3499, 0.0),
        ("vertical", 0.35, 20.0),
        ("vertical", 0.80, 30.0),
        ("vertical", 0.95, 30.0),
        ("vertical", 0.575, 25.0),
        ("horizontal", 0.69, 0.0),
        ("horizontal", 0.70, 10.0),
        ("horizontal", 0.75, 15.0),
        ("horizontal", 0.80, 20.0),
        ("horizontal", 1.00, 20.0),
        ("envelope_non_masonry", 0.79, 0.0),
        ("envelope_non_masonry", 0.80, 5.0),
        ("envelope_integrated", 0.50, 2.0),
        ("envelope_integrated", 0.65, 3.5),
        ("envelope_integrated", 0.80, 5.0),
        ("partition_non_masonry", 0.49, 0.0),
        ("partition_non_masonry", 0.50, 5.0),
        ("partition_integrated", 0.60, 3.0),
        ("dry_floor", 0.69, 0.0),
        ("dry_floor", 0.70, 6.0),
        ("integrated_kitchen", 0.70, 3.0),
        ("integrated_kitchen", 0.80, 4.5),
        ("integrated_kitchen", 0.90, 6.0),
        ("integrated_bathroom", 0.85, 5.3),  # 3 + 0.75 x 3 = 5.25 -> 5.3 (half up)
        ("pipe_separation", 0.50, 4.0),
        ("pipe_separation", 0.60, 5.0),
        ("pipe_separation", 0.70, 6.0),
        ("pipe_separation", 0.40, 0.0),
    ],
)
def test_points_at_bounds_and_between(table, key: str, ratio: float, points: float) -> None:  # type: ignore[no-untyped-def]
    assert table.item(key).points(ratio) == points


def test_yes_no_item(table) -> None:  # type: ignore[no-untyped-def]
    assert table.item("full_fitout").points(True) == 6.0
    assert table.item("full_fitout").points(False) == 0.0


def test_half_up_rounding() -> None:
    assert round1(23.25) == 23.3 and round1(23.35) == 23.4 and round1(0.05) == 0.1


def _full(**overrides: ItemInput) -> dict[str, ItemInput]:
    base = {
        "vertical": ItemInput("ratio", 0.50),  # 23.3
        "horizontal": ItemInput("ratio", 0.75),  # 15
        "envelope_non_masonry": ItemInput("ratio", 0.90),  # 5
        "envelope_integrated": ItemInput("ratio", 0.50),  # 2
        "partition_non_masonry": ItemInput("ratio", 0.60),  # 5
        "partition_integrated": ItemInput("ratio", 0.0),  # 0
        "full_fitout": ItemInput("ratio", True),  # 6
        "dry_floor": ItemInput("ratio", 0.0),  # 0
        "integrated_kitchen": ItemInput("ratio", 0.0),
        "integrated_bathroom": ItemInput("ratio", 0.0),
        "pipe_separation": ItemInput("ratio", 0.0),
    }
    base.update(overrides)
    return base


def test_rate_and_verdict(table) -> None:  # type: ignore[no-untyped-def]
    a = assess(table, _full())
    assert a.groups == {"Q1": 38.3, "Q2": 12.0, "Q3": 6.0}
    assert a.q4 == 0
    assert a.rate == 56.3
    assert a.prefabricated and a.grade is None  # prefabricated, under grade A


def test_q4_items_the_building_lacks(table) -> None:  # type: ignore[no-untyped-def]
    # no non-load-bearing envelope (shear walls all round) and no kitchen: Q4 = 5 + 5 + 6
    a = assess(
        table,
        _full(
            envelope_non_masonry=ItemInput("absent"),
            envelope_integrated=ItemInput("absent"),
            integrated_kitchen=ItemInput("absent"),
        ),
    )
    assert a.q4 == 16.0
    assert a.groups["Q2"] == 5.0
    assert a.rate == round1((38.3 + 5.0 + 6.0) / (100 - 16) * 100)  # 58.7
    assert a.rate == 58.7
    assert a.items["integrated_kitchen"]["state"] == "absent"
    assert a.prefabricated is False and any("Q2" in r for r in a.reasons)


def test_undeclared_items_score_zero_and_are_listed(table) -> None:  # type: ignore[no-untyped-def]
    inputs = _full()
    del inputs["full_fitout"], inputs["pipe_separation"]
    a = assess(table, inputs)
    assert a.missing == ["full_fitout", "pipe_separation"]
    assert a.items["full_fitout"]["points"] == 0 and a.q4 == 0
    assert not a.prefabricated
    assert any("full_fitout" in r and "not declared" in r for r in a.reasons)


def test_grade_needs_vertical_35(table) -> None:  # type: ignore[no-untyped-def]
    # vertical 30 % scores 0; horizontal 80 % alone makes Q1 = 20: P = 70 %, prefabricated,
    # but no grade (5.0.1 asks for vertical members at 35 % or more)
    rich = _full(
        vertical=ItemInput("ratio", 0.30),
        horizontal=ItemInput("ratio", 0.80),
        envelope_integrated=ItemInput("ratio", 0.80),
        partition_integrated=ItemInput("ratio", 0.80),
        dry_floor=ItemInput("ratio", 0.80),
        integrated_kitchen=ItemInput("ratio", 0.90),
        integrated_bathroom=ItemInput("ratio", 0.90),
        pipe_separation=ItemInput("ratio", 0.70),
    )
    a = assess(table, rich)
    assert a.groups == {"Q1": 20.0, "Q2": 20.0, "Q3": 30.0}
    assert a.rate == 70.0 and a.prefabricated
    assert a.grade is None  # vertical 30% < 35%: no grade (5.0.1)


@pytest.mark.parametrize(
    ("vertical_ratio", "rate", "grade"),
    [
        (0.35, 90.0, "AA"),  # 20 + 20 + 20 + 30
        (0.395, 91.0, "AAA"),  # vertical 21 points
        (0.80, 100.0, "AAA"),
    ],
)
def test_grade_levels(table, vertical_ratio: float, rate: float, grade: str) -> None:  # type: ignore[no-untyped-def]
    full = {k: ItemInput("ratio", 1.0) for k in (i.key for i in table.items)}
    full["full_fitout"] = ItemInput("ratio", True)
    full["vertical"] = ItemInput("ratio", vertical_ratio)
    a = assess(table, full)
    assert a.rate == rate and a.grade == grade


@pytest.mark.parametrize(
    ("rate", "grade"),
    [
        (59.9, None),
        (60.0, "A"),
        (75.0, "A"),
        (75.5, "A"),
        (76.0, "AA"),
        (90.9, "AA"),
        (91.0, "AAA"),
    ],
)
def test_grade_boundaries(table, rate: float, grade: str | None) -> None:  # type: ignore[no-untyped-def]
    assert table.grade_for(rate) == grade


def test_grade_boundary_through_assess(table) -> None:  # type: ignore[no-untyped-def]
    # 20 (vertical at 35%) + 20 + 10 (partitions) + 6 (fit-out) = 56 of 100 - 34 (envelope,
    # dry floors, kitchen, bathroom, pipes absent) -> 84.8 % -> AA
    inputs = {
        "vertical": ItemInput("ratio", 0.35),
        "horizontal": ItemInput("ratio", 0.8),
        "envelope_non_masonry": ItemInput("absent"),
        "envelope_integrated": ItemInput("absent"),
        "partition_non_masonry": ItemInput("ratio", 1.0),
        "partition_integrated": ItemInput("ratio", 1.0),
        "full_fitout": ItemInput("ratio", True),
        "dry_floor": ItemInput("absent"),
        "integrated_kitchen": ItemInput("absent"),
        "integrated_bathroom": ItemInput("absent"),
        "pipe_separation": ItemInput("absent"),
    }
    a = assess(table, inputs)
    assert a.q4 == 34.0 and a.rate == 84.8 and a.grade == "AA"
    inputs["vertical"] = ItemInput("ratio", 0.349)  # now Q1 = 20 still, vertical under 35 %
    a = assess(table, inputs)
    assert a.rate == 54.5 and a.prefabricated  # (0 + 20 + 10 + 6) / 66
    assert a.grade is None


def test_a_local_variant_is_another_file(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(table.path.read_text())
    doc["id"] = "nmg-variant"
    doc["title"] = "A province's variant: vertical members scored from 25%"
    doc["items"][0]["lower"] = 0.25
    path = tmp_path / "nmg-variant.json"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    variant = load_standard(path)
    assert variant.item("vertical").points(0.30) > 0 == table.item("vertical").points(0.30)
    assert "nmg-variant.json" in variant.label


def test_bad_tables_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="gbt51129-2017"):
        load_standard("no-such-table")
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x"}')
    with pytest.raises(InputFileError, match=r"bad\.json is not a valid standard table"):
        load_standard(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InputFileError, match=r"broken\.json is not a readable JSON"):
        load_standard(broken)
