"""``CrucibleCallback``: the standard ``crucible_train.*`` events from a Lightning Trainer."""

from __future__ import annotations

import os
import time
import traceback
import weakref
from collections.abc import Iterable
from typing import Any

from torch import Tensor
from typing_extensions import override

import crucible_telemetry as ct
from crucible_telemetry.errors import InvalidArgumentError
from crucible_telemetry.events import (
    BATCH_STOP,
    CHECKPOINT_SAVED,
    EPOCH_START,
    EPOCH_STOP,
    TRAINING_EXCEPTION,
    TRAINING_START,
    TRAINING_STOP,
    VALIDATION_STOP,
)
from crucible_telemetry.experiment import RUNNING as _RUNNING
from crucible_telemetry.experiment import STOPPED as _STOPPED
from crucible_telemetry.experiment import check_tags, new_experiment_id
from crucible_telemetry.storage.segments import validate_partition_value

from . import _compat
from ._checkpoints import CheckpointWatch
from ._guard import failed, guarded, run_guarded
from ._logged import epoch_summary, learning_rates, scalar, validation_metrics
from ._values import Deferred, batch_size, grad_norm, host_grad_norm, host_norm_ok, token_count

__all__ = ["CrucibleCallback"]

_mono = time.monotonic_ns

#: Set this to make every process (and every Trainer) record into one given experiment.
ENV_EXPERIMENT_ID = "CRUCIBLE_EXPERIMENT_ID"


class CrucibleCallback(*_compat.callback_bases()):  # type: ignore[misc]
    """Emits ``crucible_train.*`` events for a Lightning fit and manages its experiment.

    It subclasses the ``Callback`` of every installed flavour, so the same class works with
    ``lightning.Trainer`` and ``pytorch_lightning.Trainer``. When no experiment is live it starts
    one named after the LightningModule (hyper-parameters in its metadata) and stops it at the end;
    a live one (``ct.start_experiment`` / ``with ct.experiment(...)``) is used and left running.
    Under DDP rank 0 picks the experiment id and broadcasts it: one experiment for all ranks. The
    id is saved in checkpoints, so resuming appends to the same experiment and run.

    Per step nothing waits for the device: losses and gradient norms on an accelerator are
    copied to the host without blocking and their ``batch.stop`` event is emitted once the copy
    has landed (at the latest at the end of the epoch). ``global_step`` on ``batch.stop`` is the
    number of optimizer steps done once the step this micro-batch feeds completes (the Hugging
    Face Trainer's ``global_step``; Lightning's logger ``step`` plus one), and ``batch`` the
    micro-batch index in the epoch, so curves align under gradient accumulation and across trainers.

    Args:
        experiment_name: name of the experiment it starts; default the LightningModule's class name.
        experiment_id: record into this experiment (joined when it exists, else created under this
            id); default a live experiment, else ``$CRUCIBLE_EXPERIMENT_ID``, else a new id.
        hypothesis: hypothesis recorded on the experiment it starts.
        condition: A/B condition recorded on the experiment it starts.
        tags: tags of the experiment it starts.
        metadata: extra metadata of the experiment it starts.
        hub: the ``ct.Telemetry`` to record into; default ``ct.default()`` at ``fit`` time.
        gradient_norm: when to compute the global L2 norm of the gradients (before the optimizer
            step): ``True`` on the steps Lightning logs (every ``log_every_n_steps``), an int ``n``
            every ``n`` optimizer steps (1: every step), ``False`` never. It reads every gradient,
            so it is not free on a large model.
        all_ranks: emit training events from every rank (default) or from rank 0 only.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger
        >>> trainer = Trainer(callbacks=[CrucibleCallback()], logger=CrucibleLogger())  # doctest: +SKIP
    """

    def __init__(
        self,
        experiment_name: str | None = None,
        *,
        experiment_id: str | None = None,
        hypothesis: str | None = None,
        condition: str | None = None,
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        hub: ct.Telemetry | None = None,
        gradient_norm: bool | int = True,
        all_ranks: bool = True,
    ) -> None:
        super().__init__()
        if experiment_name is not None and (not isinstance(experiment_name, str) or not experiment_name.strip()):
            raise InvalidArgumentError("experiment_name", "expected a non-empty string or None")
        if experiment_id is not None:
            if not isinstance(experiment_id, str):
                raise InvalidArgumentError("experiment_id", f"expected a string, got {type(experiment_id).__name__}")
            validate_partition_value("experiment_id", experiment_id)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgumentError("metadata", f"expected a dict, got {type(metadata).__name__}")
        if hub is not None and not isinstance(hub, ct.Telemetry):
            raise InvalidArgumentError("hub", f"expected a crucible_telemetry.Telemetry, got {type(hub).__name__}")
        self.experiment_name = experiment_name
        self._pinned_id = experiment_id
        self.hypothesis = hypothesis
        self.condition = condition
        self.tags = check_tags(tags)
        self.metadata = dict(metadata or {})
        if isinstance(gradient_norm, bool) or gradient_norm is None:
            pass
        elif not isinstance(gradient_norm, int) or gradient_norm < 0:
            raise InvalidArgumentError("gradient_norm", f"expected a bool or an int >= 0, got {gradient_norm!r}")
        self.gradient_norm = gradient_norm
        self.all_ranks = bool(all_ranks)
        self._hub_arg = hub
        self.hub: ct.Telemetry | None = None
        self.experiment: ct.Experiment | None = None
        #: Exceptions raised inside hooks (recorded, never raised into the training loop).
        self.errors: list[BaseException] = []
        self._reset_run()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (``ddp_spawn``) the configuration only: the hub and run state are per process."""
        state = self.__dict__.copy()
        state["_hub_arg"] = None if self._hub_arg is None else str(self._hub_arg.home)
        state["hub"] = state["experiment"] = None
        for k in ("_trainer", "_emit", "_deferred", "_dq", "_watch", "_opt", "_gnorm", "_steps"):
            state[k] = None
        state["_params"] = []
        for k in ("log", "log_dict"):  # the model's logging methods Lightning attaches at fit time
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild on the other side; a hub given by its home is reopened there."""
        home = state.get("_hub_arg")
        if isinstance(home, str):
            from crucible_telemetry._hubs import hub_for

            state["_hub_arg"] = hub_for(home)
        self.__dict__.update(state)

    @property
    def experiment_id(self) -> str | None:
        """The id of the experiment of the current (or last) fit."""
        return self._exp_id

    def _reset_run(self) -> None:
        self._exp_id: str | None = None
        self._exp_name: str | None = None
        self._user_exp = False  # the experiment was live before fit: used, never stopped
        self._bound = False
        self._loaded: dict[str, Any] | None = None
        self._resumed = False
        self._emitting = False
        self._rank = 0
        self._world = 1
        self._emit: Any = None
        self._deferred: Deferred | None = None
        self._dq: Any = ()  # the deferred events' queue (truthy while any wait), read per step
        self._watch: CheckpointWatch | None = None
        self._saving: tuple[int, int] | None = None
        self._trainer: Any = None
        self._t_fit = self._t_epoch = self._t0 = self._t_val = 0
        self._step0 = 0
        self._epoch = 0
        self._accum = 1
        self._params: list[Tensor] = []
        self._opt: Any = None
        self._gnorm: Tensor | float | None = None
        self._gn_every = 0
        self._gn_host = False  # a small CPU model: its gradient norm is summed through numpy
        self._steps: Any = None  # Lightning's optimizer-step counter (``.completed`` is global_step)
        self._epoch_lrs: dict[str, float] | None = None  # learning rates at the epoch's start
        self._loss_sum = 0.0
        self._loss_n = 0

    # ------------------------------------------------------------------ experiment

    @override
    @guarded
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Pick the experiment id (rank 0's, broadcast to all ranks) before any other hook needs it."""
        if stage != "fit":
            return
        self._reset_run()
        self._trainer = weakref.proxy(trainer)
        self.hub = self._hub_arg or ct.default()
        self._rank, self._world = int(trainer.global_rank), int(trainer.world_size)
        self._emitting = self.all_ranks or self._rank == 0
        live = self.hub.current_experiment()
        if live is not None and live.state == _STOPPED:
            live = None
        name = self.experiment_name or type(pl_module).__name__
        if self._pinned_id is not None:
            mine = live is not None and live.id == self._pinned_id
            choice = (self._pinned_id, mine, live.name if live is not None and mine else name)
        elif live is not None:
            choice = (live.id, True, live.name)
        else:
            choice = (os.environ.get(ENV_EXPERIMENT_ID) or new_experiment_id(), False, name)
        if self._world > 1:
            choice = trainer.strategy.broadcast(choice, src=0)
        self._exp_id, self._user_exp, self._exp_name = choice
        validate_partition_value("experiment_id", self._exp_id)
        self._tell_loggers(trainer)

    @override
    @guarded
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Start or join the experiment (rank 0 first, then the others), resumed id included."""
        if self.hub is None:
            return
        if self._loaded:
            self._exp_id = self._loaded["experiment_id"]
            self._user_exp = bool(self._loaded.get("user_experiment", False)) and self._is_live(self._exp_id)
            self._resumed = True
        # Rank 0 writes the experiment record before the others join it; the barrier is outside
        # the guarded calls so that a failure on one rank cannot leave the others waiting.
        if self._rank == 0:
            run_guarded(self, "on_fit_start", self._open, trainer, pl_module)
        if self._world > 1:
            trainer.strategy.barrier("crucible_experiment")
        if self._rank != 0:
            run_guarded(self, "on_fit_start", self._open, trainer, pl_module)
        self._tell_loggers(trainer)

    def _is_live(self, exp_id: str) -> bool:
        assert self.hub is not None
        cur = self.hub.current_experiment()
        return cur is not None and cur.id == exp_id and cur.state != _STOPPED

    def _open(self, trainer: Any, pl_module: Any) -> None:
        hub = self.hub
        assert hub is not None and self._exp_id is not None
        if self._user_exp and self._is_live(self._exp_id):
            self.experiment = hub.current_experiment()
        elif self._rank == 0:
            exp = hub.start_experiment(
                self.experiment_name or type(pl_module).__name__, self.hypothesis, self.condition,
                self.tags, self._experiment_metadata(trainer, pl_module), experiment_id=self._exp_id, bind=False,
            )
            exp.owner = True  # a resumed experiment is ours again: its record gets the final status
            self._bind(exp)
        else:
            self._bind(hub.join_experiment(self._exp_id, bind=False))
        self._emit = hub.emit
        self._deferred = Deferred(self._emit_now)
        self._dq = self._deferred.queue

    def _bind(self, exp: ct.Experiment) -> None:
        if exp.state == _STOPPED:
            # Resumed in the process that ran the first fit: the core hands back its stopped object
            # (another process gets a running copy from the record); reopen it the same way.
            exp.state, exp.stopped_at = _RUNNING, None
        exp.__enter__()
        self._bound = True
        self.experiment = exp

    def _experiment_metadata(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        hparams = getattr(pl_module, "hparams", None)
        return {
            **self.metadata,
            "framework": "lightning",
            "lightning_package": type(trainer).__module__.split(".")[0],
            "model_name": type(pl_module).__name__,
            "parameters": _count_parameters(pl_module),
            "hyperparameters": dict(hparams) if hparams else {},
        }

    def _tell_loggers(self, trainer: Any) -> None:
        from .logger import CrucibleLogger

        for lg in getattr(trainer, "loggers", ()):
            if isinstance(lg, CrucibleLogger) and self._exp_id is not None:
                lg._adopt(self._exp_id, self.hub, resumed=self._resumed, callback=self, name=self._exp_name)

    def _close(self) -> None:
        exp, self.experiment = self.experiment, None
        if exp is None:
            return
        if self._deferred is not None:
            self._deferred.drain(force=True)
        self._emit = None
        self._trainer = None
        if self._bound:
            self._bound = False
            exp.__exit__(None, None, None)  # unbinds and stops (flushes) this process's share
        elif self.hub is not None:
            self.hub.flush()

    @override
    @guarded
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Stop the experiment this callback started (a user's experiment is left running)."""
        if stage == "fit":
            self._close()

    @override
    def state_dict(self) -> dict[str, Any]:
        """The experiment id, saved in checkpoints so a resumed fit appends to the same run."""
        if self._exp_id is None:
            return {}
        return {"experiment_id": self._exp_id, "user_experiment": self._user_exp}

    @override
    @guarded
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Remember the resumed experiment id (applied in ``on_fit_start``)."""
        exp_id = state_dict.get("experiment_id") if isinstance(state_dict, dict) else None
        if not isinstance(exp_id, str):
            return
        validate_partition_value("experiment_id", exp_id)
        self._loaded = dict(state_dict)
        if self.experiment is not None and self.experiment.id != exp_id and self.hub is not None:
            # A strategy that restores after on_fit_start: move over to the resumed experiment.
            # (Hyper-parameters were logged before this point: they stay with the fresh run.)
            trainer = self._trainer
            self._close()
            self._trainer, self._exp_id, self._resumed = trainer, exp_id, True
            self._open_resumed()

    def _open_resumed(self) -> None:
        assert self.hub is not None
        exp = self.hub.join_experiment(self._exp_id or "", bind=False)
        if self._rank == 0:
            exp.owner = True
        self._bind(exp)
        self._emit = self.hub.emit
        self._deferred = Deferred(self._emit_now)
        self._dq = self._deferred.queue
        if self._trainer is not None:
            self._tell_loggers(self._trainer)

    # -------------------------------------------------------------------- training

    def _emit_now(self, name: Any, m: dict[str, Any], md: dict[str, Any] | None) -> None:
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
        if not getattr(pl_module, "automatic_optimization", True):
            self._accum = 1
        opts = getattr(trainer, "optimizers", None) or []
        self._opt = opts[0] if opts else None
        self._params = [p for opt in opts for g in opt.param_groups for p in g["params"]]
        self._watch = CheckpointWatch(getattr(trainer, "checkpoint_callbacks", ()))
        gn = self.gradient_norm
        self._gn_every = int(getattr(trainer, "log_every_n_steps", 50) or 0) if gn is True else int(gn or 0)
        self._gn_host = bool(self._gn_every) and host_norm_ok(self._params)
        if not self._emitting:
            return
        self._emit(TRAINING_START, {"epoch": trainer.current_epoch, "global_step": trainer.global_step}, {
            "model_name": type(pl_module).__name__,
            "framework": "lightning",
            "parameters": _count_parameters(pl_module),
            "max_epochs": trainer.max_epochs,
            "max_steps": trainer.max_steps,
            "accumulate_grad_batches": self._accum,
            "world_size": self._world,
            "precision": str(getattr(trainer, "precision", "")),
            "resumed": self._resumed,
            "experiment_id": self._exp_id,
        })

    @override
    @guarded
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """``epoch.start``."""
        self._epoch = trainer.current_epoch
        self._t_epoch = _mono()
        self._loss_sum, self._loss_n = 0.0, 0
        self._steps = _step_counter(trainer)
        # Epoch-interval schedulers step before on_train_epoch_end: keep the rates this epoch ran with.
        self._epoch_lrs = learning_rates(self._opt)
        self._poll_checkpoints(trainer)
        if self._emit is not None and self._emitting:
            self._emit(EPOCH_START, {"epoch": self._epoch, "global_step": trainer.global_step}, None)

    # The three per-step hooks catch failures inline (as ``guarded`` does): one call frame less each.

    @override
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Step timer; the optimizer step this micro-batch feeds is the global step before it."""
        try:
            self._t0 = _mono()
            c = self._steps
            self._step0 = c.completed if c is not None else trainer.global_step
            w = self._watch
            if w is not None and w.active and w.changed():
                self._poll_checkpoints(trainer)
        except Exception as exc:
            failed(self, "on_train_batch_start", exc)

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
            failed(self, "on_before_optimizer_step", exc)

    @override
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """``batch.stop``: loss, gradient norm, learning rate, throughput, step time (ns)."""
        try:
            if self._emit is None or not self._emitting:
                return
            dur = _mono() - self._t0
            m: dict[str, Any] = {"epoch": self._epoch, "batch": batch_idx, "global_step": self._step0 + 1,
                                 "duration": dur}
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
                    lr = scalar(lr)
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
            failed(self, "on_train_batch_end", exc)

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
        m.update(epoch=trainer.current_epoch, global_step=trainer.global_step, duration=_mono() - self._t_val)
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
        m.update(epoch=self._epoch, global_step=trainer.global_step, duration=_mono() - self._t_epoch)
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
            self._emit(TRAINING_STOP, {"epoch": self._epoch, "global_step": trainer.global_step,
                                        "duration": _mono() - self._t_fit}, None)

    @override
    @guarded
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """``training.exception`` (kind, reason, stacktrace); Lightning re-raises the user's exception."""
        if self._emit is not None:
            if self._deferred:
                self._deferred.drain(force=True)
            if self._emitting:
                self._emit(TRAINING_EXCEPTION, {
                    "epoch": trainer.current_epoch, "global_step": trainer.global_step,
                    "duration": _mono() - self._t_fit if self._t_fit else 0,
                }, {
                    "kind": type(exception).__name__,
                    "reason": str(exception),
                    "stacktrace": "".join(traceback.format_exception(exception)),
                    "framework": "lightning",
                })
        self._close()

    @override
    @guarded
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Note the epoch and step being saved: the file's path is known only once it is written."""
        self._saving = (trainer.current_epoch, trainer.global_step)

    def _poll_checkpoints(self, trainer: Any) -> None:
        """``checkpoint.saved`` for each new file (rank 0, which writes them), with the saved epoch and step."""
        w = self._watch
        if w is None or self._emit is None or self._rank != 0:
            return
        paths = w.new_files()
        if not paths:
            return
        epoch, step = self._saving or (trainer.current_epoch, trainer.global_step)
        self._saving = None
        for path in paths:
            self._emit(CHECKPOINT_SAVED, {"epoch": epoch, "global_step": step}, {"checkpoint_path": path})

    def _checkpoint_written(self) -> None:
        """Called by ``CrucibleLogger.after_save_checkpoint``: report the file right away."""
        trainer = self._trainer
        if trainer is not None:
            run_guarded(self, "after_save_checkpoint", self._poll_checkpoints, trainer)


def _count_parameters(module: Any) -> int | None:
    try:
        return sum(int(p.numel()) for p in module.parameters())
    except Exception:
        return None


def _step_counter(trainer: Any) -> Any:
    """The progress record whose ``completed`` is ``trainer.global_step`` (read per step without
    Lightning's property chain); None when it cannot be found or does not agree."""
    try:
        loop = trainer.fit_loop.epoch_loop
        module = trainer.lightning_module
        if module is None or module.automatic_optimization:
            total = loop.automatic_optimization.optim_progress.optimizer.step.total
        else:
            total = loop.manual_optimization.optim_step_progress.total
        return total if total.completed == trainer.global_step else None
    except Exception:
        return None
