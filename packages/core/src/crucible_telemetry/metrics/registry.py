"""``Metrics``: the per-hub registry of counters, gauges and histograms.

The hot path appends one ``(series id, value, time, step, epoch)`` tuple to a list: no lock,
no I/O. A background thread drains that list every ``tick`` seconds into numpy columns per
metric name (what queries read), updates the cumulative Prometheus state, notifies
subscribers, writes the raw points to the store's ``metrics`` dataset every
``hub.flush_interval`` and prunes points older than ``retention_hours``.

The class is assembled from its parts: :mod:`.state` (the fields), :mod:`.table` (series),
:mod:`.drain` (buffers into columns) and :mod:`.upkeep` (store writes, prunes, the thread).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from . import kinds
from .background import register
from .drain import Drain
from .kinds import COUNTER, GAUGE, HISTOGRAM
from .series import MetricInfo, TagSet
from .state import NO_STEP
from .table import SeriesTable
from .upkeep import Upkeep

__all__ = ["Metrics"]

_time = time.time
_registry_lock = threading.Lock()


class Metrics(SeriesTable, Drain, Upkeep):
    """Counters, gauges and histograms of one ``Telemetry`` hub, kept in memory and in its store.

    Module functions of :mod:`crucible_telemetry.metrics` act on ``Metrics.of(ct.default())``.

    Args:
        hub: the hub whose store receives the points and whose current experiment names the run.
        retention_hours: points older than this are pruned from memory (the store keeps them).
        max_tag_sets: distinct tag sets per metric; later new ones fold into an ``__overflow__`` series.
        buckets: default histogram upper bounds (``+Inf`` is implied).
        prune_interval: seconds between automatic prunes.
        tick: seconds between drains of the hot-path buffer (live-update latency).
        persist: write the raw points to the store's ``metrics`` dataset.

    Example:
        >>> m = Metrics.of(hub)
        >>> m.increment("jobs_total", tags={"queue": "default"})
        >>> m.rollup("jobs_total", group_by=["queue"], aggregations=["sum"])
    """

    def __init__(
        self,
        hub: Any,
        *,
        retention_hours: float = 24.0,
        max_tag_sets: int = 10_000,
        buckets: Any = None,
        prune_interval: float = 60.0,
        tick: float = 0.1,
        persist: bool = True,
    ) -> None:
        super().__init__(hub, persist=persist, tick=tick)
        self.configure(
            retention_hours=retention_hours, max_tag_sets=max_tag_sets, buckets=buckets, prune_interval=prune_interval
        )
        register(self)
        add_hook = getattr(hub, "add_flush_hook", None)
        if callable(add_hook):  # a core hook, when present: ct.flush() and hub.close() write our points too
            add_hook(self._flush_hook)

    # ------------------------------------------------------------------ setup

    @classmethod
    def of(cls, hub: Any) -> Metrics:
        """The registry of ``hub``, created on first use (kept on the hub, so it lives and dies with it)."""
        m: Metrics | None = getattr(hub, "_crucible_metrics", None)
        if m is None:
            with _registry_lock:
                m = getattr(hub, "_crucible_metrics", None)
                if m is None:
                    m = cls(hub)
                    hub._crucible_metrics = m  # our slot on the hub
        return m

    def configure(
        self,
        *,
        retention_hours: float | None = None,
        max_tag_sets: int | None = None,
        buckets: Any = None,
        prune_interval: float | None = None,
        max_points: int | None = None,
    ) -> None:
        """Change retention, the cardinality bound, default buckets, the prune interval or
        ``max_points`` (points kept in memory per metric, default 10M; the oldest go first)."""
        if max_points is not None:
            if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
                raise InvalidArgumentError("max_points", f"must be an int >= 1, got {max_points!r}")
            self.max_points = max_points
        if retention_hours is not None:
            if (
                isinstance(retention_hours, bool)
                or not isinstance(retention_hours, (int, float))
                or not retention_hours > 0
            ):
                raise InvalidArgumentError("retention_hours", f"must be a number > 0, got {retention_hours!r}")
            self.retention_hours = float(retention_hours)
        if max_tag_sets is not None:
            if isinstance(max_tag_sets, bool) or not isinstance(max_tag_sets, int) or max_tag_sets < 1:
                raise InvalidArgumentError("max_tag_sets", f"must be an int >= 1, got {max_tag_sets!r}")
            self.max_tag_sets = max_tag_sets
        if buckets is not None:
            self.default_buckets = kinds.check_buckets(buckets)
        if prune_interval is not None:
            if (
                isinstance(prune_interval, bool)
                or not isinstance(prune_interval, (int, float))
                or not prune_interval > 0
            ):
                raise InvalidArgumentError("prune_interval", f"must be seconds > 0, got {prune_interval!r}")
            self.prune_interval = float(prune_interval)

    # --------------------------------------------------------------- hot path

    def increment(self, name: str, by: float = 1, tags: dict[str, Any] | None = None) -> None:
        """Add ``by`` (>= 0) to a counter."""
        try:
            va, ta = self._cids[name, tuple(tags.items()) if tags else None, self._current()]
        except (KeyError, TypeError, AttributeError):
            va, ta = self._new_series(COUNTER, name, tags, by, "by")
        va(by)
        ta(_time())

    def gauge(self, name: str, value: float, tags: dict[str, Any] | None = None) -> None:
        """Set a gauge to ``value``."""
        try:
            va, ta = self._gids[name, tuple(tags.items()) if tags else None, self._current()]
        except (KeyError, TypeError, AttributeError):
            va, ta = self._new_series(GAUGE, name, tags, value)
        va(value)
        ta(_time())

    def histogram(self, name: str, value: float, tags: dict[str, Any] | None = None) -> None:
        """Observe ``value`` in a histogram."""
        try:
            va, ta = self._hids[name, tuple(tags.items()) if tags else None, self._current()]
        except (KeyError, TypeError, AttributeError):
            va, ta = self._new_series(HISTOGRAM, name, tags, value)
        va(value)
        ta(_time())

    def record(
        self,
        name: str,
        value: float,
        tags: dict[str, Any] | None = None,
        *,
        kind: str | None = None,
        step: int | None = None,
        epoch: int | None = None,
        timestamp: float | None = None,
        run_id: str | None = None,
    ) -> None:
        """Record ``value`` under the metric's kind (declared, first used, or inferred from the name).

        See :func:`crucible_telemetry.metrics.kinds.infer_kind` for the inference rules.
        ``timestamp`` (epoch seconds) and ``run_id`` override the current time and experiment.
        """
        if kind is None:
            info = self._names.get(name) if isinstance(name, str) else None
            kind = info.kind if info is not None else kinds.infer_kind(kinds.check_name(name), value)
        elif kind not in kinds.KINDS:
            raise InvalidArgumentError("kind", f"unknown kind {kind!r}; valid: {', '.join(kinds.KINDS)}")
        if run_id is None and step is None and epoch is None and timestamp is None:
            try:
                va, ta = self._ids[kind][name, tuple(tags.items()) if tags else None, self._current()]
            except (KeyError, TypeError, AttributeError):
                va, ta = self._new_series(kind, name, tags, value)
            va(value)
            ta(_time())
            return
        if run_id is None:
            exp = self._current()
            run_id = exp.id if exp is not None else "global"
        else:
            from ..experiment import validate_id

            validate_id("run_id", run_id)
        try:
            sid = self._ext_ids[kind, name, tuple(tags.items()) if tags else None, run_id]
        except (KeyError, TypeError, AttributeError):
            sid, folded = self._series(kind, name, tags, run_id, value, "value")
            if not folded:
                try:
                    self._ext_ids[kind, name, tuple(tags.items()) if tags else None, run_id] = sid
                except (TypeError, AttributeError):
                    pass
        self._rows.append(
            (
                sid,
                value,
                _time() if timestamp is None else timestamp,
                NO_STEP if step is None else step,
                NO_STEP if epoch is None else epoch,
            )
        )

    # ------------------------------------------------------------ reading

    def points(
        self,
        name: str,
        start: float = -math.inf,
        end: float = math.inf,
        tags: dict[str, Any] | None = None,
        columns: tuple[int, ...] = (0, 1, 2, 3, 4),
    ) -> tuple[MetricInfo | None, tuple[np.ndarray, ...]]:
        """The retained points of ``name`` with ``start <= ts < end`` and matching ``tags``.

        ``columns`` picks among (series id, value, ts, step, epoch). ``tags`` may name ``run_id``.
        An unknown name has no points (its info is None), like a metric not recorded yet.
        """
        kinds.check_name(name)
        self.drain()
        with self._drain_lock:
            info = self._names.get(name)
            cols = info.columns() if info is not None else MetricInfo(name, GAUGE, None, None).columns()
        if info is None:
            return None, tuple(cols[i] for i in columns)
        ts = cols[2]
        mask = None
        if len(ts) and (start > -math.inf or end < math.inf) and not (start <= ts.min() and ts.max() < end):
            mask = (ts >= start) & (ts < end)
        if tags:
            m2 = self._matching(info, tags)[cols[0]]
            mask = m2 if mask is None else mask & m2
        if mask is not None:
            return info, tuple(cols[i][mask] for i in columns)
        return info, tuple(cols[i] for i in columns)

    def tagsets(self, name: str | None = None) -> list[tuple[MetricInfo, list[TagSet]]]:
        """Metrics (one, or all) with their tag sets, after a drain."""
        self.drain()
        with self._drain_lock:
            infos = list(self._names.values()) if name is None else [self._names[name]] if name in self._names else []
            return [(i, list(i.tagsets.values())) for i in infos]

    def get_metrics(self, name: str | None = None, limit: int = 100) -> dict[str, Any]:
        """See :func:`crucible_telemetry.metrics.get_metrics`."""
        from .reads import get_metrics

        return get_metrics(self, name, limit)

    def query(
        self,
        name: str,
        group_by: Any = None,
        aggregation: str = "mean",
        window: Any = "last_24h",
        tags: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """See :func:`crucible_telemetry.metrics.query`."""
        from .reads import query

        return query(self, name, group_by, aggregation, window, tags)

    def time_series(
        self,
        name: str,
        interval: str = "hour",
        aggregation: str = "count",
        window: Any = "last_24h",
        tags: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """See :func:`crucible_telemetry.metrics.time_series`."""
        from .reads import time_series

        return time_series(self, name, interval, aggregation, window, tags)

    def rollup(
        self,
        name: str,
        group_by: Any = None,
        aggregations: Any = ("mean", "count"),
        window: Any = "last_24h",
        tags: dict[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """See :func:`crucible_telemetry.metrics.rollup`."""
        from .reads import rollup

        return rollup(self, name, group_by, aggregations, window, tags)

    def attach_telemetry(self, specs: Any, **options: Any) -> str:
        """See :func:`crucible_telemetry.metrics.attach_telemetry`."""
        from .from_events import attach_telemetry

        return attach_telemetry(self, specs, **options)

    def export(self, name: str | None = None) -> str:
        """The Prometheus text exposition (see :mod:`crucible_telemetry.metrics.prometheus`)."""
        from .prometheus import render

        return render(self, name)
