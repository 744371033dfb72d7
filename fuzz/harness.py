"""Runs one harness under atheris: ``python -m fuzz.harness NAME [libFuzzer options] [corpus
folders]``, where NAME is a module of ``fuzz/`` with ``test_one_input(data: bytes)``.

The project's modules (and the ingesters the registry loads lazily) are imported inside
``atheris.instrument_imports`` so that libFuzzer sees their branches; the libraries are not
instrumented (ifcopenshell, GDAL, laspy/lazrs and PROJ are native code: their crashes still
show, as a deadly signal). Library warnings go unlogged: a fuzzed file causes many.

The comparison hook that instrumented code calls (``atheris._trace_cmp``) is wrapped
(``plain_comparisons_only``): atheris 3.0's native hook keeps a reference to every result of a
comparison that is not a bool, so each NumPy comparison in instrumented code (an array of
bools) stayed in memory for good: the gcj02 harness grew by about 10 KB an execution, until
libFuzzer's memory limit stopped it after 309k runs. Comparisons of plain values (numbers,
strings, bytes: what guides libFuzzer) still go to the hook; others are made in Python.

With ``FUZZ_KEEP_GOING=<folder>`` an uncaught exception does not stop the run: the first input
raising each distinct exception (its type and the innermost frame of the project's code) is
saved in that folder with its traceback beside it (``.txt``), and fuzzing goes on. That is for
triage: finding what lies behind a first finding that someone else is fixing.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import operator
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzz import HARNESSES


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/cim/" in f.filename or "/ingest/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(exc).__name__} at {where}"


def keep_going(test: Callable[[bytes], None], folder: Path) -> Callable[[bytes], None]:
    """``test``, saving the first input of each distinct uncaught exception instead of stopping."""
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()

    def run(data: bytes) -> None:
        try:
            test(data)
        except Exception as exc:
            signature = _signature(exc)
            if signature in seen:
                return
            seen.add(signature)
            name = "finding-" + hashlib.sha1(data).hexdigest()
            (folder / name).write_bytes(data)
            text = "".join(traceback.format_exception(exc))
            (folder / f"{name}.txt").write_text(f"{signature}\n\n{text}")
            print(f"FINDING {signature}: {folder / name}", file=sys.stderr, flush=True)

    return run


#: types whose comparisons return a bool and tell libFuzzer something: the native hook's
_PLAIN = frozenset({int, float, str, bytes, bytearray, bool, type(None)})


def plain_comparisons_only(native: Callable[..., Any], shift: int) -> Callable[..., Any]:
    """A comparison hook for instrumented code: ``native`` (atheris's) for plain values, the
    comparison itself for anything else (whose result the native hook would keep forever).
    ``shift``: how far the comparison's number is shifted in COMPARE_OP's argument."""
    ops = (operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge)

    def trace_cmp(left: Any, right: Any, op: int, counter: int, is_const: bool) -> Any:
        if type(left) in _PLAIN and type(right) in _PLAIN:
            return native(left, right, op, counter, is_const)
        return ops[op >> shift](left, right)

    return trace_cmp


def with_plain_comparisons(test: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``test``, with the comparison hook wrapped (plain_comparisons_only) from its first input
    on: ``atheris.Fuzz()`` binds the native hook to the module again when it starts, so the
    wrapper set before would be lost."""
    import atheris
    from atheris.version_dependent import CMP_OP_SHIFT_AMOUNT

    hook: list[Callable[..., Any]] = []

    def run(data: bytes) -> None:
        if not hook or atheris._trace_cmp is not hook[0]:
            hook[:] = [plain_comparisons_only(atheris._trace_cmp, CMP_OP_SHIFT_AMOUNT)]
            atheris._trace_cmp = hook[0]
        test(data)

    return run


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in HARNESSES:
        sys.exit(f"usage: python -m fuzz.harness {{{','.join(HARNESSES)}}} [libFuzzer options]")
    name = argv.pop(1)
    import atheris

    logging.disable(logging.CRITICAL)
    with atheris.instrument_imports(include=["cim", "ingest", "fuzz"]):
        import ingest

        ingest.registry()  # the ingesters' modules, imported lazily elsewhere
        module = importlib.import_module(f"fuzz.{name}")
    test = module.test_one_input
    if os.environ.get("FUZZ_KEEP_GOING"):
        test = keep_going(test, Path(os.environ["FUZZ_KEEP_GOING"]) / name)
    atheris.Setup(argv, with_plain_comparisons(test))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
