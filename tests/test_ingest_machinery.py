"""The machinery every ingester shares: sha256 de-duplication, replacement, one transaction."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

import ingest.run as ingest_mod
from cim.errors import Conflict, InputFileError, SourceNotFound, UnsupportedFile
from cim.executor import SerialExecutor
from cim.store import Store
from ingest import IngestContext, IngestError, IngestOptions, IngestResult, run_ingest
from tests.conftest import snapshot


class LinesIngester:
    """A tiny ingester of '.lines' files: one building row per line, 'boom' fails midway."""

    kind = "gis"
    description = "a GIS file"
    extensions = (".lines",)
    options = ("layer",)
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    worker_module = None

    def supports(self, path: Path) -> bool:
        return path.suffix == ".lines"

    def ingest(self, path: Path, store: Store, ctx: IngestContext) -> IngestResult:
        n = 0
        for line in path.read_text().splitlines():
            if line == "boom":
                raise ValueError("boom in the middle of the file")
            store.con.execute(
                "INSERT INTO buildings (source_id, name, footprint) "
                "VALUES (?, ?, ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'))",
                [ctx.source_id, line],
            )
            n += 1
        return IngestResult(format="lines", counts={"buildings": n})


@pytest.fixture(autouse=True)
def lines_ingester(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_mod, "registry", lambda: [LinesIngester()])


def _ingest(store: Store, path: Path) -> ingest_mod.IngestReport:
    return run_ingest(store, path, IngestOptions(), SerialExecutor())


def test_same_bytes_twice_is_a_noop(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "a.lines"
    f.write_text("one\ntwo\n")
    first = _ingest(store, f)
    assert first.outcome == "ingested" and store.count("buildings") == 2
    second = _ingest(store, f)
    assert second.outcome == "unchanged" and "nothing to do" in second.message
    assert second.source_id == first.source_id
    # the same bytes under another name are the same data
    copy = tmp_path / "copy.lines"
    copy.write_bytes(f.read_bytes())
    assert _ingest(store, copy).outcome == "unchanged"
    assert store.count("buildings") == 2 and len(store.sources()) == 1


def test_changed_file_replaces_its_rows(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "a.lines"
    f.write_text("one\ntwo\n")
    first = _ingest(store, f)
    f.write_text("three\n")
    second = _ingest(store, f)
    assert second.outcome == "replaced" and second.source_id != first.source_id
    assert [s.id for s in store.sources()] == [second.source_id]
    names = store.con.execute("SELECT name FROM buildings").fetchall()
    assert names == [("three",)]


def test_a_file_elsewhere_replaces_the_source_it_names(store: Store, tmp_path: Path) -> None:
    old = tmp_path / "v1" / "a.lines"
    old.parent.mkdir()
    old.write_text("one\ntwo\n")
    first = _ingest(store, old)
    keep = tmp_path / "b.lines"
    keep.write_text("other\n")
    other = _ingest(store, keep)
    revised = tmp_path / "v2" / "a-revised.lines"
    revised.parent.mkdir()
    revised.write_text("three\n")
    report = run_ingest(store, revised, IngestOptions(), SerialExecutor(), replaces=first.source_id)
    assert report.outcome == "replaced" and report.replaced == [first.source_id]
    assert f"replacing source {first.source_id} (a.lines)" in report.message
    assert report.as_json()["replaced"] == [first.source_id]
    assert {s.id for s in store.sources()} == {other.source_id, report.source_id}
    names = store.con.execute("SELECT name FROM buildings ORDER BY name").fetchall()
    assert names == [("other",), ("three",)]
    # a failing revision keeps the source it names
    before = snapshot(store)
    broken = tmp_path / "v3" / "a.lines"
    broken.parent.mkdir()
    broken.write_text("four\nboom\n")
    with pytest.raises(IngestError):
        run_ingest(store, broken, IngestOptions(), SerialExecutor(), replaces=report.source_id)
    assert snapshot(store) == before
    with pytest.raises(SourceNotFound):
        run_ingest(store, broken, IngestOptions(), SerialExecutor(), replaces=999)


def test_a_file_replaces_only_a_source_of_its_own_kind(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "a.lines"
    f.write_text("one\n")
    first = _ingest(store, f)
    store.con.execute("UPDATE sources SET kind = 'lidar' WHERE id = ?", [first.source_id])
    before = snapshot(store)
    g = tmp_path / "b.lines"
    g.write_text("two\n")
    with pytest.raises(Conflict, match=r"b\.lines.*source \d+ \(a\.lines\) is a lidar source"):
        run_ingest(store, g, IngestOptions(), SerialExecutor(), replaces=first.source_id)
    assert snapshot(store) == before


def test_failure_halfway_leaves_store_exactly_as_before(store: Store, tmp_path: Path) -> None:
    good = tmp_path / "good.lines"
    good.write_text("a\nb\n")
    _ingest(store, good)
    before = snapshot(store)
    bad = tmp_path / "bad.lines"
    bad.write_text("c\nd\nboom\ne\n")
    with pytest.raises(IngestError, match=r"bad\.lines.*store is unchanged"):
        _ingest(store, bad)
    assert snapshot(store) == before
    # a failing replacement of an existing source keeps the old rows too
    good.write_text("x\nboom\n")
    with pytest.raises(IngestError):
        _ingest(store, good)
    assert snapshot(store) == before


def test_missing_empty_and_unknown_files(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        _ingest(store, tmp_path / "nope.lines")
    empty = tmp_path / "empty.lines"
    empty.touch()
    with pytest.raises(InputFileError, match="empty"):
        _ingest(store, empty)
    other = tmp_path / "x.docx"
    other.write_text("hello")
    with pytest.raises(UnsupportedFile, match=r"x\.docx.*\.lines"):
        _ingest(store, other)
    assert store.sources() == []


def test_options_that_do_not_apply_are_refused(store: Store, tmp_path: Path) -> None:
    from cim.errors import UsageError
    from ingest import Anchor

    f = tmp_path / "a.lines"  # a 'gis' file for the LinesIngester
    f.write_text("one\n")
    with pytest.raises(UsageError, match=r"a\.lines: is a GIS file, and --anchor places IFC"):
        run_ingest(store, f, IngestOptions(anchor=Anchor(1.0, 2.0)), SerialExecutor())
    assert store.sources() == []
