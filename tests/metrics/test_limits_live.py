"""Cardinality bound, retention, stats and live updates (callbacks and async iteration)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import crucible_telemetry as ct
from crucible_telemetry import metrics
from crucible_telemetry.metrics import Metrics


def test_cardinality_bound_folds_into_overflow_with_one_warning(
    hub: ct.Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.configure(max_tag_sets=10)
    with caplog.at_level(logging.WARNING, logger="crucible_telemetry"):
        for i in range(25):
            metrics.increment("requests_total", tags={"user": f"u{i}"})
        metrics.increment("requests_total", tags={"user": "u24"})
        metrics.increment("requests_total", tags={"client": "c1", "user": "u99"})  # other keys: same series
        metrics.increment("other_total", tags={"user": "u0"})
    warnings = [r for r in caplog.records if "max_tag_sets" in r.message]
    assert len(warnings) == 1 and "requests_total" in warnings[0].message
    r = metrics.rollup("requests_total", ["user"], ["sum"])
    assert len(r) == 11 and r["__overflow__"]["sum"] == 17.0
    assert all(r[f"u{i}"]["sum"] == 1.0 for i in range(10))
    stats = metrics.get_stats()
    assert stats["overflowed"] == 17 and stats["tag_sets"] == 12  # 10 + overflow + other_total
    text = metrics.prometheus.export("requests_total")
    assert 'requests_total{user="__overflow__"} 17.0' in text


def test_retention_prunes_on_demand_and_on_a_timer(hub: ct.Telemetry) -> None:
    m = Metrics.of(hub)
    now = time.time()
    for age_h in (30, 25, 1, 0):
        m.record("jobs_total", 1, kind="counter", timestamp=now - age_h * 3600)
    assert metrics.prune() == 2
    stats = metrics.get_stats()
    assert (stats["recorded"], stats["stored"], stats["pruned"]) == (4, 2, 2)
    assert stats["retention_hours"] == 24.0
    # Prometheus counters never go down when points are pruned
    assert "jobs_total 4.0" in metrics.prometheus.export("jobs_total")
    metrics.configure(retention_hours=0.5, prune_interval=0.05)
    deadline = time.monotonic() + 5
    while metrics.get_stats()["stored"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = metrics.get_stats()
    assert (stats["stored"], stats["pruned"]) == (1, 3)


def test_stats_count_bytes(hub: ct.Telemetry) -> None:
    for i in range(1000):
        metrics.histogram("lat_seconds", i / 1000, tags={"k": str(i % 3)})
    metrics.flush()
    s = metrics.get_stats()
    assert s["recorded"] == s["stored"] == s["persisted"] == 1000 and s["pending"] == 0
    assert s["memory_bytes"] >= 1000 * 8 * 5 and s["store_bytes"] > 0
    assert s["bytes"] == s["memory_bytes"] + s["store_bytes"]
    assert (s["metrics"], s["tag_sets"], s["series"]) == (1, 3, 3)


def test_subscribe_callback_gets_each_point(hub: ct.Telemetry) -> None:
    got: list[dict[str, object]] = []
    done = threading.Event()

    def cb(update: dict[str, object]) -> None:
        got.append(update)
        if len(got) == 3:
            done.set()

    sub = metrics.subscribe(cb, name="jobs_total")
    metrics.increment("jobs_total", tags={"q": "a"})
    metrics.gauge("ignored", 1.0)
    metrics.increment("jobs_total", 2, tags={"q": "b"})
    metrics.increment("jobs_total", 3, tags={"q": "a"})
    assert done.wait(5)
    assert [(u["value"], u["tags"]) for u in got] == [(1.0, {"q": "a"}), (2.0, {"q": "b"}), (3.0, {"q": "a"})]
    assert {u["name"] for u in got} == {"jobs_total"} and all(u["kind"] == "counter" for u in got)
    sub.close()
    metrics.increment("jobs_total")
    metrics.registry().drain()
    assert len(got) == 3


def test_a_raising_subscriber_is_unsubscribed(hub: ct.Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    def bad(update: dict[str, object]) -> None:
        raise RuntimeError("boom")

    metrics.subscribe(bad)
    with caplog.at_level(logging.ERROR, logger="crucible_telemetry"):
        metrics.gauge("g", 1.0)
        metrics.registry().drain()
    assert metrics.get_stats()["subscribers"] == 0
    assert any("unsubscribed" in r.message for r in caplog.records)


async def test_async_iterator_streams_live_updates(hub: ct.Telemetry) -> None:
    stream = metrics.subscribe()  # no callback: an async iterator

    def produce() -> None:
        for i in range(5):
            metrics.histogram("step_seconds", i / 10, tags={"phase": "train"})
            time.sleep(0.01)

    t = threading.Thread(target=produce)
    t.start()
    seen = []
    async with stream:
        async for update in stream:
            seen.append(update["value"])
            if len(seen) == 5:
                break
    t.join()
    assert sorted(seen) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert metrics.get_stats()["subscribers"] == 0


async def test_stream_filters_by_name_and_ends_on_close(hub: ct.Telemetry) -> None:
    s = metrics.stream(name=["a"])
    metrics.gauge("b", 1.0)
    metrics.gauge("a", 2.0)
    first = await asyncio.wait_for(s.__anext__(), 5)
    assert (first["name"], first["value"]) == ("a", 2.0)
    await s.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(s.__anext__(), 5)


def test_concurrent_threads_lose_no_points(hub: ct.Telemetry) -> None:
    n, k = 20_000, 4

    def work(i: int) -> None:
        for j in range(n):
            metrics.increment("hits_total", tags={"shard": str(j % 2)})
            if j % 1000 == 0:
                metrics.histogram("x_seconds", float(i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r = metrics.rollup("hits_total", ["shard"], ["sum", "count"])
    assert r["0"]["sum"] + r["1"]["sum"] == n * k and r["0"]["count"] == n * k // 2
    assert 'hits_total{shard="1"} 40000.0' in metrics.prometheus.export("hits_total")
    metrics.flush()  # waits for a write the background thread may have in flight
    assert metrics.get_stats()["persisted"] == n * k + k * n // 1000
    with hub.connect() as con:
        assert con.sql("SELECT count(*), sum(value) FROM metrics WHERE metric = 'hits_total'").fetchall() == [
            (n * k, float(n * k))
        ]


def test_points_reach_the_store_when_the_hub_closes(tmp_path: object) -> None:
    from pathlib import Path

    home = Path(str(tmp_path)) / "closing"
    h = ct.Telemetry(home, flush_interval=30)
    m = Metrics.of(h)
    for i in range(100):
        m.histogram("late_seconds", i / 100)
    h.close()  # the metrics thread notices and writes what it holds
    deadline = time.monotonic() + 10
    rows = 0
    while time.monotonic() < deadline:
        with ct.Telemetry(home).connect() as con:
            rows = con.sql("SELECT count(*) FROM metrics WHERE metric = 'late_seconds'").fetchall()[0][0]
        if rows == 100:
            break
        time.sleep(0.1)
    assert rows == 100


def test_max_points_bounds_memory_oldest_first(hub: ct.Telemetry) -> None:
    metrics.configure(max_points=100)
    m = Metrics.of(hub)
    now = time.time()
    for i in range(250):
        m.record("g", float(i), kind="gauge", timestamp=now - 250 + i)
    assert metrics.prune() == 150
    assert sorted(p["value"] for p in metrics.get_metrics("g", limit=1000)["metrics"]) == [
        float(i) for i in range(150, 250)
    ]
    with pytest.raises(ct.InvalidArgumentError, match="max_points"):
        metrics.configure(max_points=0)
