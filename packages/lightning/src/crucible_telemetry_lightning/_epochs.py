"""The per-epoch accounting of ``CrucibleCallback``: ``epoch.*``, ``validation.stop``, ``training.stop``.

The epoch's loss, accuracy and ``val_*`` are read once per epoch from what the model logged;
deferred step events are drained first, so every event of an epoch lands before its ``epoch.stop``.
"""

from __future__ import annotations

import time
from typing import Any

from typing_extensions import override

from crucible_telemetry.events import EPOCH_START, EPOCH_STOP, TRAINING_STOP, VALIDATION_STOP
from crucible_telemetry.integration import guarded

from ._counter import step_counter
from ._logged import epoch_summary, learning_rates, validation_metrics
from ._steps import StepHooks

__all__ = ["EpochHooks"]

_mono = time.monotonic_ns


class EpochHooks(StepHooks):
    """Epoch and validation timers and summaries, and the end of training."""

    def _reset_epochs(self) -> None:
        """Forget the previous fit's epoch state (``setup`` of each fit)."""
        self._reset_steps()
        self._t_epoch = self._t_val = 0
        self._epoch_lrs: dict[str, float] | None = None  # learning rates at the epoch's start

    @override
    @guarded
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """``epoch.start``."""
        self._epoch = trainer.current_epoch
        self._t_epoch = _mono()
        self._loss_sum, self._loss_n = 0.0, 0
        self._steps = step_counter(trainer)
        # Epoch-interval schedulers step before on_train_epoch_end: keep the rates this epoch ran with.
        self._epoch_lrs = learning_rates(self._opt)
        self._poll_checkpoints(trainer)
        if self._emit is not None and self._emitting:
            self._emit(EPOCH_START, {"epoch": self._epoch, "global_step": self._step_count(trainer)}, None)

    @override
    @guarded
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Validation timer."""
        self._t_val = _mono()

    @override
    @guarded
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """``validation.stop`` with the logged validation metrics as ``val_<name>`` (sanity check skipped)."""
        if self._emit is None or not self._emitting or trainer.sanity_checking:
            return
        m: dict[str, Any] = validation_metrics(trainer.callback_metrics)
        m.update(epoch=trainer.current_epoch, global_step=self._step_count(trainer), duration=_mono() - self._t_val)
        self._emit(VALIDATION_STOP, m, None)

    @override
    @guarded
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """``epoch.stop``: epoch loss (the logged one, else the mean of the step losses), accuracy, val_*,
        and the learning rate of each param group as the epoch ran with it (at its start)."""
        if self._emit is None or not self._emitting:
            return
        if self._deferred:
            self._deferred.drain(force=True)
        self._poll_checkpoints(trainer)
        mean = self._loss_sum / self._loss_n if self._loss_n else None
        m = epoch_summary(trainer.callback_metrics, mean)
        m.update(self._epoch_lrs if self._epoch_lrs is not None else learning_rates(self._opt))
        m.update(epoch=self._epoch, global_step=self._step_count(trainer), duration=_mono() - self._t_epoch)
        self._emit(EPOCH_STOP, m, None)

    @override
    @guarded
    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """``training.stop`` with the run's duration, last epoch and global step."""
        if self._emit is None:
            return
        if self._deferred:
            self._deferred.drain(force=True)
        self._poll_checkpoints(trainer)
        if self._emitting:
            self._emit(
                TRAINING_STOP,
                {"epoch": self._epoch, "global_step": self._step_count(trainer), "duration": _mono() - self._t_fit},
                None,
            )
