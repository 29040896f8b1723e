"""What a ``Metrics`` registry holds: its series table, hot-path buffers, unwritten points and counters.

The registry is one object in four modules: this state, :mod:`.table` (which series exist),
:mod:`.drain` (buffers into columns) and :mod:`.upkeep` (writes, prunes, the thread).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from .kinds import COUNTER, GAUGE, HISTOGRAM
from .series import MetricInfo, TagSet

__all__ = ["NO_STEP", "State"]

NO_STEP = -1  # the step/epoch of a point recorded without one

Appenders = tuple[Callable[[Any], None], Callable[[Any], None]]


class State:
    """The fields of a registry, shared by its parts (each part's module says what it does with them)."""

    def __init__(self, hub: Any, *, persist: bool, tick: float) -> None:
        self.hub = hub
        self._current: Callable[[], Any] = hub.current_experiment
        self._lock = threading.RLock()  # series creation and configuration
        self._drain_lock = threading.RLock()  # drains, queries, persistence
        self._persist_lock = threading.Lock()  # one writer to the store at a time
        # the hot path: points recorded with a step, epoch, time or run id of their own
        self._rows: list[tuple[Any, ...]] = []
        # (name, tags, experiment) -> appenders of the series' buffers, per kind
        self._ids: dict[str, dict[Any, Appenders]] = {COUNTER: {}, GAUGE: {}, HISTOGRAM: {}}
        self._ext_ids: dict[Any, int] = {}  # (kind, name, tags, run_id) -> series, for record(step=...)
        self._cids, self._gids, self._hids = self._ids[COUNTER], self._ids[GAUGE], self._ids[HISTOGRAM]
        # the series table: per series (values, wall times) appended by the hot path; the drain takes a prefix
        self._s_buf: list[tuple[list[Any], list[float]]] = []
        self._names: dict[str, MetricInfo] = {}
        self._tagsets: list[TagSet] = []
        self._series_by: dict[tuple[int, str], int] = {}
        self._s_tagset: list[int] = []
        self._s_run: list[str] = []
        self._s_name: list[str] = []
        self._arrays: tuple[int, np.ndarray, np.ndarray] = (0, np.empty(0, np.int64), np.empty(0, np.int64))
        # drained points not yet in the store, and the live subscribers
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._pending_points = 0
        self._warned_pending = False
        self._subs: list[Any] = []
        # the background thread
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._last_persist = time.monotonic()
        self._last_prune = time.monotonic()
        # counters (get_stats) and settings
        self.recorded = 0
        self.pruned = 0
        self.persisted = 0
        self.dropped = 0
        self.overflowed = 0
        self.negative_increments = 0
        self.handler_errors = 0
        self.persist_errors: deque[BaseException] = deque(maxlen=100)  # the latest, bounded
        self.persist = persist
        self.max_pending = 5_000_000  # points waiting for the store before the oldest are dropped
        self.persist_dropped = 0
        self.tick = float(tick)
        self.max_points = 10_000_000
        self.retention_hours = 24.0
        self.max_tag_sets = 10_000
        self.default_buckets: tuple[float, ...] | None = None
        self.prune_interval = 60.0

    def drain(self) -> int:
        """Move the hot-path buffers into the per-metric columns (:class:`.drain.Drain`)."""
        raise NotImplementedError

    def _take_pending(self) -> list[tuple[np.ndarray, ...]]:
        """Everything queued for the store, leaving the queue empty (:class:`.drain.Drain`)."""
        raise NotImplementedError

    def _ensure_thread(self) -> None:
        """Start the background thread unless it runs in this process (:class:`.upkeep.Upkeep`)."""
        raise NotImplementedError
