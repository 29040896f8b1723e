"""A store made by real runs through the core API: a simulated training loop and simulated LLM requests."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import crucible_telemetry as ct

LLM_HYPOTHESIS = "prompt caching lowers request latency"
TRAIN_HYPOTHESIS = "learning-rate warmup lowers the training loss"


def train(
    hub: ct.Telemetry, name: str, condition: str, decay: float, seed: int, epochs: int = 3, batches: int = 20
) -> str:
    """A simulated training loop emitting the standard crucible_train events."""
    rng = random.Random(seed)
    exp = hub.start_experiment(
        name,
        hypothesis=TRAIN_HYPOTHESIS,
        condition=condition,
        tags=("train", "sweep-1"),
        metadata={"seed": seed, "lr": 0.01},
    )
    hub.emit(
        "crucible_train.training.start", {}, {"framework": "lightning", "model_name": "tiny-mlp", "parameters": 1234}
    )
    step = 0
    for epoch in range(epochs):
        hub.emit("crucible_train.epoch.start", {"epoch": epoch}, {})
        losses = []
        for b in range(batches):
            step += 1
            loss = 2.0 * math.exp(-decay * step) + 0.1 + rng.gauss(0, 0.02)
            losses.append(loss)
            hub.emit(
                "crucible_train.batch.stop",
                {
                    "loss": loss,
                    "global_step": step,
                    "epoch": epoch,
                    "batch": b,
                    "learning_rate": 0.01,
                    "duration": rng.uniform(4e6, 6e6),
                    "samples_per_second": 1000.0,
                },
                {},
            )
        hub.emit(
            "crucible_train.epoch.stop",
            {
                "epoch": epoch,
                "loss": sum(losses) / len(losses),
                "val_loss": sum(losses) / len(losses) + 0.05,
                "global_step": step,
                "duration": 1e8,
            },
            {},
        )
    hub.emit("crucible_train.training.stop", {"global_step": step, "duration": 3e8}, {})
    hub.stop_experiment(exp.id)
    return exp.id


def llm(
    hub: ct.Telemetry,
    name: str,
    condition: str,
    mean_ms: float,
    seed: int,
    requests: int = 60,
    error_rate: float = 0.05,
) -> str:
    """Simulated LLM requests: start, then stop (duration, ttft, tokens, cost) or exception."""
    rng = random.Random(seed)
    exp = hub.start_experiment(
        name,
        hypothesis=LLM_HYPOTHESIS,
        condition=condition,
        tags=("llm",),
        metadata={"seed": seed, "model": "gpt-test"},
    )
    for _ in range(requests):
        meta = {"model": "gpt-test", "provider": "openai", "operation": "chat"}
        hub.emit("req_llm.request.start", {}, meta)
        if rng.random() < error_rate:
            hub.emit(
                "req_llm.request.exception",
                {"duration": rng.uniform(1e6, 5e6)},
                {**meta, "kind": "timeout", "reason": "simulated"},
            )
            continue
        dur_ms = max(1.0, rng.gauss(mean_ms, mean_ms * 0.15))
        prompt, completion = rng.randint(50, 150), rng.randint(20, 80)
        hub.emit(
            "req_llm.request.stop",
            {
                "duration": dur_ms * 1e6,
                "ttft_ns": dur_ms * 0.3 * 1e6,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "cost_usd": (prompt * 0.5 + completion * 1.5) / 1e6,
            },
            {**meta, "finish_reason": "stop"},
        )
    hub.stop_experiment(exp.id)
    return exp.id


def build(home: Path, seeds: int = 3) -> dict[str, Any]:
    """Write the store; returns the experiment ids by role."""
    hub = ct.Telemetry(home, flush_interval=0.2)
    try:
        out: dict[str, Any] = {
            "train_control": train(hub, "baseline-lr", "control", 0.03, seed=1),
            "train_treatment": train(hub, "warmup-lr", "treatment", 0.06, seed=2),
            "llm_control": [llm(hub, f"llm-control-s{s}", "control", 60.0, seed=10 + s) for s in range(seeds)],
            "llm_treatment": [llm(hub, f"llm-treatment-s{s}", "treatment", 42.0, seed=20 + s) for s in range(seeds)],
        }
    finally:
        hub.close()
    return out
