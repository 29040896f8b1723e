"""Demo, core part: a simulated training loop and simulated LLM calls, then queries, metrics, exports, SQL."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import crucible_telemetry as ct


def simulated_training(hub: ct.Telemetry, epochs: int = 3, batches: int = 20) -> str:
    """Standard training events from a loop with no framework at all."""
    with hub.experiment(
        "simulated-training",
        hypothesis="cosine decay reaches loss < 0.5 in 3 epochs",
        tags=["demo", "simulated"],
        metadata={"lr": 3e-4, "batch_size": 32},
    ) as exp:
        hub.emit("crucible_train.training.start", {}, {"model_name": "toy-mlp", "framework": "none"})
        step = 0
        for epoch in range(epochs):
            hub.emit("crucible_train.epoch.start", {"epoch": epoch})
            losses = []
            for b in range(batches):
                t0 = time.monotonic_ns()
                loss = 2.0 * math.exp(-0.05 * step) + random.uniform(0, 0.05)
                losses.append(loss)
                lr = 3e-4 * 0.5 * (1 + math.cos(math.pi * step / (epochs * batches)))
                hub.emit(
                    "crucible_train.batch.stop",
                    {
                        "loss": loss,
                        "learning_rate": lr,
                        "global_step": step,
                        "batch": b,
                        "epoch": epoch,
                        "samples_per_second": 32 / max((time.monotonic_ns() - t0) / 1e9, 1e-6),
                        "duration": time.monotonic_ns() - t0,
                    },
                )
                step += 1
            hub.emit("crucible_train.epoch.stop", {"epoch": epoch, "loss": sum(losses) / len(losses)})
        hub.emit(
            "crucible_train.checkpoint.saved",
            {"epoch": epochs - 1, "global_step": step},
            {"checkpoint_path": "checkpoints/last.ckpt"},
        )
        hub.emit("crucible_train.training.stop", {"global_step": step})
        return exp.id


def simulated_llm(hub: ct.Telemetry, condition: str, seed: int, n: int = 150) -> str:
    """LLM request spans with latency, tokens and cost; the treatment is a faster model."""
    rng = random.Random(seed)
    base_ms = 420.0 if condition == "control" else 300.0
    with hub.experiment(
        f"simulated-llm-{condition}-{seed}",
        hypothesis="the distilled model answers faster",
        condition=condition,
        tags=["demo", "llm", f"seed={seed}"],
    ) as exp:
        for _ in range(n):
            lat_ns = rng.lognormvariate(math.log(base_ms), 0.35) * 1e6
            hub.emit("req_llm.request.start", {}, {"model": "demo-model", "operation": "chat"})
            if rng.random() < 0.02:
                hub.emit(
                    "req_llm.request.exception", {"duration": lat_ns}, {"kind": "RateLimitError", "http_status": 429}
                )
                continue
            p, c = rng.randint(200, 900), rng.randint(20, 200)
            hub.emit(
                "req_llm.request.stop",
                {
                    "duration": lat_ns,
                    "ttft_ns": lat_ns * 0.25,
                    "prompt_tokens": p,
                    "completion_tokens": c,
                    "total_tokens": p + c,
                    "cost_usd": (p * 0.15 + c * 0.6) / 1e6,
                },
                {"model": "demo-model", "operation": "chat", "finish_reason": "stop"},
            )
        return exp.id


def run(hub: ct.Telemetry, out_dir: Path) -> dict[str, Any]:
    """Record, query, summarise and export; print what was found."""
    random.seed(0)
    train_id = simulated_training(hub)
    control = [simulated_llm(hub, "control", s) for s in range(3)]
    treatment = [simulated_llm(hub, "treatment", s) for s in range(3)]
    llm_id = control[0]

    print("\n== core: window queries")
    last5 = hub.store.query_window(train_id, ct.LastN(5), filter="crucible_train.batch.stop")
    print("  last 5 batches, loss:", [round(r["measurements"]["loss"], 3) for r in last5])
    print("  events in the last 5 minutes:", len(hub.store.query_window(train_id, ct.Last(minutes=5))))
    rows = hub.store.get_all(llm_id)
    mid = rows[len(rows) // 2]["ts"]
    print(
        "  events before the midpoint (Range, half-open):",
        len(hub.store.query_window(llm_id, ct.Range(rows[0]["ts"], mid))),
    )
    win = hub.store.windowed_metrics(llm_id, window_us=20_000, step_us=10_000, event="req_llm.request.stop")
    print(
        f"  windowed_metrics: {len(win)} windows, first p95 = {win[0]['p95'] / 1e6:.0f} ms" if win else "  no windows"
    )

    print("\n== core: calculate_metrics")
    m = ct.calculate_metrics(llm_id)
    lat, cost, rel, tok = m["latency"], m["cost"], m["reliability"], m["tokens"]
    print(
        f"  latency ms p50={lat['p50']:.0f} p95={lat['p95']:.0f} p99={lat['p99']:.0f}; "
        f"success rate {rel['success_rate']:.1%}; cost ${cost['total']:.4f} (${cost['cost_per_1m_requests']:.0f} per 1M); "
        f"tokens {tok['total']:.0f}"
    )
    t = ct.calculate_metrics(train_id)["training"]
    print(
        f"  training: {t['epochs']} epochs, final loss {t['final_loss']:.3f}, best {t['best_loss']:.3f}, "
        f"{t['global_steps'] + 1} steps"
    )
    live = ct.streaming.get_metrics(llm_id)["events"]["req_llm.request.stop"]["measurements"]["duration"]
    print(f"  streaming p95 (sketch, ±{ct.RELATIVE_ACCURACY:.0%}): {live['p95'] / 1e6:.0f} ms")

    print("\n== core: export")
    paths = {
        fmt: ct.export(train_id, fmt, out_dir / f"training.{fmt}", overwrite=True)
        for fmt in ("csv", "jsonl", "parquet")
    }
    for fmt, p in paths.items():
        print(f"  {fmt:<8} {p}  ({p.stat().st_size} bytes)")

    print("\n== core: one SQL query over every run")
    con = ct.connect()
    res = con.execute("""
        SELECT r.name, r.condition, r.events,
               round(quantile_cont(e.duration, 0.95) / 1e6) AS p95_ms
        FROM runs r LEFT JOIN events e ON e.experiment_id = r.experiment_id AND e.event = 'req_llm.request.stop'
        GROUP BY ALL ORDER BY r.name""").fetchall()
    for row in res:
        print("  ", row)
    con.close()
    return {"training": train_id, "control": control, "treatment": treatment, "exports": paths}
