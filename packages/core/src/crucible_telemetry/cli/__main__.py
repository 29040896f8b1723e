"""``python -m crucible_telemetry.cli``: the same as the ``crucible`` script."""

from . import main

main()
