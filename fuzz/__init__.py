"""Fuzzing the readers with atheris: one harness per reader, a seed corpus per harness.

``python -m fuzz.harness NAME [libFuzzer options]`` runs one harness (``fuzz/<NAME>.py``);
``python -m fuzz.run`` (``make fuzz``) runs them all for ``FUZZ_SECONDS`` each. Anything a
reader raises that is not a ``CimError`` (or a KeyboardInterrupt) is a finding.
"""

#: the harnesses, in the order ``make fuzz`` runs them
HARNESSES = ("options", "gcj02", "cityjson", "gis", "lidar", "ifc")
