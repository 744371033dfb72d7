"""``python -m cim.cli``: the ``cim`` command (the tests run it this way)."""

from cim.cli import main

main()
