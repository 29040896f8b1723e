"""Metrics part of the demo: events of the runs become counters and histograms, then a rollup,
a time series and the Prometheus text.

``run(hub, exp_ids)`` is called by ``examples/demo.py`` after its training runs and LLM calls;
``python examples/demo_metrics.py`` runs it alone on a few synthetic events.
"""

from __future__ import annotations

import random
import tempfile
from typing import Any

import crucible_telemetry as ct
from crucible_telemetry.metrics import Metrics, standard_specs


def _pick(m: Metrics, *names: str) -> str | None:
    known = set(m.names())
    return next((n for n in names if n in known), None)


def run(hub: ct.Telemetry, exp_ids: list[str]) -> dict[str, Any]:
    """Attach metrics to the standard LLM/training events (replaying ``exp_ids``), print and return views."""
    m = Metrics.of(hub)
    m.attach_telemetry(standard_specs(), backfill=exp_ids)
    latency = _pick(m, "req_llm_request_stop_duration_seconds", "crucible_train_batch_stop_duration_seconds")
    counter = _pick(m, "req_llm_request_stop_total", "crucible_train_epoch_stop_total")
    out: dict[str, Any] = {"metrics": m.names()}
    if latency is not None:
        group = ["model", "status"] if latency.startswith("req_llm") else ["run_id", "condition"]
        out["rollup"] = m.rollup(
            latency, group_by=group, aggregations=["count", "mean", "p50", "p95", "p99"], window="last_30d"
        )
        print(f"rollup of {latency} by {'/'.join(group)}:")
        for key, vals in out["rollup"].items():
            print(
                f"  {key:<40} "
                + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in vals.items())
            )
    if counter is not None:
        series = m.time_series(counter, interval="minute", aggregation="sum", window="last_hour")
        out["time_series"] = series
        busy = [r for r in series if r["count"]]
        print(f"time series of {counter} (per minute, last hour: {len(series)} buckets, {len(busy)} non-empty):")
        for r in series[-3:]:
            print(f"  {r['timestamp']:%H:%M}  sum={r['sum']:g}  count={r['count']}")
    text = m.export()
    out["prometheus"] = text
    print("Prometheus exposition (first lines):")
    for line in text.splitlines()[:8]:
        print("  " + line)
    out["stats"] = m.stats()
    return out


def _synthetic(hub: ct.Telemetry) -> list[str]:
    rnd = random.Random(0)
    ids = []
    for condition in ("baseline", "treatment"):
        exp = hub.start_experiment("llm-eval", condition=condition)
        for _ in range(40):
            model = rnd.choice(["llama-3.1", "qwen"])
            ms = rnd.lognormvariate(5, 0.4) * (0.8 if condition == "treatment" else 1.0)
            hub.emit(
                ("req_llm", "request", "stop"),
                {"duration": int(ms * 1e6), "total_tokens": rnd.randint(50, 500)},
                {"model": model, "provider": "local", "operation": "chat"},
            )
        hub.stop_experiment(exp.id)
        ids.append(exp.id)
    return ids


if __name__ == "__main__":
    with ct.Telemetry(tempfile.mkdtemp(prefix="crucible-demo-metrics-")) as demo_hub:
        run(demo_hub, _synthetic(demo_hub))
