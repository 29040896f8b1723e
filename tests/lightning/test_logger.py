"""CrucibleLogger on real Trainers: rows in the metrics view, hyper-parameters, resume without loss or duplicates."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

from . import tiny
from .helpers import duplicates, events, metrics

FLAVOURS = pytest.mark.parametrize("flavour", tiny.FLAVOURS)


def _session(flavour: str, root: Path, max_epochs: int, ckpt_path: str | None = None):
    pl = tiny.flavour(flavour)
    cb, lg = CrucibleCallback(), CrucibleLogger()
    keep_all = pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1)
    trainer = tiny.trainer(flavour, root, callbacks=[cb, keep_all], logger=lg, max_epochs=max_epochs)
    model = tiny.module_class(flavour)()
    trainer.fit(model, *tiny.loaders(), ckpt_path=ckpt_path)
    assert cb.errors == [] and lg.errors == []
    return cb, lg, model


@FLAVOURS
def test_resume_appends_to_the_same_run_without_duplicates(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    cb_a, lg_a, model_a = _session(flavour, tmp_path, max_epochs=2)
    run = cb_a.experiment_id
    assert lg_a.version == run
    before = metrics(hub, run)
    assert sorted(r["step"] for r in before if r["metric"] == "train_loss_step") == list(range(10))

    # Resume from the end of epoch 0: epoch 1 (steps 5-9) is replayed, epoch 2 (steps 10-14) is new.
    cb_b, lg_b, model_b = _session(
        flavour, tmp_path, max_epochs=3, ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=5.ckpt")
    )
    assert cb_b.experiment_id == run and lg_b.version == run
    after = metrics(hub, run)

    key = lambda r: (r["metric"], r["step"], r["epoch"], r["kind"], r["value"])  # noqa: E731
    assert not Counter(map(key, before)) - Counter(map(key, after)), "rows from before the resume were lost"
    assert duplicates(hub, run) == []
    steps = {r["step"]: r["value"] for r in after if r["metric"] == "train_loss_step"}
    assert sorted(steps) == list(range(15))
    assert [steps[s] for s in range(10)] == pytest.approx(model_a.step_losses)  # the first write wins
    assert [steps[s] for s in range(10, 15)] == pytest.approx(model_b.step_losses[5:])  # the new epoch
    assert lg_b.skipped > 0  # the replayed steps 5-9: the first write wins
    assert sorted(r["epoch"] for r in after if r["metric"] == "train_loss_epoch") == [0, 1, 2]
    assert not [r for r in after if r["kind"] == "hparam"]  # hyper-parameters are params, not metric rows
    assert hub.get_experiment(run).params == {"lr": 0.05, "hidden": 8, "fail_at": -1}

    evs = events(hub, run)
    starts = [json.loads(e["metadata"]) for e in evs if e["event"] == "crucible_train.training.start"]
    assert [s["resumed"] for s in starts] == [False, True]
    assert [e["epoch"] for e in evs if e["event"] == "crucible_train.epoch.stop"] == [0, 1, 1, 2]
    assert [e.id for e in ct.list_experiments()] == [run]
    assert hub.get_experiment(run).status == "stopped"


def test_resume_with_a_strategy_that_restores_after_setup(hub: ct.Telemetry, tmp_path: Path) -> None:
    """DeepSpeed/FSDP-like strategies load the checkpoint after on_fit_start: the run still continues."""
    import lightning.pytorch as pl

    class LateRestore(pl.strategies.SingleDeviceStrategy):
        @property
        def restore_checkpoint_after_setup(self) -> bool:
            return True

    cb_a, _, _ = _session("lightning.pytorch", tmp_path, max_epochs=1)
    cb, lg = CrucibleCallback(), CrucibleLogger()
    trainer = tiny.trainer(
        "lightning.pytorch",
        tmp_path,
        callbacks=[cb],
        logger=lg,
        max_epochs=2,
        strategy=LateRestore(device="cpu"),
        accelerator=None,
        devices=None,
    )
    trainer.fit(
        tiny.module_class("lightning.pytorch")(),
        *tiny.loaders(),
        ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=5.ckpt"),
    )
    assert cb.errors == [] and lg.errors == []
    run = cb_a.experiment_id
    assert cb.experiment_id == run and lg.run_id == run
    starts = [e for e in events(hub, run) if e["event"] == "crucible_train.training.start"]
    assert len(starts) == 2
    assert sorted(r["step"] for r in metrics(hub, run) if r["metric"] == "train_loss_step") == list(range(10))
    assert duplicates(hub, run) == []
    # The provisional experiment opened before the late restore is closed with no events in it.
    (fresh,) = [e for e in ct.list_experiments() if e.id != run]
    assert fresh.status == "stopped" and events(hub, fresh.id) == []


@FLAVOURS
def test_logger_alone_writes_under_the_live_experiment(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    lg = CrucibleLogger()
    with ct.experiment("solo") as exp:
        trainer = tiny.trainer(flavour, tmp_path, logger=lg, max_epochs=1)
        trainer.fit(tiny.module_class(flavour)(), *tiny.loaders())
    assert lg.run_id == exp.id and lg.name == "solo"
    rows = metrics(hub, exp.id)
    train = [r for r in rows if r["metric"] == "train_loss_step"]
    assert [(r["step"], r["epoch"]) for r in train] == [(s, 0) for s in range(5)]
    assert {r["metric"] for r in rows} == {
        "train_loss_step",
        "train_loss_epoch",
        "train_acc",
        "val_loss",
    }
    assert exp.params == {"lr": 0.05, "hidden": 8, "fail_at": -1} and exp.status == "stopped"
    assert lg.errors == []


def test_logger_without_experiment_and_direct_calls(hub: ct.Telemetry, tmp_path: Path) -> None:
    # The prefix joins with "-" and leaves hyper-parameters alone, as Lightning's own loggers do.
    lg = CrucibleLogger(run_id="my-run", name="named", prefix="m")
    lg.log_hyperparams({"optimizer": "adam", "sched": {"warmup": 3, "kind": None}, "flag": True})
    lg.log_metrics({"loss": 0.5, "epoch": 2}, step=7)
    lg.log_metrics({"loss": 0.25, "bad": "x"}, step=8)
    lg.finalize("success")
    assert lg.name == "named" and lg.version == "my-run" and lg.experiment is hub
    rows = {(r["metric"], r["step"]): r for r in metrics(hub, "my-run")}
    assert rows[("m-loss", 7)]["value"] == 0.5 and rows[("m-loss", 7)]["epoch"] == 2
    assert rows[("m-loss", 8)]["value"] == 0.25 and ("m-bad", 8) not in rows
    assert set(rows) == {("m-loss", 7), ("m-loss", 8)}  # hyper-parameters are params, not metric rows
    # Alone, the logger opened a real experiment under its run id (listed, named, stopped at finalize).
    exp = hub.get_experiment("my-run")
    assert exp.name == "named" and exp.framework == "lightning" and exp.status == "stopped"
    assert exp.params == {"optimizer": "adam", "sched.warmup": 3, "sched.kind": None, "flag": True}
    assert [e.id for e in ct.list_experiments()] == ["my-run"]
    # Through the MetricsStore port too.
    read = ct.MetricsStore.read(ct.DuckDBMetrics(hub=hub), "my-run")
    assert {(r["metric"], r["step"]) for r in read} == set(rows)

    auto, second = CrucibleLogger(), CrucibleLogger()
    assert auto.run_id.startswith("exp-") and auto.name == "lightning"
    auto.log_metrics({"x": 1.0}, step=0)
    auto.finalize("failed")
    assert hub.get_experiment(auto.run_id).status == "failed"
    assert second.name == "lightning-2"  # default names are unique in the store


def test_callback_and_logger_pickle_for_ddp_spawn(hub: ct.Telemetry, tmp_path: Path) -> None:
    import pickle

    cb, lg = CrucibleCallback(hub=hub, tags=["t"]), CrucibleLogger(hub=hub, prefix="p")
    _session_cb = tiny.trainer("lightning.pytorch", tmp_path, callbacks=[cb], logger=lg, max_epochs=1)
    _session_cb.fit(tiny.module_class("lightning.pytorch")(), *tiny.loaders())
    cb2, lg2 = pickle.loads(pickle.dumps(cb)), pickle.loads(pickle.dumps(lg))
    assert cb2._hub_arg is hub and lg2.hub is hub  # same home in this process: the same hub
    assert cb2.tags == ("t",) and lg2.prefix == "p" and cb2.experiment is None
    trainer = tiny.trainer("lightning.pytorch", tmp_path, callbacks=[cb2], logger=lg2, max_epochs=1)
    trainer.fit(tiny.module_class("lightning.pytorch")(), *tiny.loaders())
    assert cb2.errors == [] and cb2.experiment_id != cb.experiment_id
    assert any(r["metric"] == "p-train_loss_step" for r in metrics(hub, lg2.run_id))
