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
        _exit(code)
    return code


def _exit(code: int) -> None:
    """End the process as the interpreter does (threads joined, ``atexit`` run, output flushed) but
    without freeing every object first: after a query over a big store that takes 0.2 s."""
    import atexit
    import os
    import threading

    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe (| head): nothing more can be said
        pass
    os._exit(code)
