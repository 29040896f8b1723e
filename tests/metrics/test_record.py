"""Recording: kinds, inference, bad input, NaN, tag conversion, measure, get_metrics."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

import crucible_telemetry as ct
from crucible_telemetry import metrics


def test_increment_gauge_histogram_record_kinds(hub: ct.Telemetry) -> None:
    metrics.increment("jobs_completed", tags={"tenant": "cns"})
    metrics.increment("jobs_completed", 4, tags={"tenant": "cns"})
    metrics.gauge("queue_depth", 42, tags={"queue": "default"})
    metrics.histogram("response_time", 123.45)
    m = metrics.registry()
    assert (m.kind_of("jobs_completed"), m.kind_of("queue_depth"), m.kind_of("response_time")) == (
        "counter",
        "gauge",
        "histogram",
    )
    assert metrics.query("jobs_completed", ["tenant"], "sum") == [
        {"tenant": "cns", "sum": 5.0, "count": 2, "nan_excluded": 0}
    ]


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("requests_total", 3, "counter"),
        ("tokens_count", 7.0, "counter"),
        ("cache_hits", 1, "counter"),  # an int increment of one: counting
        ("request_latency_seconds", 0.2, "histogram"),
        ("decode_ms", 12.0, "histogram"),
        ("step_duration", 0.3, "histogram"),
        ("queue_depth", 42, "gauge"),
        ("loss", 0.7, "gauge"),
        ("entailment_score", 1.0, "gauge"),  # a float 1.0 is a level, not a count
    ],
)
def test_record_infers_the_kind_a_user_would_guess(hub: ct.Telemetry, name: str, value: float, kind: str) -> None:
    assert metrics.infer_kind(name, value) == kind
    metrics.record(name, value)
    assert metrics.registry().kind_of(name) == kind


def test_record_keeps_a_known_metrics_kind_and_takes_an_explicit_one(hub: ct.Telemetry) -> None:
    metrics.gauge("requests", 5)
    metrics.record("requests", 1)  # would infer counter; the metric is a gauge
    assert metrics.registry().kind_of("requests") == "gauge"
    metrics.record("score", 0.5, kind="histogram")
    assert metrics.registry().kind_of("score") == "histogram"


def test_bad_input_gets_clear_errors(hub: ct.Telemetry) -> None:
    with pytest.raises(ct.InvalidArgumentError, match="name"):
        metrics.increment("")
    with pytest.raises(ct.InvalidArgumentError, match="value"):
        metrics.gauge("g", "high")  # type: ignore[arg-type]
    with pytest.raises(ct.InvalidArgumentError, match="only goes up"):
        metrics.increment("c_total", -1)
    metrics.gauge("level", 1.0)
    with pytest.raises(ct.InvalidArgumentError, match="is a gauge, not a counter"):
        metrics.increment("level")
    with pytest.raises(ct.InvalidArgumentError, match="kind"):
        metrics.record("x", 1.0, kind="summary")
    with pytest.raises(ct.InvalidArgumentError, match="count, sum, mean, min, max, p50, p95, p99"):
        metrics.query("level", aggregation="median")
    with pytest.raises(ct.InvalidArgumentError, match="aggregations"):
        metrics.rollup("level", aggregations=["mean", "p90"])
    with pytest.raises(ct.InvalidArgumentError, match="minute, hour, day"):
        metrics.time_series("level", interval="week")
    with pytest.raises(ct.InvalidArgumentError, match="last_hour, last_24h, last_7d, last_30d"):
        metrics.query("level", window="yesterday")
    with pytest.raises(ct.InvalidArgumentError, match="window"):
        metrics.query("level", window=(time.time(), time.time() - 10))
    with pytest.raises(ct.InvalidArgumentError, match="buckets"):
        metrics.define("h_seconds", "histogram", buckets=[1, 0.5])
    with pytest.raises(ct.InvalidArgumentError, match="limit"):
        metrics.get_metrics(limit=-1)
    with pytest.raises(ct.InvalidArgumentError, match="retention_hours"):
        metrics.configure(retention_hours=0)


def test_nan_is_stored_and_excluded_with_a_count(hub: ct.Telemetry) -> None:
    for v in (1.0, math.nan, 3.0, math.nan):
        metrics.histogram("x_seconds", v, tags={"m": "a"})
    r = metrics.rollup("x_seconds", ["m"], ["mean", "count", "max"])
    assert r == {"a": {"mean": 2.0, "count": 2, "max": 3.0, "nan_excluded": 2}}
    [row] = metrics.query("x_seconds", aggregation="sum")
    assert row == {"sum": 4.0, "count": 2, "nan_excluded": 2}
    got = metrics.get_metrics("x_seconds")
    assert got["count"] == 4 and sum(math.isnan(p["value"]) for p in got["metrics"]) == 2


def test_non_string_tag_values_are_converted(hub: ct.Telemetry) -> None:
    metrics.gauge("g", 1.0, tags={"epoch": 3, "fp16": True, "lr": 0.5, "none": None, "obj": [1, 2]})
    metrics.gauge("g", 2.0, tags={"epoch": 3, "fp16": True, "lr": 0.5, "none": None, "obj": [1, 2]})
    [p, _] = metrics.get_metrics("g")["metrics"]
    assert p["tags"] == {"epoch": "3", "fp16": "true", "lr": "0.5", "none": "", "obj": "[1, 2]"}
    assert metrics.get_stats()["tag_sets"] == 1
    assert metrics.rollup("g", ["epoch", "fp16"], ["count"]) == {"3/true": {"count": 2, "nan_excluded": 0}}


def test_measure_call_and_context_manager(hub: ct.Telemetry) -> None:
    assert metrics.measure("work_seconds", lambda: time.sleep(0.02) or 7, tags={"k": "fn"}) == 7
    with metrics.measure("work_seconds", tags={"k": "with"}):
        time.sleep(0.01)
    with pytest.raises(ZeroDivisionError), metrics.measure("work_seconds", tags={"k": "raised"}):
        _ = 1 / 0
    r = metrics.rollup("work_seconds", ["k"], ["count", "min"])
    assert r["fn"]["min"] >= 0.02 and r["with"]["min"] >= 0.01 and r["raised"]["count"] == 1


async def test_measure_async(hub: ct.Telemetry) -> None:
    async with metrics.measure("io_seconds"):
        await asyncio.sleep(0.01)
    assert metrics.rollup("io_seconds", aggregations=["min"])["all"]["min"] >= 0.01


def test_get_metrics_newest_first_with_count_and_timestamp(hub: ct.Telemetry) -> None:
    for i in range(5):
        metrics.gauge("a", float(i))
        metrics.gauge("b", float(-i))
    out = metrics.get_metrics(limit=3)
    assert out["count"] == 3 and out["total"] == 10
    assert out["timestamp"].tzinfo is not None
    ts = [p["timestamp"] for p in out["metrics"]]
    assert ts == sorted(ts, reverse=True)
    assert [p["value"] for p in metrics.get_metrics("a", limit=2)["metrics"]] == [4.0, 3.0]
    assert metrics.get_metrics("unknown")["metrics"] == []


def test_points_go_to_the_current_experiment_run(hub: ct.Telemetry) -> None:
    metrics.increment("calls_total")
    with ct.experiment("exp", condition="treatment") as exp:
        metrics.increment("calls_total")
        metrics.increment("calls_total")
    metrics.increment("calls_total")
    assert metrics.rollup("calls_total", ["run_id"], ["sum"]) == {
        "global": {"sum": 2.0, "count": 2, "nan_excluded": 0},
        exp.id: {"sum": 2.0, "count": 2, "nan_excluded": 0},
    }
    assert metrics.query("calls_total", aggregation="count", tags={"run_id": exp.id})[0]["count"] == 2
