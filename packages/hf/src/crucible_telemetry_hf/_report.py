"""The callback's reporting outside the training loop: evaluations, logged values and a failing ``train()``.

A base class of ``CrucibleCallback`` (hooks on the same object). ``trainer.evaluate()`` outside
``train()`` records into the experiment ``open_outside_run`` picks, open for the one hook;
logged values are written once per world unless ``all_ranks``.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from transformers import TrainerCallback

import crucible_telemetry as ct
from crucible_telemetry import Experiment, Telemetry
from crucible_telemetry.events import TRAINING_EXCEPTION, VALIDATION_STOP
from crucible_telemetry.integration import Run, guarded, run_guarded

from ._helpers import epoch_index
from ._logs import record_logs, validation_values
from ._setup import open_outside_run

__all__ = ["ReportHooks"]

_META = {"framework": "transformers"}


class ReportHooks(TrainerCallback):
    """``on_evaluate``, the metrics writer and the exception report of ``CrucibleCallback``."""

    experiment: Experiment | None
    experiment_name: str | None
    experiment_id: str | None
    all_ranks: bool
    skipped: set[str]
    _hub: Telemetry | None
    _hub_arg: Telemetry | None
    _last_id: str | None
    _run: Run | None
    _epoch: int
    _epoch_done: dict[str, float] | None
    _model_name: str
    _t_train: int

    def _emit(self, name: tuple[str, ...], measurements: dict[str, Any], metadata: dict[str, Any] = _META) -> None:
        assert self._hub is not None
        self._hub.emit(name, measurements, metadata)

    def _flush_batch(self, logs: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def _finish(self, status: str = "stopped") -> None:
        raise NotImplementedError

    def _records(self, state: Any) -> bool:
        """Logged values are written once: by the world's process zero (every rank with ``all_ranks``)."""
        return self.all_ranks or bool(getattr(state, "is_world_process_zero", True))

    def _outside(self, args: Any, model: Any) -> Any:
        """The experiment results reported outside ``train()`` go to, open for one hook (see ``open_outside_run``)."""
        self._hub = self._hub_arg or ct.default()
        base = self.experiment_name or args.run_name or (type(model).__name__ if model is not None else "evaluation")
        return open_outside_run(
            self, self._hub, explicit_id=self.experiment_id, last_id=self._last_id, name=base, args=args, model=model
        )

    def _record(self, run_id: str, logs: dict[str, Any], step: int, epoch: int) -> None:
        assert self._hub is not None
        record_logs(self._hub, run_id, logs, step, epoch, self.skipped)

    @guarded
    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """``validation.stop`` with each metric as ``val_<name>``; also onto the epoch's ``epoch.stop``."""
        if not metrics:
            return
        if self.experiment is None:  # trainer.evaluate() outside train(): the world's process zero records it
            if not getattr(state, "is_world_process_zero", True):
                return
            with self._outside(args, kwargs.get("model")):
                self._validation_stop(metrics, epoch_index(state.epoch), state.global_step)
            return
        self._flush_batch()
        self._validation_stop(metrics, self._epoch, state.global_step)

    def _validation_stop(self, metrics: dict[str, Any], epoch: int, step: int) -> None:
        vals = validation_values(metrics)
        m: dict[str, Any] = {**vals, "epoch": epoch, "global_step": step}
        runtime = vals.get("val_runtime")
        if runtime is not None:
            m["duration"] = int(runtime * 1e9)
        self._emit(VALIDATION_STOP, m)
        if self._epoch_done is not None:
            self._epoch_done.update(vals)

    def _on_exception(self, trainer: Any, exc: BaseException) -> None:
        """``training.exception`` (kind, reason, stacktrace), then the run is closed; the caller re-raises."""
        if self.experiment is None:
            return
        try:
            run_guarded(self, "on_exception", self._emit_exception, trainer.state, exc)
        finally:
            run_guarded(self, "on_exception", self._finish, "failed")

    def _emit_exception(self, state: Any, exc: BaseException) -> None:
        self._flush_batch()
        m = {"global_step": state.global_step, "epoch": self._epoch, "duration": time.monotonic_ns() - self._t_train}
        md = {
            **_META,
            "model_name": self._model_name,
            "kind": type(exc).__name__,
            "reason": str(exc),
            "stacktrace": "".join(traceback.format_exception(exc))[-8000:],
        }
        self._emit(TRAINING_EXCEPTION, m, md)
