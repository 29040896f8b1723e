"""What a Trainer run records as params, and the training loss the Trainer has not logged yet.

Params: ``TrainingArguments.to_sanitized_dict()`` under their own names (``learning_rate``,
``per_device_train_batch_size``, ``seed`` ...: the knobs a sweep turns, so ``crucible compare --by
learning_rate`` reads as the user wrote it; tokens are masked by ``to_dict``), and the model's
``config.to_dict()`` under ``model.`` (``model.n_embd``, ``model.vocab_size``: config keys such as
``dropout`` or ``seed``-like names cannot clash with the arguments).
"""

from __future__ import annotations

import math
from typing import Any

from crucible_telemetry.integration import to_scalar

__all__ = ["run_params", "unlogged_loss"]

# Bookkeeping of the config, not a parameter of the run.
_CONFIG_SKIP = ("transformers_version", "_name_or_path", "_commit_hash", "_attn_implementation_autoset")


def run_params(args: Any, model: Any) -> dict[str, Any]:
    """``TrainingArguments`` (flat) and ``{"model": config}`` (nested: dotted by ``log_params``)."""
    out: dict[str, Any] = {}
    to_dict = getattr(args, "to_sanitized_dict", None)
    if callable(to_dict):
        out.update(to_dict())
    config = getattr(model, "config", None)
    cfg = config.to_dict() if config is not None and callable(getattr(config, "to_dict", None)) else None
    if isinstance(cfg, dict):
        out["model"] = {k: v for k, v in cfg.items() if k not in _CONFIG_SKIP}
    return out


def unlogged_loss(trainer: Any, state: Any, mark: list[Any]) -> tuple[float, int] | None:
    """``(sum of the step losses since the Trainer's last log, number of those steps)`` not read before, or None.

    Read from the Trainer's own accumulator (``_tr_loss``, which its next log divides by the same
    step count); one host copy, at the end of an epoch. ``mark`` (a list the caller keeps) holds
    what an earlier read took from the same accumulator, so two epochs without a log in between
    each get their own steps. None when this Trainer keeps no such state.
    """
    if trainer is None:
        return None
    acc, last = getattr(trainer, "_tr_loss", None), getattr(trainer, "_globalstep_last_logged", None)
    if acc is None or not isinstance(last, int):
        return None
    total = to_scalar(acc.detach() if hasattr(acc, "detach") else acc)
    steps = int(state.global_step) - last
    if total is None or not math.isfinite(total):
        return None
    seen_total, seen_steps = (mark[1], mark[2]) if mark and mark[0] == last else (0.0, 0)
    mark[:] = [last, total, steps]
    return total - seen_total, steps - seen_steps
