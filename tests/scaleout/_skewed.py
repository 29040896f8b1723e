"""Run a script, a module (``-m``) or code (``-c``) on a skewed clock under libfaketime (``faketime -f +130s python _skewed.py ...``).

Under ``FAKETIME_DONT_FAKE_MONOTONIC=1`` (the monotonic clock left alone, as a skewed node's is)
libfaketime 0.9.10 turns ``clock_nanosleep`` into EINVAL, so ``time.sleep`` waits on an event
instead (timed waits work); everything else is the real code on the faked wall clock.
"""

from __future__ import annotations

import runpy
import sys
import threading
import time


def _sleep(seconds: float) -> None:
    threading.Event().wait(seconds)


if __name__ == "__main__":
    time.sleep = _sleep
    if sys.argv[1] == "-c":
        exec(compile(sys.argv[2], "<string>", "exec"), {"__name__": "__main__"})
    elif sys.argv[1] == "-m":
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
