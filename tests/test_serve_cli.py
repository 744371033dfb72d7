"""`cim serve` as the operator runs it (a real process on a free port), and the other commands
while it holds the store: `cim status` and `cim jobs` print what the server publishes beside it
(``<store>.serve.json``, at start and after each job), a writing command names the server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_cli import CIM, run, validate_against
from tests.viewer_fixtures import City, build_city, upload_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(url: str, proc: subprocess.Popen[str], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"cim serve exited {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/api/me", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"cim serve did not answer at {url} in {seconds} s")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[City, Path, str, subprocess.Popen[str]]]:
    city = build_city(tmp_path / "city")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*CIM, "--store", str(city.path), "serve", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until_up(url, proc)
        yield city, city.path, url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_status_and_jobs_while_a_server_holds_the_store(
    served: tuple[City, Path, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    city, store, url, proc = served
    serve_json = store.with_name(store.name + ".serve.json")
    published = json.loads(serve_json.read_text())
    assert published["pid"] == proc.pid and published["url"] == url

    shown = run("--store", str(store), "status")
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert f"held by `cim serve` (pid {proc.pid}) at {url}" in first
    assert "bubenec.gpkg" in shown.stdout and "IfcOpenHouse.ifc" in shown.stdout

    as_json = run("--store", str(store), "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    validate_against(doc, "status.schema.json")
    assert doc["store_busy"] is True and doc["server"]["pid"] == proc.pid
    assert doc["counts"]["sources"] == 3

    # through uvicorn and its head-with-body protocol (viewer/http.py): every response kind
    tiles = httpx.get(f"{url}/api/tilesets").json()["tilesets"]
    doc_url = f"{url}{tiles[0]['url']}"
    full = httpx.get(doc_url)
    assert full.status_code == 200 and full.json()["root"]
    head = httpx.head(doc_url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == full.headers["content-length"]
    assert httpx.get(doc_url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304
    part = httpx.get(doc_url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == full.content[:10]
    with httpx.Client() as keep_alive:  # one connection, answers in order
        for _ in range(20):
            assert keep_alive.head(doc_url).status_code == 200
            assert keep_alive.get(doc_url).content == full.content
            assert keep_alive.get(f"{url}/api/me").json()["signed_in"] is False
    events = httpx.get(f"{url}/api/nope")
    assert events.status_code == 404 and events.json()["code"] == "not_found"

    # a command that writes is told which server holds the store, in one line
    refused = run("--store", str(store), "ingest", str(tmp_path))
    assert refused.returncode == 4
    assert f"held by `cim serve` (pid {proc.pid})" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr

    # an upload through the API: the published status follows the job
    model = upload_model(tmp_path, city)
    headers = {"Authorization": f"Bearer {city.designer}"}
    with model.open("rb") as f:
        r = httpx.post(f"{url}/api/uploads", files={"file": f}, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}{job}", headers=headers).json()["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, "the upload's job did not end"
        time.sleep(0.2)
    assert httpx.get(f"{url}{job}", headers=headers).json()["status"] == "done"
    deadline = time.monotonic() + 10
    while json.loads(serve_json.read_text())["status"]["counts"]["sources"] != 4:
        assert time.monotonic() < deadline, "serve.json was not published after the job"
        time.sleep(0.1)
    after = json.loads(run("--store", str(store), "status", "--json").stdout)
    validate_against(after, "status.schema.json")
    assert after["counts"]["sources"] == 4 and after["jobs"]["recent"][0]["status"] == "done"

    jobs = run("--store", str(store), "jobs", "--json")
    assert jobs.returncode == 0, jobs.stderr
    listed = json.loads(jobs.stdout)
    validate_against(listed, "jobs.schema.json")
    assert listed["store_busy"] and listed["jobs"][0]["kind"] == "upload"

    # stopped, the server lets go of the store and says so no more
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not serve_json.exists()
    mine = run("--store", str(store), "status", "--json")
    assert mine.returncode == 0 and "store_busy" not in json.loads(mine.stdout)
