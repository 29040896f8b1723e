"""How the Trainer's log dicts map onto the standard measurements, and into the ``metrics`` view."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from crucible_telemetry import Telemetry
from crucible_telemetry.integration import to_scalar

__all__ = ["parameter_counts", "record_logs", "step_values", "summary", "validation_values"]

log = logging.getLogger("crucible_telemetry.hf")

# A logged step's values, under the standard names of batch.stop.
_STEP = (
    ("loss", "loss"),
    ("learning_rate", "learning_rate"),
    ("grad_norm", "gradient_norm"),
    ("num_input_tokens_seen", "tokens_seen"),
)
# What the Trainer's final summary log holds, under the standard names of training.stop.
_SUMMARY = {
    "train_loss": "loss",
    "train_samples_per_second": "samples_per_second",
    "train_steps_per_second": "steps_per_second",
    "train_tokens_per_second": "tokens_per_second",
    "total_flos": "total_flos",
}


def _pick(logs: Mapping[str, Any], names: Any) -> dict[str, float]:
    return {dst: f for src, dst in names if src in logs and (f := to_scalar(logs[src])) is not None}


def step_values(logs: Mapping[str, Any]) -> dict[str, float]:
    """``loss``, ``learning_rate``, ``gradient_norm``, ``tokens_seen`` of a step's log, where present."""
    return _pick(logs, _STEP)


def summary(logs: Mapping[str, Any]) -> dict[str, float]:
    """The final summary log of ``train()`` as ``training.stop`` measurements."""
    return _pick(logs, _SUMMARY.items())


def validation_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Each scalar evaluation metric as ``val_<name>`` (``eval_`` dropped; ``epoch`` left out)."""
    return {
        "val_" + k.removeprefix("eval_"): f
        for k, v in metrics.items()
        if k != "epoch" and (f := to_scalar(v)) is not None
    }


def parameter_counts(model: Any) -> tuple[int, int] | None:
    """The model's parameter count and trainable parameter count (None without a model)."""
    if model is None:
        return None
    ps = list(model.parameters())
    return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)


def record_logs(hub: Telemetry, run_id: str, logs: Mapping[str, Any], step: int, epoch: int, skipped: set[str]) -> None:
    """Every scalar of ``logs`` into the ``metrics`` view; others go to ``skipped`` (one warning ever)."""
    for k, v in logs.items():
        f = to_scalar(v)
        if f is None:
            if k not in skipped:
                skipped.add(k)
                if len(skipped) == 1:
                    log.warning(
                        "crucible_telemetry_hf: logged value %r is not a scalar (%s); skipped, "
                        "and so is any further non-scalar value",
                        k,
                        type(v).__name__,
                    )
            continue
        hub.record_metric(run_id, str(k), f, step, epoch)
