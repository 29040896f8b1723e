"""CrucibleLogger against what Lightning's own loggers do (tests_pytorch/loggers/test_all.py, test_csv.py).

Each check runs the built-in ``CSVLogger`` as a control in the same parametrisation, with the same
assertions, so a difference is ours and not Lightning's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

import crucible_telemetry as ct
from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

from . import tiny
from .helpers import events, metrics

FLAVOURS = pytest.mark.parametrize("flavour", tiny.FLAVOURS)
LOGGERS = pytest.mark.parametrize("kind", ["crucible", "csv"])


def _logger(flavour: str, kind: str, root: Path, **kw: Any) -> Any:
    """Ours, or the flavour's ``CSVLogger`` (the control)."""
    if kind == "csv":
        return tiny.flavour(flavour).loggers.CSVLogger(save_dir=str(root), **kw)
    return CrucibleLogger(**kw)


def _rank_zero_check(flavour: str) -> Any:
    """test_all.py's ``RankZeroLoggerCheck``: the real experiment on rank 0, a ``DummyExperiment`` elsewhere."""
    pl = tiny.flavour(flavour)
    dummy = pl.loggers.logger.DummyExperiment

    class RankZeroLoggerCheck(pl.Callback):  # type: ignore[misc, name-defined]
        seen: list[bool] = []

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            is_dummy = isinstance(trainer.logger.experiment, dummy)
            if trainer.is_global_zero:
                assert not is_dummy
            else:
                assert is_dummy
                assert pl_module.logger.experiment.something(foo="bar") is None
            self.seen.append(is_dummy)

    return RankZeroLoggerCheck()


@FLAVOURS
@LOGGERS
def test_experiment_is_rank_zero_only(
    hub: ct.Telemetry, tmp_path: Path, flavour: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated rank 1: ``logger.experiment`` is Lightning's ``DummyExperiment``, as for every built-in."""
    pl = tiny.flavour(flavour)
    lg = _logger(flavour, kind, tmp_path)
    check = _rank_zero_check(flavour)
    trainer = tiny.trainer(flavour, tmp_path, logger=lg, callbacks=[check], max_epochs=1)
    trainer.fit(tiny.module_class(flavour)(), *tiny.loaders())
    assert check.seen and not any(check.seen)
    if kind == "crucible":
        assert lg.experiment is hub
    rank_zero = pl.utilities.rank_zero.rank_zero_only
    monkeypatch.setattr(rank_zero, "rank", 1)
    assert isinstance(lg.experiment, pl.loggers.logger.DummyExperiment)
    assert lg.experiment.something(foo="bar") is None


class SpawnRankZeroCheck(pl.Callback):  # type: ignore[misc, name-defined]
    """``RankZeroLoggerCheck`` at module level, so ``ddp_spawn`` can pickle it."""

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        is_dummy = isinstance(trainer.logger.experiment, pl.loggers.logger.DummyExperiment)
        assert is_dummy != trainer.is_global_zero, (trainer.global_rank, type(trainer.logger.experiment))


SpawnRegressor = tiny.module_class("lightning.pytorch")
SpawnRegressor.__qualname__ = SpawnRegressor.__name__ = "SpawnRegressor"  # picklable for ddp_spawn
SpawnRegressor.__module__ = __name__


@pytest.mark.slow
@LOGGERS
def test_experiment_is_rank_zero_only_in_ddp_spawn(hub: ct.Telemetry, tmp_path: Path, kind: str) -> None:
    """test_all.py's ``test_logger_initialization``: a real 2-process ``ddp_spawn`` (an assertion on rank 1 fails the fit).

    Ours runs with a ``CrucibleCallback`` too: the parent knows the experiment after ``fit`` (the README reads it).
    """
    lg = _logger("lightning.pytorch", kind, tmp_path)
    cb = CrucibleCallback(system_metrics=False) if kind == "crucible" else None
    trainer = tiny.trainer(
        "lightning.pytorch",
        tmp_path,
        logger=lg,
        callbacks=[SpawnRankZeroCheck(), *([cb] if cb is not None else [])],
        max_steps=1,
        max_epochs=None,
        strategy="ddp_spawn",
        devices=2,
        limit_val_batches=0,
    )
    trainer.fit(SpawnRegressor(), *tiny.loaders())
    if cb is not None:
        exp_id = cb.experiment_id
        assert exp_id is not None and [e.id for e in ct.list_experiments()] == [exp_id]
        assert hub.get_experiment(exp_id).status == "stopped"
        ranks = {e["rank"] for e in events(hub, exp_id) if e["event"] == "crucible_train.batch.stop"}
        assert ranks == {0, 1}


@FLAVOURS
@LOGGERS
def test_log_dir_is_a_real_folder(hub: ct.Telemetry, tmp_path: Path, flavour: str, kind: str) -> None:
    """``trainer.log_dir`` is a folder, a ``SimpleProfiler(filename=...)`` writes its file there, checkpoints go in ``log_dir``."""
    pl = tiny.flavour(flavour)
    lg = _logger(flavour, kind, tmp_path / "logs")
    profiler = pl.profilers.SimpleProfiler(filename="prof")
    trainer = tiny.trainer(flavour, tmp_path, logger=lg, profiler=profiler, max_epochs=1)
    trainer.fit(tiny.module_class(flavour)(), *tiny.loaders())
    assert trainer.log_dir is not None and Path(trainer.log_dir).is_dir()
    assert (Path(trainer.log_dir) / "fit-prof.txt").is_file()
    assert Path(lg.log_dir).is_dir() and Path(lg.save_dir).is_dir()
    assert Path(lg.log_dir) == Path(lg.save_dir) / lg.name / (
        lg.version if isinstance(lg.version, str) else f"version_{lg.version}"
    )
    ckpt = Path(trainer.checkpoint_callback.best_model_path)
    assert ckpt.is_file() and ckpt.parent == Path(lg.log_dir) / "checkpoints"
    if kind == "crucible":
        assert Path(trainer.log_dir) == hub.home / "lightning" and lg.version == lg.run_id
        (tmp_path / "user").mkdir()
        given = CrucibleLogger(save_dir=tmp_path / "user", name="n", run_id="r1")
        assert given.log_dir == str(tmp_path / "user" / "n" / "r1") and Path(given.log_dir).is_dir()


@FLAVOURS
@LOGGERS
def test_prefix_joins_with_the_logger_join_char(hub: ct.Telemetry, tmp_path: Path, flavour: str, kind: str) -> None:
    """test_all.py's ``test_logger_with_prefix_all``: ``prefix="tmp"`` stores ``tmp-test``."""
    lg = _logger(flavour, kind, tmp_path, prefix="tmp")
    lg.log_metrics({"test": 1.0}, step=0)
    lg.save()
    lg.finalize("success")
    assert lg.LOGGER_JOIN_CHAR == "-"
    if kind == "csv":
        header = (Path(lg.log_dir) / "metrics.csv").read_text().splitlines()[0].split(",")
        assert "tmp-test" in header
    else:
        rows = metrics(hub, lg.run_id)
        assert [(r["metric"], r["value"], r["step"]) for r in rows] == [("tmp-test", 1.0, 0)]


@FLAVOURS
def test_numpy_hparams_and_hparam_metrics(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    """numpy hparams keep their number or bool (not ``"np.True_"``); ``log_hyperparams(params, metrics)`` logs ``metrics``.

    Control: ``TensorBoardLogger.log_hyperparams(params, metrics)`` hands ``metrics`` to its ``log_metrics``.
    """

    import numpy as np

    pl = tiny.flavour(flavour)
    model_cls = tiny.module_class(flavour)
    lg = CrucibleLogger()
    trainer = tiny.trainer(flavour, tmp_path, logger=lg, max_epochs=1)
    model = model_cls(lr=np.float32(0.05), hidden=np.int64(4), fail_at=np.int64(-1))
    trainer.fit(model, *tiny.loaders())
    lg.log_hyperparams({"extra": np.float64(0.5), "flag": np.True_}, {"hp_metric": 0.25, "best": np.float32(6.0)})
    lg.log_hyperparams({}, 0.75)
    lg.finalize("success")
    hub.flush()
    rows = hub.store.execute(
        "SELECT metric, value, step, kind, metadata FROM metrics WHERE run_id = ?", [lg.run_id]
    ).fetchall()
    assert not [r for r in rows if r[3] == "hparam"]  # hyper-parameters are the experiment's params
    hp = hub.get_experiment(lg.run_id).params
    assert hp["lr"] == pytest.approx(0.05) and isinstance(hp["lr"], float)
    assert hp["hidden"] == 4 and type(hp["hidden"]) is int and hp["fail_at"] == -1
    assert hp["flag"] is True and hp["extra"] == 0.5
    view = dict(hub.store.execute("SELECT key, value_num FROM params WHERE experiment_id = ?", [lg.run_id]).fetchall())
    assert view["hidden"] == 4 and view["lr"] == pytest.approx(0.05)
    values = {m: [(v, s) for mm, v, s, kind, _ in rows if mm == m and kind != "hparam"] for m in ("hp_metric", "best")}
    assert values == {"hp_metric": [(0.25, None), (0.75, None)], "best": [(6.0, None)]}

    class History(pl.loggers.TensorBoardLogger):  # type: ignore[misc, name-defined]
        seen: list[Any] = []

        def log_metrics(self, metrics: Any, step: Any = None) -> None:
            self.seen.append(dict(metrics))

    control = History(save_dir=str(tmp_path / "tb"), default_hp_metric=False)
    control.log_hyperparams({"extra": np.float64(0.5)}, {"hp_metric": 0.25})
    assert control.seen == [{"hp_metric": 0.25}]


@FLAVOURS
@LOGGERS
def test_loggers_fit_test_all(hub: ct.Telemetry, tmp_path: Path, flavour: str, kind: str) -> None:
    """test_all.py's ``test_loggers_fit_test_all``: the same ``log_metrics`` calls (steps and keys) for fit then test."""
    pl = tiny.flavour(flavour)
    base = type(_logger(flavour, kind, tmp_path))

    class StoreHistoryLogger(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.history: list[tuple[Any, dict[str, Any]]] = []

        def log_metrics(self, metrics: Any, step: Any = None) -> None:
            super().log_metrics(metrics, step)
            self.history.append((step, metrics))

    class CustomModel(tiny.module_class(flavour)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_some_val", loss)
            return {"loss": loss}

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

        def test_step(self, batch: Any, batch_idx: int) -> None:
            pass

        def on_validation_epoch_end(self) -> None:
            self.log_dict({"early_stop_on": torch.tensor(1), "val_loss": torch.tensor(0.5)})

        def on_test_epoch_end(self) -> None:
            self.log("test_loss", torch.tensor(2))

    logger = StoreHistoryLogger(save_dir=str(tmp_path)) if kind == "csv" else StoreHistoryLogger()
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        logger=logger,
        limit_train_batches=1,
        limit_val_batches=1,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = CustomModel()
    train, val = tiny.loaders()
    trainer.fit(model, train, val)
    trainer.test(model, val)
    assert [(s, sorted(m.keys())) for s, m in logger.history] == [
        (0, ["epoch", "train_some_val"]),
        (0, ["early_stop_on", "epoch", "val_loss"]),
        (1, ["epoch", "test_loss"]),
    ]
    if kind == "crucible":
        stored = {(r["metric"], r["step"]) for r in metrics(hub, logger.run_id) if r["kind"] != "hparam"}
        assert stored == {("train_some_val", 0), ("early_stop_on", 0), ("val_loss", 0), ("test_loss", 1)}


@FLAVOURS
@LOGGERS
def test_loggers_pickle_all(hub: ct.Telemetry, tmp_path: Path, flavour: str, kind: str) -> None:
    """test_all.py's ``test_loggers_pickle_all``: logger and Trainer pickle after ``experiment`` was used."""
    import pickle

    pl = tiny.flavour(flavour)
    logger = _logger(flavour, kind, tmp_path)
    _ = logger.experiment
    logger.log_metrics({"a": 1})
    logger.save()
    pickle.dumps(logger)
    trainer = pl.Trainer(max_epochs=1, logger=logger, default_root_dir=tmp_path, accelerator="cpu")
    trainer2 = pickle.loads(pickle.dumps(trainer))
    trainer2.logger.log_metrics({"acc": 1.0})
    assert trainer2.logger.name == logger.name
    assert trainer2.logger.save_dir == logger.save_dir
