"""Every registered ingester keeps the shared protocol, and each sample finds its ingester."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest

from cim.errors import UnsupportedFile
from cim.executor import SerialExecutor
from ingest import IngestOptions, choose_ingester, registry, run_ingest
from tests.conftest import SAMPLES, MakeStore

EXPECTED_KIND = {".ifc": "ifc", ".las": "lidar", ".laz": "lidar"}
GIS_SUFFIXES = {".gpkg", ".geojson", ".shp"}


def test_registry_has_every_kind() -> None:
    kinds = [i.kind for i in registry()]
    assert len(kinds) == len(set(kinds))
    assert "ifc" in kinds


@pytest.mark.parametrize("ingester", registry(), ids=lambda i: i.kind)
def test_ingester_keeps_the_protocol(ingester: object) -> None:
    assert isinstance(ingester.kind, str)  # type: ignore[attr-defined]
    exts = ingester.extensions  # type: ignore[attr-defined]
    assert exts and all(e.startswith(".") and e == e.lower() for e in exts)
    params = list(inspect.signature(ingester.ingest).parameters)  # type: ignore[attr-defined]
    assert params == ["path", "store", "ctx"]
    assert list(inspect.signature(ingester.supports).parameters) == ["path"]  # type: ignore[attr-defined]


def _samples() -> list[Path]:
    files = [
        p
        for p in SAMPLES.rglob("*")
        if p.is_file() and p.suffix.lower() in {*EXPECTED_KIND, *GIS_SUFFIXES}
    ]
    assert len(files) >= 15
    return sorted(files)


@pytest.mark.parametrize("path", _samples(), ids=lambda p: p.name)
def test_each_sample_is_claimed_by_its_kind(path: Path) -> None:
    kinds = {i.kind for i in registry()}
    expected = EXPECTED_KIND.get(path.suffix.lower(), "gis")
    if expected not in kinds:
        pytest.skip(f"no {expected} ingester registered")
    claimed = [i.kind for i in registry() if i.supports(path)]
    assert claimed == [expected]
    assert choose_ingester(path).kind == expected


def test_other_files_are_refused_with_the_known_kinds(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UnsupportedFile, match=r"\.ifc"):
        choose_ingester(other)


# ---- kinds by their headers, whatever the name --------------------------------------------
LAZ = SAMPLES / "lidar" / "autzen_trim.laz"
IFC = SAMPLES / "ifc" / "IfcOpenHouse.ifc"


@pytest.mark.parametrize(
    ("sample", "name", "kind"),
    [
        (LAZ, "cloud.bin", "lidar"),
        (LAZ, "cloud", "lidar"),
        (IFC, "model.step", "ifc"),
        (IFC, "model.txt", "ifc"),
        (IFC, "model.stp", "ifc"),
    ],
)
def test_kinds_are_recognised_by_their_headers(
    tmp_path: Path, sample: Path, name: str, kind: str
) -> None:
    copy = tmp_path / name
    shutil.copy(sample, copy)
    assert [i.kind for i in registry() if i.supports(copy)] == [kind]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(("sample", "name"), [(LAZ, "cloud.bin"), (IFC, "model.step")])
def test_a_renamed_file_ingests_like_the_original(
    make_store: MakeStore, tmp_path: Path, sample: Path, name: str
) -> None:
    crs = "EPSG:32610" if sample == LAZ else "EPSG:4550"
    original = run_ingest(make_store(crs), sample, IngestOptions(), SerialExecutor())
    copy = tmp_path / name
    shutil.copy(sample, copy)
    renamed = run_ingest(make_store(crs), copy, IngestOptions(), SerialExecutor())
    assert renamed.kind == original.kind and renamed.format == original.format
    assert renamed.counts == original.counts


@pytest.mark.parametrize("ingester", registry(), ids=lambda i: i.kind)
def test_supports_answers_for_folders_and_empty_files(tmp_path: Path, ingester: object) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    empty = tmp_path / "empty.bin"
    empty.touch()
    for path in (folder, empty):
        assert ingester.supports(path) is False  # type: ignore[attr-defined]
