"""Imported first by the local pool's forkserver, as its preload (see LocalExecutor.start), and
never by the ingesting process: Ctrl-C is for the ingesting process, which stops the workers
itself. Without it, a Ctrl-C while the forkserver imports the ingesters prints the forkserver's
traceback; its workers keep the handler it had before its own (ignore), so a busy worker does
not print one either."""

from __future__ import annotations

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
