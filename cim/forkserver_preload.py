"""Imported first by the local pool's forkserver, as its preload (see LocalExecutor), and never
by the ingesting process; every worker is forked from the forkserver and inherits what this
sets:

* Ctrl-C is ignored. It is for the ingesting process, which stops the workers itself. Without
  this, a Ctrl-C while the forkserver imports the ingesters prints the forkserver's traceback;
  its workers keep the handler it had before their own (ignore), so a busy worker does not
  print one either.
* One thread for the numerical libraries (cim.executor.single_threaded_libraries), set before
  anything imports NumPy.
"""

from __future__ import annotations

import signal

from cim.executor import single_threaded_libraries

signal.signal(signal.SIGINT, signal.SIG_IGN)
single_threaded_libraries()
