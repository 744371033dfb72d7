"""Tile serving: requests/s and p50/p99 latency of `cim serve` with 32 concurrent clients on
loopback, beside nginx serving the same tile files statically, in the same run.

A store of generated LoD1 buildings (20,000 by default, EPSG:32633) is tiled; `cim serve` runs
on one port and nginx (Debian's, a config in a temporary folder) on another, both over the
store's tiles folder; ``wrk`` (Debian) asks both for the tileset's files in the same random
order (``tileset.json`` and every content tile). Target: at least 0.5x nginx's throughput,
p99 under 50 ms.

``--soak SECONDS`` then keeps 32 clients on `cim serve` for that long in rounds of
``--round`` seconds (each round takes the current tileset's files, as a client would), uploads
a new IFC model every 30 s (ingest + re-tile as a job) and prints, per round, requests/s,
failed requests (non-2xx/3xx and socket errors), the uploads' outcome and the server's RSS.

    .venv/bin/python benchmarks/serve.py [--buildings 20000] [--seconds 15] [--soak 180]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gis_ingest import footprints, write_gpkg  # noqa: E402

CLIENTS = 32
WRK = ["wrk", "-t2", f"-c{CLIENTS}"]
CIM = [sys.executable, "-m", "cim.cli"]
WRK_SCRIPT = """
local paths = {}
for line in io.lines("%(urls)s") do paths[#paths + 1] = line end
local n = 0
function init(args)
  math.randomseed(%(seed)d + math.floor(os.clock() * 1e6))
  n = math.random(#paths)
end
function request()
  n = n %% #paths + 1
  return wrk.format("GET", paths[n])
end
"""
NGINX_CONF = """
worker_processes %(workers)s;
%(user)s
daemon off;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  types { model/gltf-binary glb; application/json json; }
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  open_file_cache max=10000 inactive=60s;
  client_body_temp_path %(tmp)s/body;
  proxy_temp_path %(tmp)s/proxy;
  fastcgi_temp_path %(tmp)s/fastcgi;
  uwsgi_temp_path %(tmp)s/uwsgi;
  scgi_temp_path %(tmp)s/scgi;
  server {
    listen 127.0.0.1:%(port)d;
    location /tiles/ {
      alias %(tiles)s/;
      add_header Cache-Control "public, max-age=31536000, immutable";
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build_store(folder: Path, n: int) -> tuple[Path, str]:
    """A store of ``n`` generated LoD1 buildings, tiled; and an operator's token."""
    from cim.executor import SerialExecutor
    from cim.store import Store
    from cim.tokens import create_token
    from ingest import IngestOptions, run_ingest
    from tiles.build import build_tilesets

    path = folder / "city.duckdb"
    gpkg = folder / "district.gpkg"
    kept = folder / "token.txt"
    if path.exists() and kept.exists():  # --work kept from an earlier run
        print(f"store: {path} (kept from an earlier run)")
        return path, kept.read_text().strip()
    geoms, fields = footprints(n)
    write_gpkg(gpkg, geoms, fields, "EPSG:32633")
    store = Store.create(path, "EPSG:32633")
    try:
        t0 = time.perf_counter()
        run_ingest(store, gpkg, IngestOptions(), SerialExecutor())
        t1 = time.perf_counter()
        report = build_tilesets(store, ["buildings"])["buildings"]
        t2 = time.perf_counter()
        _, token = create_token(store, "operator", "bench")
        kept.write_text(token)
    finally:
        store.close()
    print(
        f"store: {n:,} LoD1 buildings ingested in {t1 - t0:.1f} s, tiled in {t2 - t1:.1f} s "
        f"({report.get('tiles')} tiles, {report.get('bytes', 0) / 1e6:.1f} MB)"
    )
    return path, token


def tile_paths(base: str) -> list[str]:
    """Every file of the buildings tileset, as a client finds them (tileset.json first)."""
    doc = httpx.get(f"{base}/tiles/buildings/tileset.json", timeout=30).json()
    out = ["/tiles/buildings/tileset.json"]
    stack = [doc["root"]]
    while stack:
        tile = stack.pop()
        uri = tile.get("content", {}).get("uri")
        if uri:
            out.append(f"/tiles/buildings/{uri}")
        stack += tile.get("children", [])
    return out


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int
    mb_per_s: float

    def line(self, label: str) -> str:
        return (
            f"{label:<24} {self.rps:>10,.0f} req/s  p50 {self.p50_ms:6.2f} ms  "
            f"p99 {self.p99_ms:6.2f} ms  {self.mb_per_s:8.1f} MB/s  "
            f"{self.requests:,} requests, {self.failed} failed"
        )


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _mb(text: str) -> float:
    m = re.match(r"([\d.]+)([KMG]?B)", text)
    assert m, text
    scale = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}
    return float(m.group(1)) * scale[m.group(2)]


def wrk(base: str, paths: list[str], seconds: float, work: Path) -> WrkResult:
    urls = work / f"urls-{os.getpid()}-{random.randrange(1 << 30)}.txt"
    urls.write_text("\n".join(paths) + "\n")
    script = urls.with_suffix(".lua")
    script.write_text(WRK_SCRIPT % {"urls": urls, "seed": random.randrange(1 << 20)})
    out = subprocess.run(
        [*WRK, f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    done = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    transfer = re.search(r"Transfer/sec:\s+(\S+)", out)
    assert done and rps and transfer and lat, out
    failed = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    return WrkResult(
        float(rps.group(1)),
        _ms(lat["50"]),
        _ms(lat["99"]),
        int(done.group(1)),
        failed,
        _mb(transfer.group(1)),
    )


@contextmanager
def cim_serve(store: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*CIM, "--store", str(store), "serve", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/api/me", proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def nginx(tiles: Path, port: int, work: Path, workers: str) -> Iterator[subprocess.Popen[str]]:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = work / "nginx.conf"
    conf.write_text(
        NGINX_CONF
        % {
            "workers": workers,
            "user": "user root;" if os.geteuid() == 0 else "",
            "tmp": work,
            "port": port,
            "tiles": tiles,
        }
    )
    proc = subprocess.Popen(
        [exe, "-c", str(conf), "-p", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/tiles/buildings/tileset.json", proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(url: str, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"nothing answered at {url}")


def rss_mb(proc: subprocess.Popen[str]) -> tuple[float, float]:
    """The server's RSS, and with its children (the executor's workers), in MB."""
    p = psutil.Process(proc.pid)
    own = p.memory_info().rss
    kids = sum(c.memory_info().rss for c in p.children(recursive=True) if c.is_running())
    return own / 1e6, (own + kids) / 1e6


def upload_loop(
    base: str, token: str, every: float, stop: threading.Event, work: Path, log: list[str]
) -> None:
    """A new IFC model every ``every`` seconds, each placed in its own spot; waits for its job."""
    from tests.ifc_models import wall_model

    k = 0
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.wait(0 if k == 0 else every):
        k += 1
        model = wall_model(
            work / f"upload-{k}.ifc",
            length=6.0 + k,
            crs_name="EPSG:32633",
            map_conversion={
                "Eastings": 454000.0 - 40.0 * k,
                "Northings": 5545000.0,
                "OrthogonalHeight": 200.0,
            },
        )
        t0 = time.monotonic()
        try:
            with model.open("rb") as f:
                r = httpx.post(f"{base}/api/uploads", files={"file": f}, headers=headers)
            r.raise_for_status()
            job = r.json()["job"]
            while (state := httpx.get(f"{base}{job}", headers=headers).json())["status"] not in (
                "done",
                "failed",
            ):
                time.sleep(0.25)
            log.append(f"{state['status']} in {time.monotonic() - t0:.1f} s")
        except httpx.HTTPError as exc:
            log.append(f"error: {exc}")


def soak(
    base: str,
    proc: subprocess.Popen[str],
    token: str,
    seconds: float,
    args: argparse.Namespace,
    work: Path,
) -> int:
    print(f"\nsoak: {CLIENTS} clients for {seconds:.0f} s, an upload every 30 s")
    print(
        f"{'t (s)':>6} {'req/s':>9} {'p99 ms':>7} {'failed':>7} {'rss MB':>8} "
        f"{'+workers':>9}  uploads"
    )
    stop = threading.Event()
    uploads: list[str] = []
    uploader = threading.Thread(
        target=upload_loop, args=(base, token, 30.0, stop, work, uploads), daemon=True
    )
    start = time.monotonic()
    uploader.start()
    failed_total = 0
    requests_total = 0
    rss: list[float] = []
    try:
        while (left := seconds - (time.monotonic() - start)) > 1:
            r = wrk(base, tile_paths(base), min(args.round, left), work)
            own, total = rss_mb(proc)
            rss.append(own)
            failed_total += r.failed
            requests_total += r.requests
            print(
                f"{time.monotonic() - start:6.0f} {r.rps:9,.0f} {r.p99_ms:7.1f} {r.failed:7d} "
                f"{own:8.0f} {total:9.0f}  {', '.join(uploads) or '-'}",
                flush=True,
            )
            uploads.clear()
    finally:
        stop.set()
        uploader.join(timeout=120)
    first, last = rss[0], rss[-1]
    print(
        f"soak: {requests_total:,} requests, {failed_total} failed; server RSS "
        f"{first:.0f} MB -> {last:.0f} MB (max {max(rss):.0f} MB)"
    )
    return failed_total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buildings", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=15, help="each server's wrk run")
    parser.add_argument("--nginx-workers", default="1", help="nginx worker_processes (or auto)")
    parser.add_argument("--soak", type=float, default=0, help="then soak for this many seconds")
    parser.add_argument("--round", type=float, default=15, help="the soak's wrk rounds")
    parser.add_argument("--work", type=Path, help="keep the store here (else a temporary one)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk nginx")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        store, token = build_store(work, args.buildings)
        tiles = store.with_name(store.name + ".tiles")
        cim_port, nginx_port = free_port(), free_port()
        cim_base, nginx_base = f"http://127.0.0.1:{cim_port}", f"http://127.0.0.1:{nginx_port}"
        with (
            cim_serve(store, cim_port) as server,
            nginx(tiles, nginx_port, work, args.nginx_workers),
        ):
            paths = tile_paths(cim_base)
            sizes = [len(httpx.get(cim_base + p).content) for p in paths]
            print(
                f"{len(paths)} files ({sum(sizes) / 1e6:.1f} MB, median "
                f"{sorted(sizes)[len(sizes) // 2] / 1e3:.0f} kB); {CLIENTS} clients, wrk -t2, "
                f"{args.seconds:.0f} s each, {os.cpu_count()} cores; nginx "
                f"worker_processes {args.nginx_workers}, cim serve one process"
            )
            for base in (cim_base, nginx_base):
                wrk(base, paths, 2, work)  # warm-up: caches, connections
            ours = wrk(cim_base, paths, args.seconds, work)
            theirs = wrk(nginx_base, paths, args.seconds, work)
            print(ours.line("cim serve"))
            print(theirs.line("nginx (static files)"))
            ratio = ours.rps / theirs.rps
            verdict = "met" if ratio >= 0.5 and ours.p99_ms < 50 else "NOT met"
            print(
                f"cim serve / nginx: {ratio:.2f}x throughput; p99 {ours.p99_ms:.1f} ms "
                f"(target >= 0.5x, p99 < 50 ms: {verdict})"
            )
            failed = ours.failed + theirs.failed
            if args.soak:
                failed += soak(cim_base, server, token, args.soak, args, work)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
