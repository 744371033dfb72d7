from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import cim.connection as connection
import cim.store as store_mod
from cim.errors import CrsError, SchemaVersionError, StoreError, StoreLocked, StoreNotFound
from cim.store import Store, latest_schema_version


def test_create_records_crs_and_version(store: Store) -> None:
    assert store.crs_label == "EPSG:4550"
    assert store.schema_version == latest_schema_version() >= 2
    assert store.crs.is_projected
    assert store.sources() == []


def test_spatial_loads_from_the_wheel_file_offline(store: Store) -> None:
    # autoinstall/autoload are off: this only works because LOAD took the wheel's file
    settings = dict(
        store.con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name LIKE 'autoinstall%' "
            "OR name LIKE 'autoload%'"
        ).fetchall()
    )
    assert settings["autoinstall_known_extensions"] == "false"
    assert store.con.execute("SELECT ST_AsText(ST_Point(1, 2))").fetchone() == ("POINT (1 2)",)
    path = store.con.execute(
        "SELECT install_path FROM duckdb_extensions() WHERE extension_name = 'spatial'"
    ).fetchone()
    assert path is not None


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:2249", "EPSG:99999999", "not a crs"])
def test_project_crs_must_be_projected_metres(tmp_path: Path, crs: str) -> None:
    with pytest.raises(CrsError):
        Store.create(tmp_path / "x.duckdb", crs)
    assert not (tmp_path / "x.duckdb").exists()


def test_any_projected_metric_crs(tmp_path: Path) -> None:
    with Store.create(tmp_path / "a.duckdb", "2154") as s:
        assert s.crs_label == "EPSG:2154"


def test_open_missing_and_non_store(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound, match="cim init"):
        Store.open(tmp_path / "none.duckdb")
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (a INT)").close()
    with pytest.raises(StoreError, match="not a CIM store"):
        Store.open(other)
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Store.open(junk)


def test_old_store_is_migrated_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store_mod._schema_files
    monkeypatch.setattr(store_mod, "_schema_files", lambda: (real()[0], []))
    path = tmp_path / "old.duckdb"
    with Store.create(path, "EPSG:4550") as old:
        assert old.schema_version == 1
        tables = {r[0] for r in old.con.execute("SHOW TABLES").fetchall()}
        assert "elements" not in tables
        old.con.execute(
            "INSERT INTO sources (path, name, kind, sha256, size_bytes, status) "
            "VALUES ('/x/a.ifc', 'a.ifc', 'ifc', 'abc', 3, 'ingested')"
        )
    monkeypatch.setattr(store_mod, "_schema_files", real)
    with Store.open(path) as s:
        assert s.schema_version == latest_schema_version()
        assert [x.name for x in s.sources()] == ["a.ifc"]
        assert s.count("elements") == 0  # the table now exists


def test_newer_store_is_refused(store_path: Path) -> None:
    with Store.create(store_path) as s:
        s.set_meta("schema_version", "999")
    with pytest.raises(SchemaVersionError, match="newer than this cim"):
        Store.open(store_path)


def test_second_writer_process_gets_a_clear_lock_error(store_path: Path) -> None:
    import subprocess
    import sys

    Store.create(store_path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from cim.store import Store; s = Store.open(sys.argv[1]); "
            "print('ready', flush=True); time.sleep(30)",
            str(store_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked, match=f"in use by process {holder.pid}"):
            Store.open(store_path)
    finally:
        holder.kill()
        holder.wait()


def test_transaction_rolls_back(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as con:
        con.execute(
            "INSERT INTO sources (path, name, kind, sha256, size_bytes, status) "
            "VALUES ('/a', 'a', 'ifc', 'x', 1, 'ingested')"
        )
        raise RuntimeError("boom")
    assert store.sources() == []


def test_store_features_reaches_the_gis_layers(tmp_path: Path) -> None:
    from cim.executor import SerialExecutor
    from cim.model.features import features
    from ingest import IngestOptions, run_ingest
    from tests.conftest import SAMPLES

    store = Store.create(tmp_path / "prague.duckdb", "EPSG:32633")
    options = IngestOptions(layer="streets")
    run_ingest(store, SAMPLES / "gis" / "bubenec.gpkg", options, SerialExecutor())
    roads = features(store, "roads")
    assert len(roads) == 35
    first = roads[0]
    near = features(store, "roads", first.geometry.bounds)
    assert first.id in {r.id for r in near} and len(near) < len(roads)
    store.close()


def test_data_outside_the_project_crs_area_is_refused(store: Store) -> None:
    from cim.errors import CrsError
    from cim.executor import SerialExecutor
    from ingest import IngestOptions, run_ingest
    from tests.conftest import SAMPLES

    path = SAMPLES / "gis" / "bubenec.gpkg"  # Prague, into a Tongliao store (EPSG:4550)
    with pytest.raises(CrsError, match=r"bubenec\.gpkg.*outside the area of the project CRS"):
        run_ingest(store, path, IngestOptions(), SerialExecutor())
    assert store.sources() == [] and store.count("features") == 0


def test_spatial_works_with_the_network_unplugged(tmp_path: Path) -> None:
    """Run in a new network namespace (no interfaces up): the extension must come from disk."""
    import shutil
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"]).returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root)")
    code = (
        "import socket, sys\n"
        "from cim.store import Store\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 443), timeout=2)\n"
        "    sys.exit('the network is reachable: the test proves nothing')\n"
        "except OSError:\n"
        "    pass\n"
        "s = Store.create(sys.argv[1])\n"
        "print(s.con.execute('SELECT ST_AsText(ST_Point(1, 2))').fetchone()[0])\n"
    )
    r = subprocess.run(
        [unshare, "-n", sys.executable, "-c", code, str(tmp_path / "offline.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "POINT (1 2)"


def test_absent_pandas_is_answered_without_a_path_search(store: Store) -> None:
    # DuckDB tries `import pandas` for every parameter; when pandas is not installed the store
    # answers that from a finder at the head of sys.meta_path, with the same error as before
    import importlib.machinery
    import sys

    import pyarrow as pa

    finders = [f for f in sys.meta_path if isinstance(f, connection._AbsentModule)]
    if importlib.machinery.PathFinder.find_spec("pandas") is not None:
        assert finders == []  # pandas is installed: nothing is hidden
        return
    assert len(finders) == 1
    with pytest.raises(ModuleNotFoundError) as err:
        import pandas  # noqa: F401
    assert err.value.name == "pandas"
    numbers = pa.table({"a": [1, 2, 3]})  # pyarrow's pandas shim still loads
    assert store.con.execute("SELECT sum(a) + ? FROM numbers", [1]).fetchone() == (7,)
    assert numbers.num_rows == 3
