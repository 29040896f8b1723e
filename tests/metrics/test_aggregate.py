"""Aggregations, windows and time series match numpy on the same data (and DuckDB quantile_cont)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import crucible_telemetry as ct
from crucible_telemetry import metrics
from crucible_telemetry.metrics import Metrics
from crucible_telemetry.metrics.aggregate import group_stats

AGGS = ["count", "sum", "mean", "min", "max", "p50", "p95", "p99"]


def _numpy(values: np.ndarray) -> dict[str, float]:
    v = values[~np.isnan(values)]
    return {
        "count": len(v),
        "sum": float(v.sum()),
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
        "p50": float(np.percentile(v, 50)),
        "p95": float(np.percentile(v, 95)),
        "p99": float(np.percentile(v, 99)),
    }


def _close(got: dict[str, object], want: dict[str, float]) -> None:
    for k, w in want.items():
        assert got[k] == pytest.approx(w, rel=1e-12, abs=1e-12), k


def test_rollup_by_two_tags_matches_numpy(hub: ct.Telemetry) -> None:
    rng = np.random.default_rng(7)
    models, datasets = ["llama-3.1", "qwen", "mistral"], ["scifact", "fever"]
    data: dict[tuple[str, str], list[float]] = {}
    for _ in range(3000):
        m, d = models[rng.integers(3)], datasets[rng.integers(2)]
        v = float(rng.lognormal(0, 1)) if rng.random() > 0.02 else math.nan
        data.setdefault((m, d), []).append(v)
        metrics.histogram("entailment_seconds", v, tags={"model": m, "dataset": d, "seed": int(rng.integers(5))})
    r = metrics.rollup("entailment_seconds", group_by=["model", "dataset"], aggregations=AGGS)
    assert set(r) == {f"{m}/{d}" for m, d in data}
    for (m, d), vals in data.items():
        arr = np.asarray(vals)
        _close(r[f"{m}/{d}"], _numpy(arr))
        assert r[f"{m}/{d}"]["nan_excluded"] == int(np.isnan(arr).sum())
    rows = metrics.query("entailment_seconds", group_by=["model"], aggregation="p95")
    for row in rows:
        arr = np.concatenate([np.asarray(v) for (m, _), v in data.items() if m == row["model"]])
        assert row["p95"] == pytest.approx(np.percentile(arr[~np.isnan(arr)], 95), rel=1e-12)


def test_many_groups_path_matches_the_few_groups_path() -> None:
    rng = np.random.default_rng(1)
    n_groups = 1000  # above the per-group loop's threshold: the vectorised lexsort path
    gid = rng.integers(0, n_groups, 50_000)
    vals = rng.normal(size=50_000)
    vals[rng.random(50_000) < 0.01] = np.nan
    st = group_stats(gid, vals, n_groups, AGGS)
    for g in rng.choice(n_groups, 25, replace=False):
        want = _numpy(vals[gid == g])
        got = {a: st.value(a, int(g)) for a in AGGS}
        _close(got, want)
        assert st.nan_excluded[g] == int(np.isnan(vals[gid == g]).sum())


def test_percentiles_equal_duckdb_quantile_cont_over_the_store(hub: ct.Telemetry) -> None:
    rng = np.random.default_rng(3)
    vals = rng.exponential(0.3, 2000)
    for v in vals:
        metrics.histogram("req_seconds", float(v), tags={"model": "m"})
    metrics.flush()
    with hub.connect() as con:
        p50, p95, p99 = con.sql(
            "SELECT quantile_cont(value, 0.5), quantile_cont(value, 0.95), quantile_cont(value, 0.99) "
            "FROM metrics WHERE metric = 'req_seconds'"
        ).fetchall()[0]
    r = metrics.rollup("req_seconds", aggregations=["p50", "p95", "p99"])["all"]
    assert (r["p50"], r["p95"], r["p99"]) == pytest.approx((p50, p95, p99), rel=1e-12)
    assert r["p95"] == pytest.approx(np.percentile(vals, 95), rel=1e-12)


def test_windows_filter_by_time(hub: ct.Telemetry) -> None:
    m = Metrics.of(hub)
    now = time.time()
    ages_h = [0.1, 0.5, 2, 20, 30, 24 * 6, 24 * 20, 24 * 40]
    for i, age in enumerate(ages_h):
        m.record("events_total", float(i + 1), kind="counter", timestamp=now - age * 3600)
    counts = {
        w: metrics.query("events_total", aggregation="count", window=w)[0]["count"]
        for w in ("last_hour", "last_24h", "last_7d", "last_30d")
    }
    assert counts == {"last_hour": 2, "last_24h": 4, "last_7d": 6, "last_30d": 7}
    assert metrics.query("events_total", aggregation="count", window=None)[0]["count"] == 8
    start = datetime.fromtimestamp(now, UTC) - timedelta(hours=25)
    end = datetime.fromtimestamp(now, UTC) - timedelta(hours=1)
    [row] = metrics.query("events_total", aggregation="sum", window=(start, end))
    assert row["sum"] == 3.0 + 4.0  # the 2 h and 20 h points
    [row] = metrics.query("events_total", aggregation="sum", window=ct.Range(start, end))
    assert row["sum"] == 7.0
    [row] = metrics.query("events_total", aggregation="count", window=ct.Last(minutes=45))
    assert row["count"] == 2


def test_time_series_has_empty_buckets_as_zero_count_rows(hub: ct.Telemetry) -> None:
    m = Metrics.of(hub)
    base = math.floor(time.time() / 60) * 60 - 10 * 60  # ten minutes ago, minute-aligned
    for minute, values in {0: [1.0, 3.0], 1: [2.0], 4: [5.0, 7.0, math.nan]}.items():
        for v in values:
            m.record("lat_seconds", v, kind="histogram", timestamp=base + minute * 60 + 5)
    window = (base, base + 6 * 60)
    rows = metrics.time_series("lat_seconds", interval="minute", aggregation="mean", window=window)
    assert [r["timestamp"] for r in rows] == [datetime.fromtimestamp(base + i * 60, UTC) for i in range(6)]
    assert [r["count"] for r in rows] == [2, 1, 0, 0, 2, 0]
    assert [r["mean"] for r in rows] == [2.0, 2.0, None, None, 6.0, None]
    assert rows[4]["nan_excluded"] == 1
    counts = metrics.time_series("lat_seconds", interval="minute", aggregation="count", window=window)
    assert [r["count"] for r in counts] == [2, 1, 0, 0, 2, 0]
    sums = metrics.time_series("lat_seconds", interval="minute", aggregation="sum", window=window)
    assert [r["sum"] for r in sums] == [4.0, 2.0, 0.0, 0.0, 12.0, 0.0]
    hourly = metrics.time_series("lat_seconds", interval="hour", aggregation="max", window="last_24h")
    assert len(hourly) in (24, 25) and sum(r["count"] for r in hourly) == 5
    assert max(r["max"] for r in hourly if r["max"] is not None) == 7.0
    daily = metrics.time_series("lat_seconds", interval="day", aggregation="count", window="last_7d")
    assert sum(r["count"] for r in daily) == 5 and len(daily) in (7, 8)
    tagged = metrics.time_series("lat_seconds", interval="minute", window=window, tags={"model": "x"})
    assert sum(r["count"] for r in tagged) == 0 and len(tagged) == 6


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100, 1001])
def test_small_group_percentiles_equal_numpy_for_any_size(size: int) -> None:
    rng = np.random.default_rng(size)
    vals = np.round(rng.normal(size=size * 3), 1)  # ties included
    gid = np.repeat(np.arange(3), size)
    st = group_stats(gid, vals, 3, AGGS)
    for g in range(3):
        _close({a: st.value(a, g) for a in AGGS}, _numpy(vals[gid == g]))
    one = group_stats(np.zeros(size, dtype=np.int64), vals[:size].copy(), 1, AGGS)
    _close({a: one.value(a, 0) for a in AGGS}, _numpy(vals[:size]))
