"""The registry's background thread (drain, write, prune), exit flush and fork safety."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import Metrics

__all__ = ["loop", "register"]

log = logging.getLogger("crucible_telemetry")
_LIVE: weakref.WeakSet[Metrics] = weakref.WeakSet()
_atexit_registered = False


def loop(ref: weakref.ref[Metrics], stop: threading.Event) -> None:
    while True:
        m = ref()
        if m is None:
            return
        tick = m.tick
        closed = m.hub_closed()
        try:
            if closed:  # the hub closed: a last write, then this thread ends
                m.flush() if m.persist else m.drain()
                return
            m.step()
        except Exception as exc:  # the thread never dies; the error is kept and logged once
            m.persist_errors.append(exc)
            if len(m.persist_errors) == 1:
                log.warning("crucible_telemetry: metrics background round failed: %r", exc)
        del m
        if stop.wait(tick):
            return


def register(m: Metrics) -> None:
    global _atexit_registered
    _LIVE.add(m)
    if not _atexit_registered:
        _atexit_registered = True
        # registered after the hub's own atexit hook, so this runs first: points reach the store
        # before the hubs close and compact
        atexit.register(_close_all)
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_all() -> None:
    for m in list(_LIVE):
        try:
            m.close()
        except Exception as exc:
            log.warning("crucible_telemetry: metrics close failed: %r", exc)


def _after_fork_in_child() -> None:
    for m in list(_LIVE):
        m.after_fork()
