"""CrucibleLogger against what Lightning's own loggers do (tests_pytorch/loggers/test_all.py, test_csv.py).

Each check runs the built-in ``CSVLogger`` as a control in the same parametrisation, with the same
assertions, so a difference is ours and not Lightning's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest

import crucible_telemetry as ct
from crucible_telemetry_lightning import CrucibleLogger

from . import tiny

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
def test_experiment_is_rank_zero_only(hub: ct.Telemetry, tmp_path: Path, flavour: str, kind: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
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
    """test_all.py's ``test_logger_initialization``: a real 2-process ``ddp_spawn`` (an assertion on rank 1 fails the fit)."""
    lg = _logger("lightning.pytorch", kind, tmp_path)
    trainer = tiny.trainer("lightning.pytorch", tmp_path, logger=lg, callbacks=[SpawnRankZeroCheck()], max_steps=1,
                           max_epochs=None, strategy="ddp_spawn", devices=2, limit_val_batches=0)
    trainer.fit(SpawnRegressor(), *tiny.loaders())
