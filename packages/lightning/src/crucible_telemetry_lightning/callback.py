"""``CrucibleCallback``: the standard ``crucible_train.*`` events from a Lightning Trainer, and its experiment.

The hooks that count steps and epochs live in ``_steps`` and ``_epochs`` (base classes of this
one); which experiment a fit records into is ``_fit``'s. This module holds the configuration
and the hooks that open, resume and close the experiment.
"""

from __future__ import annotations

import sys
import time
import traceback
import weakref
from collections.abc import Iterable
from typing import Any

from typing_extensions import override

import crucible_telemetry as ct
from crucible_telemetry.errors import InvalidArgumentError
from crucible_telemetry.events import TRAINING_EXCEPTION
from crucible_telemetry.integration import (
    check_system_metrics,
    check_tags,
    choose_experiment,
    guarded,
    hub_for,
    resumed_id,
    run_guarded,
    sampling_here,
    validate_id,
)

from ._epochs import EpochHooks
from ._fit import FitExperiment
from ._hparams import hyperparameters
from ._steps import count_parameters
from ._values import Deferred

__all__ = ["CrucibleCallback"]


def _pickled_for_a_process() -> bool:
    """Whether the pickling under way sends the object to a new process (``ddp_spawn``), not a ``deepcopy``."""
    f = sys._getframe(2)
    for _ in range(40):
        if f is None:
            return False
        if "multiprocessing" in f.f_code.co_filename:
            return True
        f = f.f_back
    return False


_mono = time.monotonic_ns


class CrucibleCallback(EpochHooks):
    """Emits ``crucible_train.*`` events for a Lightning fit and manages its experiment.

    It subclasses the ``Callback`` of every installed flavour, so the same class works with
    ``lightning.Trainer`` and ``pytorch_lightning.Trainer``. The experiment is, first match wins:
    ``experiment_id``, else ``$CRUCIBLE_EXPERIMENT_ID``, else the one a resumed checkpoint names,
    else the experiment live around ``fit`` (``ct.start_experiment`` / ``with ct.experiment(...)``),
    else a new one named after the LightningModule (``TinyRegressor``, then ``TinyRegressor-2`` ...).
    The callback stops the experiment at the end (status ``failed`` when the fit raised) unless it
    was live around ``fit`` (that one is left running). Under DDP rank 0 chooses and broadcasts: one
    experiment for all ranks; under ``ddp_spawn`` the parent chooses before spawning, so
    ``experiment_id`` is set in the parent after ``fit``. The id is saved in checkpoints, so resuming
    appends to the same experiment and run.

    The module's (and datamodule's) ``hparams`` become the experiment's params (dotted keys,
    ``framework = "lightning"``), unless ``save_hyperparameters(logger=False)`` asked Lightning not
    to log them: then nothing of them is recorded.

    Per step nothing waits for the device: losses and gradient norms on an accelerator are
    copied to the host without blocking and their ``batch.stop`` event is emitted once the copy
    has landed (at the latest at the end of the epoch). ``global_step`` on ``batch.stop`` is the
    number of training batches that stepped once the step this micro-batch feeds completes: one
    per model update, whatever the number of optimizers a manual ``training_step`` steps (the
    Hugging Face Trainer's ``global_step``; Lightning's logger ``step`` plus one, i.e. its
    ``_batches_that_stepped``; ``trainer.global_step`` counts every optimizer's step instead), and
    ``batch`` the micro-batch index in the epoch, so curves align under gradient accumulation,
    manual optimization and across trainers.

    Args:
        experiment_name: name of the experiment it starts; default the LightningModule's class name.
        experiment_id: record into this experiment (joined when it exists, else created under this
            id); it beats every other source (see above).
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
        system_metrics: sample the machine (CPU, memory, disk, network, GPUs) into the experiment
            while the fit runs: ``True`` (every 10 s), an interval in seconds, or ``False``. One
            sampler per node (local rank 0) unless ``system_metrics_all_ranks``.
        system_metrics_all_ranks: sample from every rank (each process's own CPU and memory).

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
        system_metrics: bool | float = True,
        system_metrics_all_ranks: bool = False,
    ) -> None:
        super().__init__()
        if experiment_name is not None and (not isinstance(experiment_name, str) or not experiment_name.strip()):
            raise InvalidArgumentError("experiment_name", "expected a non-empty string or None")
        if experiment_id is not None:
            if not isinstance(experiment_id, str):
                raise InvalidArgumentError("experiment_id", f"expected a string, got {type(experiment_id).__name__}")
            validate_id("experiment_id", experiment_id)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgumentError("metadata", f"expected a dict, got {type(metadata).__name__}")
        if hub is not None and not isinstance(hub, ct.Telemetry):
            raise InvalidArgumentError("hub", f"expected a crucible_telemetry.Telemetry, got {type(hub).__name__}")
        if isinstance(gradient_norm, bool) or gradient_norm is None:
            pass
        elif not isinstance(gradient_norm, int) or gradient_norm < 0:
            raise InvalidArgumentError("gradient_norm", f"expected a bool or an int >= 0, got {gradient_norm!r}")
        self.experiment_name = experiment_name
        self._pinned_id = experiment_id
        self.hypothesis = hypothesis
        self.condition = condition
        self.tags = check_tags(tags)
        self.metadata = dict(metadata or {})
        self.gradient_norm = gradient_norm
        self.all_ranks = bool(all_ranks)
        self.system_metrics = check_system_metrics("system_metrics", system_metrics)
        self.system_metrics_all_ranks = bool(system_metrics_all_ranks)
        self._spawn: tuple[str, str] | None = None  # (id, source) chosen in a ddp_spawn parent
        self._hub_arg = hub
        self.hub: ct.Telemetry | None = None
        self.experiment: ct.Experiment | None = None
        #: Exceptions raised inside hooks (recorded, never raised into the training loop).
        self.errors: list[BaseException] = []
        self._reset_run()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (``ddp_spawn``) the configuration only: the hub and run state are per process.

        Pickled outside a fit (the ``ddp_spawn`` parent), the experiment is chosen here first, by
        the kit's order, so the parent and every spawned rank agree on it (a resumed checkpoint
        still beats a new id in the children).
        """
        if self._fit is None and self._spawn is None and _pickled_for_a_process():
            run_guarded(self, "__getstate__", self._choose_for_spawn)
        state = self.__dict__.copy()
        state["_hub_arg"] = None if self._hub_arg is None else str(self._hub_arg.home)
        state["hub"] = state["experiment"] = None
        for k in ("_fit", "_trainer", "_emit", "_deferred", "_dq", "_watch", "_opt", "_gnorm", "_steps"):
            state[k] = None
        state["_params"] = []
        for k in ("log", "log_dict"):  # the model's logging methods Lightning attaches at fit time
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild on the other side; a hub given by its home is reopened there."""
        home = state.get("_hub_arg")
        if isinstance(home, str):
            state["_hub_arg"] = hub_for(home)
        self.__dict__.update(state)

    @property
    def experiment_id(self) -> str | None:
        """The id of the experiment of the current (or last) fit (in a ``ddp_spawn`` parent: the spawned fit's)."""
        if self._fit is not None:
            return self._fit.experiment_id
        return self._spawn[0] if self._spawn is not None else None

    def _choose_for_spawn(self) -> None:
        hub = self._hub_arg or ct.default()
        choice = choose_experiment(hub, explicit_id=self._pinned_id)
        self._spawn = (choice.experiment_id, choice.source)

    def _reset_run(self) -> None:
        self._fit: FitExperiment | None = None
        self._emitting = False
        self._rank = 0
        self._world = 1
        self._trainer: Any = None
        self._reset_epochs()

    # ------------------------------------------------------------------ experiment

    @override
    @guarded
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Choose the experiment (rank 0's choice, broadcast to all ranks) before any other hook needs it."""
        if stage != "fit":
            return
        self._reset_run()
        self._trainer = weakref.proxy(trainer)
        self.hub = self._hub_arg or ct.default()
        self._rank, self._world = int(trainer.global_rank), int(trainer.world_size)
        self._emitting = self.all_ranks or self._rank == 0
        pinned, new_id = self._pinned_id, None
        if self._spawn is not None:  # chosen in the ddp_spawn parent
            pinned, new_id = (None, self._spawn[0]) if self._spawn[1] == "new" else (self._spawn[0], None)
        self._fit = FitExperiment(self.hub, pinned or self._pinned_id, self._rank, self._world, new_id=new_id)
        strategy = trainer.strategy
        self._fit.choose((lambda o: strategy.broadcast(o, src=0)) if self._world > 1 else None)
        self._tell_loggers(trainer)

    @override
    @guarded
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Start or join the experiment (rank 0 first, then the others), a resumed one included."""
        if self._fit is None:
            return
        # Rank 0 writes the experiment record before the others join it; the barrier is reached
        # even when rank 0 fails (strict mode re-raises), so the others never wait forever.
        try:
            if self._rank == 0:
                run_guarded(self, "on_fit_start", self._open, trainer, pl_module)
        finally:
            if self._world > 1:
                trainer.strategy.barrier("crucible_experiment")
        if self._rank != 0:
            run_guarded(self, "on_fit_start", self._open, trainer, pl_module)
        self._tell_loggers(trainer)

    def _default_name(self, pl_module: Any) -> str:
        if self.experiment_name:
            return self.experiment_name
        base = type(pl_module).__name__
        return self._fit.name(base, unique=True) if self._fit is not None else base

    def _open(self, trainer: Any, pl_module: Any) -> None:
        assert self._fit is not None
        run = self._fit.open(
            self._default_name(pl_module),
            self.hypothesis,
            self.condition,
            self.tags,
            self._experiment_metadata(trainer, pl_module),
            params=hyperparameters(trainer, pl_module),
            system_metrics=sampling_here(
                self.system_metrics, every_rank=self.system_metrics_all_ranks, local_rank=int(trainer.local_rank)
            ),
        )
        self.experiment = run.experiment
        assert self.hub is not None
        self._emit = self.hub.emit
        self._deferred = Deferred(self._emit_now)
        self._dq = self._deferred.queue

    def _experiment_metadata(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        return {
            **self.metadata,
            "framework": "lightning",
            "lightning_package": trainer.__class__.__module__.split(".")[0],  # a proxy forwards __class__
            "model_name": type(pl_module).__name__,
            "parameters": count_parameters(pl_module),
        }

    def _tell_loggers(self, trainer: Any) -> None:
        from .logger import CrucibleLogger

        fit = self._fit
        exp_id = fit.experiment_id if fit is not None else None
        if fit is None or exp_id is None:
            return
        name = fit.name(self._default_name(trainer.lightning_module))
        for lg in getattr(trainer, "loggers", ()):
            if isinstance(lg, CrucibleLogger):
                lg._adopt(exp_id, self.hub, resumed=fit.resumed, callback=self, name=name)

    def _release_loggers(self) -> None:
        trainer = self._trainer
        for lg in getattr(trainer, "loggers", ()) if trainer is not None else ():
            release = getattr(lg, "_release", None)
            if release is not None and getattr(lg, "_callback", None) is not None and lg._callback() is self:
                release()

    def _close(self, *, finished: bool = True, status: str = "stopped") -> None:
        """Emit what waits, then let go of the experiment (stopped when this fit owns it)."""
        if self._deferred is not None:
            self._deferred.drain(force=True)
        self._emit = None
        self.experiment = None
        fit = self._fit
        if fit is None:
            return
        if finished:
            self._release_loggers()
            self._trainer = None
            fit.close(status)
        elif fit.run is not None:
            fit.run.close()

    @override
    @guarded
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Stop the experiment this callback started (one live around ``fit`` is left running)."""
        if stage == "fit":
            self._close()

    @override
    def state_dict(self) -> dict[str, Any]:
        """The experiment id, saved in checkpoints so a resumed fit appends to the same run."""
        fit = self._fit
        if fit is None or fit.run is None:
            return {}
        return fit.run.checkpoint_state()

    @override
    @guarded
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resumed checkpoint names its experiment: it wins unless an explicit or environment id was given.

        Lightning restores after ``setup`` and before ``on_fit_start`` (applied there); a strategy
        that restores after ``on_fit_start`` (DeepSpeed, FSDP) moves the open run over to it.
        """
        exp_id = resumed_id(state_dict)
        fit = self._fit
        if exp_id is None or fit is None or fit.closed:
            return
        validate_id("checkpoint experiment_id", exp_id)
        if fit.resume(exp_id) and self._trainer is not None:
            # (Hyper-parameters were logged before this point: they stay with the provisional run.)
            trainer = self._trainer
            self._close(finished=False)
            self._open(trainer, trainer.lightning_module)
            self._tell_loggers(trainer)

    @override
    @guarded
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """``training.exception`` (kind, reason, stacktrace); Lightning re-raises the user's exception."""
        if self._emit is not None:
            if self._deferred:
                self._deferred.drain(force=True)
            if self._emitting:
                self._emit(
                    TRAINING_EXCEPTION,
                    {
                        "epoch": trainer.current_epoch,
                        "global_step": self._step_count(trainer),
                        "duration": _mono() - self._t_fit if self._t_fit else 0,
                    },
                    {
                        "kind": type(exception).__name__,
                        "reason": str(exception),
                        "stacktrace": "".join(traceback.format_exception(exception)),
                        "framework": "lightning",
                    },
                )
        self._close(status="failed")
