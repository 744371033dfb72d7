"""The command line: JSON contract, one-line errors with exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cim.cli import cli

CIM = [sys.executable, "-m", "cim.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CIM, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_init_then_status_json(tmp_path: Path) -> None:
    store = tmp_path / "c.duckdb"
    r = run("--store", str(store), "init", "--crs", "EPSG:4550")
    assert r.returncode == 0, r.stderr
    r = run("--store", str(store), "status", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["crs"] == "EPSG:4550"
    assert doc["schema_version"] >= 2
    assert doc["counts"]["sources"] == 0 and doc["sources"] == []
    _validate(doc, "status.schema.json")


def test_store_from_environment(tmp_path: Path) -> None:
    store = tmp_path / "env.duckdb"
    assert run("init", env={"CIM_STORE": str(store)}).returncode == 0
    assert store.exists()
    r = run("jobs", "--json", env={"CIM_STORE": str(store)})
    assert r.returncode == 0 and json.loads(r.stdout) == {"jobs": []}


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    store = tmp_path / "c.duckdb"
    cases = [
        (["--store", str(store), "status"], 3, "no store at"),
        (["--store", str(store), "init", "--crs", "EPSG:4326"], 1, "not projected"),
        (["--store", str(store), "init", "--crs", "bogus"], 1, "unknown project CRS"),
    ]
    for args, code, text in cases:
        r = run(*args)
        assert r.returncode == code, (args, r.stderr)
        assert r.stderr.startswith("error: ") and text in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert "Traceback" not in r.stderr
    assert not store.exists()
    run("--store", str(store), "init")
    r = run("--store", str(store), "init")
    assert r.returncode == 3 and "already exists" in r.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run("--store", str(tmp_path / "none.duckdb"), "--debug", "status")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name, command in cli.commands.items():
        assert f"cim {name}" in readme, f"`cim {name}` missing from README"
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert opt in readme, f"`cim {name} {opt}` missing from README"


def test_help_runs() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "init" in r.output


def _validate(doc: object, schema_name: str) -> None:
    validate_against(doc, schema_name)


def validate_against(doc: object, schema_name: str) -> None:
    """Validate with every schema in schemas/ registered, so cross-file $refs resolve."""
    import jsonschema
    from referencing import Registry, Resource

    folder = Path(__file__).resolve().parent.parent / "schemas"
    registry: Registry = Registry()
    for f in folder.glob("*.schema.json"):
        resource = Resource.from_contents(json.loads(f.read_text()))
        registry = registry.with_resource(f.name, resource)
        registry = registry.with_resource(resource.id() or f.name, resource)
    schema = json.loads((folder / schema_name).read_text())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(doc)


def test_ingest_json_reports_every_file_and_fails_only_the_bad_one(tmp_path: Path) -> None:
    from tests.conftest import SAMPLES

    store = tmp_path / "c.duckdb"
    assert run("--store", str(store), "init", "--crs", "EPSG:26919").returncode == 0
    bad = tmp_path / "bad.ifc"
    bad.write_text("ISO-10303-21;\nHEADER;\n")
    good = SAMPLES / "ifc" / "TallBuilding.ifc"
    r = run("--store", str(store), "ingest", str(bad), str(good), str(good), "--json")
    assert r.returncode == 2, r.stderr  # the bad file's exit code, after the others went in
    doc = json.loads(r.stdout)
    validate_against(doc, "ingest.schema.json")
    outcomes = [x["outcome"] for x in doc["reports"]]
    assert outcomes == ["failed", "ingested", "unchanged"]
    assert "bad.ifc" in doc["reports"][0]["error"]
    status = json.loads(run("--store", str(store), "status", "--json").stdout)
    assert [s["name"] for s in status["sources"]] == ["TallBuilding.ifc"]
    assert status["sources"][0]["counts"]["products"] == 84


def test_status_lists_what_needs_attention(tmp_path: Path) -> None:
    from tests.conftest import SAMPLES

    store = tmp_path / "c.duckdb"
    assert run("--store", str(store), "init", "--crs", "EPSG:32610").returncode == 0
    r = run("--store", str(store), "ingest", str(SAMPLES / "lidar" / "autzen_trim.laz"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(run("--store", str(store), "status", "--json").stdout)
    validate_against(doc, "status.schema.json")
    assert [a["reason"] for a in doc["attention"]] == ["heights_unavailable"]
    assert doc["counts"]["points"] == 110000
    prague = tmp_path / "prague.duckdb"
    assert run("--store", str(prague), "init", "--crs", "EPSG:32633").returncode == 0
    bubenec = SAMPLES / "gis" / "bubenec.gpkg"
    r = run("--store", str(prague), "ingest", str(bubenec), "--layer", "buildings")
    assert r.returncode == 0, r.stderr
    doc = json.loads(run("--store", str(prague), "status", "--json").stdout)
    item, energy, health = doc["attention"]
    assert item["reason"] == "heights_unknown" and item["message"].startswith("144 building")
    # the energy code's screening covers footprints too: not run yet; nor the health check of
    # the built-up area (the buildings' convex hull)
    assert energy["reason"] == "analyses_stale" and "cim analyze energy" in energy["message"]
    assert health["reason"] == "analyses_stale" and "cim analyze indicators" in health["message"]


def _cli_slowed_at(
    tmp_path: Path, crs: str, module: str, target: str, seconds: float, path: Path
) -> tuple[subprocess.Popen[str], Path]:
    """The real CLI ingesting ``path`` into a new store, in its own process group, with
    ``module.target`` slowed down: it prints STEP, then sleeps ``seconds``; returned once STEP
    is printed, so that a signal lands in the middle of the ingest."""
    import signal

    store = tmp_path / "c.duckdb"
    assert run("--store", str(store), "init", "--crs", crs).returncode == 0
    code = (
        "import sys, time\n"
        f"import {module} as M\n"
        f"real = M.{target}\n"
        "def slow(*args):\n"
        "    print('STEP', flush=True)\n"
        f"    time.sleep({seconds})\n"
        "    return real(*args)\n"
        f"M.{target} = slow\n"
        "from cim.cli import cli\n"
        "cli(sys.argv[1:])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--store", str(store), "ingest", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # and Ctrl-C's default action: a non-interactive shell (CI) starts background jobs
        # with SIGINT ignored, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "STEP"
    return proc, store


def test_ctrl_c_during_an_ingest_keeps_nothing_and_says_so(tmp_path: Path) -> None:
    import signal

    from tests.conftest import SAMPLES

    # the first run's Parquet row groups slowed down, so that Ctrl-C lands in the middle,
    # while the point file is half written
    cloud = SAMPLES / "lidar" / "lidarprod" / "870000_6618000.subset.postValidation.laz"
    proc, store = _cli_slowed_at(
        tmp_path, "EPSG:2154", "ingest.lidar.encode", "_arrow_run", 2, cloud
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: nothing of the unfinished step was kept" in err
    assert "Traceback" not in err
    doc = json.loads(run("--store", str(store), "status", "--json").stdout)
    assert doc["sources"] == [] and doc["counts"]["points"] == 0
    assert list(store.with_name(store.name + ".points").rglob("*.parquet")) == []
    jobs = json.loads(run("--store", str(store), "jobs", "--json").stdout)
    assert [(j["status"], j["error"]) for j in jobs["jobs"]] == [
        ("failed", "interrupted (Ctrl-C): nothing of it was kept")
    ]


def _ingest_while_workers_mesh(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """An IFC model's ingest stopped (for 30 s) while the pool's workers mesh: the
    properties, read meanwhile, are slowed down."""
    from tests.conftest import SAMPLES

    model = SAMPLES / "ifc" / "AC20-FZK-Haus.ifc"
    return _cli_slowed_at(
        tmp_path, "EPSG:25832", "ingest.ifc.properties", "PropertyReader.definitions", 30, model
    )


def test_ctrl_c_while_workers_mesh_an_ifc_model_stops_them_at_once(tmp_path: Path) -> None:
    """Ctrl-C (sent to the whole process group, as a terminal does) while the workers mesh
    ends the command at once with nothing kept, and no worker is left."""
    import signal
    import time

    import psutil

    proc, store = _ingest_while_workers_mesh(tmp_path)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers  # the forkserver and its workers
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 10  # not the 30 s of the slowed step
    assert proc.returncode == 130
    assert "interrupted: nothing of the unfinished step was kept" in err
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    doc = json.loads(run("--store", str(store), "status", "--json").stdout)
    assert doc["sources"] == [] and doc["counts"]["elements"] == 0


def test_a_killed_ingest_leaves_no_worker_behind(tmp_path: Path) -> None:
    """Killed outright (SIGKILL: no clean-up runs), the command's workers and forkserver go
    too, and the store is as it was."""
    import psutil

    proc, store = _ingest_while_workers_mesh(tmp_path)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers
    proc.kill()
    proc.communicate(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [p.cmdline()[:3] for p in alive]
    doc = json.loads(run("--store", str(store), "status", "--json").stdout)
    assert doc["sources"] == [] and doc["counts"]["elements"] == 0


def test_the_command_line_adds_the_command_that_helps(tmp_path: Path) -> None:
    """Library messages say what is wrong; the CLI adds its own command that fixes it."""
    from tests.conftest import SAMPLES

    store = tmp_path / "c.duckdb"
    assert run("--store", str(store), "init", "--crs", "EPSG:4550").returncode == 0
    r = run("--store", str(store), "place", "nosuch.ifc", "--anchor", "122.26,43.62")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"error: no source 'nosuch.ifc' in {store}; `cim status` lists the sources"
    ]
    # a model without georeference goes in unplaced: the command that places it follows
    r = run("--store", str(store), "ingest", str(SAMPLES / "ifc" / "IfcOpenHouse.ifc"))
    assert r.returncode == 0, r.stderr
    source_id = json.loads(run("--store", str(store), "status", "--json").stdout)["sources"][0][
        "id"
    ]
    assert f"run `cim place {source_id} --anchor LON,LAT" in r.stderr
    assert "cim place" not in r.stdout  # the report line itself says what happened, not how
    r = run("--store", str(store), "ingest", "--json", str(SAMPLES / "ifc" / "IfcOpenHouse.ifc"))
    assert "cim place" not in r.stdout + r.stderr  # --json: the document only
    from cim.cli.base import cli_hint
    from cim.errors import StoreLocked

    assert cli_hint(StoreLocked("store x is in use")) == "; `cim jobs` shows its progress"


def test_the_workers_preload_what_each_file_is(tmp_path: Path) -> None:
    """The modules the workers run come from each file's kind, read from its first bytes."""
    import shutil

    from cim.cli.ingest import worker_modules
    from tests.conftest import SAMPLES

    laz = tmp_path / "cloud.bin"
    shutil.copy(SAMPLES / "lidar" / "autzen_trim.laz", laz)
    ifc = SAMPLES / "ifc" / "IfcOpenHouse.ifc"
    gis = SAMPLES / "gis" / "bubenec.gpkg"
    missing = tmp_path / "nothing.laz"
    assert worker_modules([laz, ifc, gis, missing, ifc]) == [
        "ingest.lidar.encode",
        "ingest.ifc.mesh",
    ]
