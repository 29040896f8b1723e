"""Points land in the store's ``metrics`` dataset and join with ``events`` in one SQL query."""

from __future__ import annotations

import logging

import pytest

import crucible_telemetry as ct
from crucible_telemetry import metrics


def _train(n_epochs: int = 2, n_batches: int = 3) -> None:
    step = 0
    for epoch in range(n_epochs):
        for b in range(n_batches):
            ct.emit(
                ("crucible_train", "batch", "stop"),
                {"loss": 1.0 / (step + 1), "duration": 2_000_000 * (b + 1), "global_step": step, "batch": b},
                {"epoch": epoch, "framework": "lightning", "model_name": "tiny"},
            )
            step += 1
        ct.emit(
            ("crucible_train", "epoch", "stop"), {"duration": 10_000_000, "epoch": epoch}, {"framework": "lightning"}
        )


def test_sql_joins_metrics_with_events(hub: ct.Telemetry) -> None:
    metrics.attach_telemetry(
        [
            ("crucible_train.batch.stop", "histogram"),
            ("crucible_train.batch.stop", "gauge", {"measurement": "loss"}),
            ("crucible_train.epoch.stop", "counter"),
        ]
    )
    with ct.experiment("train", condition="baseline") as exp:
        _train()
        metrics.gauge("gpu_memory_bytes", 1e9)
    metrics.gauge("outside", 1.0)
    assert metrics.flush() > 0
    with hub.connect() as con:
        rows = con.sql(
            """SELECT e.global_step, e.measurements['loss'] AS event_loss, m.value AS metric_loss,
                      m.tags['condition'] AS condition, m.kind
               FROM events e JOIN metrics m
                 ON m.run_id = e.experiment_id AND m.step = e.global_step
               WHERE e.event = 'crucible_train.batch.stop' AND m.metric = 'crucible_train_batch_stop_loss'
               ORDER BY e.global_step"""
        ).fetchall()
        assert [r[0] for r in rows] == list(range(6))
        assert all(r[1] == r[2] for r in rows)
        assert {r[3] for r in rows} == {"baseline"} and {r[4] for r in rows} == {"gauge"}
        per_run = dict(con.sql("SELECT run_id, count(*) FROM metrics GROUP BY run_id").fetchall())
        assert per_run[exp.id] == 6 + 6 + 2 + 1 and per_run["global"] == 1
        lat = con.sql(
            "SELECT sum(value), count(*) FROM metrics WHERE metric = 'crucible_train_batch_stop_duration_seconds'"
        ).fetchall()[0]
        assert lat == (pytest.approx(0.024), 6)
        epochs = con.sql(
            "SELECT r.name, sum(m.value) FROM metrics m JOIN runs r ON r.experiment_id = m.run_id "
            "WHERE m.metric = 'crucible_train_epoch_stop_total' GROUP BY r.name"
        ).fetchall()
        assert epochs == [("train", 2.0)]
    assert metrics.get_stats()["persisted"] == metrics.get_stats()["recorded"] == 16


def test_attach_telemetry_names_values_and_tags(hub: ct.Telemetry) -> None:
    metrics.attach_telemetry(
        [
            ("req_llm.request.stop", "counter"),
            ("req_llm.request.stop", "histogram"),
            ("req_llm.request.exception", "counter"),
            ("req_llm.request.stop", "counter", {"measurement": "total_tokens"}),
        ]
    )
    for i, model in enumerate(["gpt-4o", "gpt-4o", "llama"]):
        ct.emit(
            "req_llm.request.stop",
            {"duration": (i + 1) * 100_000_000, "total_tokens": 10 * (i + 1)},
            {"model": model, "provider": "openai", "operation": "chat", "prompt": "not a tag"},
        )
    ct.emit("req_llm.request.exception", {"duration": 5}, {"model": "llama", "kind": "timeout"})
    assert metrics.rollup("req_llm_request_stop_total", ["model", "status"], ["sum"]) == {
        "gpt-4o/ok": {"sum": 2.0, "count": 2, "nan_excluded": 0},
        "llama/ok": {"sum": 1.0, "count": 1, "nan_excluded": 0},
    }
    r = metrics.rollup("req_llm_request_stop_duration_seconds", ["model"], ["max", "count"])
    assert r["gpt-4o"]["max"] == pytest.approx(0.2) and r["llama"]["count"] == 1
    assert metrics.query("req_llm_request_stop_total_tokens_total", aggregation="sum")[0]["sum"] == 60.0
    assert metrics.rollup("req_llm_request_exception_total", ["status"], ["sum"])["error"]["sum"] == 1.0
    [p] = metrics.get_metrics("req_llm_request_exception_total")["metrics"]
    assert p["tags"] == {"model": "llama", "status": "error"}
    assert metrics.detach_telemetry() is True
    ct.emit("req_llm.request.stop", {"duration": 1}, {"model": "llama"})
    assert metrics.rollup("req_llm_request_stop_total", aggregations=["sum"])["all"]["sum"] == 3.0


def test_attach_telemetry_custom_measurement_tags_and_first_numeric(hub: ct.Telemetry) -> None:
    metrics.attach_telemetry(
        [("app.job.done", "gauge"), ("app.job.done", "histogram", {"name": "job_size_bytes", "measurement": "size"})],
        tags=["queue"],
    )
    ct.emit("app.job.done", {"size": 2048, "items": 3}, {"queue": "q1", "model": "ignored"})
    assert metrics.get_metrics("app_job_done_size")["metrics"][0]["tags"] == {"queue": "q1"}
    assert metrics.rollup("job_size_bytes", ["queue"], ["sum"])["q1"]["sum"] == 2048.0


def test_attach_telemetry_bad_specs(hub: ct.Telemetry) -> None:
    with pytest.raises(ct.InvalidArgumentError, match="kind"):
        metrics.attach_telemetry([("a.b", "timer")])
    with pytest.raises(ct.InvalidArgumentError, match="specs"):
        metrics.attach_telemetry([])
    with pytest.raises(ct.InvalidArgumentError, match="measurement, name"):
        metrics.attach_telemetry([("a.b", "gauge", {"unit": "s"})])


def test_a_failing_record_never_reaches_the_emitting_code(hub: ct.Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    metrics.gauge("app_x_total", 1.0)  # the counter name the handler will want is taken by a gauge
    metrics.attach_telemetry([("app.x", "counter")])
    with caplog.at_level(logging.WARNING, logger="crucible_telemetry"):
        ct.emit("app.x", {"v": 1.0})
        ct.emit("app.x", {"v": 1.0})
    assert metrics.registry().handler_errors == 2
    assert sum("attach_telemetry could not record" in r.message for r in caplog.records) == 1


def test_backfill_replays_stored_events_with_their_time_and_run(hub: ct.Telemetry) -> None:
    with ct.experiment("earlier", condition="treatment") as exp:
        _train(n_epochs=1, n_batches=4)
    hub.flush()
    metrics.attach_telemetry([("crucible_train.batch.stop", "histogram")], backfill=[exp.id])
    r = metrics.rollup("crucible_train_batch_stop_duration_seconds", ["run_id", "condition"], ["count", "sum"])
    assert r == {f"{exp.id}/treatment": {"count": 4, "sum": pytest.approx(0.02), "nan_excluded": 0}}
    with hub.connect() as con:
        first_us = con.sql("SELECT epoch_us(min(ts)) FROM events WHERE experiment_id = ?", params=[exp.id]).fetchall()[
            0
        ][0]
    oldest = min(p["timestamp"] for p in metrics.get_metrics()["metrics"])
    assert oldest.timestamp() == pytest.approx(first_us / 1e6, abs=1e-6)


@pytest.mark.slow
def test_a_forked_child_keeps_recording_into_the_store(hub: ct.Telemetry) -> None:
    import gc
    import multiprocessing as mp
    import os
    import time

    metrics.increment("forked_total", tags={"who": "x"})
    metrics.flush()

    def child() -> None:
        for _ in range(10):
            metrics.increment("forked_total", tags={"who": "x"})  # a cached series: the hot path only
        time.sleep(2.0)  # the child's own background thread writes it (flush_interval 0.2 s)
        os._exit(0)

    # Garbage left by earlier tests (DuckDB objects among it) must not be collected in the child: a
    # DuckDB destructor there joins threads that did not survive the fork and aborts the process.
    gc.collect()
    gc.freeze()
    try:
        proc = mp.get_context("fork").Process(target=child)
        proc.start()
    finally:
        gc.unfreeze()
    proc.join(30)
    assert proc.exitcode == 0
    with hub.connect() as con:
        rows = dict(con.sql("SELECT pid, count(*) FROM metrics WHERE metric = 'forked_total' GROUP BY pid").fetchall())
    assert rows == {os.getpid(): 1, proc.pid: 10}


def test_a_core_flush_hook_when_present_writes_metric_points(tmp_path: object) -> None:
    """The contract for ``Telemetry.add_flush_hook`` (asked of the core): ``hub.flush()`` writes our points."""
    from pathlib import Path

    class HookedHub(ct.Telemetry):
        def __init__(self, home: Path) -> None:
            self.hooks: list[object] = []
            super().__init__(home, flush_interval=60)

        def add_flush_hook(self, fn: object) -> None:
            self.hooks.append(fn)

        def flush(self) -> int:
            for fn in self.hooks:
                fn()  # type: ignore[operator]
            return super().flush()

    h = HookedHub(Path(str(tmp_path)) / "hooked")
    try:
        m = metrics.registry(h)
        m.tick = 60  # the background thread would not write before the assertion
        m.increment("hooked_total", 5)
        with h.connect() as con:  # connect() flushes the hub, which flushes the metrics
            assert con.sql("SELECT sum(value) FROM metrics WHERE metric = 'hooked_total'").fetchall() == [(5.0,)]
    finally:
        h.close()


def test_registry_rows_and_record_metric_rows_never_share_a_seq(hub: ct.Telemetry) -> None:
    for i in range(3):
        hub.record_metric("run-a", "adapter_loss", 0.5 / (i + 1), step=i)
        metrics.gauge("registry_loss", 1.0 / (i + 1))
        metrics.flush()
    hub.record_metric("run-a", "adapter_loss", 0.1, step=3)
    metrics.increment("registry_total", 2)
    metrics.flush()
    with hub.connect() as con:
        n, distinct = con.sql("SELECT count(*), count(DISTINCT (host, pid, seq)) FROM metrics").fetchall()[0]
    assert n == 8
    assert distinct == n  # seq is one per-process sequence over the whole dataset, as for events
