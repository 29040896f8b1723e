"""Issue 15 for Lightning: real experiments without a callback, failed status, one global_step rule, params, system metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

import crucible_telemetry as ct
from crucible_telemetry import system
from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

from . import tiny
from .helpers import events, metrics

FLAVOURS = pytest.mark.parametrize("flavour", tiny.FLAVOURS)


@FLAVOURS
def test_logger_alone_fit_then_test_is_one_listed_experiment(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    lg = CrucibleLogger()
    trainer = tiny.trainer(flavour, tmp_path, logger=lg, max_epochs=1)
    model = tiny.module_class(flavour)()
    train, val = tiny.loaders()
    trainer.fit(model, train, val)
    (exp,) = ct.list_experiments()  # what `crucible runs` lists
    assert exp.id == lg.run_id and exp.name == "lightning" and exp.framework == "lightning"
    assert exp.status == "stopped" and exp.params == {"lr": 0.05, "hidden": 8, "fail_at": -1}
    trainer.validate(model, val)  # joins the same experiment again, stops it again
    assert [(e.id, e.status) for e in ct.list_experiments()] == [(exp.id, "stopped")]
    names = {r["metric"] for r in metrics(hub, exp.id)}
    assert {"train_loss_step", "val_loss"} <= names
    assert sum(r["metric"] == "val_loss" for r in metrics(hub, exp.id)) == 2  # fit's and validate()'s


@FLAVOURS
def test_validate_alone_opens_an_experiment(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    lg = CrucibleLogger(name="eval-only")
    trainer = tiny.trainer(flavour, tmp_path, logger=lg)
    _, val = tiny.loaders()
    trainer.validate(tiny.module_class(flavour)(), val)
    (exp,) = ct.list_experiments()
    assert exp.id == lg.run_id and exp.name == "eval-only" and exp.status == "stopped"
    assert [r["metric"] for r in metrics(hub, exp.id)] == ["val_loss"]


@FLAVOURS
def test_a_failed_fit_ends_failed_with_and_without_the_callback(
    hub: ct.Telemetry, tmp_path: Path, flavour: str
) -> None:
    """MLflow's FAILED: the experiment record says the fit raised (the logger alone, or the callback)."""
    ids = []
    for callbacks in ([], [CrucibleCallback()]):
        lg = CrucibleLogger()
        trainer = tiny.trainer(flavour, tmp_path / str(len(ids)), logger=lg, callbacks=callbacks, max_epochs=1)
        with pytest.raises(ValueError, match="boom at batch 2"):
            trainer.fit(tiny.module_class(flavour)(fail_at=2), *tiny.loaders())
        ids.append(lg.run_id)
        if callbacks:
            assert callbacks[0].experiment_id == lg.run_id
    assert [hub.get_experiment(i).status for i in ids] == ["failed", "failed"]
    _, val = tiny.loaders()
    trainer.validate(tiny.module_class(flavour)(), val)  # recorded into it, which stays failed
    assert hub.get_experiment(ids[-1]).status == "failed"
    assert any(r["metric"] == "val_loss" for r in metrics(hub, ids[-1]))


class _Manual(tiny.module_class("lightning.pytorch")):  # type: ignore[misc]
    """Manual optimization with one or two optimizers; logs ``seen_step`` (Lightning's logger step) per batch."""

    def __init__(self, optimizers: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.n_opt = optimizers

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        for opt in opts:
            opt.zero_grad()
        self.manual_backward(loss)
        for opt in opts:
            opt.step()
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        if self.n_opt == 1:
            return torch.optim.SGD(self.parameters(), lr=0.01)
        return [torch.optim.SGD(self.net[0].parameters(), lr=0.01), torch.optim.SGD(self.net[2].parameters(), lr=0.01)]


@pytest.mark.parametrize("mode", ["automatic", "manual-1", "manual-2"])
def test_one_global_step_rule_for_every_optimization_mode(hub: ct.Telemetry, tmp_path: Path, mode: str) -> None:
    """``batch.stop.global_step`` = batches that stepped = Lightning's logger step + 1, whatever the optimizers.

    ``trainer.global_step`` counts every optimizer's step: [2, 4, 6] with two manual optimizers.
    """
    cb = CrucibleCallback(system_metrics=False)
    model = tiny.module_class("lightning.pytorch")() if mode == "automatic" else _Manual(int(mode[-1]))
    trainer = tiny.trainer(
        "lightning.pytorch", tmp_path, callbacks=[cb], logger=CrucibleLogger(), max_epochs=2, limit_train_batches=3
    )
    trainer.fit(model, *tiny.loaders())
    assert cb.errors == []
    evs = events(hub, cb.experiment_id)
    steps = [e["global_step"] for e in evs if e["event"] == "crucible_train.batch.stop"]
    assert steps == [1, 2, 3, 4, 5, 6]
    logged = [r["step"] for r in metrics(hub, cb.experiment_id) if r["metric"] in ("train_loss", "train_loss_step")]
    assert [s + 1 for s in logged] == steps  # the logger's step, plus one
    assert trainer.global_step == (12 if mode == "manual-2" else 6)
    epoch_steps = [e["global_step"] for e in evs if e["event"] == "crucible_train.epoch.stop"]
    val_steps = [e["global_step"] for e in evs if e["event"] == "crucible_train.validation.stop"]
    assert epoch_steps == val_steps == [3, 6]  # the same count outside batches


class _Secret(tiny.module_class("lightning.pytorch")):  # type: ignore[misc]
    def __init__(self, api_key: str = "sk-secret", lr: float = 0.05, log_them: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(logger=log_them)


@pytest.mark.parametrize("with_logger", [True, False])
@pytest.mark.parametrize("log_them", [True, False])
def test_save_hyperparameters_logger_false_records_nothing(
    hub: ct.Telemetry, tmp_path: Path, with_logger: bool, log_them: bool
) -> None:
    cb = CrucibleCallback(system_metrics=False)
    lg = CrucibleLogger() if with_logger else False
    trainer = tiny.trainer("lightning.pytorch", tmp_path, callbacks=[cb], logger=lg, max_epochs=1)
    trainer.fit(_Secret(log_them=log_them), *tiny.loaders())
    exp = hub.get_experiment(cb.experiment_id)
    if log_them:
        assert exp.params == {"api_key": "sk-secret", "lr": 0.05, "log_them": True, "hidden": 8, "fail_at": -1}
    else:
        assert exp.params == {} and "sk-secret" not in str(exp.metadata)
    hub.flush()
    stored = " ".join(str(r) for r in hub.store.execute("SELECT * FROM params").fetchall())
    assert ("sk-secret" in stored) is log_them


def test_callback_samples_the_machine_joinable_with_its_batches(hub: ct.Telemetry, tmp_path: Path) -> None:
    """``system_metrics`` (default on): samples into the run's experiment until it stops; ASOF-joinable by time."""

    class WaitsForSamples(tiny.module_class("lightning.pytorch")):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == 2 and self.current_epoch == 0:  # two samples land inside the fit, whatever the speed
                s, deadline = system.current(), time.monotonic() + 20
                while s is not None and s.samples < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
            return super().training_step(batch, batch_idx)

    cb = CrucibleCallback(system_metrics=0.2)
    trainer = tiny.trainer("lightning.pytorch", tmp_path, callbacks=[cb], logger=False, max_epochs=1)
    trainer.fit(WaitsForSamples(), *tiny.loaders())
    s = system.current()
    assert s is None or not s.running  # stopping the experiment stopped it
    hub.flush()
    joined = hub.store.execute(
        "SELECT b.global_step, s.measurements['cpu_percent'] FROM "
        "(SELECT * FROM events WHERE experiment_id = ? AND event = 'crucible_train.batch.stop') b "
        "ASOF JOIN (SELECT * FROM events WHERE experiment_id = ? AND event = 'crucible_system.sample' "
        "AND json_extract_string(metadata, '$.device') = 'host') s "
        "ON b.host = s.host AND b.ts >= s.ts ORDER BY b.global_step",
        [cb.experiment_id, cb.experiment_id],
    ).fetchall()
    # every batch recorded after the samples began has the latest sample before it
    assert {3, 4, 5} <= {step for step, _ in joined} and all(0 <= cpu <= 100 for _, cpu in joined)
    off = CrucibleCallback(system_metrics=False)
    tiny.trainer("lightning.pytorch", tmp_path / "off", callbacks=[off], logger=False, max_epochs=1).fit(
        tiny.module_class("lightning.pytorch")(), *tiny.loaders()
    )
    assert not [e for e in events(hub, off.experiment_id) if e["event"] == "crucible_system.sample"]
    with pytest.raises(ct.InvalidArgumentError, match="system_metrics"):
        CrucibleCallback(system_metrics=-1)


def test_copies_of_a_fresh_callback_record_separate_runs(hub: ct.Telemetry, tmp_path: Path) -> None:
    """Only pickling for a new process (``ddp_spawn``) chooses the experiment ahead; a ``deepcopy`` does not."""
    import copy

    fresh = CrucibleCallback(system_metrics=False)
    copies = [copy.deepcopy(fresh), copy.deepcopy(fresh)]
    assert fresh.experiment_id is None
    for i, cb in enumerate(copies):
        trainer = tiny.trainer("lightning.pytorch", tmp_path / str(i), callbacks=[cb], logger=False, max_epochs=1)
        trainer.fit(tiny.module_class("lightning.pytorch")(), *tiny.loaders())
    assert copies[0].experiment_id != copies[1].experiment_id and len(ct.list_experiments()) == 2
    assert sorted(e.name for e in ct.list_experiments()) == ["TinyRegressor", "TinyRegressor-2"]


def test_validate_after_a_callback_fit_joins_its_experiment(hub: ct.Telemetry, tmp_path: Path) -> None:
    cb, lg = CrucibleCallback(system_metrics=False), CrucibleLogger()
    trainer = tiny.trainer("lightning.pytorch", tmp_path, callbacks=[cb], logger=lg, max_epochs=1)
    model = tiny.module_class("lightning.pytorch")()
    train, val = tiny.loaders()
    trainer.fit(model, train, val)
    trainer.validate(model, val)  # the callback records fits only; the logger opens the experiment again
    assert [(e.id, e.status, e.name) for e in ct.list_experiments()] == [(cb.experiment_id, "stopped", "TinyRegressor")]
    assert sum(r["metric"] == "val_loss" for r in metrics(hub, cb.experiment_id)) == 2
