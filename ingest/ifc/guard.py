"""Native code run in a forked child, so that its crash cannot take the ingest down.

The geometry kernel is C++: on some inputs it divides by zero (SIGFPE, an IfcPolyline without
points as a profile, found by fuzzing, #22) or worse, and a signal kills whichever process runs
it. With the executor's workers that is a dead worker; meshing in the ingesting process
(``--workers 1``, the fuzz harness) it was the end of ``cim ingest``. ``guarded`` runs a
function in a child forked from this process (which shares the parsed model, copy on write:
nothing is parsed again) and hands on what it sends, as it comes; when the child dies of a
signal, ``KernelCrashed`` says which, after everything it sent before.

The child only meshes: it never touches the store (it leaves with ``os._exit``, running no
exit handler of the parent's), and it dies with its parent (``PR_SET_PDEATHSIG``, and a look
at its parent's id): a ``cim ingest`` killed with SIGKILL leaves no meshing child behind. Forked
after a LAZ decode, it would inherit lazrs's thread pool without its threads (DESIGN.md, known
traps), so it must not decode LAZ: it does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pickle
import signal
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, Pipe
from typing import Any

#: without fork (not POSIX) the work runs in this process, unguarded
CAN_FORK = hasattr(os, "fork")

_PR_SET_PDEATHSIG = 1


class KernelCrashed(Exception):
    """The child running native code died of a signal (``signal_name``) or exited without
    finishing (``signal_name`` is then ``exit code N``)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def _die_with(parent: int) -> None:
    """In the child: be killed when the parent dies (Linux), else leave if it is gone."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(work: Callable[[Callable[[Any], None]], None], out: Connection, parent: int) -> None:
    """The child's whole life: ``work(send)``, then ("done",) or ("error", exception)."""
    code = 0
    try:
        _die_with(parent)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it with the parent
        work(lambda item: out.send(("item", item)))
        out.send(("done",))
    except BaseException as exc:  # everything goes to the parent
        code = 1
        try:
            pickle.dumps(exc)
            out.send(("error", exc))
        except BaseException:  # an exception that does not pickle
            with contextlib.suppress(BaseException):  # unless the parent is gone
                out.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        os._exit(code)


def guarded(work: Callable[[Callable[[Any], None]], None]) -> Iterator[Any]:
    """Run ``work(send)`` in a forked child and yield every object it passes to ``send``
    (picklable), in order, as it comes. An exception ``work`` raises is raised here; a child
    killed by a signal (or leaving without a word) raises KernelCrashed once everything it
    sent has been yielded. Without fork, ``work`` runs here."""
    if not CAN_FORK:
        sent: list[Any] = []
        work(sent.append)
        yield from sent
        return
    receive, send = Pipe(duplex=False)
    parent = os.getpid()
    with warnings.catch_warnings():
        # Python 3.12 warns of fork in a process with threads (DuckDB's): the child only
        # runs the kernel on the parsed model, never a lock another thread may hold in Python
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its coverage is not collected)
        receive.close()
        _child(work, send, parent)
    send.close()
    finished = False
    try:
        while True:
            try:
                message = receive.recv()
            except EOFError:
                break
            if message[0] == "done":
                finished = True
                break
            if message[0] == "error":
                finished = True
                raise message[1]
            yield message[1]
    finally:
        receive.close()
        if not finished:  # the consumer stopped early (an exception, Ctrl-C) or it died
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not finished:
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
        else:
            name = f"exit code {os.waitstatus_to_exitcode(status)}"
        raise KernelCrashed(name)
