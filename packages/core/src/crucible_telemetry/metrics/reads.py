"""Reads over the retained points: ``get_metrics``, ``query``, ``time_series`` and ``rollup``."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from .aggregate import (
    check_aggregation,
    check_aggregations,
    check_interval,
    group_stats,
    resolve_window,
)

if TYPE_CHECKING:
    from .registry import Metrics

__all__ = ["get_metrics", "query", "rollup", "time_series"]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _check_group_by(group_by: Any) -> tuple[str, ...]:
    if group_by is None:
        return ()
    if isinstance(group_by, str):
        return (group_by,)
    try:
        out = tuple(group_by)
    except TypeError:
        raise InvalidArgumentError("group_by", f"expected a list of tag names, got {group_by!r}") from None
    for g in out:
        if not isinstance(g, str):
            raise InvalidArgumentError("group_by", f"tag names are strings, got {g!r}")
    return out


def _groups(
    m: Metrics, info: Any, sid: np.ndarray, group_by: Sequence[str]
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Group id per point and the tag values of each group."""
    if not group_by or info is None:
        return np.zeros(len(sid), dtype=np.int64), [()]
    lookup, keys = m.series_group(info, tuple(group_by))
    return lookup[sid], keys


def _filter(
    m: Metrics, name: str, window: Any, tags: dict[str, Any] | None, columns: tuple[int, ...] = (0, 1)
) -> tuple[Any, tuple[np.ndarray, ...]]:
    start, end = resolve_window(window)
    return m.points(name, start, end, tags, columns)


def query(
    m: Metrics,
    name: str,
    group_by: Any = None,
    aggregation: str = "mean",
    window: Any = "last_24h",
    tags: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per group: the group's tag values, ``aggregation: value``, ``count``, ``nan_excluded``."""
    agg = check_aggregation(aggregation)
    gb = _check_group_by(group_by)
    info, cols = _filter(m, name, window, tags)
    gid, keys = _groups(m, info, cols[0], gb)
    st = group_stats(gid, cols[1], len(keys), (agg,))
    rows = []
    for i, key in enumerate(keys):
        if gb and not st.count[i] and not st.nan_excluded[i]:
            continue
        row: dict[str, Any] = dict(zip(gb, key, strict=True))
        row[agg] = st.value(agg, i)
        row["count"] = int(st.count[i])
        row["nan_excluded"] = int(st.nan_excluded[i])
        rows.append(row)
    return rows


def rollup(
    m: Metrics,
    name: str,
    group_by: Any = None,
    aggregations: Any = ("mean", "count"),
    window: Any = "last_24h",
    tags: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"llama-3.1/scifact": {"mean": .., "count": .., "nan_excluded": ..}}``: tag values joined by ``/``.

    Without ``group_by`` the single key is ``"all"``.
    """
    aggs = check_aggregations(aggregations)
    gb = _check_group_by(group_by)
    info, cols = _filter(m, name, window, tags)
    gid, keys = _groups(m, info, cols[0], gb)
    st = group_stats(gid, cols[1], len(keys), aggs)
    out: dict[str, dict[str, Any]] = {}
    for i, key in enumerate(keys):
        if gb and not st.count[i] and not st.nan_excluded[i]:
            continue
        vals: dict[str, Any] = {a: st.value(a, i) for a in aggs}
        if "count" not in vals:
            vals["count"] = int(st.count[i])
        vals["nan_excluded"] = int(st.nan_excluded[i])
        out["/".join(key) if gb else "all"] = vals
    return out


def time_series(
    m: Metrics,
    name: str,
    interval: str = "hour",
    aggregation: str = "count",
    window: Any = "last_24h",
    tags: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per interval bucket (UTC-aligned), oldest first; empty buckets have ``count`` 0.

    Each row: ``timestamp`` (bucket start), ``aggregation: value``, ``count``, ``nan_excluded``.
    """
    step = check_interval(interval)
    agg = check_aggregation(aggregation)
    start, end = resolve_window(window)
    _info, cols = _filter(m, name, window, tags, (0, 1, 2))
    ts = cols[2]
    if not math.isfinite(start):
        if not len(ts):
            return []
        start = float(ts.min())
    if not math.isfinite(end):
        end = max(time.time(), float(ts.max()) if len(ts) else -math.inf) + 1e-6
    first = math.floor(start / step) * step
    nb = max(1, math.ceil((end - first) / step))
    b = np.floor((ts - first) / step).astype(np.int64).clip(0, nb - 1)
    st = group_stats(b, cols[1], nb, (agg,))
    return [
        {
            "timestamp": _dt(first + i * step),
            agg: st.value(agg, i),
            "count": int(st.count[i]),
            "nan_excluded": int(st.nan_excluded[i]),
        }
        for i in range(nb)
    ]


def get_metrics(m: Metrics, name: str | None = None, limit: int = 100) -> dict[str, Any]:
    """The newest ``limit`` points (of one metric or all), newest first, with ``count`` and ``timestamp``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError("limit", f"expected an int >= 0, got {limit!r}")
    names = [name] if name is not None else m.names()
    picked: list[tuple[float, int, str, float, int, int, str]] = []
    total = 0
    for nm in names:
        info, cols = m.points(nm)
        if info is None:
            continue
        sid, val, ts, step, epoch = cols
        total += len(sid)
        if len(ts) > limit:
            idx = np.argpartition(-ts, limit - 1)[:limit] if limit else np.empty(0, dtype=np.int64)
        else:
            idx = np.arange(len(ts))
        for i in idx:
            picked.append((float(ts[i]), int(sid[i]), nm, float(val[i]), int(step[i]), int(epoch[i]), info.kind))
    picked.sort(key=lambda r: r[0], reverse=True)
    rows = []
    for t, s, nm, v, stp, ep, kind in picked[:limit]:
        rows.append(
            {
                "name": nm,
                "kind": kind,
                "value": v,
                "tags": dict(m.series_tags(s)),
                "run_id": m.series_run(s),
                "step": stp if stp >= 0 else None,
                "epoch": ep if ep >= 0 else None,
                "timestamp": _dt(t),
            }
        )
    return {"metrics": rows, "count": len(rows), "total": total, "timestamp": datetime.now(UTC)}
