"""``CrucibleLogger``: a Lightning ``Logger`` whose ``self.log(...)`` values land in the ``metrics`` view."""

from __future__ import annotations

import logging
import os
import weakref
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from typing_extensions import override

import crucible_telemetry as ct
from crucible_telemetry.errors import InvalidArgumentError, UnknownExperimentError
from crucible_telemetry.integration import (
    Choice,
    Run,
    choose_experiment,
    default_run_name,
    guarded,
    hub_for,
    open_run,
    record_failure,
    to_scalar,
    validate_id,
)

from . import _compat
from ._hparams import plain_params

__all__ = ["CrucibleLogger"]

log = logging.getLogger("crucible_telemetry.lightning")


class CrucibleLogger(*_compat.logger_bases()):  # type: ignore[misc]
    """Writes Lightning's logged metrics to the store's ``metrics`` dataset, hyper-parameters to the experiment's params.

    Each ``self.log(...)`` value Lightning hands over becomes one row ``(run_id, metric, value,
    step, epoch, rank, node, ...)``; ``log_hyperparams`` adds to the experiment's params (dotted
    keys, the SQL view ``params``). With a ``CrucibleCallback`` in the same Trainer the run id is
    the experiment id the callback chose (explicit id > ``$CRUCIBLE_EXPERIMENT_ID`` > resumed
    checkpoint > live experiment > new), so metrics join events on ``run_id = experiment_id``.

    Alone (no callback; or ``trainer.validate()`` / ``trainer.test()`` outside a fit) it opens the
    experiment itself through the kit, by the same order: a new one is named ``lightning`` (then
    ``lightning-2`` ...; ``name=`` names it), has ``framework = "lightning"``, and is stopped at each
    ``finalize`` (``failed`` when the Trainer failed) and joined again by the next trainer call, so
    ``fit`` then ``test`` land in one experiment that ``crucible runs`` lists. A live experiment is
    used and left running.

    Resuming from a checkpoint appends to the same run and deletes nothing; a row whose
    ``(metric, step)`` the run already holds for this rank (steps replayed after an older
    checkpoint) is skipped, so ``(run_id, metric, step, rank)`` stays unique: the first write wins.
    Like Lightning's own loggers it records on rank 0 only, unless ``all_ranks=True``.
    Subclasses the ``Logger`` of every installed Lightning flavour, like ``CrucibleCallback``.

    Args:
        run_id: the experiment to write; default the ``CrucibleCallback``'s experiment id, else
            ``$CRUCIBLE_EXPERIMENT_ID``, else the live experiment's id, else a new ``exp-...`` id.
        name: the logger's ``name`` (a folder name for Lightning's checkpoint path) and the name of
            an experiment it starts; default the experiment's name, else ``lightning`` made unique.
        hub: the ``ct.Telemetry`` to write to; default ``ct.default()`` at first use.
        all_ranks: record on every rank (rows carry ``rank``) instead of rank 0 only.
        prefix: put in front of every logged metric name, joined with ``LOGGER_JOIN_CHAR`` (``"-"``):
            ``prefix="tmp"`` stores ``tmp-test``, as every built-in logger does. Hyper-parameters
            are not prefixed (nor are they by the built-ins).

    Under DDP alone with ``all_ranks=True``, ranks other than 0 join the experiment rank 0 opened
    only when they know its id (``run_id``, ``$CRUCIBLE_EXPERIMENT_ID`` or a ``CrucibleCallback``).
        save_dir: the root of the run folders; default ``<home>/lightning`` (next to the store).

    Folders: ``save_dir`` is a root shared by runs (as for ``MLFlowLogger`` and ``WandbLogger``, so
    it is ``trainer.log_dir`` and where a ``SimpleProfiler(filename=...)`` writes); ``log_dir`` is the
    run's own ``<save_dir>/<name>/<version>``, the folder Lightning puts this run's checkpoints in
    (``<log_dir>/checkpoints``), as ``CSVLogger`` and ``TensorBoardLogger`` do. Rank 0 creates them
    on first use.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger
        >>> trainer = Trainer(callbacks=[CrucibleCallback()], logger=CrucibleLogger())  # doctest: +SKIP
        >>> # SQL: SELECT step, value FROM metrics WHERE run_id = ? AND metric = 'train_loss_step'
    """

    #: What joins ``prefix`` and a metric name (Lightning's loggers use ``"-"``).
    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        run_id: str | None = None,
        name: str | None = None,
        *,
        hub: ct.Telemetry | None = None,
        all_ranks: bool = False,
        prefix: str = "",
        save_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if run_id is not None:
            if not isinstance(run_id, str):
                raise InvalidArgumentError("run_id", f"expected a string, got {type(run_id).__name__}")
            validate_id("run_id", run_id)
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgumentError("name", "expected a non-empty string or None")
        if hub is not None and not isinstance(hub, ct.Telemetry):
            raise InvalidArgumentError("hub", f"expected a crucible_telemetry.Telemetry, got {type(hub).__name__}")
        if not isinstance(prefix, str):
            raise InvalidArgumentError("prefix", f"expected a string, got {type(prefix).__name__}")
        if save_dir is not None and not isinstance(save_dir, (str, os.PathLike)):
            raise InvalidArgumentError("save_dir", f"expected a path, got {type(save_dir).__name__}")
        self._save_dir = None if save_dir is None else os.fspath(save_dir)
        self._explicit_run = run_id
        self._run_id = run_id
        self._name = name
        self._hub = hub
        self.all_ranks = bool(all_ranks)
        self.prefix = prefix
        self._rank: int | None = None
        self._floor: dict[str, int] | None = None  # metric -> highest step the run held before this session
        self._choice: Choice | None = None
        self._own: Run | None = None  # the experiment this logger opened (alone), until finalize
        self._opened = False  # checked (and opened if need be) since the last finalize
        self._was_failed = False  # the experiment had failed before this logger joined it again
        self._pending: dict[str, Any] = {}  # params logged before the callback's experiment was live
        self._unique_name: str | None = None
        self._skipped = 0
        self._callback: weakref.ref[Any] | None = None
        self._adopted_name: str | None = None
        self.errors: list[BaseException] = []

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (``ddp_spawn``) the configuration only: the hub is reopened by its home."""
        state = self.__dict__.copy()
        state["_hub"] = None if self._hub is None else str(self._hub.home)
        state["_callback"] = state["_own"] = None
        state["_opened"] = False
        state["_rank"] = state["_floor"] = None  # per process: read again where it lands
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild on the other side."""
        home = state.get("_hub")
        if isinstance(home, str):
            state["_hub"] = hub_for(home)
        self.__dict__.update(state)

    # -------------------------------------------------------------- identity

    @property
    def hub(self) -> ct.Telemetry:
        """The hub rows go to."""
        if self._hub is None:
            self._hub = ct.default()
        return self._hub

    @property
    def run_id(self) -> str:
        """The run rows are written under (resolved on first use)."""
        if self._run_id is None:  # alone: the kit's order, $CRUCIBLE_EXPERIMENT_ID > live experiment > new
            self._choice = choose_experiment(self.hub)
            self._run_id = self._choice.experiment_id
        return self._run_id

    @property
    @override
    def name(self) -> str:
        """The experiment's name (for a new one: ``lightning``, ``lightning-2`` ..., chosen once)."""
        if self._name:
            return self._name
        if self._adopted_name and self._explicit_run is None:
            return self._adopted_name
        if self._unique_name is not None:
            return self._unique_name
        try:
            return self.hub.get_experiment(self.run_id).name or "lightning"
        except UnknownExperimentError:
            self._unique_name = default_run_name(self.hub, "lightning")
            return self._unique_name
        except Exception:
            return "lightning"

    @property
    @override
    def version(self) -> str:
        """The run id."""
        return self.run_id

    @property
    @override
    def save_dir(self) -> str:
        """The root of the run folders (``trainer.log_dir``): ``save_dir``, else ``<home>/lightning``."""
        root = self._save_dir if self._save_dir is not None else os.path.join(self.hub.home, "lightning")
        return _folder(root)

    @property
    @override
    def root_dir(self) -> str:
        """``<save_dir>/<name>``, as ``CSVLogger``."""
        return _folder(os.path.join(self.save_dir, self.name))

    @property
    @override
    def log_dir(self) -> str:
        """This run's folder, ``<save_dir>/<name>/<version>`` (its checkpoints go in ``checkpoints/``)."""
        return _folder(os.path.join(self.root_dir, self.version))

    @property
    @_compat.rank_zero_experiment
    def experiment(self) -> ct.Telemetry:
        """The hub on rank 0 (what ``trainer.logger.experiment`` hands out); Lightning's ``DummyExperiment`` elsewhere."""
        return self.hub

    @property
    def skipped(self) -> int:
        """Rows skipped because the run already held that ``(metric, step)`` (resumed runs)."""
        return self._skipped

    def _adopt(
        self, run_id: str, hub: ct.Telemetry | None, resumed: bool, callback: Any = None, name: str | None = None
    ) -> None:
        """Called by ``CrucibleCallback``: write under the experiment's id (unless a run id was given)."""
        self._adopted_name = name
        self._callback = weakref.ref(callback) if callback is not None else None
        if hub is not None and self._hub is None:
            self._hub = hub
        if self._explicit_run is None and run_id != self._run_id:
            self._run_id = run_id
            self._floor = None
        if resumed:
            self._floor = None
        if self._pending and self._recording():
            self._log_params({})

    def _release(self) -> None:
        """Called by ``CrucibleCallback`` when its fit ends: later writes (``trainer.test()``) open the run here."""
        self._callback = None
        self._opened = False

    def _ensure_open(self) -> None:
        """Alone: open (or join again) the experiment rows go to, once per trainer call."""
        self._opened = True
        if self._callback is not None:
            return
        hub, run_id = self.hub, self.run_id
        self._was_failed = False
        try:
            exp = hub.get_experiment(run_id)
            if exp.hub is hub and not exp.stopped:
                return  # live here already (the callback's, the user's, or ours)
            self._was_failed = exp.status == "failed"  # a test() after a failed fit leaves it failed
        except UnknownExperimentError:
            pass
        choice = self._choice if self._choice is not None and self._choice.experiment_id == run_id else None
        leader = _compat.global_rank() == 0
        try:
            self._own = open_run(
                hub,
                choice or Choice(run_id, "explicit"),
                name=self.name,
                framework="lightning",
                leader=leader,
                bind=False,
            )
        except UnknownExperimentError:
            if leader:
                raise  # (a rank > 0 before rank 0 created it: its rows still go under the id)

    def _recording(self) -> bool:
        if self.all_ranks:
            return True
        if self._rank is None:
            self._rank = _compat.global_rank()
        return self._rank == 0

    def _load_floor(self) -> dict[str, int]:
        """What this run already holds for this rank (empty for a new run: no query then)."""
        floor: dict[str, int] = {}
        hub, run_id = self.hub, self.run_id
        if hub.store.holds_metrics(run_id):
            rank = _compat.global_rank() if self.all_ranks else 0
            rows = hub.store.execute(
                "SELECT metric, max(step) FROM metrics WHERE run_id = ? AND coalesce(rank, 0) = ? GROUP BY metric",
                [run_id, rank],
            ).fetchall()
            for metric, max_step in rows:
                if max_step is not None:
                    floor[metric] = int(max_step)
        self._floor = floor
        return floor

    # ---------------------------------------------------------------- logging

    @override
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One row per metric with ``step`` and the ``epoch`` Lightning adds to every call."""
        try:  # inline guard (as ``guarded`` does): called on every logged step
            if not self.all_ranks and self._rank != 0 and not self._recording():
                return
            if not self._opened:
                self._ensure_open()
            floor = self._floor if self._floor is not None else self._load_floor()
            raw_epoch = metrics.get("epoch")
            epoch = int(raw_epoch) if isinstance(raw_epoch, (int, float)) else None
            if step is not None and type(step) is not int:
                step = int(step)
            hub = self._hub if self._hub is not None else self.hub
            record = hub.record_metric
            prefix = self.prefix + self.LOGGER_JOIN_CHAR if self.prefix else ""
            run_id = self._run_id if self._run_id is not None else self.run_id
            for key, value in metrics.items():
                if key == "epoch":
                    continue
                metric = prefix + key if prefix else key
                if floor and step is not None and step <= floor.get(metric, -1):
                    self._skipped += 1
                    continue
                v = value if type(value) is float else to_scalar(value)
                if v is None:
                    _warn_once(
                        self, f"value:{key}", "metric %r is not a number (%s); not recorded", key, type(value).__name__
                    )
                    continue
                record(run_id, metric, v, step, epoch)
        except Exception as exc:
            record_failure(self, "log_metrics", exc)

    @override
    @guarded
    def log_hyperparams(
        self,
        params: Mapping[str, Any] | Namespace,
        metrics: Any = None,
        step: int | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Add the (nested) hyper-parameters to the experiment's params, as dotted keys.

        numpy and torch scalars are stored as the number or bool they hold, other objects as their
        text. ``metrics`` (a mapping, or one value named ``hp_metric``) are logged at ``step``
        like ``log_metrics``, as ``TensorBoardLogger`` does. Lightning calls this only when
        ``save_hyperparameters(logger=...)`` left logging on.
        """
        if not self._recording():
            return
        if not self._opened:
            self._ensure_open()
        self._log_params(plain_params(params))
        if metrics is not None:
            self.log_metrics(metrics if isinstance(metrics, Mapping) else {"hp_metric": metrics}, step)

    def _log_params(self, params: dict[str, Any]) -> None:
        """Into the experiment when it is live here; else kept until the callback has opened it."""
        pending = {**self._pending, **params}
        if not pending:
            return
        hub, run_id = self.hub, self.run_id
        try:
            exp = hub.get_experiment(run_id)
        except UnknownExperimentError:
            exp = None
        if exp is None or exp.hub is not hub or exp.stopped:
            self._pending = pending
            return
        self._pending = {}
        hub.log_params(pending, experiment_id=run_id)

    @override
    @guarded
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Lets the ``CrucibleCallback`` of this Trainer report ``checkpoint.saved`` as soon as the file exists."""
        cb = self._callback() if self._callback is not None else None
        if cb is not None:
            cb._checkpoint_written()

    @override
    def save(self) -> None:
        """Rows are written by the hub's writer thread; nothing to do per save (Lightning calls it per log)."""

    @override
    @guarded
    def finalize(self, status: str) -> None:
        """Flush what is buffered (end of a trainer call, or a failure); stop the experiment this logger opened."""
        own, self._own = self._own, None
        self._opened = False
        if own is not None:
            own.close("failed" if status == "failed" or self._was_failed else "stopped")
        elif self._hub is not None:
            self._hub.flush()


def _folder(path: str) -> str:
    """``path``, created on rank 0 (other ranks may share its file system)."""
    if _compat.global_rank() == 0 and not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
    return path


def _warn_once(owner: Any, key: str, msg: str, *args: Any) -> None:
    warned = owner.__dict__.setdefault("_warned", set())
    if key not in warned:
        warned.add(key)
        log.warning("crucible_telemetry: " + msg, *args)
