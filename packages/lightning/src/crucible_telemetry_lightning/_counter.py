"""Where the callback reads its step count: the training epoch loop's ``_batches_that_stepped``."""

from __future__ import annotations

from typing import Any

__all__ = ["step_counter"]


def step_counter(trainer: Any) -> Any:
    """The training epoch loop, whose ``_batches_that_stepped`` is the step count ``batch.stop`` uses.

    It counts batches that stepped the model once each, whatever the number of optimizers a
    manual ``training_step`` steps (Lightning's logger ``step``), where ``trainer.global_step``
    counts every optimizer's step. None when it cannot be found (``trainer.global_step`` then).
    """
    try:
        loop = trainer.fit_loop.epoch_loop
        return loop if type(loop._batches_that_stepped) is int else None
    except Exception:
        return None
