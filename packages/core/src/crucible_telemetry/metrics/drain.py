"""The drain: hot-path buffers into per-metric numpy columns, then to the store queue and the subscribers.

Runs on the background thread every ``tick`` seconds, and before every read, write and prune.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import numpy as np

from .series import update_state
from .state import NO_STEP, State
from .subscriptions import publish

__all__ = ["Drain"]

log = logging.getLogger("crucible_telemetry")
S = TypeVar("S")


class Drain(State):
    """Part of :class:`~crucible_telemetry.metrics.Metrics`: drains buffers, holds unwritten points and subscribers."""

    def drain(self) -> int:
        """Move the hot-path buffers into the per-metric columns; returns the number of points.

        Each series has a value list and a time list (time appended second); the drain takes
        the first ``len(times)`` of both and deletes exactly those, so concurrent appends are kept.
        """
        with self._drain_lock:
            parts: list[tuple[np.ndarray, ...]] = []
            bufs = self._s_buf
            for sid in range(len(bufs)):
                vals, times = bufs[sid]
                n = len(times)
                if not n:
                    continue
                v = vals[:n]
                del vals[:n]
                t = times[:n]
                del times[:n]
                try:
                    va = np.array(v, dtype=np.float64)
                except (TypeError, ValueError, OverflowError):
                    arr = self._salvage([(sid, x, y, NO_STEP, NO_STEP) for x, y in zip(v, t, strict=True)])
                    parts.append(
                        tuple(arr[:, i].astype(np.int64) if i in (0, 3, 4) else arr[:, i].copy() for i in range(5))
                    )
                    continue
                ones = np.full(n, NO_STEP, dtype=np.int64)
                parts.append((np.full(n, sid, dtype=np.int64), va, np.array(t, dtype=np.float64), ones, ones))
            rows = self._rows
            n = len(rows)
            if n:
                chunk = rows[:n]
                del rows[:n]
                try:
                    arr = np.array(chunk, dtype=np.float64).reshape(n, 5)
                except (TypeError, ValueError, OverflowError):
                    arr = self._salvage(chunk)
                if len(arr):
                    parts.append(
                        (
                            arr[:, 0].astype(np.int64),
                            np.ascontiguousarray(arr[:, 1]),
                            np.ascontiguousarray(arr[:, 2]),
                            arr[:, 3].astype(np.int64),
                            arr[:, 4].astype(np.int64),
                        )
                    )
            if not parts:
                return 0
            if len(parts) == 1:
                cols = parts[0]
            else:  # time order across series (subscribers and the store see points as they happened)
                cols = tuple(np.concatenate(c) for c in zip(*parts, strict=True))
                order = np.argsort(cols[2], kind="stable")
                cols = tuple(c[order] for c in cols)
            self._ingest(cols)
            return len(cols[0])

    def _salvage(self, chunk: list[tuple[Any, ...]]) -> np.ndarray:
        """The rows of ``chunk`` that are all numbers; the others are dropped and counted."""
        good = []
        for row in chunk:
            try:
                good.append(tuple(float(x) for x in row))
            except (TypeError, ValueError, OverflowError):
                self.dropped += 1
                if self.dropped == 1:
                    log.warning(
                        "crucible_telemetry: metric value %r is not a number; dropped (counted in "
                        "get_stats()['dropped'])",
                        row[1],
                    )
        return np.asarray(good, dtype=np.float64).reshape(len(good), 5)

    def _ingest(self, cols: tuple[np.ndarray, ...]) -> None:
        """Append drained points to their metrics, update the Prometheus state, queue them for the store."""
        sid = cols[0]
        s_tagset, s_name = self._series_arrays()
        nidx = s_name[sid]
        with self._lock:
            names = list(self._names.values())
        if nidx.min() == nidx.max():
            groups = [(names[int(nidx[0])], cols)]
        else:
            order = np.argsort(nidx, kind="stable")
            sorted_n = nidx[order]
            cuts = np.flatnonzero(np.diff(sorted_n)) + 1
            groups = []
            for part in np.split(order, cuts):
                groups.append((names[int(nidx[part[0]])], tuple(c[part] for c in cols)))
        for info, gcols in groups:
            info.chunks.append(gcols)
            self.negative_increments += update_state(info, self._tagsets, s_tagset[gcols[0]], gcols[1], gcols[2])
        self.recorded += len(sid)
        if self.persist:
            self._pending.append(cols)
            self._pending_points += len(sid)
            while self._pending_points > self.max_pending and len(self._pending) > 1:
                lost = self._pending.pop(0)  # the store falls behind: drop the oldest, keep memory bounded
                self._pending_points -= len(lost[0])
                self.persist_dropped += len(lost[0])
                if not self._warned_pending:
                    self._warned_pending = True
                    log.warning(
                        "crucible_telemetry: metric points arrive faster than the store takes them; "
                        "more than max_pending=%d wait, the oldest are not persisted (they stay queryable "
                        "in memory; see get_stats()['persist_dropped'])",
                        self.max_pending,
                    )
        if self._subs:
            publish(self, cols)  # type: ignore[arg-type]  # self is a Metrics

    def _series_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per series id: its tag set id and the index of its metric name (for the drain's vector ops)."""
        n = len(self._s_tagset)
        if self._arrays[0] == n:
            return self._arrays[1], self._arrays[2]
        with self._lock:
            n = len(self._s_tagset)
            names = {nm: i for i, nm in enumerate(self._names)}
            self._arrays = (
                n,
                np.asarray(self._s_tagset[:n], dtype=np.int64),
                np.asarray([names[s] for s in self._s_name[:n]], dtype=np.int64),
            )
        return self._arrays[1], self._arrays[2]

    # ------------------------------------------------------- the store queue

    def _take_pending(self) -> list[tuple[np.ndarray, ...]]:
        """Everything queued for the store, leaving the queue empty."""
        with self._drain_lock:
            pending, self._pending = self._pending, []
            self._pending_points = 0
        return pending

    def requeue(self, pending: list[tuple[np.ndarray, ...]]) -> None:
        """Put points the store did not take back at the head of the queue (retried on the next write)."""
        with self._drain_lock:
            self._pending[:0] = pending
            self._pending_points += sum(len(p[0]) for p in pending)

    # ---------------------------------------------------------- subscribers

    def subscribers(self) -> list[Any]:
        """The live subscriptions, a copy."""
        return list(self._subs)

    def add_subscriber(self, sub: S) -> S:
        """Start delivering updates to ``sub`` (a :class:`.subscriptions.Subscription`); returns it."""
        self._subs.append(sub)
        return sub

    def remove_subscriber(self, sub: Any) -> None:
        """Stop delivering updates to ``sub``; a no-op when it is not subscribed."""
        try:
            self._subs.remove(sub)
        except ValueError:
            pass
