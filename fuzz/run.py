"""``make fuzz``: runs every harness (or those named) for ``--seconds`` each, one process per
harness, and prints a line a harness: executions, seconds, executions a second, corpus growth
and peak memory.

libFuzzer keeps what it learns in a scratch corpus (the committed seeds in
``fuzz/corpus/<harness>/`` are read, never written). A crash, an uncaught exception, a hang
past ``--timeout`` or memory past ``--rss-limit-mb`` stops that harness with its input saved in
``fuzz/findings/<harness>/`` and its log in ``fuzz/out/<harness>.log``; the other harnesses
still run, and the command exits 1. Replay one with ``python -m fuzz.harness NAME FILE``.

``--keep-going DIR`` is for triage: each harness runs its whole time, saving the first input
of each distinct uncaught exception (with its traceback) in ``DIR/<harness>/``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz import HARNESSES

FUZZ = Path(__file__).resolve().parent
_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def run_one(name: str, seconds: int, args: argparse.Namespace, work: Path) -> tuple[bool, str]:
    """Runs one harness; (ok, its summary line)."""
    findings = FUZZ / "findings" / name
    findings.mkdir(parents=True, exist_ok=True)
    log_path = FUZZ / "out" / f"{name}.log"
    log_path.parent.mkdir(exist_ok=True)
    scratch = work / name
    scratch.mkdir()
    command = [
        sys.executable,
        "-m",
        "fuzz.harness",
        name,
        f"-max_total_time={seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-artifact_prefix={findings}/",
        "-print_final_stats=1",
        str(scratch),
        str(FUZZ / "corpus" / name),
    ]
    dictionary = FUZZ / f"{name}.dict"
    if dictionary.exists():
        command.insert(5, f"-dict={dictionary}")
    env = dict(os.environ)
    if args.keep_going:
        env["FUZZ_KEEP_GOING"] = str(Path(args.keep_going).resolve())
    t0 = time.monotonic()
    with log_path.open("w") as log:
        code = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=FUZZ.parent, env=env
        ).returncode
    wall = time.monotonic() - t0
    text = log_path.read_text(errors="replace")
    stats = {k: int(v) for k, v in _STAT.findall(text)}
    runs = stats.get("number_of_executed_units", 0)
    distinct = len(re.findall(r"^FINDING ", text, re.MULTILINE))
    line = (
        f"{name:9s} {runs:9,d} executions in {wall:6.0f} s ({runs / max(wall, 1e-9):7.1f}/s), "
        f"corpus +{stats.get('new_units_added', 0)}, peak {stats.get('peak_rss_mb', 0)} MB"
        + (f", {distinct} distinct exceptions kept going past" if args.keep_going else "")
    )
    if code == 0:
        return True, line
    saved = _ARTIFACT.findall(text)
    where = saved[-1] if saved else f"no input saved (exit code {code})"
    return False, f"{line}\n  FINDING: {where}; log: {log_path.relative_to(FUZZ.parent)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("harnesses", nargs="*", choices=[[], *HARNESSES], default=[])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 60)))
    parser.add_argument("--timeout", type=int, default=120, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=3072)
    parser.add_argument("--keep-going", metavar="DIR", help="triage: save findings, go on")
    args = parser.parse_args(argv)
    names = args.harnesses or list(HARNESSES)
    failed = []
    with tempfile.TemporaryDirectory(prefix="cim-fuzz-corpus-") as work:
        for name in names:
            ok, line = run_one(name, args.seconds, args, Path(work))
            print(line, flush=True)
            if not ok:
                failed.append(name)
    print(
        f"fuzz: {len(names) - len(failed)}/{len(names)} harnesses without findings"
        + (f"; findings in {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
