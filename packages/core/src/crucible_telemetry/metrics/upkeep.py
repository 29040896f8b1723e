"""Upkeep of a registry: writes to the store, prunes, the background thread, stats, fork and close."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any

import numpy as np

from .background import loop
from .persist import write_pending
from .state import State

__all__ = ["Upkeep"]

log = logging.getLogger("crucible_telemetry")


class Upkeep(State):
    """Part of :class:`~crucible_telemetry.metrics.Metrics`: keeps memory bounded and the store current."""

    def prune(self, now: float | None = None) -> int:
        """Drop points older than ``retention_hours`` from memory; returns how many."""
        self.drain()
        cutoff = (time.time() if now is None else now) - self.retention_hours * 3600
        removed = 0
        with self._drain_lock:
            for info in self._names.values():
                if not info.chunks:
                    continue
                cols = info.columns()
                keep = cols[2] >= cutoff
                if len(keep) > self.max_points:  # beyond the memory bound the oldest go too
                    keep &= cols[2] >= np.partition(cols[2], len(keep) - self.max_points)[len(keep) - self.max_points]
                k = int(keep.sum())
                if k != len(keep):
                    removed += len(keep) - k
                    info.chunks = [tuple(c[keep] for c in cols)] if k else []
            self.pruned += removed
        self._last_prune = time.monotonic()
        return removed

    def flush(self) -> int:
        """Drain and write pending points to the store now; returns the rows written.

        Flushes are serialised: when this returns, every point recorded before the call is in
        the store (or kept for retry after a write error), even if the background thread was
        writing at the same time.
        """
        with self._persist_lock:
            self.drain()
            pending = self._take_pending()
            if not pending:
                return 0
            try:
                n = write_pending(self, pending)  # type: ignore[arg-type]  # self is a Metrics
            except Exception as exc:  # the unwritten points went back to the pending list
                self.persist_errors.append(exc)
                if len(self.persist_errors) == 1:
                    log.warning("crucible_telemetry: could not write metrics to the store: %r; kept for retry", exc)
                return 0
            self.persisted += n
            self._last_persist = time.monotonic()
            return n

    def _flush_hook(self) -> None:
        """The hub's flush hook: ``ct.flush()`` and ``hub.close()`` write our points too; never raises."""
        try:
            if self.persist:
                self.flush()
        except Exception as exc:  # never into the hub's flush
            self.persist_errors.append(exc)

    def next_seq(self, n: int) -> int:
        """Reserve ``n`` row sequence numbers of the ``metrics`` dataset from the hub's counter.

        ``hub.record_metric`` rows number from the same counter (under the same lock), so no two rows repeat one.
        """
        first: int = self.hub.reserve_metric_seq(n)
        return first

    def stats(self) -> dict[str, Any]:
        """Counts and bytes: recorded, stored (in memory), pruned, persisted, pending, dropped ..."""
        self.drain()
        with self._drain_lock:
            stored = sum(i.stored() for i in self._names.values())
            mem = sum(i.nbytes() for i in self._names.values())
            pending = sum(len(c[0]) for c in self._pending)
        root = getattr(getattr(self.hub, "metrics_writer", None), "root", None)
        store_bytes = 0
        if root is not None and os.path.isdir(root):
            for dirpath, _dirs, files in os.walk(root):
                for f in files:
                    try:
                        store_bytes += os.path.getsize(os.path.join(dirpath, f))
                    except OSError:
                        pass
        return {
            "recorded": self.recorded,
            "stored": stored,
            "pruned": self.pruned,
            "persisted": self.persisted,
            "pending": pending,
            "dropped": self.dropped,
            "persist_dropped": self.persist_dropped,
            "overflowed": self.overflowed,
            "negative_increments": self.negative_increments,
            "metrics": len(self._names),
            "tag_sets": len(self._tagsets),
            "series": len(self._s_tagset),
            "memory_bytes": mem,
            "store_bytes": store_bytes,
            "bytes": mem + store_bytes,
            "retention_hours": self.retention_hours,
            "max_tag_sets": self.max_tag_sets,
            "max_points": self.max_points,
            "subscribers": len(self._subs),
        }

    # ------------------------------------------------------------- thread

    def _ensure_thread(self) -> None:
        """Start the background thread unless it runs in this process."""
        t = self._thread
        if t is not None and t.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            t = self._thread
            if t is not None and t.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop.clear()
            t = threading.Thread(
                target=loop, args=(weakref.ref(self), self._stop), name="crucible-metrics", daemon=True
            )
            self._thread = t
            t.start()

    def hub_closed(self) -> bool:
        """Whether the hub was closed (then the background thread writes once more and ends)."""
        return bool(getattr(self.hub, "closed", False))

    def step(self) -> None:
        """One round of the background thread: drain, write every ``hub.flush_interval``, prune when due."""
        self.drain()
        now = time.monotonic()
        if self.persist and now - self._last_persist >= getattr(self.hub, "flush_interval", 1.0):
            self.flush()
        if now - self._last_prune >= self.prune_interval or any(
            len(c[0]) > self.max_points for i in list(self._names.values()) for c in i.chunks[:1]
        ):
            self.prune()

    def close(self) -> None:
        """Stop the background thread after a last drain and write."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread() and t.is_alive():
            t.join(timeout=10)
        self._thread = None
        if self.persist:
            self.flush()
        else:
            self.drain()

    def after_fork(self) -> None:
        """In a forked child: fresh locks, the parent's unwritten points forgotten, a thread of its own."""
        self._thread = None
        self._lock = threading.RLock()
        self._drain_lock = threading.RLock()
        self._persist_lock = threading.Lock()
        self._rows.clear()
        for vals, times in self._s_buf:
            vals.clear()
            times.clear()
        self._pending.clear()
        self._pending_points = 0
        self._pid = -1
        if self._s_tagset:  # cached series never reach the slow path that starts the thread
            self._ensure_thread()
