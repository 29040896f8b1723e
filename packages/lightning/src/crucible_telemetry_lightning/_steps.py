"""The per-step accounting of ``CrucibleCallback``: ``training.start``, ``batch.stop``, ``checkpoint.saved``.

A base class of the callback (hooks on the same object: no extra call per step). Per step
nothing waits for the device: a loss or gradient norm on an accelerator is copied to the host
without blocking and its event waits in ``Deferred`` until the copy has landed.
"""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor
from typing_extensions import override

from crucible_telemetry.events import BATCH_STOP, CHECKPOINT_SAVED, TRAINING_START
from crucible_telemetry.integration import guarded, record_failure, run_guarded, to_scalar

from . import _compat
from ._checkpoints import CheckpointWatch
from ._counter import step_counter
from ._fit import FitExperiment
from ._values import Deferred, batch_size, grad_norm, host_grad_norm, host_norm_ok, token_count

__all__ = ["StepHooks", "count_parameters"]

_mono = time.monotonic_ns


def count_parameters(module: Any) -> int | None:
    """The module's parameter count (None when it cannot be read)."""
    try:
        return sum(int(p.numel()) for p in module.parameters())
    except Exception:
        return None


class StepHooks(*_compat.callback_bases()):  # type: ignore[misc]
    """Step timer, gradient norm, ``batch.stop``, new checkpoint files; ``training.start`` sets up what they read."""

    gradient_norm: bool | int
    _fit: FitExperiment | None
    _trainer: Any
    _emitting: bool
    _rank: int
    _world: int

    def _reset_steps(self) -> None:
        """Forget the previous fit's accounting (``setup`` of each fit)."""
        self._emit: Any = None  # the hub's emit while an experiment is open, else None
        self._deferred: Deferred | None = None
        self._dq: Any = ()  # the deferred events' queue (truthy while any wait), read per step
        self._watch: CheckpointWatch | None = None
        self._saving: tuple[int, int] | None = None
        self._steps: Any = None  # the epoch loop: ``_batches_that_stepped`` is the step count (see step_counter)
        self._t_fit = self._t0 = 0
        self._step0 = 0
        self._last_step = 0  # the global_step of the last batch.stop
        self._manual = False  # manual optimization (global_step: batches that stepped)
        self._epoch = 0
        self._accum = 1
        self._params: list[Tensor] = []
        self._opt: Any = None
        self._gnorm: Tensor | float | None = None
        self._gn_every = 0
        self._gn_host = False  # a small CPU model: its gradient norm is summed through numpy
        self._loss_sum = 0.0
        self._loss_n = 0

    def _step_count(self, trainer: Any) -> int:
        """The documented ``global_step`` outside a batch: optimizer steps done, a manual batch counting once.

        Automatic optimization: ``trainer.global_step``. Manual: the batches that stepped (the
        epoch loop's ``_batches_that_stepped``, which counts the batch under way only after its
        validation, hence the last ``batch.stop``'s step as a floor).
        """
        if not self._manual:
            return int(trainer.global_step)
        c = self._steps
        done = c._batches_that_stepped if c is not None else int(trainer.global_step)
        return max(done, self._last_step)

    def _emit_now(self, name: Any, m: dict[str, Any], md: dict[str, Any] | None) -> None:
        """Emit a deferred event; a ``batch.stop`` loss counts towards the epoch's mean."""
        if name is BATCH_STOP:
            loss = m.get("loss")
            if loss is not None:
                self._loss_sum += loss
                self._loss_n += 1
        self._emit(name, m, md)

    @override
    @guarded
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """``training.start`` with the model's name and parameter count."""
        if self._emit is None:
            return
        self._t_fit = _mono()
        self._accum = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        self._manual = not getattr(pl_module, "automatic_optimization", True)
        if self._manual:
            self._accum = 1
        self._steps = step_counter(trainer)
        opts = getattr(trainer, "optimizers", None) or []
        self._opt = opts[0] if opts else None
        self._params = [p for opt in opts for g in opt.param_groups for p in g["params"]]
        self._watch = CheckpointWatch(getattr(trainer, "checkpoint_callbacks", ()))
        gn = self.gradient_norm
        self._gn_every = int(getattr(trainer, "log_every_n_steps", 50) or 0) if gn is True else int(gn or 0)
        self._gn_host = bool(self._gn_every) and host_norm_ok(self._params)
        if not self._emitting:
            return
        fit = self._fit
        self._emit(
            TRAINING_START,
            {"epoch": trainer.current_epoch, "global_step": self._step_count(trainer)},
            {
                "model_name": type(pl_module).__name__,
                "framework": "lightning",
                "parameters": count_parameters(pl_module),
                "max_epochs": trainer.max_epochs,
                "max_steps": trainer.max_steps,
                "accumulate_grad_batches": self._accum,
                "world_size": self._world,
                "precision": str(getattr(trainer, "precision", "")),
                "resumed": fit is not None and fit.resumed,
                "experiment_id": fit.experiment_id if fit is not None else None,
            },
        )

    # The three per-step hooks catch failures inline (as ``guarded`` does): one call frame less each.

    @override
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Step timer; the optimizer step this micro-batch feeds is the global step before it."""
        try:
            self._t0 = _mono()
            c = self._steps
            self._step0 = c._batches_that_stepped if c is not None else trainer.global_step
            w = self._watch
            if w is not None and w.active and w.changed():
                self._poll_checkpoints(trainer)
        except Exception as exc:
            record_failure(self, "on_train_batch_start", exc)

    @override
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """Gradient norm (a tensor, not synced) just before the optimizer steps."""
        try:
            n = self._gn_every
            if n and self._emitting and (self._step0 + 1) % n == 0:  # Lightning's own logging cadence
                if self._gn_host:
                    try:
                        self._gnorm = host_grad_norm(self._params)
                        return
                    except (RuntimeError, TypeError, ValueError):
                        self._gn_host = False  # numpy cannot view these gradients: the torch path from now on
                self._gnorm = grad_norm(self._params)
        except Exception as exc:
            record_failure(self, "on_before_optimizer_step", exc)

    @override
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """``batch.stop``: loss, gradient norm, learning rate, throughput, step time (ns)."""
        try:
            if self._emit is None or not self._emitting:
                return
            dur = _mono() - self._t0
            m: dict[str, Any] = {
                "epoch": self._epoch,
                "batch": batch_idx,
                "global_step": self._step0 + 1,
                "duration": dur,
            }
            self._last_step = self._step0 + 1
            tensors: dict[str, Tensor] | None = None
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if isinstance(loss, Tensor):
                # Lightning hands the loss divided by the accumulation count: scaled back as a float
                # on the CPU (a tensor op costs several µs per micro-batch), on the device otherwise.
                if loss.is_cpu:
                    m["loss"] = loss.item() * self._accum
                else:
                    tensors = {"loss": loss * self._accum if self._accum > 1 else loss}
            g = self._gnorm
            if g is not None:
                self._gnorm = None
                if isinstance(g, float):
                    m["gradient_norm"] = g
                elif g.is_cpu:
                    m["gradient_norm"] = g.item()
                else:
                    tensors = {**(tensors or {}), "gradient_norm": g}
            opt = self._opt
            if opt is not None:
                lr = opt.param_groups[0].get("lr")
                if type(lr) is not float:
                    lr = to_scalar(lr)
                if lr is not None:
                    m["learning_rate"] = lr
            if dur > 0:
                n = batch_size(batch)
                if n:
                    m["samples_per_second"] = n * 1e9 / dur
                if type(batch) is not tuple and type(batch) is not list:  # a tuple/list batch has no token ids
                    tok = token_count(batch)
                    if tok:
                        m["tokens_per_second"] = tok * 1e9 / dur
            if self._dq:
                d = self._deferred
                assert d is not None
                d.drain()
                if self._dq or tensors:
                    d.push(BATCH_STOP, m, None, tensors or {})
                    return
            elif tensors:
                assert self._deferred is not None
                self._deferred.push(BATCH_STOP, m, None, tensors)
                return
            loss_f = m.get("loss")
            if loss_f is not None:
                self._loss_sum += loss_f
                self._loss_n += 1
            self._emit(BATCH_STOP, m, None)
        except Exception as exc:
            record_failure(self, "on_train_batch_end", exc)

    # ---------------------------------------------------------------- checkpoints

    @override
    @guarded
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Note the epoch and step being saved: the file's path is known only once it is written."""
        self._saving = (trainer.current_epoch, self._step_count(trainer))

    def _poll_checkpoints(self, trainer: Any) -> None:
        """``checkpoint.saved`` for each new file (rank 0, which writes them), with the saved epoch and step."""
        w = self._watch
        if w is None or self._emit is None or self._rank != 0:
            return
        paths = w.new_files()
        if not paths:
            return
        epoch, step = self._saving or (trainer.current_epoch, self._step_count(trainer))
        self._saving = None
        for path in paths:
            self._emit(CHECKPOINT_SAVED, {"epoch": epoch, "global_step": step}, {"checkpoint_path": path})

    def _checkpoint_written(self) -> None:
        """Called by ``CrucibleLogger.after_save_checkpoint``: report the file right away."""
        trainer = self._trainer
        if trainer is not None:
            run_guarded(self, "after_save_checkpoint", self._poll_checkpoints, trainer)
