"""Counters, gauges and histograms with rollups, time series, live updates and Prometheus export.

Module functions act on the registry of the default hub (``ct.default()``); ``Metrics.of(hub)``
gives the registry of any hub. Points are kept in memory for ``retention_hours`` (what
``query``/``time_series``/``rollup`` read) and written to the store's ``metrics`` dataset, so
SQL over ``ct.connect()`` joins them with the events.

Example:
    >>> from crucible_telemetry import metrics
    >>> metrics.increment("requests_total", tags={"model": "llama-3.1"})
    >>> metrics.histogram("request_latency_seconds", 0.42, tags={"model": "llama-3.1"})
    >>> metrics.rollup("request_latency_seconds", group_by=["model"], aggregations=["p95", "count"])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .. import _hubs
from . import from_events as _t
from . import prometheus
from . import reads as _q
from .aggregate import AGGREGATIONS, INTERVALS, WINDOWS
from .from_events import DEFAULT_TAGS, standard_specs
from .kinds import COUNTER, DEFAULT_BUCKETS, GAUGE, HISTOGRAM, KINDS, OVERFLOW, infer_kind
from .registry import Metrics
from .subscriptions import MetricStream, Subscription

__all__ = [
    "AGGREGATIONS",
    "COUNTER",
    "DEFAULT_BUCKETS",
    "DEFAULT_TAGS",
    "GAUGE",
    "HISTOGRAM",
    "INTERVALS",
    "KINDS",
    "OVERFLOW",
    "WINDOWS",
    "MetricStream",
    "Metrics",
    "Subscription",
    "attach_telemetry",
    "configure",
    "define",
    "detach_telemetry",
    "flush",
    "gauge",
    "get_metrics",
    "get_stats",
    "histogram",
    "increment",
    "infer_kind",
    "measure",
    "prometheus",
    "prune",
    "query",
    "record",
    "registry",
    "rollup",
    "standard_specs",
    "stream",
    "subscribe",
    "time_series",
]

T = TypeVar("T")
_cache: tuple[Any, Metrics | None] = (None, None)


def registry(hub: Any = None) -> Metrics:
    """The metrics registry of ``hub`` (default: the default hub)."""
    global _cache
    if hub is None:
        c = _cache
        if c[0] is _hubs._default and c[1] is not None:
            return c[1]
        hub = _hubs.default()
    m = Metrics.of(hub)
    _cache = (hub, m)
    return m


def record(
    name: str,
    value: float,
    tags: dict[str, Any] | None = None,
    *,
    kind: str | None = None,
    step: int | None = None,
    epoch: int | None = None,
) -> None:
    """Record ``value``; the kind is the metric's own, or inferred from the name and value.

    Inference (:func:`infer_kind`): ``*_total``/``*_count`` or an int value of 1 -> counter;
    ``*_seconds``/``*_ms``/``*_bytes``/names with ``duration``/``latency`` -> histogram;
    anything else -> gauge. Pass ``kind=`` to say it outright.
    """
    registry().record(name, value, tags, kind=kind, step=step, epoch=epoch)


def increment(name: str, by: float = 1, tags: dict[str, Any] | None = None) -> None:
    """Add ``by`` (>= 0, default 1) to a counter."""
    c = _cache
    (c[1] if c[0] is _hubs._default and c[1] is not None else registry()).increment(name, by, tags)


def gauge(name: str, value: float, tags: dict[str, Any] | None = None) -> None:
    """Set a gauge (a level: queue depth, GPU memory, loss)."""
    c = _cache
    (c[1] if c[0] is _hubs._default and c[1] is not None else registry()).gauge(name, value, tags)


def histogram(name: str, value: float, tags: dict[str, Any] | None = None) -> None:
    """Observe a value of a distribution (latency, tokens per request)."""
    c = _cache
    (c[1] if c[0] is _hubs._default and c[1] is not None else registry()).histogram(name, value, tags)


class _Measure:
    """Times a block (sync or async) and records the seconds in a histogram."""

    __slots__ = ("m", "name", "t0", "tags")

    def __init__(self, m: Metrics, name: str, tags: dict[str, Any] | None) -> None:
        self.m, self.name, self.tags, self.t0 = m, name, tags, 0.0

    def __enter__(self) -> _Measure:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.m.histogram(self.name, time.perf_counter() - self.t0, self.tags)

    async def __aenter__(self) -> _Measure:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def measure(name: str, fn: Callable[[], T] | None = None, tags: dict[str, Any] | None = None) -> Any:
    """``measure(name, fn)`` calls ``fn()``, records its seconds in histogram ``name`` and returns its
    result; ``with measure(name):`` (or ``async with``) times a block. Time is recorded even if it raises.
    """
    m = registry()
    if fn is None:
        return _Measure(m, name, tags)
    if not callable(fn):
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError("fn", f"expected a callable or None, got {type(fn).__name__}")
    with _Measure(m, name, tags):
        return fn()


def define(name: str, kind: str, *, help: str | None = None, buckets: Iterable[float] | None = None) -> None:
    """Declare a metric ahead of use: its kind, HELP text and histogram buckets."""
    registry().define(name, kind, help=help, buckets=buckets)


def configure(
    *,
    retention_hours: float | None = None,
    max_tag_sets: int | None = None,
    buckets: Iterable[float] | None = None,
    prune_interval: float | None = None,
    max_points: int | None = None,
) -> None:
    """Retention (default 24 h), tag sets per metric (default 10,000), default buckets, prune
    interval (default 60 s), points kept in memory per metric (default 10M)."""
    registry().configure(
        retention_hours=retention_hours,
        max_tag_sets=max_tag_sets,
        buckets=buckets,
        prune_interval=prune_interval,
        max_points=max_points,
    )


def get_metrics(name: str | None = None, limit: int = 100) -> dict[str, Any]:
    """``{"metrics": [newest first ...], "count": n, "total": retained, "timestamp": now}``."""
    return _q.get_metrics(registry(), name, limit)


def query(
    name: str,
    group_by: Iterable[str] | None = None,
    aggregation: str = "mean",
    window: Any = "last_24h",
    tags: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{<group tags>, <aggregation>: value, "count": n, "nan_excluded": k}``, one per group."""
    return _q.query(registry(), name, group_by, aggregation, window, tags)


def time_series(
    name: str,
    interval: str = "hour",
    aggregation: str = "count",
    window: Any = "last_24h",
    tags: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{"timestamp", <aggregation>, "count", "nan_excluded"}`` per bucket; empty buckets included."""
    return _q.time_series(registry(), name, interval, aggregation, window, tags)


def rollup(
    name: str,
    group_by: Iterable[str] | None = None,
    aggregations: Iterable[str] = ("mean", "count"),
    window: Any = "last_24h",
    tags: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"llama-3.1/scifact": {"mean": .., "count": .., "p95": ..}}`` keyed by the group's tag values."""
    return _q.rollup(registry(), name, group_by, aggregations, window, tags)


def attach_telemetry(
    specs: Any,
    *,
    measurement: str | None = None,
    tags: Iterable[str] | None = None,
    handler_id: str = _t.HANDLER_ID,
    backfill: Any = None,
) -> str:
    """Turn events into metrics: ``attach_telemetry([("req_llm.request.stop", "histogram"), ...])``.

    See :mod:`crucible_telemetry.metrics.from_events` for names, values and tags.
    """
    return _t.attach_telemetry(
        registry(), specs, measurement=measurement, tags=tags, handler_id=handler_id, backfill=backfill
    )


def detach_telemetry(handler_id: str = _t.HANDLER_ID) -> bool:
    """Detach what ``attach_telemetry`` attached."""
    return _t.detach_telemetry(registry(), handler_id)


def get_stats() -> dict[str, Any]:
    """Counts (recorded, stored, pruned, persisted, pending, dropped, overflowed) and bytes."""
    return registry().stats()


def prune() -> int:
    """Drop points older than ``retention_hours`` now; returns how many."""
    return registry().prune()


def flush() -> int:
    """Write pending points to the store now (then ``ct.connect()`` sees them); returns rows written."""
    m = registry()
    n = m.flush()
    m.hub.flush()
    return n


def subscribe(callback: Callable[[dict[str, Any]], Any] | None = None, name: Any = None) -> Any:
    """Live updates: ``callback(update)`` per recorded point (a :class:`Subscription`), or with no
    callback a :class:`MetricStream` for ``async for update in ...``.
    """
    m = registry()
    sub: Subscription = MetricStream(m, name) if callback is None else Subscription(m, callback, name)
    return m.add_subscriber(sub)


def stream(name: Any = None, maxsize: int = 100_000) -> MetricStream:
    """``async for update in metrics.stream():`` live updates (see :func:`subscribe`)."""
    m = registry()
    return m.add_subscriber(MetricStream(m, name, maxsize))
