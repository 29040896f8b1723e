"""Windows, intervals and vectorised aggregations (count, sum, mean, min, max, p50, p95, p99).

Percentiles are exact: numpy's ``linear`` method, the same as DuckDB's ``quantile_cont``.
NaN values are excluded from every aggregation and counted in ``nan_excluded``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..storage.windows import Last, Range, to_datetime

__all__ = [
    "AGGREGATIONS",
    "INTERVALS",
    "WINDOWS",
    "GroupStats",
    "check_aggregation",
    "check_aggregations",
    "check_interval",
    "group_stats",
    "resolve_window",
]

AGGREGATIONS = ("count", "sum", "mean", "min", "max", "p50", "p95", "p99")
_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
INTERVALS = {"minute": 60, "hour": 3600, "day": 86400}
WINDOWS = {"last_hour": 3600, "last_24h": 86400, "last_7d": 7 * 86400, "last_30d": 30 * 86400}
_SMALL_GROUPS = 256  # below this, per-group partition; above, one lexsort for all groups


def check_aggregation(agg: Any, argument: str = "aggregation") -> str:
    """One of :data:`AGGREGATIONS`, or a clear error listing them."""
    if agg not in AGGREGATIONS:
        raise InvalidArgumentError(argument, f"unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")
    return str(agg)


def check_aggregations(aggs: Any) -> tuple[str, ...]:
    """A non-empty list of aggregations."""
    if isinstance(aggs, str):
        aggs = [aggs]
    try:
        out = tuple(check_aggregation(a, "aggregations") for a in aggs)
    except TypeError:
        raise InvalidArgumentError("aggregations", f"expected a list of aggregations, got {aggs!r}") from None
    if not out:
        raise InvalidArgumentError("aggregations", f"at least one is required; valid: {', '.join(AGGREGATIONS)}")
    return out


def check_interval(interval: Any) -> int:
    """Seconds of ``"minute"``, ``"hour"`` or ``"day"``."""
    if interval not in INTERVALS:
        raise InvalidArgumentError("interval", f"unknown interval {interval!r}; valid: {', '.join(INTERVALS)}")
    return INTERVALS[interval]


def resolve_window(window: Any, now: float | None = None) -> tuple[float, float]:
    """``[start, end)`` in epoch seconds.

    ``window`` is one of :data:`WINDOWS`, ``None`` (everything retained), a ``(start, end)``
    pair (datetimes, epoch seconds or ISO-8601 strings), ``ct.Range`` or ``ct.Last``.
    """
    now = time.time() if now is None else now
    if window is None:
        return -math.inf, math.inf
    if isinstance(window, str):
        if window not in WINDOWS:
            raise InvalidArgumentError(
                "window", f"unknown window {window!r}; valid: {', '.join(WINDOWS)}, a (start, end) pair or None"
            )
        # the end is open to the future a little: points stamped while the query runs still count
        return now - WINDOWS[window], math.inf
    if isinstance(window, Last):
        return now - window.delta.total_seconds(), math.inf
    if isinstance(window, Range):
        return _epoch(window.t_start), _epoch(window.t_end)
    if isinstance(window, (tuple, list)) and len(window) == 2:
        start = _epoch(to_datetime(window[0], "window"))
        end = _epoch(to_datetime(window[1], "window"))
        if end <= start:
            raise InvalidArgumentError("window", f"the end must be after the start, got {window!r}")
        return start, end
    raise InvalidArgumentError(
        "window", f"unknown window {window!r}; valid: {', '.join(WINDOWS)}, a (start, end) pair or None"
    )


def _epoch(value: object) -> float:
    assert isinstance(value, datetime)
    return value.timestamp()


class GroupStats:
    """Aggregations of values split into ``n`` groups (array per aggregation, NaN-free counts)."""

    __slots__ = ("count", "nan_excluded", "values")

    def __init__(self, count: np.ndarray, nan_excluded: np.ndarray, values: dict[str, np.ndarray]) -> None:
        self.count = count
        self.nan_excluded = nan_excluded
        self.values = values

    def value(self, agg: str, i: int) -> float | int | None:
        """The aggregation of group ``i``: count and sum of nothing are 0, the others None."""
        c = int(self.count[i])
        if agg == "count":
            return c
        if agg == "sum":
            return float(self.values["sum"][i])
        if c == 0:
            return None
        return float(self.values[agg][i])


def group_stats(gid: np.ndarray, values: np.ndarray, n: int, aggs: Iterable[str]) -> GroupStats:
    """Aggregate ``values`` by group id ``gid`` (``0 <= gid < n``); NaN values are excluded."""
    aggs = tuple(aggs)
    nan = np.isnan(values)
    nan_count = np.bincount(gid[nan], minlength=n) if nan.any() else np.zeros(n, dtype=np.int64)
    if nan.any():
        gid, values = gid[~nan], values[~nan]
    count = np.bincount(gid, minlength=n)
    out: dict[str, np.ndarray] = {}
    if "sum" in aggs or "mean" in aggs:
        s = np.bincount(gid, weights=values, minlength=n)
        out["sum"] = s
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"] = s / np.maximum(count, 1)
    order_aggs = [a for a in aggs if a in ("min", "max") or a in _QUANTILES]
    if order_aggs and len(values):
        if n <= _SMALL_GROUPS:
            _small(gid, values, count, n, order_aggs, out)
        else:
            _large(gid, values, count, n, order_aggs, out)
    else:
        for a in order_aggs:
            out[a] = np.full(n, np.nan)
    return GroupStats(count, nan_count, out)


def _group_dtype(n: int) -> type[np.integer[Any]]:
    return np.int16 if n < 2**15 else np.int32 if n < 2**31 else np.int64


def _small(
    gid: np.ndarray, values: np.ndarray, count: np.ndarray, n: int, aggs: Sequence[str], out: dict[str, np.ndarray]
) -> None:
    """Few groups: a stable (radix) sort by group, then partition-based percentiles per group."""
    res = {a: np.full(n, np.nan) for a in aggs}
    if n == 1:
        slices = [(0, values.copy())]  # partitioned in place below
    else:
        order = np.argsort(gid.astype(_group_dtype(n), copy=False), kind="stable")
        vs = values[order]
        ends = np.cumsum(count)
        slices = [(g, vs[ends[g] - count[g] : ends[g]]) for g in range(n) if count[g]]
    qs = [a for a in aggs if a in _QUANTILES]
    for g, v in slices:
        if not len(v):
            continue
        if qs:
            got = _order_stats(v, [_QUANTILES[q] for q in qs], "min" in res, "max" in res)
            for q, x in zip(qs, got[2:], strict=True):
                res[q][g] = x
            if "min" in res:
                res["min"][g] = got[0]
            if "max" in res:
                res["max"][g] = got[1]
        else:
            if "min" in res:
                res["min"][g] = v.min()
            if "max" in res:
                res["max"][g] = v.max()
    out.update(res)


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation (``np.percentile(method="linear")``), bit for bit."""
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def _order_stats(v: np.ndarray, qs: Sequence[float], want_min: bool, want_max: bool) -> list[float]:
    """``[min, max, *quantiles]`` of a NaN-free array (reordered in place) from one partition."""
    n = len(v)
    pos = [(n - 1) * q for q in qs]
    los = sorted({math.floor(p) for p in pos})
    v.partition(los)
    part = v
    out = [part[: los[0] + 1].min() if want_min else math.nan, part[los[-1] :].max() if want_max else math.nan]
    for p in pos:
        lo = math.floor(p)
        t = p - lo
        a = float(part[lo])
        if t == 0 or lo + 1 >= n:
            out.append(a)
            continue
        nxt = next((k for k in los if k > lo), n - 1)
        b = float(part[lo + 1 : nxt + 1].min())
        out.append(_lerp(a, b, t))
    return out


def _large(
    gid: np.ndarray, values: np.ndarray, count: np.ndarray, n: int, aggs: Sequence[str], out: dict[str, np.ndarray]
) -> None:
    """Many groups (time buckets): one sort by (group, value), percentiles by vectorised interpolation."""
    order = np.lexsort((values, gid))
    vs = values[order]
    ends = np.cumsum(count)
    starts = ends - count
    has = count > 0
    last = np.maximum(ends - 1, 0)
    if "min" in aggs:
        out["min"] = np.where(has, vs[np.minimum(starts, len(vs) - 1)], np.nan)
    if "max" in aggs:
        out["max"] = np.where(has, vs[last], np.nan)
    for a in aggs:
        if a not in _QUANTILES:
            continue
        pos = (count - 1).clip(min=0) * _QUANTILES[a]
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        hi = np.minimum(lo + 1, (count - 1).clip(min=0))
        a_lo = vs[np.minimum(starts + lo, len(vs) - 1)]
        a_hi = vs[np.minimum(starts + hi, len(vs) - 1)]
        out[a] = np.where(has, a_lo + (a_hi - a_lo) * frac, np.nan)
