"""The kit's experiment order on real Trainers: explicit > $CRUCIBLE_EXPERIMENT_ID > checkpoint > live > new.

Each rung is checked against the one below it; a live experiment is left running, one the
callback owns (new, explicit, environment or resumed) is stopped at the end of the fit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry.integration import ENV_EXPERIMENT_ID
from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

from . import tiny
from .helpers import events, metrics

PL = "lightning.pytorch"


def _fit(
    root: Path,
    cb: CrucibleCallback,
    *,
    max_epochs: int = 1,
    ckpt_path: Path | None = None,
    logger: CrucibleLogger | None = None,
) -> None:
    pl = tiny.flavour(PL)
    keep_all = pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1)
    trainer = tiny.trainer(
        PL, root, callbacks=[cb, keep_all], logger=logger if logger is not None else False, max_epochs=max_epochs
    )
    trainer.fit(tiny.module_class(PL)(), *tiny.loaders(), ckpt_path=None if ckpt_path is None else str(ckpt_path))
    assert cb.errors == []


@pytest.fixture
def resumable(hub: ct.Telemetry, tmp_path: Path) -> tuple[str, Path]:
    """A finished one-epoch fit in a new experiment: its id and its end-of-epoch-0 checkpoint."""
    cb = CrucibleCallback()
    _fit(tmp_path / "first", cb)
    assert cb.experiment_id is not None
    return cb.experiment_id, tmp_path / "first" / "ckpt" / "epoch=0-step=5.ckpt"


def _status(hub: ct.Telemetry, exp_id: str) -> str:
    return hub.get_experiment(exp_id).status


def _starts(hub: ct.Telemetry, exp_id: str) -> int:
    return sum(e["event"] == "crucible_train.training.start" for e in events(hub, exp_id))


def test_explicit_beats_environment_checkpoint_and_live(
    hub: ct.Telemetry, tmp_path: Path, resumable: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    resumed, ckpt = resumable
    monkeypatch.setenv(ENV_EXPERIMENT_ID, "from-env")
    with ct.experiment("mine") as live:
        cb = CrucibleCallback(experiment_id="explicit-x")
        _fit(tmp_path / "b", cb, max_epochs=2, ckpt_path=ckpt)
        assert cb.experiment_id == "explicit-x" and live.status == "running"
    assert _status(hub, "explicit-x") == "stopped" and _starts(hub, "explicit-x") == 1
    assert {e.id for e in ct.list_experiments()} == {resumed, live.id, "explicit-x"}  # no "from-env"
    assert _starts(hub, resumed) == 1 and _starts(hub, live.id) == 0


def test_environment_beats_checkpoint_and_live(
    hub: ct.Telemetry, tmp_path: Path, resumable: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    resumed, ckpt = resumable
    monkeypatch.setenv(ENV_EXPERIMENT_ID, "from-env")
    with ct.experiment("mine") as live:
        cb, lg = CrucibleCallback(), CrucibleLogger()
        _fit(tmp_path / "b", cb, max_epochs=2, ckpt_path=ckpt, logger=lg)
        assert cb.experiment_id == "from-env" and lg.run_id == "from-env" and live.status == "running"
    assert _status(hub, "from-env") == "stopped" and _starts(hub, "from-env") == 1
    assert _starts(hub, resumed) == 1 and _starts(hub, live.id) == 0
    assert {r["epoch"] for r in metrics(hub, "from-env") if r["metric"] == "train_loss_epoch"} == {1}


def test_checkpoint_beats_live_and_the_live_one_keeps_running(
    hub: ct.Telemetry, tmp_path: Path, resumable: tuple[str, Path]
) -> None:
    resumed, ckpt = resumable
    with ct.experiment("mine") as live:
        cb, lg = CrucibleCallback(), CrucibleLogger()
        _fit(tmp_path / "b", cb, max_epochs=2, ckpt_path=ckpt, logger=lg)
        assert cb.experiment_id == resumed and lg.run_id == resumed
        assert live.status == "running" and ct.current_experiment() is live  # unbound again, not stopped
        assert _status(hub, resumed) == "stopped"  # resumed, owned by the callback again: stopped
    assert _starts(hub, resumed) == 2 and _starts(hub, live.id) == 0
    assert {e.id for e in ct.list_experiments()} == {resumed, live.id}


def test_live_beats_new_and_is_never_stopped(hub: ct.Telemetry, tmp_path: Path) -> None:
    with ct.experiment("mine") as live:
        cb = CrucibleCallback()
        _fit(tmp_path / "a", cb)
        assert cb.experiment_id == live.id and live.status == "running"
        # Resuming a checkpoint of the live experiment inside it: still the live one, still running.
        cb2 = CrucibleCallback()
        _fit(tmp_path / "b", cb2, max_epochs=2, ckpt_path=tmp_path / "a" / "ckpt" / "epoch=0-step=5.ckpt")
        assert cb2.experiment_id == live.id and live.status == "running"
        # An explicit id naming the live experiment uses it as it is, too.
        cb3 = CrucibleCallback(experiment_id=live.id)
        _fit(tmp_path / "c", cb3)
        assert cb3.experiment_id == live.id and live.status == "running"
    assert [e.id for e in ct.list_experiments()] == [live.id] and _status(hub, live.id) == "stopped"
    assert _starts(hub, live.id) == 3


def test_new_when_nothing_else_and_it_is_stopped(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_EXPERIMENT_ID, raising=False)
    cb = CrucibleCallback()
    _fit(tmp_path / "a", cb)
    exp_id = cb.experiment_id
    assert exp_id is not None and exp_id.startswith("exp-")
    assert _status(hub, exp_id) == "stopped" and ct.current_experiment() is None
    assert hub.get_experiment(exp_id).name == "TinyRegressor"


def test_logger_alone_follows_the_same_order(hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    with ct.experiment("mine") as live:
        assert CrucibleLogger().run_id == live.id
        monkeypatch.setenv(ENV_EXPERIMENT_ID, "from-env")
        assert CrucibleLogger().run_id == "from-env"
        assert CrucibleLogger(run_id="given").run_id == "given"
