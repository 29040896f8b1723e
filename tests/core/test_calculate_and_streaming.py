"""calculate_metrics and the live streaming stats, checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest

import crucible_telemetry as ct
from crucible_telemetry.sketch import BIN_LIMIT, QuantileSketch


def _llm_run(n: int = 200, seed: int = 1) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    exp = ct.start_experiment("llm")
    lat = rng.gamma(2.0, 50e6, n)  # ns
    ttft = lat * 0.3
    for i in range(n):
        ct.emit("req_llm.request.start", {}, {"model": "gpt-4o-mini"})
        ct.emit(
            "req_llm.request.stop",
            {
                "duration": float(lat[i]),
                "ttft_ns": float(ttft[i]),
                "prompt_tokens": 100 + i,
                "completion_tokens": 20,
                "total_tokens": 120 + i,
                "cost_usd": 0.001,
            },
            {"model": "gpt-4o-mini"},
        )
    for _ in range(4):
        ct.emit("req_llm.request.exception", {"duration": 1e6}, {"kind": "RateLimitError"})
    return exp.id, lat, ttft


def test_calculate_metrics_llm(hub: ct.Telemetry) -> None:
    exp_id, lat, ttft = _llm_run()
    m = ct.calculate_metrics(exp_id)
    lat_ms = lat / 1e6
    assert m["latency"]["count"] == 200
    assert m["latency"]["mean"] == pytest.approx(lat_ms.mean())
    for q in (50, 95, 99):
        assert m["latency"][f"p{q}"] == pytest.approx(np.percentile(lat_ms, q))
    assert (m["latency"]["min"], m["latency"]["max"]) == pytest.approx((lat_ms.min(), lat_ms.max()))
    assert m["time_to_first_token"]["p50"] == pytest.approx(np.percentile(ttft / 1e6, 50))
    assert m["cost"]["total"] == pytest.approx(0.2)
    assert m["cost"]["mean_per_request"] == pytest.approx(0.001)
    assert m["cost"]["cost_per_1m_requests"] == pytest.approx(1000.0)
    assert m["reliability"]["success_count"] == 200 and m["reliability"]["error_count"] == 4
    assert m["reliability"]["success_rate"] == pytest.approx(200 / 204)
    assert m["reliability"]["sla_99"] is False
    assert m["reliability"]["errors_by_kind"] == {"RateLimitError": 4}
    assert m["tokens"]["total_prompt"] == sum(100 + i for i in range(200))
    assert m["tokens"]["total_completion"] == 20 * 200
    assert m["tokens"]["mean_total"] == pytest.approx(np.mean([120 + i for i in range(200)]))


def test_calculate_metrics_training(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("train")
    losses = [2.0, 1.2, 1.5]
    step = 0
    for epoch, loss in enumerate(losses):
        ct.emit("crucible_train.epoch.start", {"epoch": epoch})
        for _ in range(4):
            ct.emit(
                "crucible_train.batch.stop",
                {"loss": loss + 0.1, "global_step": step, "duration": 2e6},
                {"epoch": epoch},
            )
            step += 1
        ct.emit("crucible_train.epoch.stop", {"epoch": epoch, "loss": loss})
    ct.emit("crucible_train.checkpoint.saved", {"epoch": 2}, {"checkpoint_path": "/tmp/x.ckpt"})
    t = ct.calculate_metrics(exp.id)["training"]
    assert t["epochs"] == 3
    assert t["final_loss"] == 1.5 and t["best_loss"] == 1.2
    assert t["loss_by_epoch"] == {0: 2.0, 1: 1.2, 2: 1.5}
    assert t["batches"] == 12 and t["global_steps"] == 11
    assert t["mean_step_ms"] == pytest.approx(2.0)
    assert t["checkpoints"] == 1


def test_streaming_stats_match_numpy_within_the_stated_error(hub: ct.Telemetry) -> None:
    exp_id, lat, _ = _llm_run(n=2000, seed=7)
    m = ct.streaming.get_metrics(exp_id)
    s = m["events"]["req_llm.request.stop"]["measurements"]["duration"]
    assert m["relative_error"] == ct.RELATIVE_ACCURACY <= 0.01
    assert s["count"] == 2000
    assert s["mean"] == pytest.approx(lat.mean())
    assert s["std"] == pytest.approx(lat.std(ddof=1))
    assert (s["min"], s["max"]) == pytest.approx((lat.min(), lat.max()))
    for q in (50, 90, 95, 99):
        exact = np.quantile(lat, q / 100, method="lower")
        assert s[f"p{q}"] == pytest.approx(exact, rel=0.0101)
    assert m["events"]["req_llm.request.exception"]["count"] == 4


def test_streaming_reset_and_stop(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("s")
    ct.emit("a.b", {"v": 1.0})
    ct.streaming.reset(exp.id)
    ct.emit("a.b", {"v": 5.0})
    assert ct.streaming.get_metrics(exp.id)["events"]["a.b"]["measurements"]["v"]["mean"] == 5.0
    ct.streaming.stop(exp.id)
    ct.emit("a.b", {"v": 100.0})
    m = ct.streaming.get_metrics(exp.id)
    assert m["tracking"] is False
    assert m["events"]["a.b"]["measurements"]["v"]["count"] == 1
    assert ct.store.count(exp.id) == 3  # the store keeps everything
    with pytest.raises(ct.UnknownExperimentError):
        ct.streaming.get_metrics("exp-unknown")


def test_nan_and_inf_are_counted_not_averaged(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("nan")
    for v in (1.0, float("nan"), float("inf"), 3.0):
        ct.emit("a.b", {"v": v})
    s = ct.streaming.get_metrics(exp.id)["events"]["a.b"]["measurements"]["v"]
    assert (s["count"], s["nonfinite"], s["mean"]) == (2, 2, 2.0)


def test_sketch_memory_is_bounded_and_sketches_merge() -> None:
    rng = np.random.default_rng(3)
    a, b = QuantileSketch(), QuantileSketch()
    xa = rng.lognormal(0, 4, 200_000)
    xb = rng.lognormal(2, 1, 100_000)
    for chunk in np.array_split(xa, 20):
        a.add_many(chunk)
    b.add_many(xb)
    assert len(a.sketch._store.bins) <= BIN_LIMIT and len(a.sketch._negative_store.bins) <= BIN_LIMIT
    a.merge(b)
    both = np.concatenate([xa, xb])
    assert a.count == both.size
    for q in (0.5, 0.9, 0.99):
        assert a.quantile(q) == pytest.approx(np.quantile(both, q, method="lower"), rel=0.0101)
