"""Reads the standard measurement keys out of Lightning's logged metrics (once per epoch, not per step)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from crucible_telemetry.integration import to_scalar

__all__ = ["epoch_summary", "learning_rates", "validation_metrics"]

#: Logged names taken as the epoch's training loss / accuracy, first match wins.
LOSS_KEYS = ("train_loss_epoch", "train/loss_epoch", "loss_epoch", "train_loss", "train/loss", "loss")
ACCURACY_KEYS = (
    "train_acc_epoch",
    "train_accuracy_epoch",
    "train/acc_epoch",
    "train/accuracy_epoch",
    "acc_epoch",
    "accuracy_epoch",
    "train_acc",
    "train_accuracy",
    "train/acc",
    "train/accuracy",
    "acc",
    "accuracy",
)

_VAL = re.compile(r"^(?:val|valid|validation)(?:[_/.\-])(.+?)(?:_epoch)?$")
_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")


def _first(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for k in keys:
        if k in metrics:
            v = to_scalar(metrics[k])
            if v is not None and math.isfinite(v):
                return v
    return None


def validation_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``val_loss``, ``val/acc``, ``valid_f1_epoch`` ... as ``val_loss``, ``val_acc``, ``val_f1``."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        match = _VAL.match(k)
        if match is None:
            continue
        f = to_scalar(v)
        if f is not None:
            out["val_" + _UNSAFE.sub("_", match.group(1))] = f
    return out


def epoch_summary(metrics: Mapping[str, Any], mean_step_loss: float | None) -> dict[str, float]:
    """``loss`` (the logged epoch loss, else the mean of the step losses), ``accuracy`` when logged, ``val_*``."""
    out: dict[str, float] = validation_metrics(metrics)
    loss = _first(metrics, LOSS_KEYS)
    if loss is None:
        loss = mean_step_loss
    if loss is not None:
        out["loss"] = loss
    acc = _first(metrics, ACCURACY_KEYS)
    if acc is not None:
        out["accuracy"] = acc
    return out


def learning_rates(optimizer: Any) -> dict[str, float]:
    """``learning_rate`` of the first param group, ``learning_rate_pg1`` ... of the others."""
    out: dict[str, float] = {}
    if optimizer is None:
        return out
    for i, group in enumerate(optimizer.param_groups):
        lr = to_scalar(group.get("lr"))
        if lr is not None:
            out["learning_rate" if i == 0 else f"learning_rate_pg{i}"] = lr
    return out
