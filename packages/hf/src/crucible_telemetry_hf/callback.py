"""``CrucibleCallback``: the Hugging Face ``Trainer`` emits the standard ``crucible_train.*`` events."""

from __future__ import annotations

import math
import os
import time
import weakref
from collections.abc import Iterable
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import crucible_telemetry as ct
from crucible_telemetry import Experiment, InvalidArgumentError, Telemetry
from crucible_telemetry.events import (
    BATCH_STOP,
    CHECKPOINT_SAVED,
    EPOCH_START,
    EPOCH_STOP,
    TRAINING_START,
    TRAINING_STOP,
)
from crucible_telemetry.integration import (
    Run,
    check_system_metrics,
    guarded,
    run_guarded,
    sampling_here,
    to_scalar,
    write_checkpoint_marker,
)

from ._helpers import epoch_index, watch
from ._logs import parameter_counts, step_values, summary
from ._params import run_params, unlogged_loss
from ._report import ReportHooks
from ._setup import find_in_stack, open_trainer_run

__all__ = ["CrucibleCallback"]

_META = {"framework": "transformers"}


class CrucibleCallback(ReportHooks):
    """Record a ``transformers.Trainer`` run as the standard ``crucible_train.*`` events.

    Emits ``training.start/stop``, ``epoch.start/stop`` (integer epoch index, mean training loss,
    evaluation results as ``val_<name>``), one ``batch.stop`` per optimizer step (``global_step``,
    and ``loss``, ``learning_rate``, ``gradient_norm`` on the steps the Trainer logs),
    ``validation.stop``, ``checkpoint.saved`` and ``training.exception``; every scalar the Trainer
    logs also lands in the ``metrics`` view with its step, once (from the world's process zero, as
    HF's own reporting callbacks log) unless ``all_ranks``. Starts an experiment when none is live
    and stops it at the end (``failed`` when ``train()`` raised); a live one is reused and left
    running. ``TrainingArguments`` and the model config become the experiment's params
    (``learning_rate``, ``model.n_embd`` ...), ``framework = "transformers"``.

    It only observes, as ``TensorBoardCallback`` does: it never sets ``control`` flags, so other
    callbacks see the same events and ``state.log_history`` holds the same values with or without
    it. ``trainer.evaluate()`` records too: into the experiment of this callback's last ``train()``
    (joined again and stopped after), else the live one, else a new one. A failure inside the
    callback is kept in ``errors`` and logged once per hook, never raised into training
    (``CRUCIBLE_STRICT=1`` re-raises it).

    Args:
        experiment_name: name of a new experiment; default ``args.run_name`` or the model's class.
        experiment_id: record into this experiment (joined if it exists, else started under this id);
            default ``$CRUCIBLE_EXPERIMENT_ID``, else the one a resumed checkpoint was recorded in,
            else the live experiment, else a new one (the order of ``crucible_telemetry.integration``).
        hub: the ``Telemetry`` to record into; default ``crucible_telemetry.default()``.
        tags: tags of a new experiment.
        hypothesis: hypothesis of a new experiment.
        condition: A/B condition of a new experiment.
        log_epoch_loss: put the epoch's mean training loss on ``epoch.stop``, whatever ``logging_steps``
            is: the logged losses plus what the Trainer accumulated since its last log (read at the
            epoch's end; nothing is logged for it).
        record_metrics: write every logged scalar to the ``metrics`` view.
        all_ranks: write logged scalars from every rank (rows carry ``rank``); by default only the
            world's process zero writes them (events come from every rank either way).
        system_metrics: sample the machine into the experiment while training runs: ``True`` (every
            10 s), an interval in seconds, or ``False``; one sampler per node (local process zero)
            unless ``system_metrics_all_ranks``.
        system_metrics_all_ranks: sample from every rank.

    Example:
        >>> from crucible_telemetry_hf import CrucibleCallback
        >>> trainer = Trainer(model=model, args=args, train_dataset=ds,  # doctest: +SKIP
        ...                   callbacks=[CrucibleCallback()])
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        experiment_name: str | None = None,
        *,
        experiment_id: str | None = None,
        hub: Telemetry | None = None,
        tags: Iterable[str] = (),
        hypothesis: str | None = None,
        condition: str | None = None,
        log_epoch_loss: bool = True,
        record_metrics: bool = True,
        all_ranks: bool = False,
        system_metrics: bool | float = True,
        system_metrics_all_ranks: bool = False,
    ) -> None:
        for arg, val in (
            ("experiment_name", experiment_name),
            ("experiment_id", experiment_id),
            ("hypothesis", hypothesis),
            ("condition", condition),
        ):
            if val is not None and (not isinstance(val, str) or not val.strip()):
                raise InvalidArgumentError(arg, f"expected a non-empty string, got {val!r}")
        if hub is not None and not isinstance(hub, Telemetry):
            raise InvalidArgumentError("hub", f"expected a crucible_telemetry.Telemetry, got {type(hub).__name__}")
        if isinstance(tags, str):
            tags = (tags,)
        self.experiment_name = experiment_name
        self.experiment_id = experiment_id
        self.tags = tuple(tags)
        self.hypothesis = hypothesis
        self.condition = condition
        self.log_epoch_loss = bool(log_epoch_loss)
        self.record_metrics = bool(record_metrics)
        self.all_ranks = bool(all_ranks)
        self.system_metrics = check_system_metrics("system_metrics", system_metrics)
        self.system_metrics_all_ranks = bool(system_metrics_all_ranks)
        self._last_id: str | None = None  # the experiment of the last train(): evaluate() joins it again
        self._trainer_ref: Any = None
        self.errors: list[Exception] = []
        self.skipped: set[str] = set()
        self._hub_arg = hub
        self._hub: Telemetry | None = hub
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self.experiment: Experiment | None = None
        self._run: Run | None = None
        self._model_name = ""
        self._t_train = 0
        self._epoch = 0
        self._t_epoch = 0
        self._micro = 0
        self._t_step = 0
        self._tokens_step = 0
        self._batch: tuple[int, int, int, int, float | None] | None = None
        self._epoch_sum = 0.0
        self._epoch_steps = 0
        self._epoch_done: dict[str, float] | None = None
        self._last_logged = 0
        self._acc_mark: list[Any] = []  # what unlogged_loss already read from the Trainer's accumulator
        self._summary: dict[str, float] = {}

    # ------------------------------------------------------------------ setup

    @guarded
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Find the Trainer being built and record an exception event if its ``train`` fails."""
        from transformers import Trainer

        trainer = find_in_stack("self", lambda v: isinstance(v, Trainer))
        if trainer is not None:
            self._trainer_ref = weakref.ref(trainer)
            watch(trainer, "train", self, self._on_exception)

    def _setup(self, args: Any, state: Any, model: Any) -> None:
        self._hub = self._hub_arg or ct.default()
        model_name = type(model).__name__ if model is not None else "model"
        params, trainable = run_guarded(self, "parameter count", parameter_counts, model) or (None, None)
        metadata = {"framework": "transformers", "model_name": model_name, "parameters": params}
        resume_from = None
        if state.global_step > 0:
            resume_from = find_in_stack("resume_from_checkpoint", lambda v: isinstance(v, str)) or os.path.join(
                args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            )
        self._run = open_trainer_run(
            self._hub,
            explicit_id=self.experiment_id,
            resume_from=resume_from,
            name=self.experiment_name or args.run_name or model_name,
            metadata=metadata,
            tags=self.tags,
            hypothesis=self.hypothesis,
            condition=self.condition,
            params=run_params(args, model),
            unique_name=not (self.experiment_name or args.run_name),
            system_metrics=sampling_here(
                self.system_metrics, every_rank=self.system_metrics_all_ranks, local_rank=args.local_process_index
            ),
        )
        exp = self._run.experiment
        self._last_id = exp.id
        self.experiment = exp
        self._model_name = model_name
        self._start_md = {
            "framework": "transformers",
            "model_name": model_name,
            "parameters": params,
            "trainable_parameters": trainable,
            "run_name": args.run_name,
            "output_dir": args.output_dir,
            "resumed": resume_from is not None,
            "resumed_from": resume_from,
        }

    # --------------------------------------------------------------- training

    @guarded
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start or reuse the experiment, emit ``training.start``."""
        if self.experiment is not None:  # the last run ended without on_train_end or an exception we saw
            self._finish()
        self._reset()
        self._setup(args, state, kwargs.get("model"))
        self._t_train = time.monotonic_ns()
        self._last_logged = state.global_step
        self._epoch = epoch_index(state.epoch)
        self._emit(TRAINING_START, {"global_step": state.global_step, "epoch": self._epoch}, self._start_md)
        from transformers import Trainer

        trainer = find_in_stack("self", lambda v: isinstance(v, Trainer))
        if trainer is not None:
            self._trainer_ref = weakref.ref(trainer)
        if trainer is not None and getattr(trainer.train, "__crucible_watched__", None) is not self:
            # Added after the Trainer was built: watch its training steps instead of train().
            watch(trainer, "training_step", self, self._on_exception)

    @guarded
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """``epoch.start`` with the integer epoch index."""
        if self.experiment is None:
            return
        self._flush_batch()
        self._flush_epoch()
        self._epoch = epoch_index(state.epoch)
        self._t_epoch = time.monotonic_ns()
        self._micro = 0
        self._epoch_sum, self._epoch_steps = 0.0, 0
        md: dict[str, Any] = _META
        if (state.epoch or 0) != self._epoch:  # resumed mid-epoch: the Trainer skips the batches already seen
            md = {**_META, "resumed": True}
            loader = kwargs.get("train_dataloader")
            if loader is not None and hasattr(loader, "__len__"):
                self._micro = round((state.epoch - self._epoch) * len(loader))
        self._emit(EPOCH_START, {"epoch": self._epoch, "global_step": state.global_step}, md)

    @guarded
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Time the optimizer step (all its micro-batches)."""
        if self._batch is not None:
            self._flush_batch()
        self._t_step = time.monotonic_ns()
        self._tokens_step = state.num_input_tokens_seen

    @guarded
    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Count a micro-batch that did not step the optimizer."""
        self._micro += 1

    @guarded
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Hold the step's ``batch.stop`` until the Trainer logs it (or not)."""
        if self.experiment is None:
            return
        now = time.monotonic_ns()
        self._micro += 1
        duration = now - self._t_step if self._t_step else 0
        tps = None
        tokens = state.num_input_tokens_seen - self._tokens_step
        if tokens > 0 and duration > 0:
            tps = tokens * 1e9 / duration
        self._batch = (state.global_step, self._epoch, self._micro - 1, duration, tps)
        self._t_step = 0

    def _flush_batch(self, logs: dict[str, Any] | None = None) -> None:
        if self._batch is None:
            return
        step, epoch, batch, duration, tps = self._batch
        self._batch = None
        m: dict[str, Any] = {"global_step": step, "epoch": epoch, "batch": batch, "duration": duration}
        if tps is not None:
            m["tokens_per_second"] = tps
        if logs is not None:
            m.update(step_values(logs))
        self._emit(BATCH_STOP, m)

    @guarded
    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Hold ``epoch.stop`` until the epoch-end log and evaluation have run."""
        if self.experiment is None:
            return
        duration = time.monotonic_ns() - self._t_epoch if self._t_epoch else 0
        self._epoch_done = {"epoch": self._epoch, "global_step": state.global_step, "duration": duration}
        if self.log_epoch_loss and state.global_step > self._last_logged:
            # the steps since the Trainer's last log: their loss sum, read once (the epoch-end log,
            # if any, then finds them counted)
            trainer = self._trainer_ref() if self._trainer_ref is not None else None
            tail = unlogged_loss(trainer, state, self._acc_mark)
            if tail is not None:
                total, steps = tail
                if steps > 0 and math.isfinite(total):
                    self._epoch_sum += total
                    self._epoch_steps += steps
                    self._last_logged = state.global_step
        if not control.should_log:  # else the epoch-end log carries the last step's loss
            self._flush_batch()

    def _flush_epoch(self) -> None:
        done = self._epoch_done
        if done is None:
            return
        self._epoch_done = None
        if self._epoch_steps:
            done["loss"] = self._epoch_sum / self._epoch_steps
        self._emit(EPOCH_STOP, done)

    @guarded
    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Every scalar into the ``metrics`` view; the training loss onto its step and epoch."""
        if not logs:
            return
        if self.experiment is None:  # trainer.evaluate() / trainer.log() outside train()
            if self.record_metrics and getattr(state, "is_world_process_zero", True):
                with self._outside(args, kwargs.get("model")) as exp:
                    self._record(exp.id, logs, state.global_step, epoch_index(state.epoch))
            return
        if "train_loss" in logs and "loss" not in logs:  # the final summary of train()
            self._flush_batch()
            self._flush_epoch()
            self._summary = summary(logs)
        elif "loss" in logs:
            loss = to_scalar(logs["loss"])
            steps = state.global_step - self._last_logged
            self._last_logged = state.global_step
            if loss is not None and steps > 0 and math.isfinite(loss):
                self._epoch_sum += loss * steps
                self._epoch_steps += steps
            if self._batch is not None and self._batch[0] == state.global_step:
                self._flush_batch(logs)
        if self.record_metrics and self._records(state):
            self._record(self.experiment.id, logs, state.global_step, self._epoch)

    @guarded
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """``checkpoint.saved`` with the checkpoint folder, from the process that wrote it."""
        if self.experiment is None or not args.should_save:
            return
        self._flush_batch()
        self._flush_epoch()
        folder = os.path.abspath(os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"))
        write_checkpoint_marker(folder, self.experiment.id)
        self._emit(
            CHECKPOINT_SAVED,
            {"global_step": state.global_step, "epoch": self._epoch},
            {**_META, "checkpoint_path": folder},
        )

    @guarded
    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """``training.stop``; stop the experiment if this callback started it."""
        if self.experiment is None:
            return
        self._flush_batch()
        self._flush_epoch()
        m: dict[str, Any] = {
            "duration": time.monotonic_ns() - self._t_train,
            "global_step": state.global_step,
            "epoch": self._epoch,
            **self._summary,
        }
        self._emit(TRAINING_STOP, m, {**_META, "model_name": self._model_name})
        self._finish()

    def _finish(self, status: str = "stopped") -> None:
        run = self._run
        self._reset()
        if run is not None:
            run.close(status)  # unbind from this context; stop the experiment only if this callback owns it
