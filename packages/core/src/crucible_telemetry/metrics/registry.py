"""``Metrics``: the per-hub registry of counters, gauges and histograms.

The hot path appends one ``(series id, value, time, step, epoch)`` tuple to a list: no lock,
no I/O. A background thread drains that list every ``tick`` seconds into numpy columns per
metric name (what queries read), updates the cumulative Prometheus state, notifies
subscribers, writes the raw points to the store's ``metrics`` dataset every
``hub.flush_interval`` and prunes points older than ``retention_hours``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from . import kinds
from .background import loop, register
from .kinds import COUNTER, GAUGE, HISTOGRAM, OVERFLOW
from .series import MetricInfo, TagSet, update_state

__all__ = ["Metrics"]

log = logging.getLogger("crucible_telemetry")

_time = time.time
_NO = -1  # step/epoch sentinel for "none"
_registry_lock = threading.Lock()


class Metrics:
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

    def __init__(self, hub: Any, *, retention_hours: float = 24.0, max_tag_sets: int = 10_000,
                 buckets: Any = None, prune_interval: float = 60.0, tick: float = 0.1, persist: bool = True) -> None:
        self.hub = hub
        self._current: Callable[[], Any] = hub.current_experiment
        self._lock = threading.RLock()  # series creation and configuration
        self._drain_lock = threading.RLock()  # drains, queries, persistence
        self._persist_lock = threading.Lock()  # one writer to the store at a time
        self._rows: list[tuple[Any, ...]] = []
        self._ids: dict[str, dict[Any, tuple[Callable[[Any], None], Callable[[Any], None]]]] = {
            COUNTER: {}, GAUGE: {}, HISTOGRAM: {}}
        self._ext_ids: dict[Any, int] = {}  # (kind, name, tags, run_id) -> series, for record(step=...)
        self._cids, self._gids, self._hids = self._ids[COUNTER], self._ids[GAUGE], self._ids[HISTOGRAM]
        # per series: (values, wall times) appended by the hot path; the drain takes a prefix
        self._s_buf: list[tuple[list[Any], list[float]]] = []
        self._names: dict[str, MetricInfo] = {}
        self._tagsets: list[TagSet] = []
        self._series_by: dict[tuple[int, str], int] = {}
        self._s_tagset: list[int] = []
        self._s_run: list[str] = []
        self._s_name: list[str] = []
        self._arrays: tuple[int, np.ndarray, np.ndarray] = (0, np.empty(0, np.int64), np.empty(0, np.int64))
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._subs: list[Any] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._last_persist = time.monotonic()
        self._last_prune = time.monotonic()
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
        self._pending_points = 0
        self.persist_dropped = 0
        self._warned_pending = False
        self.tick = float(tick)
        self.configure(retention_hours=retention_hours, max_tag_sets=max_tag_sets, buckets=buckets,
                       prune_interval=prune_interval)
        register(self)
        add_hook = getattr(hub, "add_flush_hook", None)
        if callable(add_hook):  # a core hook, when present: ct.flush() and hub.close() write our points too
            add_hook(self._flush_hook)

    # ------------------------------------------------------------------ setup

    @classmethod
    def of(cls, hub: Any) -> Metrics:
        """The registry of ``hub``, created on first use."""
        m: Metrics | None = getattr(hub, "_crucible_metrics", None)
        if m is None:
            with _registry_lock:
                m = getattr(hub, "_crucible_metrics", None)
                if m is None:
                    m = cls(hub)
                    hub._crucible_metrics = m
        return m

    def configure(self, *, retention_hours: float | None = None, max_tag_sets: int | None = None,
                  buckets: Any = None, prune_interval: float | None = None, max_points: int | None = None) -> None:
        """Change retention, the cardinality bound, default buckets, the prune interval or
        ``max_points`` (points kept in memory per metric, default 10M; the oldest go first)."""
        if max_points is not None:
            if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
                raise InvalidArgumentError("max_points", f"must be an int >= 1, got {max_points!r}")
            self.max_points = max_points
        elif not hasattr(self, "max_points"):
            self.max_points = 10_000_000
        if retention_hours is not None:
            if isinstance(retention_hours, bool) or not isinstance(retention_hours, (int, float)) or not retention_hours > 0:
                raise InvalidArgumentError("retention_hours", f"must be a number > 0, got {retention_hours!r}")
            self.retention_hours = float(retention_hours)
        if max_tag_sets is not None:
            if isinstance(max_tag_sets, bool) or not isinstance(max_tag_sets, int) or max_tag_sets < 1:
                raise InvalidArgumentError("max_tag_sets", f"must be an int >= 1, got {max_tag_sets!r}")
            self.max_tag_sets = max_tag_sets
        if buckets is not None:
            self.default_buckets: tuple[float, ...] | None = kinds.check_buckets(buckets)
        elif not hasattr(self, "default_buckets"):
            self.default_buckets = None
        if prune_interval is not None:
            if isinstance(prune_interval, bool) or not isinstance(prune_interval, (int, float)) or not prune_interval > 0:
                raise InvalidArgumentError("prune_interval", f"must be seconds > 0, got {prune_interval!r}")
            self.prune_interval = float(prune_interval)

    def define(self, name: str, kind: str, *, help: str | None = None, buckets: Any = None) -> None:
        """Declare a metric's kind ahead of use, with its HELP text and histogram buckets."""
        kinds.check_name(name)
        if kind not in kinds.KINDS:
            raise InvalidArgumentError("kind", f"unknown kind {kind!r}; valid: {', '.join(kinds.KINDS)}")
        bs = kinds.check_buckets(buckets) if buckets is not None else None
        with self._lock:
            info = self._names.get(name)
            if info is None:
                self._names[name] = MetricInfo(name, kind, bs or self.default_buckets, help)
                return
            if info.kind != kind:
                raise InvalidArgumentError("kind", f"metric {name!r} is already a {info.kind}")
            if help is not None:
                info.help = help
            if bs is not None:
                if info.tagsets and kind == HISTOGRAM and tuple(info.buckets) != bs:
                    raise InvalidArgumentError("buckets", f"histogram {name!r} already has observations")
                info.buckets = np.asarray(bs, dtype=np.float64)

    def kind_of(self, name: str) -> str | None:
        """The kind of a known metric, else None."""
        info = self._names.get(name)
        return info.kind if info is not None else None

    def names(self) -> list[str]:
        """Known metric names, in order of first use."""
        return list(self._names)

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

    def record(self, name: str, value: float, tags: dict[str, Any] | None = None, *, kind: str | None = None,
               step: int | None = None, epoch: int | None = None, timestamp: float | None = None,
               run_id: str | None = None) -> None:
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
        self._rows.append((sid, value, _time() if timestamp is None else timestamp,
                           _NO if step is None else step, _NO if epoch is None else epoch))

    # ------------------------------------------------------------ slow path

    def _series(self, kind: str, name: str, tags: dict[str, Any] | None, run_id: str | None,
                value: Any, argument: str) -> tuple[int, bool]:
        kinds.check_name(name)
        kinds.check_value(name, value, argument)
        if kind == COUNTER and value < 0:
            raise InvalidArgumentError(argument, f"counter {name!r} only goes up, got {value!r}; use gauge()")
        if run_id is None:
            exp = self._current()
            run_id = exp.id if exp is not None else "global"
        norm = kinds.normalize_tags(tags)
        key = kinds.tags_key(norm)
        with self._lock:
            info = self._names.get(name)
            if info is None:
                info = self._names[name] = MetricInfo(name, kind, self.default_buckets, None)
            elif info.kind != kind:
                raise InvalidArgumentError("name", f"metric {name!r} is a {info.kind}, not a {kind}")
            ts = info.tagsets.get(key)
            folded = False
            if ts is None:
                if info.regular >= self.max_tag_sets:
                    folded = True
                    # one overflow series per metric, labelled with the keys of the first folded tag set
                    ts = info.overflow
                    if ts is None:
                        norm = {k: OVERFLOW for k in norm} or {"tags": OVERFLOW}
                        key = kinds.tags_key(norm)
                        ts = info.tagsets.get(key)
                    if not info.overflow_warned:
                        info.overflow_warned = True
                        log.warning(
                            "crucible_telemetry: metric %r reached max_tag_sets=%d distinct tag sets; new tag sets "
                            "are folded into the %r series (raise it with metrics.configure(max_tag_sets=...))",
                            name, self.max_tag_sets, OVERFLOW,
                        )
                if ts is None:
                    ts = TagSet(len(self._tagsets), name, norm, key, len(info.buckets) if kind == HISTOGRAM else 0)
                    self._tagsets.append(ts)
                    info.tagsets[key] = ts
                    if folded:
                        info.overflow = ts
                    else:
                        info.regular += 1
            skey = (ts.id, run_id)
            sid = self._series_by.get(skey)
            if sid is None:
                sid = len(self._s_tagset)
                self._s_tagset.append(ts.id)
                self._s_run.append(run_id)
                self._s_name.append(name)
                self._s_buf.append(([], []))
                self._series_by[skey] = sid
                info.sids.append(sid)
        self._ensure_thread()
        return sid, folded

    def _new_series(self, kind: str, name: str, tags: dict[str, Any] | None, value: Any,
                    argument: str = "value") -> tuple[Callable[[Any], None], Callable[[Any], None]]:
        """The appenders of a series' value and time lists, cached for the next call when possible."""
        exp = self._current()
        run_id = exp.id if exp is not None else "global"
        sid, folded = self._series(kind, name, tags, run_id, value, argument)
        vals, times = self._s_buf[sid]
        appenders = (vals.append, times.append)
        if folded:
            self.overflowed += 1
            return appenders
        try:
            self._ids[kind][name, tuple(tags.items()) if tags else None, exp] = appenders
        except (TypeError, AttributeError):
            pass  # unhashable tag values: this tag set takes the slow path each time
        return appenders

    # ------------------------------------------------------------------ drain

    def _series_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self._s_tagset)
        if self._arrays[0] == n:
            return self._arrays[1], self._arrays[2]
        with self._lock:
            n = len(self._s_tagset)
            names = {nm: i for i, nm in enumerate(self._names)}
            self._arrays = (n, np.asarray(self._s_tagset[:n], dtype=np.int64),
                            np.asarray([names[s] for s in self._s_name[:n]], dtype=np.int64))
        return self._arrays[1], self._arrays[2]

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
                    arr = self._salvage([(sid, x, y, _NO, _NO) for x, y in zip(v, t, strict=True)])
                    parts.append(tuple(arr[:, i].astype(np.int64) if i in (0, 3, 4) else arr[:, i].copy()
                                       for i in range(5)))
                    continue
                ones = np.full(n, _NO, dtype=np.int64)
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
                    parts.append((arr[:, 0].astype(np.int64), np.ascontiguousarray(arr[:, 1]),
                                  np.ascontiguousarray(arr[:, 2]), arr[:, 3].astype(np.int64), arr[:, 4].astype(np.int64)))
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
        good = []
        for row in chunk:
            try:
                good.append(tuple(float(x) for x in row))
            except (TypeError, ValueError, OverflowError):
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("crucible_telemetry: metric value %r is not a number; dropped (counted in "
                                "get_stats()['dropped'])", row[1])
        return np.asarray(good, dtype=np.float64).reshape(len(good), 5)

    def _ingest(self, cols: tuple[np.ndarray, ...]) -> None:
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
                    log.warning("crucible_telemetry: metric points arrive faster than the store takes them; "
                                "more than max_pending=%d wait, the oldest are not persisted (they stay queryable "
                                "in memory; see get_stats()['persist_dropped'])", self.max_pending)
        if self._subs:
            from .subscriptions import publish

            publish(self, cols)

    # ------------------------------------------------------------ reading

    def points(self, name: str, start: float = -math.inf, end: float = math.inf,
               tags: dict[str, Any] | None = None, columns: tuple[int, ...] = (0, 1, 2, 3, 4),
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
            want = kinds.normalize_tags(tags)
            run = want.pop("run_id", None)
            ok = np.zeros(len(self._s_tagset), dtype=bool)
            for sid in info.sids:
                stags = self._tagsets[self._s_tagset[sid]].tags
                if (run is None or self._s_run[sid] == run or stags.get("run_id") == run) and all(
                        stags.get(k) == v for k, v in want.items()):
                    ok[sid] = True
            m2 = ok[cols[0]]
            mask = m2 if mask is None else mask & m2
        if mask is not None:
            return info, tuple(cols[i][mask] for i in columns)
        return info, tuple(cols[i] for i in columns)

    def series_group(self, info: MetricInfo, group_by: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Group id per series id (a lookup array) and each group's tag values, for ``group_by``."""
        keys: dict[tuple[str, ...], int] = {}
        sids = list(info.sids)
        lookup = np.zeros(max(sids) + 1 if sids else 0, dtype=np.int64)
        for sid in sids:
            tags = self._tagsets[self._s_tagset[sid]].tags
            run = self._s_run[sid]
            key = tuple(run if g == "run_id" and g not in tags else tags.get(g, "") for g in group_by)
            lookup[sid] = keys.setdefault(key, len(keys))
        return lookup, list(keys)

    def series_tags(self, sid: int) -> dict[str, str]:
        """The tags of a series."""
        return self._tagsets[self._s_tagset[sid]].tags

    def series_run(self, sid: int) -> str:
        """The run id (experiment id or ``"global"``) of a series."""
        return self._s_run[sid]

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

    def query(self, name: str, group_by: Any = None, aggregation: str = "mean", window: Any = "last_24h",
              tags: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """See :func:`crucible_telemetry.metrics.query`."""
        from .reads import query

        return query(self, name, group_by, aggregation, window, tags)

    def time_series(self, name: str, interval: str = "hour", aggregation: str = "count", window: Any = "last_24h",
                    tags: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """See :func:`crucible_telemetry.metrics.time_series`."""
        from .reads import time_series

        return time_series(self, name, interval, aggregation, window, tags)

    def rollup(self, name: str, group_by: Any = None, aggregations: Any = ("mean", "count"), window: Any = "last_24h",
               tags: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
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

    # --------------------------------------------------------- maintenance

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
            from .persist import write_pending

            with self._drain_lock:
                pending, self._pending = self._pending, []
                self._pending_points = 0
            if not pending:
                return 0
            try:
                n = write_pending(self, pending)
            except Exception as exc:  # the unwritten points went back to the pending list
                self.persist_errors.append(exc)
                if len(self.persist_errors) == 1:
                    log.warning("crucible_telemetry: could not write metrics to the store: %r; kept for retry", exc)
                return 0
            self.persisted += n
            self._last_persist = time.monotonic()
            return n

    def _flush_hook(self) -> None:
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
        t = self._thread
        if t is not None and t.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            t = self._thread
            if t is not None and t.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop.clear()
            t = threading.Thread(target=loop, args=(weakref.ref(self), self._stop), name="crucible-metrics", daemon=True)
            self._thread = t
            t.start()

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

    def _after_fork(self) -> None:
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

    def _step(self) -> None:
        """One round of the background thread."""
        self.drain()
        now = time.monotonic()
        if self.persist and now - self._last_persist >= getattr(self.hub, "flush_interval", 1.0):
            self.flush()
        if now - self._last_prune >= self.prune_interval or any(
                len(c[0]) > self.max_points for i in list(self._names.values()) for c in i.chunks[:1]):
            self.prune()
