"""The background merger: a writer's non-final merges run on their own thread, never inside a flush.

A flush writes its segment and, every ``COMPACT_EVERY`` segments of a partition, asks for that
partition to be merged; the merge (read, summarise, write, fsync) then runs here, so a flush costs
one segment write however large the run. One thread per process and dataset, started on first
use and again after a fork; ``close`` lets the merge under way finish and drops the rest (the
final merge at stop covers them).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

__all__ = ["Merger"]

log = logging.getLogger("crucible_telemetry")


class Merger:
    """Runs ``merge(value)`` for each partition value asked for, one at a time, off the caller's thread."""

    def __init__(self, merge: Callable[[str], None], name: str) -> None:
        self._merge = merge
        self._name = name
        self._cv = threading.Condition()
        self._pending: list[str] = []
        self._busy: str | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closing = False

    def ask(self, value: str) -> None:
        """Merge ``value`` soon (once, however often asked before it runs)."""
        with self._cv:
            if self._pid != os.getpid():
                self._reset()
            if value not in self._pending:
                self._pending.append(value)
            self._closing = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"crucible-merge-{self._name}", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closing:
                    if not self._cv.wait(timeout=30.0) and not self._pending:
                        self._thread = None  # idle: end; the next ask starts a fresh thread
                        return
                if self._closing:
                    self._thread = None
                    self._cv.notify_all()
                    return
                value = self._busy = self._pending.pop(0)
            try:
                self._merge(value)
            except Exception as exc:  # a failed merge loses nothing: the files stay live
                log.warning("crucible_telemetry: background merge of %s failed: %r", value, exc)
            finally:
                with self._cv:
                    self._busy = None
                    self._cv.notify_all()

    def drop(self, value: str) -> None:
        """Forget a pending request for ``value`` and wait for its merge under way, if any (a final
        merge of it follows)."""
        with self._cv:
            if self._pid != os.getpid():
                self._reset()
                return
            if value in self._pending:
                self._pending.remove(value)
            while self._busy == value:
                self._cv.wait(timeout=1.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every merge asked for is done; False if ``timeout`` passed first."""
        with self._cv:
            if self._pid != os.getpid():
                return True
            return self._cv.wait_for(lambda: not self._pending and self._busy is None, timeout=timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Drop what is pending, let the merge under way finish, and end the thread."""
        with self._cv:
            if self._pid != os.getpid():
                self._reset()
                return
            self._pending.clear()
            self._closing = True
            self._cv.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def after_fork(self) -> None:
        """In a forked child: nothing of the parent's thread or queue (its partitions are the parent's)."""
        self._cv = threading.Condition()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._pending = []
        self._busy = None
        self._thread = None
        self._closing = False
