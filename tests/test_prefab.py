"""The prefab analyzer on models built here and on the real samples: the assembly rate by
GB/T 51129-2017 from the elements, the rules that said precast, results kept in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from cim.analyze import ANALYZERS, run_analyzer, stale_counts
from cim.analyze.prefab import declare
from cim.cli import cli
from cim.errors import InputFileError, NotFound
from cim.executor import SerialExecutor
from cim.model.analyses import building_analyses, stored
from cim.store import Store
from ingest import IngestOptions, run_ingest
from tests.conftest import SAMPLES, snapshot
from tests.ifc_models import TOWER_DECLARATION, precast_tower

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def _ingest(store: Store, path: Path) -> None:
    run_ingest(store, path, IngestOptions(), SerialExecutor())


def _declare(store: Store, tmp_path: Path, doc: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "declaration.json"
    path.write_text(json.dumps(doc or TOWER_DECLARATION, ensure_ascii=False))
    with store.transaction():
        declare(store, path)
    return path


def _analyze(store: Store, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = run_analyzer(store, ANALYZERS["prefab"](), **kw)
    return out


def _building(store: Store, building_id: int = 1) -> dict[str, Any]:
    row: dict[str, Any] = stored(store, "prefab")[f"building:{building_id}"]["result"]
    return row


@pytest.fixture
def tongliao(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "t.duckdb", "EPSG:4550")


@pytest.mark.parametrize("tagging", ["ifc", "tekla", "chinese"])
def test_the_tower_scores_as_computed_by_hand(
    tongliao: Store, tmp_path: Path, tagging: str
) -> None:
    store = tongliao
    _ingest(store, precast_tower(tmp_path / f"tower-{tagging}.ifc", tagging))
    _declare(store, tmp_path)
    report = _analyze(store)
    assert report["computed"] == 1
    r = _building(store)
    items = r["items"]
    # vertical 7.2 / 16.32 m3 = 44.1 % -> 20 + (44.1 - 35) / 45 x 10 = 22.0
    assert items["vertical"]["ratio"] == pytest.approx(7.2 / 16.32, abs=1e-4)
    assert items["vertical"]["points"] == 22.0
    assert items["vertical"]["evidence"]["total"] == pytest.approx(3 * 16.32 / 3 * 3, rel=1e-4)
    # horizontal 39 / 42.6 m2 = 91.5 % -> 20
    assert items["horizontal"]["ratio"] == pytest.approx(39 / 42.6, abs=1e-4)
    assert items["horizontal"]["points"] == 20.0
    assert items["envelope_non_masonry"]["ratio"] == pytest.approx(1.0)
    assert items["envelope_non_masonry"]["points"] == 5.0
    assert items["envelope_integrated"]["points"] == 3.5  # declared 65 %
    assert items["partition_non_masonry"]["ratio"] == pytest.approx(0.5, abs=1e-4)
    assert items["partition_non_masonry"]["points"] == 5.0
    assert items["partition_integrated"]["state"] == "unknown"
    assert items["integrated_bathroom"]["state"] == "absent"
    assert r["groups"] == {"Q1": 42.0, "Q2": 13.5, "Q3": 21.5, "Q4": 6.0}
    assert r["rate"] == 81.9  # 77 / 94
    assert r["grade"] == "AA" and r["prefabricated"] is True
    assert r["missing"] == ["partition_integrated"]
    # each verdict names its rule
    rules = {c["precast"]["rule"] for c in r["elements"]["classified"] if "precast" in c}
    expected = {
        "ifc": {"ifc-casting-method-precast", "ifc-casting-method-insitu", "ifc-precast-pset"},
        "tekla": {"tekla-cast-unit-prefab", "tekla-cast-unit-in-place"},
        "chinese": {"cn-is-precast-yes", "cn-is-precast-no", "cn-member-type"},
    }[tagging]
    # and the light-steel-stud partition (轻钢龙骨) is a factory-made member in every tagging
    assert rules == expected | {"steel-member"}
    if tagging == "tekla":  # the parts inherit the assembly's verdict
        assert all(
            c["precast"].get("via")
            for c in r["elements"]["classified"]
            if c.get("precast", {}).get("verdict") == "precast"
        )
    assert "gbt51129-2017.json" in r["rules"]["table"]
    assert "precast-rules.json" in r["rules"]["precast"]


def test_undeclared_items_score_zero_and_block_the_verdict(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    _ingest(store, precast_tower(tmp_path / "tower.ifc"))
    _analyze(store)
    r = _building(store)
    assert r["items"]["full_fitout"]["state"] == "unknown"
    assert r["items"]["full_fitout"]["why"] == "not declared"
    assert set(r["missing"]) >= {"full_fitout", "dry_floor", "integrated_kitchen"}
    assert r["groups"]["Q3"] == 0 and r["groups"]["Q4"] == 0
    assert r["prefabricated"] is False and r["grade"] is None
    assert any("full_fitout" in reason for reason in r["verdict_reasons"])


def test_what_if_names_the_member_groups_to_switch(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    _ingest(store, precast_tower(tmp_path / "tower.ifc", "none"))
    _declare(store, tmp_path)
    _analyze(store)
    r = _building(store)
    assert r["items"]["vertical"]["points"] == 0 and r["items"]["horizontal"]["points"] == 0
    assert "no member carries precast information" in r["items"]["vertical"]["why"]
    by_target = {w["target"]: w for w in r["what_if"]}
    # Q2 8.5 (panels are not precast now: concrete, non-masonry still) + Q3 21.5 = 30 of 94;
    # 50 % needs 17 more points: horizontal alone (slabs 36 of 42.6 m2 = 84.5 % -> 20) does
    plan = by_target[50.0]
    assert plan["reached"] and plan["rate_after"] >= 50
    assert [s["group"] for s in plan["switch"]] == ["IfcSlab FLOOR"]
    assert plan["switch"][0]["members"] == 3
    assert plan["switch"][0]["quantity"] == pytest.approx(108.0, rel=1e-4)
    plan60 = by_target[60.0]
    assert plan60["reached"] and plan60["rate_after"] >= 60
    # 60 % needs 21.4 more: the twelve load-bearing walls (43.2 of 48.96 m3 = 88 % -> 30)
    assert [(s["item"], s["group"], s["members"]) for s in plan60["switch"]] == [
        ("vertical", "IfcWall (untyped)", 12)
    ]
    assert plan60["rate_after"] == 69.1


def test_a_second_run_recomputes_nothing_and_a_reingest_only_its_buildings(
    tongliao: Store, tmp_path: Path
) -> None:
    store = tongliao
    a = precast_tower(tmp_path / "a.ifc")
    b = precast_tower(tmp_path / "b.ifc", "chinese")
    _ingest(store, a)
    _ingest(store, b)
    first = _analyze(store)
    assert (first["computed"], first["unchanged"]) == (2, 0)
    again = _analyze(store)
    assert (again["computed"], again["unchanged"]) == (0, 2)
    before = stored(store, "prefab")
    assert stale_counts(store, [ANALYZERS["prefab"]()])["prefab"] == {
        "current": 2,
        "stale": 0,
        "missing": 0,
    }
    # b changes: re-ingested, its rows replaced; a's result stays as it was
    text = b.read_text().replace("'F1'", "'F1 revised'")
    b.write_text(text)
    _ingest(store, b)
    assert stale_counts(store, [ANALYZERS["prefab"]()])["prefab"]["missing"] == 1
    third = _analyze(store)
    assert (third["computed"], third["unchanged"]) == (1, 1)
    after = stored(store, "prefab")
    kept = [
        k
        for k in after
        if k != "city" and after[k]["computed_at"] == before.get(k, {}).get("computed_at")
    ]
    assert len(kept) == 1 and after[kept[0]]["source_id"] == 1
    # a new declaration makes that building stale, only it
    _declare(store, tmp_path, {**TOWER_DECLARATION, "building": "Tower 1"})
    fourth = _analyze(store)
    assert fourth["computed"] == 2  # both towers are named "Tower 1"
    assert _analyze(store, everything=True)["computed"] == 2


def test_a_bad_declaration_is_named_and_changes_nothing(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    _ingest(store, precast_tower(tmp_path / "tower.ifc"))
    before = snapshot(store)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"building": "Tower 1", "items": {"dry_floor": 1.7}}))
    bad_file = r"bad\.json is not a valid prefab declaration"
    with pytest.raises(InputFileError, match=bad_file), store.transaction():
        declare(store, bad)
    nobody = tmp_path / "nobody.json"
    nobody.write_text(json.dumps({"building": "Tower 9", "items": {}}))
    with pytest.raises(NotFound, match="no IFC building 'Tower 9'"), store.transaction():
        declare(store, nobody)
    assert snapshot(store) == before


SAMPLE_CRS = {
    "AC20-FZK-Haus.ifc": "EPSG:25832",
    "IfcOpenHouse.ifc": "EPSG:4550",
    "duplex.ifc": "EPSG:26916",
}


@pytest.mark.parametrize("name", sorted(SAMPLE_CRS))
def test_real_samples_score_their_structure_zero_and_say_why(tmp_path: Path, name: str) -> None:
    with Store.create(tmp_path / "s.duckdb", SAMPLE_CRS[name]) as store:
        _ingest(store, SAMPLES / "ifc" / name)
        _analyze(store)
        (row,) = [r for k, r in stored(store, "prefab").items() if k != "city"]
        r = row["result"]
    assert r["items"]["vertical"]["points"] == 0 and r["items"]["horizontal"]["points"] == 0
    assert r["prefabricated"] is False and r["rate"] is not None and r["rate"] < 50
    for key in ("vertical", "horizontal"):
        it = r["items"][key]
        if name == "duplex.ifc" and key == "horizontal":
            # its steel beams and two wood-joist floors are factory-made members, under 70 %
            # of the horizontal area: still 0 points
            assert it["evidence"]["by_rule"] == {"steel-member": 8, "timber-member": 2}
            assert 0 < it["ratio"] < 0.7
            continue
        assert it["why"], (key, it)
        assert "precast" in it["why"] or "no vertical members" in it["why"]
    assert r["missing"]  # the fit-out items were never declared


def test_cli_json_and_the_building_detail(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    _ingest(store, precast_tower(tmp_path / "tower.ifc"))
    path = store.path
    store.close()
    decl = tmp_path / "d.json"
    decl.write_text(json.dumps(TOWER_DECLARATION, ensure_ascii=False))
    runner = CliRunner()
    out = runner.invoke(
        cli, ["--store", str(path), "analyze", "prefab", "--declaration", str(decl), "--json"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, json.loads((SCHEMAS / "analyze.schema.json").read_text()))
    (result,) = doc["analyses"]["prefab"]["results"]
    assert result["prefab_rate"] == 81.9 and result["prefab_grade"] == "AA"
    one = runner.invoke(
        cli, ["--store", str(path), "analyze", "prefab", "--building", "1", "--json"]
    )
    assert one.exit_code == 0, one.output
    building = json.loads(one.stdout)["analyses"]["prefab"]["building"]
    jsonschema.validate(building, json.loads((SCHEMAS / "prefab.schema.json").read_text()))
    text = runner.invoke(cli, ["--store", str(path), "analyze", "prefab", "--building", "1"])
    assert text.exit_code == 0 and "P = 81.9%" in text.output and "AA" in text.output
    missing = runner.invoke(cli, ["--store", str(path), "analyze", "prefab", "--building", "99"])
    assert missing.exit_code != 0 and "building 99" in missing.output
    assert "Traceback" not in missing.output
    with Store.open(path) as again:
        found = building_analyses(again, [1])
    assert found["prefab"]["summary"]["prefab_grade"] == "AA"


def test_the_rate_reaches_the_tiles_the_detail_and_marks_tiles_stale(
    tongliao: Store, tmp_path: Path
) -> None:
    from cim.model.buildings import building_detail
    from cim.tilefiles import tileset_states
    from tests.test_tiles import glbs, tileset
    from tiles.build import build_tilesets
    from tiles.gltf import property_tables

    store = tongliao
    _ingest(store, precast_tower(tmp_path / "tower.ifc"))
    build_tilesets(store, ["buildings"])
    _declare(store, tmp_path)
    _analyze(store)
    (state,) = tileset_states(store.con, store.path)
    assert state["state"] == "stale"  # the buildings carry the rate: analysing changed it
    build_tilesets(store, ["buildings"])
    folder, doc = tileset(store, "buildings")
    table = property_tables(glbs(folder, doc)[-1][1])["building"]
    assert table["prefab_rate"] == [81.9] and table["prefab_grade"] == ["AA"]
    detail = building_detail(store, 1)
    assert detail is not None
    prefab = detail["analyses"]["prefab"]
    assert prefab["summary"]["prefab_rate"] == 81.9
    assert prefab["result"]["items"]["vertical"]["points"] == 22.0


def test_status_says_when_results_are_stale(tongliao: Store, tmp_path: Path) -> None:
    from cim.cli.status import analyses_state
    from cim.status import status_document

    store = tongliao
    _ingest(store, precast_tower(tmp_path / "tower.ifc"))
    doc = status_document(store, analyses_state)
    assert doc["analyses"]["prefab"] == {"current": 0, "stale": 0, "missing": 1}
    said = [a for a in doc["attention"] if "cim analyze prefab" in a["message"]]
    assert [a["reason"] for a in said] == ["analyses_stale"]
    _analyze(store)
    doc = status_document(store, analyses_state)
    assert doc["analyses"]["prefab"] == {"current": 1, "stale": 0, "missing": 0}
    assert not [a for a in doc["attention"] if "cim analyze prefab" in a["message"]]
    _declare(store, tmp_path)  # a new declaration: the result is stale
    assert status_document(store, analyses_state)["analyses"]["prefab"]["stale"] == 1
    jsonschema.validate(doc, json.loads((SCHEMAS / "status.schema.json").read_text()))


def test_a_local_table_scores_and_is_remembered(tongliao: Store, tmp_path: Path) -> None:
    store = tongliao
    _ingest(store, precast_tower(tmp_path / "tower.ifc"))
    path = store.path
    store.close()
    table = json.loads((SCHEMAS / "standards" / "gbt51129-2017.json").read_text())
    table["id"] = "nmg-2024"
    table["title"] = "A province's variant: vertical members from 40 %"
    table["items"][0]["lower"] = 0.40
    variant = tmp_path / "nmg-2024.json"
    variant.write_text(json.dumps(table, ensure_ascii=False))
    runner = CliRunner()
    args = ["--store", str(path), "analyze", "prefab", "--json"]
    first = runner.invoke(cli, [*args, "--standard", str(variant)])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)["analyses"]["prefab"]
    assert doc["computed"] == 1 and "nmg-2024.json" in doc["rules"]
    # vertical 44.1 % on the variant: 20 + (44.1 - 40) / 40 x 10 = 21.0
    again = json.loads(runner.invoke(cli, args).stdout)["analyses"]["prefab"]
    assert again["computed"] == 0 and "nmg-2024.json" in again["rules"]
    with Store.open(path) as s:
        assert _building(s)["items"]["vertical"]["points"] == 21.0
    back = runner.invoke(cli, [*args, "--standard", "gbt51129-2017"])
    assert json.loads(back.stdout)["analyses"]["prefab"]["computed"] == 1
    bad = runner.invoke(cli, [*args, "--standard", str(tmp_path / "missing.json")])
    assert bad.exit_code != 0 and "missing.json" in bad.output and "Traceback" not in bad.output


def test_a_building_the_analyzer_fails_on_fails_alone(
    tongliao: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cim.analyze.prefab import PrefabAnalyzer

    store = tongliao
    _ingest(store, precast_tower(tmp_path / "a.ifc"))
    _ingest(store, precast_tower(tmp_path / "b.ifc", "chinese"))
    real = PrefabAnalyzer.compute

    def compute(self: PrefabAnalyzer, store: Store, subject: Any) -> Any:
        if subject.building_id == 1:
            raise ValueError("an element the analyzer did not expect")
        return real(self, store, subject)

    monkeypatch.setattr(PrefabAnalyzer, "compute", compute)
    report = _analyze(store)
    assert report["computed"] == 1 and report["unchanged"] == 0
    assert report["failed"] == [
        {
            "subject": "building:1",
            "building_id": 1,
            "error": "ValueError: an element the analyzer did not expect",
        }
    ]
    assert set(stored(store, "prefab")) == {"building:2", "city"}
    monkeypatch.setattr(PrefabAnalyzer, "compute", real)
    again = _analyze(store)  # it stayed stale: the next run computes it
    assert (again["computed"], again["unchanged"], again["failed"]) == (1, 1, [])
