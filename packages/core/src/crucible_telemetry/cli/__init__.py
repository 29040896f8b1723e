"""The ``crucible`` command: runs, show, metrics, compare, sql, export, prune, serve, plot, report."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crucible`` console script."""
    from .app import main as run

    code = run(argv)
    if argv is None:
        sys.exit(code)
    return code
