"""``CrucibleLogger``: a Lightning ``Logger`` whose ``self.log(...)`` values land in the ``metrics`` view."""

from __future__ import annotations

import logging
import math
import os
import weakref
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from typing_extensions import override

import crucible_telemetry as ct
from crucible_telemetry.errors import InvalidArgumentError
from crucible_telemetry.integration import (
    choose_experiment,
    guarded,
    hub_for,
    new_experiment_id,
    record_failure,
    to_scalar,
    validate_id,
)

from . import _compat

__all__ = ["CrucibleLogger"]

log = logging.getLogger("crucible_telemetry.lightning")


class CrucibleLogger(*_compat.logger_bases()):  # type: ignore[misc]
    """Writes Lightning's logged metrics and hyper-parameters to the store's ``metrics`` dataset.

    Each ``self.log(...)`` value Lightning hands over becomes one row ``(run_id, metric, value,
    step, epoch, rank, node, ...)``; ``log_hyperparams`` writes rows of ``kind = 'hparam'``. With a
    ``CrucibleCallback`` in the same Trainer the run id is the experiment id the callback chose
    (explicit id > ``$CRUCIBLE_EXPERIMENT_ID`` > resumed checkpoint > live experiment > new), so
    metrics join events on ``run_id = experiment_id``; alone it is the live experiment's id, or a new id.

    Resuming from a checkpoint appends to the same run and deletes nothing; a row whose
    ``(metric, step)`` the run already holds for this rank (steps replayed after an older
    checkpoint) is skipped, so ``(run_id, metric, step, rank)`` stays unique: the first write wins.
    Like Lightning's own loggers it records on rank 0 only, unless ``all_ranks=True``.
    Subclasses the ``Logger`` of every installed Lightning flavour, like ``CrucibleCallback``.

    Args:
        run_id: the run to write; default the ``CrucibleCallback``'s experiment id, else
            ``$CRUCIBLE_EXPERIMENT_ID``, else the live experiment's id, else a new ``run-...`` id.
        name: the logger's ``name`` (a folder name for Lightning's checkpoint path); default the
            experiment's name, else ``"crucible"``.
        hub: the ``ct.Telemetry`` to write to; default ``ct.default()`` at first use.
        all_ranks: record on every rank (rows carry ``rank``) instead of rank 0 only.
        prefix: put in front of every logged metric name, joined with ``LOGGER_JOIN_CHAR`` (``"-"``):
            ``prefix="tmp"`` stores ``tmp-test``, as every built-in logger does. Hyper-parameters
            are not prefixed (nor are they by the built-ins).
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
        self._hparams_done: set[str] = set()
        self._skipped = 0
        self._callback: weakref.ref[Any] | None = None
        self._adopted_name: str | None = None
        self.errors: list[BaseException] = []

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (``ddp_spawn``) the configuration only: the hub is reopened by its home."""
        state = self.__dict__.copy()
        state["_hub"] = None if self._hub is None else str(self._hub.home)
        state["_callback"] = None
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
            choice = choose_experiment(self.hub)
            self._run_id = choice.experiment_id if choice.source != "new" else new_run_id()
        return self._run_id

    @property
    @override
    def name(self) -> str:
        """The experiment's name (or ``"crucible"``)."""
        if self._name:
            return self._name
        if self._adopted_name and self._explicit_run is None:
            return self._adopted_name
        try:
            return self.hub.get_experiment(self.run_id).name or "crucible"
        except Exception:
            return "crucible"

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
                "SELECT metric, max(step), bool_or(step IS NULL) FROM metrics "
                "WHERE run_id = ? AND coalesce(rank, 0) = ? GROUP BY metric",
                [run_id, rank],
            ).fetchall()
            for metric, max_step, has_null in rows:
                if max_step is not None:
                    floor[metric] = int(max_step)
                if has_null:
                    self._hparams_done.add(metric)
        self._floor = floor
        return floor

    # ---------------------------------------------------------------- logging

    @override
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One row per metric with ``step`` and the ``epoch`` Lightning adds to every call."""
        try:  # inline guard (as ``guarded`` does): called on every logged step
            if not self.all_ranks and self._rank != 0 and not self._recording():
                return
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
        """One row per (flattened) hyper-parameter, ``kind = 'hparam'``, ``step`` NULL; the value in metadata.

        numpy and torch scalars are stored as the number or bool they hold, other objects as their
        ``repr``. ``metrics`` (a mapping, or one value named ``hp_metric``) are logged at ``step``
        like ``log_metrics``, as ``TensorBoardLogger`` does.
        """
        if not self._recording():
            return
        if self._floor is None:
            self._load_floor()
        if isinstance(params, Namespace):
            params = vars(params)
        record, run_id = self.hub.record_metric, self.run_id
        for key, value in _flatten(dict(params or {})).items():
            metric = key
            if metric in self._hparams_done:
                continue
            self._hparams_done.add(metric)
            v = to_scalar(value)
            record(run_id, metric, math.nan if v is None else v, None, None, "hparam", None, {"value": _plain(value)})
        if metrics is not None:
            self.log_metrics(metrics if isinstance(metrics, Mapping) else {"hp_metric": metrics}, step)

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
        """Flush what is buffered (end of fit, or a failure)."""
        if self._hub is not None:
            self._hub.flush()


def new_run_id() -> str:
    """A new ``run-...`` id (a logger used without an experiment)."""
    return new_experiment_id().replace("exp-", "run-", 1)


def _plain(value: Any) -> Any:
    """A hyper-parameter as JSON holds it: numpy/torch scalars as their Python number or bool, else ``repr``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    item, numel = getattr(value, "item", None), getattr(value, "numel", None)
    size = numel() if callable(numel) else getattr(value, "size", None)
    if callable(item) and size == 1:
        try:
            plain = item()
        except (TypeError, ValueError, RuntimeError):
            plain = None
        if isinstance(plain, (str, int, float, bool)):
            return plain
    return repr(value)


def _folder(path: str) -> str:
    """``path``, created on rank 0 (other ranks may share its file system)."""
    if _compat.global_rank() == 0 and not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
    return path


def _flatten(params: Mapping[str, Any], parent: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{parent}/{k}" if parent else str(k)
        if isinstance(v, Namespace):
            v = vars(v)
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _warn_once(owner: Any, key: str, msg: str, *args: Any) -> None:
    warned = owner.__dict__.setdefault("_warned", set())
    if key not in warned:
        warned.add(key)
        log.warning("crucible_telemetry: " + msg, *args)
