"""The fuzzing harnesses and what they found (#22).

* Every seed of the IFC, LiDAR, GIS and CityJSON harnesses is ingested, not refused: a seed
  the readers refuse would only fuzz the refusal.
* Each input that made a reader raise something other than a ``CimError`` (kept in
  ``tests/fuzz_inputs/<harness>/``) now gets the clear error or the degraded result, and every
  one replays through its harness without an uncaught exception.
* `make fuzz`'s runner reports executions and saves nothing when a harness finds nothing.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import ifcopenshell
import pytest

from cim.errors import CrsError, InputFileError
from cim.executor import SerialExecutor
from cim.store import Store
from fuzz import common
from fuzz.gis import split_parts
from ingest import IngestOptions, run_ingest
from ingest.gis import read_layers
from ingest.ifc.quirks import OddItems, unit_scale

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
INPUTS = Path(__file__).resolve().parent / "fuzz_inputs"

SEEDS = [
    (harness, seed.name)
    for harness in ("cityjson", "gis", "lidar", "ifc")
    for seed in sorted((CORPUS / harness).iterdir())
]
REGRESSIONS = [(d.name, f.name) for d in sorted(INPUTS.iterdir()) for f in sorted(d.iterdir())]


@pytest.mark.parametrize(("harness", "seed"), SEEDS)
def test_seeds_are_ingested(harness: str, seed: str) -> None:
    module = importlib.import_module(f"fuzz.{harness}")
    module.test_one_input((CORPUS / harness / seed).read_bytes())
    written = sorted(common.scratch().glob("fuzz.*"), key=lambda p: p.stat().st_mtime)
    main = [p for p in written if p.suffix not in (".shx", ".dbf", ".prj")][-1]
    assert common.ingested(main), f"seed {harness}/{seed} was refused"


@pytest.mark.parametrize(("harness", "name"), REGRESSIONS)
def test_findings_replay_without_uncaught_exceptions(harness: str, name: str) -> None:
    importlib.import_module(f"fuzz.{harness}").test_one_input(
        (INPUTS / harness / name).read_bytes()
    )


def ingest(store: Store, path: Path) -> object:
    return run_ingest(store, path, IngestOptions(), SerialExecutor())


def test_cityjson_ragged_vertices_are_refused(tmp_path: Path) -> None:
    """A vertex of two coordinates among triples: NumPy's ValueError before."""
    path = tmp_path / "ragged.city.json"
    path.write_bytes((INPUTS / "cityjson" / "ragged-vertices.city.json").read_bytes())
    with pytest.raises(InputFileError, match=r"ragged\.city\.json: the CityJSON vertices"):
        read_layers(path)


def test_cityjson_vertex_index_of_1e308_keeps_the_building_without_footprint(
    tmp_path: Path,
) -> None:
    """A ring's vertex index of 1e308: OverflowError before; the building is kept without a
    footprint (the ingester then skips it and lists its id)."""
    path = tmp_path / "index.city.json"
    path.write_bytes((INPUTS / "cityjson" / "vertex-index-1e308.city.json").read_bytes())
    _, [layer] = read_layers(path)
    assert list(layer.refs) == ["b1"] and list(layer.geoms) == [None]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "says"),
    [
        # an x offset of -3.3e174 with sane bounds: OverflowError converting to millimetres
        ("offset-1e174.las", "x scale 0.01 and offset -3.28335e+174"),
        # 579 million VLRs declared in a 1.7 KB file: laspy read them for minutes, past 3 GB
        ("vlr-count-beyond-file.las", "579,010,560 variable-length records"),
    ],
)
def test_corrupt_las_header_is_refused(make_store, tmp_path: Path, name: str, says: str) -> None:
    path = tmp_path / name
    path.write_bytes((INPUTS / "lidar" / name).read_bytes())
    store = make_store("EPSG:2154")
    with pytest.raises(InputFileError) as err:
        ingest(store, path)
    assert str(err.value).startswith(f"{path}: the LAS header is corrupt ({says}")
    assert store.sources() == []


def test_laz_chunk_table_larger_than_the_file(tmp_path: Path) -> None:
    """A LAZ chunk table declaring 2.2 billion chunks: lazrs asked for 34 GB and aborted the
    process (no exception to catch), so the test runs the ingest in a child process."""
    path = tmp_path / "chunks.laz"
    path.write_bytes((INPUTS / "lidar" / "laz-chunk-count-beyond-file.laz").read_bytes())
    code = (
        "import sys; from pathlib import Path; from cim.store import Store; "
        "from cim.errors import InputFileError; from cim.executor import SerialExecutor; "
        "from ingest import IngestOptions, run_ingest\n"
        f"s = Store.create(Path({str(tmp_path / 's.duckdb')!r}), 'EPSG:2154')\n"
        "try:\n"
        f"    run_ingest(s, Path({str(path)!r}), IngestOptions(), SerialExecutor())\n"
        "except InputFileError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "chunks.laz: the LAS header is corrupt (a LAZ chunk table of 2,164,326,526" in done.stdout
    )


@pytest.mark.parametrize(
    ("name", "says"),
    [
        # a layer of a LAS 1.4 layered chunk declared 3 GB in a 2 KB file (one byte of the
        # seed changed): lazrs took more than 3 GB before failing
        (
            "laz14-layer-sizes-beyond-chunk.laz",
            "the layers of LAZ chunk 0 declare 3,070,230,872 bytes where the chunk table "
            "gives the chunk 424",
        ),
        # a chunk table byte count of 2^64 - 9: lazrs panicked ("capacity overflow"), a
        # PanicException, which is no Exception, escaping the ingest
        (
            "laz-chunk-bytes-beyond-file-panic.laz",
            "a LAZ chunk table giving its 1 chunks 18,446,744,073,709,551,607 bytes where "
            "the file has 437",
        ),
    ],
)
def test_laz_chunks_beyond_their_bytes_are_refused(
    make_store, tmp_path: Path, name: str, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes((INPUTS / "lidar" / name).read_bytes())
    store = make_store("EPSG:2154")
    with pytest.raises(InputFileError) as err:
        ingest(store, path)
    assert str(err.value) == (
        f"{path}: the LAS header is corrupt ({says}); export or download the file again"
    )
    assert store.sources() == []


class PanicException(BaseException):
    """What pyo3 raises for a panic of lazrs's Rust code (pyo3_runtime.PanicException, not
    importable by name): a BaseException, which ``except Exception`` lets through."""


def test_a_lazrs_panic_while_decoding_is_the_clear_error(monkeypatch, tmp_path: Path) -> None:
    """Wherever the points are decoded (the workers' encode_part, or this process): a panic
    becomes the InputFileError naming the file; Ctrl-C stays Ctrl-C."""
    import dataclasses

    import laspy

    from ingest.lidar import ingester
    from ingest.lidar.encode import encode_part
    from ingest.lidar.reader import decoding

    path = tmp_path / "panics.laz"
    path.write_bytes((CORPUS / "lidar" / "pf7_v14.laz").read_bytes())
    with (
        pytest.raises(
            InputFileError,
            match=r"panics\.laz: cannot decode the point data "
            r"\(PanicException: capacity overflow\)",
        ),
        decoding(path),
    ):
        raise PanicException("capacity overflow")
    with pytest.raises(KeyboardInterrupt), decoding(path):
        raise KeyboardInterrupt

    store = Store.create(tmp_path / "s.duckdb", "EPSG:2154")
    try:
        header = ingester._read_header(path)
        whole, _ = ingester._whole_cloud(
            path, header, ingester.resolve_crs(header, path, None), store
        )
    finally:
        store.close()

    def panics(self: Any, n: int) -> Any:
        raise PanicException("capacity overflow")

    monkeypatch.setattr(laspy.LasReader, "read_points", panics)
    spec = dataclasses.replace(whole, out=str(tmp_path / "part.parquet"))
    with pytest.raises(InputFileError, match="PanicException: capacity overflow"):
        encode_part(spec)


def test_las_header_with_min_and_max_swapped_is_ingested(make_store, tmp_path: Path) -> None:
    """Header bounds with xmin > xmax: a DTM grid of negative size (ValueError) before; the
    bounds are sorted, and every point goes in."""
    path = tmp_path / "swapped.las"
    path.write_bytes((INPUTS / "lidar" / "swapped-header-bounds.las").read_bytes())
    report = ingest(make_store("EPSG:2154"), path)
    assert report.counts["points"] == report.counts["header_points"] == 40  # type: ignore[attr-defined]


def test_gis_layer_whose_crs_has_no_transformation(make_store, tmp_path: Path) -> None:
    """A Lambert-93 .prj missing a standard parallel parses, but PROJ has no transformation
    from it: pyproj's ProjError before, a CrsError naming both CRSs now."""
    data = (INPUTS / "gis" / "broken-lambert-wkt.shp.bin").read_bytes()
    for part, ext in zip(split_parts(data[1:], 4), (".shp", ".shx", ".dbf", ".prj"), strict=True):
        (tmp_path / f"broken{ext}").write_bytes(part)
    with pytest.raises(CrsError, match="no transformation from 'RGF93 v1 / Lambert-93'"):
        ingest(make_store("EPSG:2154"), tmp_path / "broken.shp")


def gis_input(tmp_path: Path, name: str, suffix: str) -> Path:
    """A GIS harness input as its file (the harness's first byte, format and CRS, dropped)."""
    path = tmp_path / f"layer{suffix}"
    path.write_bytes((INPUTS / "gis" / name).read_bytes()[1:])
    return path


def test_gis_attribute_value_not_utf8_is_replaced_and_counted(make_store, tmp_path: Path) -> None:
    """A GeoPackage TEXT value of bytes that are not UTF-8: DuckDB refused the whole layer at
    the store write ("Invalid unicode ... in segment statistics update"); now the value is
    kept with U+FFFD for what is not UTF-8, counted and said."""
    store = make_store("EPSG:32633")
    path = gis_input(tmp_path, "gpkg-attribute-value-not-utf8.bin", ".gpkg")
    report: Any = ingest(store, path)
    assert report.counts["attribute_values_not_utf8"] == 1
    assert any("1 attribute values are not UTF-8 text" in w for w in report.warnings)
    names = store.con.execute(
        "SELECT attributes->>'name' FROM features ORDER BY source_ref"
    ).fetchall()
    assert sorted(n for (n,) in names) == ["AB\ufffdC\ufffd", "fine"]


def test_gis_json_field_not_utf8_is_replaced_and_counted(make_store, tmp_path: Path) -> None:
    """A GeoJSON object property holding bytes that are not UTF-8 (found by the 10-minute run):
    GDAL reads it as an arrow.json extension column over a string, which the first fix did
    not look into, and DuckDB's error on it could not even be decoded (UnicodeDecodeError at
    the store write)."""
    path = gis_input(tmp_path, "geojson-json-field-not-utf8.bin", ".geojson")
    report: Any = ingest(make_store("EPSG:32618"), path)
    assert report.counts["attribute_values_not_utf8"] == 1
    assert report.counts["buildings"] >= 1


def test_utf8_attributes_leave_valid_columns_alone() -> None:
    import pyarrow as pa

    from ingest.gis.readers import utf8_attributes

    good = pa.table({"a": ["x", None, "ü"], "n": [1, 2, 3]})
    table, bad = utf8_attributes(good)
    assert bad == 0 and table is good
    raw = pa.array([b"ok", b"\xff", None], pa.binary()).view(pa.string())
    table, bad = utf8_attributes(pa.table({"a": raw}))
    assert bad == 1 and table.column("a").to_pylist() == ["ok", "\ufffd", None]


@pytest.mark.parametrize(
    ("harness", "name", "suffix", "skipped"),
    [
        # a polygon at latitude 1000 in a lon/lat GeoJSON, beside a good one and a bow tie
        ("gis", "geojson-ring-outside-crs-domain.bin", ".geojson", "1 (coordinates not finite"),
        # the same for a CityJSON building in EPSG:4326, beside a good one
        ("cityjson", "building-outside-crs-domain.city.json", ".city.json", "far (coordinates"),
    ],
)
def test_ring_of_points_outside_the_crs_domain_skips_that_feature(
    make_store, tmp_path: Path, harness: str, name: str, suffix: str, skipped: str
) -> None:
    """Reprojected to UTM, every point of the ring is infinite: GEOS's make_valid raised
    "Shell empty after removing invalid points" for the whole layer, failing the file; now
    that feature is skipped and listed, the others written."""
    if harness == "gis":
        path = gis_input(tmp_path, name, suffix)
    else:
        path = tmp_path / f"layer{suffix}"
        path.write_bytes((INPUTS / harness / name).read_bytes())
    report: Any = ingest(make_store("EPSG:32633"), path)
    assert report.counts["buildings"] >= 1 and report.counts["skipped"] == 1
    assert any(f"skipped 1 features: {skipped}" in w for w in report.warnings)


def test_make_valid_that_geos_refuses_skips_only_that_geometry() -> None:
    """If GEOS refuses to repair one geometry of a layer, the others are still repaired."""
    import numpy as np
    import shapely

    from ingest.gis.geometry import _make_valid

    inf = float("inf")
    bad = shapely.polygons(shapely.linearrings([(inf, inf)] * 4))
    bow = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    fixed, why = _make_valid(np.array([bow, bad], dtype=object))
    assert fixed[0].is_valid and not fixed[0].is_empty and why[0] == ""
    assert fixed[1] is None and "GEOS cannot repair it" in why[1]


def test_parquet_footer_declaring_2e40_rows_is_refused_before_reading(tmp_path: Path) -> None:
    """An 841-byte GeoParquet whose footer declares 2^40 rows: pq.read_table took 23 GB
    before the system killed it. Refused from the footer now. In a child process with its
    address space limited, so that without the check it fails here rather than the machine."""
    path = gis_input(tmp_path, "parquet-footer-declares-2e40-rows.bin", ".parquet")
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        "from pathlib import Path; from cim.errors import InputFileError\n"
        "from ingest.gis import read_layers\n"
        "try:\n"
        f"    read_layers(Path({str(path)!r}))\n"
        "except InputFileError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(
        f"{path}: the Parquet footer declares 1,099,511,627,776 rows, which would take about"
    )


def test_geoparquet_geometry_column_not_binary_is_refused(tmp_path: Path) -> None:
    """The 'geo' metadata naming an int64 column as the geometry: shapely's TypeError before."""
    path = gis_input(tmp_path, "geoparquet-geometry-column-int64.bin", ".parquet")
    with pytest.raises(InputFileError, match="geometry column 'id' holds int64, not WKB bytes"):
        read_layers(path)


def test_arrow_wrapping_error_on_a_corrupt_layer_is_the_clear_error(
    monkeypatch, tmp_path: Path
) -> None:
    """pyarrow raises NotImplementedError ("Wrapping scalar of type ...") for a type it has no
    Python scalar for, which is no ArrowException: a layer GDAL reads into such a column is
    refused naming the file and the layer, as other unreadable layers are."""
    import pyogrio

    path = gis_input(tmp_path, "geojson-ring-outside-crs-domain.bin", ".geojson")

    def wrapping(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Wrapping scalar of type month_interval")

    monkeypatch.setattr(pyogrio, "read_arrow", wrapping)
    with pytest.raises(
        InputFileError, match=r"layer\.geojson: layer 'layer' cannot be read \(Wrapping scalar"
    ):
        read_layers(path)


def ingest_ifc(make_store, tmp_path: Path, name: str) -> Any:
    path = tmp_path / name
    path.write_bytes((INPUTS / "ifc" / name).read_bytes())
    return ingest(make_store("EPSG:4550"), path)


@pytest.mark.parametrize(
    ("name", "what"),
    [
        # ContainedInStructure holding an IfcPropertySingleValue: get_container's AttributeError
        ("containment-pointing-to-a-property.ifc", "ContainedInStructure of"),
        # Decomposes holding an IfcOwnerHistory: get_aggregate's AttributeError
        ("decomposes-pointing-to-owner-history.ifc", "Decomposes of"),
    ],
)
def test_ifc_relation_to_another_class_is_ignored(
    make_store, tmp_path: Path, name: str, what: str
) -> None:
    """The relation is ignored (the element outside that container), recorded once."""
    report: Any = ingest_ifc(make_store, tmp_path, name)
    assert report.counts["products"] == 1
    assert report.counts["odd_items_by_kind"]["ignored_relation"] == 1
    assert any("ignored_relation" not in w and what in w for w in report.warnings)


def test_ifc_model_the_geometry_iterator_refuses_is_meshed_one_by_one(
    make_store, tmp_path: Path
) -> None:
    """A representation context with a required attribute null: the iterator's constructor
    raised RuntimeError; each product is now meshed alone (here it cannot be: kept without
    geometry) and the report says why."""
    report: Any = ingest_ifc(make_store, tmp_path, "context-with-null-required-attribute.ifc")
    assert report.counts["products"] == 1 and report.counts["failed"] == 1
    assert any("the geometry iterator refuses the model" in w for w in report.warnings)
    assert report.counts["odd_items_by_kind"] == {"not_meshed": 1}


def test_ifc_shape_without_vertices_is_kept_without_geometry(make_store, tmp_path: Path) -> None:
    """A shape of no vertex: min of an empty array (ValueError) in the placement before."""
    report: Any = ingest_ifc(make_store, tmp_path, "shape-without-vertices.ifc")
    assert report.counts["meshed"] == 0 and report.counts["failed"] == 1
    assert any("no surfaces" in w for w in report.warnings)


def test_ifc_map_conversion_without_target_crs_is_no_georeference(
    make_store, tmp_path: Path
) -> None:
    """TargetCRS null: ifcopenshell's get_crs raised AttributeError; now ignored, saying so."""
    report: Any = ingest_ifc(make_store, tmp_path, "map-conversion-without-target-crs.ifc")
    assert report.status == "needs_placement"
    assert any("has no target CRS" in w for w in report.warnings)


def test_ifc_site_reflatitude_a_number_is_no_georeference(make_store, tmp_path: Path) -> None:
    """Found by the 10-minute IFC run: a site whose RefLatitude is an integer and whose
    RefLongitude and RefElevation are entities; dms2dd(*int) raised TypeError and failed the
    file. The site's reference is ignored, saying why; the model waits for placement."""
    report: Any = ingest_ifc(make_store, tmp_path, "site-reflatitude-a-number.ifc")
    assert report.status == "needs_placement"
    assert any(
        "RefLatitude is the int 1796411091; RefLongitude is an IfcPersonAndOrganization" in w
        for w in report.warnings
    )


def test_ifc_site_elevation_and_placement_not_readable_are_read_as_0(
    make_store, tmp_path: Path
) -> None:
    """A site at a real latitude and longitude whose RefElevation is an entity and whose
    ObjectPlacement is a number: the model is placed by the site, the elevation read as 0 and
    the origin as the model's, each said."""
    seed = (CORPUS / "ifc" / "wall_ifc4.ifc").read_bytes()
    site = b"#12=IFCSITE('1PrY9yTQrEGud_QgAKsDQH',$,'Site',$,$,#22,$,$,$,$,$,$,$,$);"
    odd = (
        b"#12=IFCSITE('1PrY9yTQrEGud_QgAKsDQH',$,'Site',$,$,3,$,$,$,(31,14,0),(122,58,0),#22,$,$);"
    )
    assert site in seed
    path = tmp_path / "site.ifc"
    path.write_bytes(seed.replace(site, odd))
    store = make_store("EPSG:4550")
    report: Any = ingest(store, path)
    assert report.status == "ingested"
    assert any("the site's RefElevation is an IfcLocalPlacement" in w for w in report.warnings)
    assert any("the site's placement cannot be read" in w for w in report.warnings)
    [(method,)] = store.con.execute("SELECT method FROM placements").fetchall()
    assert method == "site_reflatlon"


@pytest.mark.parametrize(
    ("value", "degrees"),
    [
        ((48, 51, 24), 48 + 51 / 60 + 24 / 3600),
        ((-2, -30, 0, -500000), -(2 + 30 / 60 + 0.5 / 3600)),
        ((0, 0, 0), 0.0),
        (1796411091, None),  # a number
        ((48, -51, 24), None),  # mixed signs: dms2dd asserts
        ((48, 51), None),  # too short
        ((48, 51, 24, 0, 0), None),  # too long
        ((48.5, 0, 0), None),  # not integers
        (("48", 0, 0), None),
        ((True, 0, 0), None),
        ((91, 0, 0), None),  # beyond the limit
        ((10**400, 0, 0), None),  # beyond a float
        ("48;51;24", None),
        (None, None),
    ],
)
def test_compound_angle(value: Any, degrees: float | None) -> None:
    from ingest.ifc.placement import compound_angle

    got = compound_angle(value, 90.0)
    assert got == pytest.approx(degrees) if degrees is not None else got is None


def test_ifc_aggregation_relating_a_list_is_ignored(make_store, tmp_path: Path) -> None:
    """Found by the second 10-minute IFC run: an IfcRelAggregates whose RelatingObject parses
    as a list (a '=' where a ',' was): AttributeError on tuple.is_a failed the file. The
    relation's end is ignored, recorded; the wall is kept."""
    report: Any = ingest_ifc(make_store, tmp_path, "aggregation-relating-a-list.ifc")
    assert report.counts["products"] == 1
    assert report.counts["odd_items_by_kind"]["odd_relation"] == 1
    assert any("IfcRelAggregates.RelatingObject: tuple" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("relation", "relations"),
    [
        ("IFCRELAGGREGATES('{g}',$,$,$,(#14),$)", 0),
        # ifcopenshell keeps a list's members of its first member's kind: (3,#14) reads (3,)
        ("IFCRELAGGREGATES('{g}',$,$,$,#37,(3,#14))", 0),
        ("IFCRELAGGREGATES('{g}',$,$,$,#37,#14)", 1),  # one entity for a set: a set of one
        ("IFCRELDEFINESBYPROPERTIES('{g}',$,$,$,(#37),'x')", 0),
        ("IFCRELDEFINESBYPROPERTIES('{g}',$,$,$,(3),#39)", 0),
        ("IFCRELVOIDSELEMENT('{g}',$,$,$,#37,3)", 0),
        ("IFCRELFILLSELEMENT('{g}',$,$,$,3,#37)", 0),
        ("IFCRELASSOCIATESMATERIAL('{g}',$,$,$,(#37),3)", 0),
        ("IFCRELASSOCIATESMATERIAL('{g}',$,$,$,(#33),'x')", 0),  # the type's
    ],
)
def test_ifc_relation_ends_that_are_not_entities_are_ignored(
    make_store, tmp_path: Path, relation: str, relations: int
) -> None:
    """Relations holding a number, text or a list where the schema has an entity (as the
    finding above): each made the ingest fail with an AttributeError (tuple.is_a, int.id,
    label() of a number, ifcopenshell's get_material); now the end is ignored, the relation
    recorded as an odd item, and the wall is still ingested with its properties."""
    seed = (CORPUS / "ifc" / "wall_ifc4.ifc").read_text()
    line = "#900=" + relation.format(g="0Oddrelationend0000000") + ";\n"
    path = tmp_path / "relation.ifc"
    path.write_text(seed.replace("ENDSEC;\nEND-ISO", line + "ENDSEC;\nEND-ISO"))
    store = make_store("EPSG:4550")
    report: Any = ingest(store, path)
    assert report.counts["products"] == 1 and report.counts["relations"] == relations
    assert report.counts["odd_items_by_kind"]["odd_relation"] == 1
    [(psets,)] = store.con.execute("SELECT psets FROM elements").fetchall()
    assert "Pset_WallCommon" in json.loads(psets)


def test_ifc_property_set_holding_a_string_leaves_it_out(make_store, tmp_path: Path) -> None:
    """HasProperties written as a string: AttributeError on str.is_a before."""
    report: Any = ingest_ifc(make_store, tmp_path, "property-set-holding-a-string.ifc")
    assert report.counts["meshed"] == 1
    assert report.counts["odd_items_by_kind"] == {"odd_set_member": 1}


def test_ifc_property_value_a_list_is_kept_as_a_list(make_store, tmp_path: Path) -> None:
    """A NominalValue written as a list: 'tuple' has no wrappedValue before; the values now."""
    store = make_store("EPSG:4550")
    path = tmp_path / "list.ifc"
    path.write_bytes((INPUTS / "ifc" / "property-value-a-list.ifc").read_bytes())
    report: Any = ingest(store, path)
    assert report.counts["odd_items_by_kind"] == {"list_value": 1}
    [(psets,)] = store.con.execute("SELECT psets FROM elements").fetchall()
    values = [
        v
        for props in json.loads(psets).values()
        for k, v in props.items()
        if k == "ThermalTransmittance"
    ]
    assert values and isinstance(values[0], list)


def test_ifc_storey_elevation_a_list_and_name_an_entity(make_store, tmp_path: Path) -> None:
    """Found by the 10-minute IFC run: a storey whose Elevation parses as a list
    (float(tuple): TypeError) and whose Name is an entity (Arrow could not write it). The
    elevation comes from the placement, recorded; the name is left out."""
    store = make_store("EPSG:4550")
    path = tmp_path / "storey.ifc"
    path.write_bytes((INPUTS / "ifc" / "storey-elevation-a-list-name-an-entity.ifc").read_bytes())
    report: Any = ingest(store, path)
    assert report.counts["storeys"] == 1
    assert report.counts["odd_items_by_kind"]["odd_elevation"] == 1
    assert store.con.execute("SELECT name FROM storeys").fetchall() == [(None,)]


def test_ifc_type_relation_holding_an_aggregation_is_ignored(make_store, tmp_path: Path) -> None:
    """Found by the second 10-minute IFC run: IsTypedBy holding an IfcRelAggregates, whose
    missing RelatingType made ifcopenshell's get_type raise AttributeError (in the properties
    and the materials); the element is meshed without a type, the relation listed."""
    report: Any = ingest_ifc(make_store, tmp_path, "type-relation-an-aggregation.ifc")
    assert report.counts["meshed"] == 1
    assert report.counts["odd_items_by_kind"] == {"ignored_relation": 1}


def test_ifc_units_that_are_not_a_unit_assignment_are_si() -> None:
    """UnitsInContext pointing to an IfcCartesianPoint: get_project_unit's AttributeError
    (found by the 60 s run after the fixes above); read as SI units, recorded (the file is
    then refused for want of geometry: a clear InputFileError)."""
    model = ifcopenshell.open(str(INPUTS / "ifc" / "unit-assignment-pointing-to-a-point.ifc"))
    odd = OddItems()
    assert unit_scale(model, "LENGTHUNIT", odd) == 1.0
    assert odd.counts() == {"unknown_unit": 1}


def test_ifc_kernel_crash_in_one_process_degrades_the_element(make_store, tmp_path: Path) -> None:
    """An IfcPolyline without points as a wall's profile: the kernel divided by zero (SIGFPE)
    and killed the ingesting process (--workers 1, as the harness runs); now it meshes in a
    forked child, and the wall is kept, failed, saying the kernel crashed on it."""
    store = make_store("EPSG:4550")
    path = tmp_path / "sigfpe.ifc"
    path.write_bytes((INPUTS / "ifc" / "profile-polyline-without-points-sigfpe.ifc").read_bytes())
    report: Any = ingest(store, path)
    assert report.counts["products"] == 1 and report.counts["failed"] == 1
    assert report.counts["odd_items_by_kind"]["kernel_crash"] == 1
    assert any("the geometry kernel crashed (SIGFPE)" in w for w in report.warnings)
    rows = store.con.execute("SELECT geometry_status, geometry_error FROM elements").fetchall()
    assert rows == [
        ("failed", "the geometry kernel crashed meshing it (SIGFPE); kept without geometry")
    ]


def test_ifc_kernel_crash_on_one_element_keeps_the_others(make_store, tmp_path: Path) -> None:
    """Four walls and one whose profile is an empty polyline (written as STEP text): the
    iterator's child dies of SIGFPE, the walls it had not given yet are meshed one by one in
    children, and only the culprit is failed."""
    import re

    from tests.ifc_models import storeyed

    builder, storey = storeyed()
    bad = builder.box("IfcWall", "Crash", (1.0, 1.0, 0.0), (1.0, 0.2, 3.0), storey)
    [curve] = [
        e for e in builder.file.traverse(bad.Representation) if e.is_a("IfcIndexedPolyCurve")
    ]
    path = builder.write(tmp_path / "five.ifc")
    text = re.sub(
        rf"#{curve.id()}=IFCINDEXEDPOLYCURVE\([^;]*\);",
        f"#{curve.id()}=IFCPOLYLINE(());",
        path.read_text(),
    )
    path.write_text(text)
    store = make_store("EPSG:4550")
    report: Any = ingest(store, path)
    assert report.counts["meshed"] == 4 and report.counts["failed"] == 1
    assert report.counts["odd_items_by_kind"]["kernel_crash"] == 1
    rows = store.con.execute(
        "SELECT name, geometry_status FROM elements WHERE ifc_class = 'IfcWall' ORDER BY name"
    ).fetchall()
    assert ("Crash", "failed") in rows and sum(s == "ok" for _, s in rows) == 4


def test_guarded_child_reports_its_death_and_its_exceptions() -> None:
    import os
    import signal

    from ingest.ifc.guard import KernelCrashed, guarded

    def dies(send: Any) -> None:
        send(1)
        os.kill(os.getpid(), signal.SIGSEGV)

    got = []
    with pytest.raises(KernelCrashed, match="SIGSEGV"):
        for item in guarded(dies):
            got.append(item)
    assert got == [1]

    def raises(send: Any) -> None:
        send("a")
        raise ValueError("from the child")

    with pytest.raises(ValueError, match="from the child"):
        list(guarded(raises))
    assert list(guarded(lambda send: [send(i) for i in range(3)])) == [0, 1, 2]


@pytest.mark.parametrize(
    "schema",
    [b"($)", b"('IFC4')", b"((3))", b"((#1))", b"(*)", b"((.T.))", b"((IFCLABEL('IFC4')))"],
)
def test_ifc_malformed_file_schema_is_refused_before_parsing(tmp_path: Path, schema: bytes) -> None:
    """FILE_SCHEMA's argument not a list of strings: ifcopenshell's parser crashed the process
    (SIGSEGV); now a clear InputFileError naming the file. In a child process, so that the
    crash fails this test rather than ending pytest."""
    seed = (CORPUS / "ifc" / "wall_ifc4.ifc").read_bytes()
    path = tmp_path / "header.ifc"
    path.write_bytes(seed.replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA" + schema, 1))
    code = (
        "from pathlib import Path; from cim.errors import InputFileError\n"
        "from ingest.ifc.ingester import open_model\n"
        "try:\n"
        f"    open_model(Path({str(path)!r}))\n"
        "except InputFileError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith(f"{path}: the STEP header is malformed (FILE_SCHEMA must list")


def test_comparison_hook_keeps_no_result_that_is_not_a_bool() -> None:
    """atheris's native comparison hook keeps a reference to every result that is not a bool
    (a NumPy comparison's array): the gcj02 harness grew by 10 KB an execution. The wrapped
    hook gives plain values to it and compares anything else itself."""
    import atheris
    import numpy as np
    from atheris.version_dependent import CMP_OP_SHIFT_AMOUNT

    from fuzz.harness import plain_comparisons_only

    result = [True]

    class Odd:
        def __eq__(self, other: object) -> Any:
            return result

    hook = plain_comparisons_only(atheris._trace_cmp, CMP_OP_SHIFT_AMOUNT)
    before = sys.getrefcount(result)
    for _ in range(100):
        assert hook(Odd(), 3, 2, 0, False) is result  # 2: ==
    assert sys.getrefcount(result) == before
    assert hook(1, 2, 0, 0, False) is True  # 0: <, through the native hook
    assert hook(np.arange(3), 1, 5, 0, False).tolist() == [False, True, True]  # 5: >=


@pytest.mark.slow
def test_make_fuzz_runner_reports_executions() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "options", "--seconds", "3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "executions in" in done.stdout and "1/1 harnesses without findings" in done.stdout


@pytest.mark.slow
def test_kill_9_during_a_laz_ingest_leaves_a_consistent_store() -> None:
    """benchmarks/crash.py, small: two LAZ ingests killed with SIGKILL at random moments; each
    store opens, its job failed (or done), its tables as before (or complete), no orphan point
    file, no worker left."""
    done = subprocess.run(
        [sys.executable, "benchmarks/crash.py", "--runs", "2", "--kinds", "lidar", "--seed", "7"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2/2 stores consistent" in done.stdout
