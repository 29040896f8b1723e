"""CrucibleCallback on real Trainers (both flavours): event sequence, values, checkpoints, failures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import plugins
from crucible_telemetry.errors import InvalidArgumentError
from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

from . import tiny
from .helpers import events, metrics

FLAVOURS = pytest.mark.parametrize("flavour", tiny.FLAVOURS)

EPOCH = (
    ["crucible_train.epoch.start"]
    + ["crucible_train.batch.stop"] * 5
    + ["crucible_train.validation.stop", "crucible_train.epoch.stop", "crucible_train.checkpoint.saved"]
)


def _fit(flavour: str, root: Path, cb: CrucibleCallback, logger: CrucibleLogger | None = None, **kw: object):
    model = tiny.module_class(flavour)(**kw.pop("model", {}))  # type: ignore[arg-type]
    trainer = tiny.trainer(flavour, root, callbacks=[cb], logger=logger if logger is not None else False, **kw)
    train, val = tiny.loaders()
    trainer.fit(model, train, val)
    return trainer, model


@FLAVOURS
def test_event_sequence_counts_and_values(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    cb, lg = CrucibleCallback(), CrucibleLogger()
    trainer, model = _fit(flavour, tmp_path, cb, lg)
    assert cb.errors == [] and lg.errors == []
    exp = hub.get_experiment(cb.experiment_id)
    assert exp.name == "TinyRegressor" and exp.status == "stopped"
    assert exp.params == {"lr": 0.05, "hidden": 8, "fail_at": -1} and exp.framework == "lightning"
    assert "hyperparameters" not in exp.metadata  # params are the one place
    assert exp.metadata["framework"] == "lightning"
    assert exp.metadata["lightning_package"] == flavour.split(".")[0]

    evs = events(hub, exp.id)
    names = [e["event"] for e in evs]
    assert names == ["crucible_train.training.start", *EPOCH, *EPOCH, "crucible_train.training.stop"]

    start = json.loads(evs[0]["metadata"])
    assert start["model_name"] == "TinyRegressor" and start["framework"] == "lightning"
    assert start["parameters"] == sum(p.numel() for p in model.parameters())

    batches = [e for e in evs if e["event"] == "crucible_train.batch.stop"]
    assert [e["measurements"]["loss"] for e in batches] == pytest.approx(model.step_losses, rel=1e-6)
    assert [(e["epoch"], e["batch"], e["global_step"]) for e in batches] == [
        (ep, b, ep * 5 + b + 1) for ep in (0, 1) for b in range(5)
    ]
    for e in batches:
        m = e["measurements"]
        assert m["gradient_norm"] > 0 and m["duration"] > 0 and m["samples_per_second"] > 0
        assert m["learning_rate"] == pytest.approx(0.05)

    # Epoch loss / accuracy / val_* are what the model logged (the logger saw the same values).
    rows = metrics(hub, exp.id)
    logged = {(r["metric"], r["epoch"]): r["value"] for r in rows if r["kind"] == "value"}
    epochs = [e for e in evs if e["event"] == "crucible_train.epoch.stop"]
    vals = [e for e in evs if e["event"] == "crucible_train.validation.stop"]
    for ep, (e, v) in enumerate(zip(epochs, vals)):
        m = e["measurements"]
        assert e["epoch"] == ep and e["global_step"] == 5 * (ep + 1)
        assert m["loss"] == pytest.approx(logged[("train_loss_epoch", ep)])
        assert m["accuracy"] == pytest.approx(logged[("train_acc", ep)])
        assert m["learning_rate"] == pytest.approx(0.05) and m["learning_rate_pg1"] == pytest.approx(0.025)
        assert v["measurements"]["val_loss"] == pytest.approx(sum(model.val_losses[2 * ep : 2 * ep + 2]) / 2, rel=1e-5)
        assert m["val_loss"] == v["measurements"]["val_loss"]

    saved = [e for e in evs if e["event"] == "crucible_train.checkpoint.saved"]
    paths = [json.loads(e["metadata"])["checkpoint_path"] for e in saved]
    assert [(e["epoch"], e["global_step"]) for e in saved] == [(0, 5), (1, 10)]
    assert all(p.endswith(".ckpt") for p in paths)
    assert Path(paths[-1]).exists() and Path(paths[-1]) == Path(trainer.checkpoint_callback.best_model_path)
    stop = evs[-1]
    assert stop["epoch"] == 1 and stop["global_step"] == 10 and stop["measurements"]["duration"] > 0


@FLAVOURS
def test_checkpoint_every_n_steps_paths_exist(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    pl = tiny.flavour(flavour)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    cb = CrucibleCallback()
    model = tiny.module_class(flavour)()
    trainer = tiny.trainer(flavour, tmp_path, callbacks=[cb, ckpt], logger=False, max_epochs=1)
    trainer.fit(model, tiny.loaders()[0])
    saved = [e for e in events(hub, cb.experiment_id) if e["event"] == "crucible_train.checkpoint.saved"]
    assert [e["global_step"] for e in saved] == [2, 4]
    for e in saved:
        path = Path(json.loads(e["metadata"])["checkpoint_path"])
        assert path.exists() and path.parent == tmp_path / "ckpt"


@FLAVOURS
def test_exception_event_and_user_exception_unchanged(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    cb = CrucibleCallback()
    model = tiny.module_class(flavour)(fail_at=2)
    trainer = tiny.trainer(flavour, tmp_path, callbacks=[cb], logger=False)
    with pytest.raises(ValueError, match=r"^boom at batch 2$") as info:
        trainer.fit(model, *tiny.loaders())
    assert type(info.value) is ValueError and info.value.args == ("boom at batch 2",)
    evs = events(hub, cb.experiment_id)
    assert [e["event"] for e in evs] == [
        "crucible_train.training.start",
        "crucible_train.epoch.start",
        "crucible_train.batch.stop",
        "crucible_train.batch.stop",
        "crucible_train.training.exception",
    ]
    exc = evs[-1]
    md = json.loads(exc["metadata"])
    assert md["kind"] == "ValueError" and md["reason"] == "boom at batch 2"
    assert "training_step" in md["stacktrace"] and exc["epoch"] == 0 and exc["global_step"] == 2
    assert hub.get_experiment(cb.experiment_id).status == "failed"  # the fit raised (MLflow's FAILED)
    assert ct.events.event_info("crucible_train.training.exception").category == "training"


@FLAVOURS
def test_gradient_accumulation_keeps_step_and_micro_batch_apart(
    hub: ct.Telemetry, tmp_path: Path, flavour: str
) -> None:
    cb, lg = CrucibleCallback(), CrucibleLogger()
    trainer, model = _fit(flavour, tmp_path, cb, lg, max_epochs=1, limit_train_batches=4, accumulate_grad_batches=2)
    batches = [e for e in events(hub, cb.experiment_id) if e["event"] == "crucible_train.batch.stop"]
    assert [(e["batch"], e["global_step"]) for e in batches] == [(0, 1), (1, 1), (2, 2), (3, 2)]
    assert [e["measurements"]["loss"] for e in batches] == pytest.approx(model.step_losses, rel=1e-6)
    assert ["gradient_norm" in e["measurements"] for e in batches] == [False, True, False, True]
    steps = {r["step"]: r["value"] for r in metrics(hub, cb.experiment_id) if r["metric"] == "train_loss_step"}
    # Lightning logs the step's last micro-batch at the step index the events carry.
    assert steps == pytest.approx({0: model.step_losses[1], 1: model.step_losses[3]})
    assert trainer.global_step == 2


@FLAVOURS
def test_user_experiment_is_used_and_left_running(hub: ct.Telemetry, tmp_path: Path, flavour: str) -> None:
    with ct.experiment("mine", condition="treatment") as exp:
        cb = CrucibleCallback()
        _fit(flavour, tmp_path, cb, CrucibleLogger(), max_epochs=1)
        assert cb.experiment_id == exp.id and exp.status == "running"
        ct.emit("my.own.event", {"x": 1})
    assert [e.name for e in ct.list_experiments()] == ["mine"]
    names = [e["event"] for e in events(hub, exp.id)]
    assert names[0] == "crucible_train.training.start" and names[-1] == "my.own.event"
    assert {r["metric"] for r in metrics(hub, exp.id)} >= {"train_loss_step", "val_loss"}
    assert exp.params == {"lr": 0.05, "hidden": 8, "fail_at": -1}  # the module's hparams join the live experiment


def test_two_fits_make_two_experiments(hub: ct.Telemetry, tmp_path: Path) -> None:
    cb = CrucibleCallback(experiment_name="sweep", tags=["a"], condition="control")
    _fit("lightning.pytorch", tmp_path, cb, max_epochs=1)
    first = cb.experiment_id
    _fit("lightning.pytorch", tmp_path, cb, max_epochs=1)
    assert first != cb.experiment_id
    exps = [e for e in ct.list_experiments() if e.name == "sweep"]
    assert len(exps) == 2 and all(e.condition == "control" and e.tags == ("a",) for e in exps)
    assert ct.current_experiment() is None


def test_telemetry_failure_never_breaks_training(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crucible_telemetry_lightning import _steps as steps_module

    def broken(batch: object) -> int:
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr(steps_module, "batch_size", broken)
    plugins.set_strict(False)
    try:
        cb = CrucibleCallback()
        trainer, _ = _fit("lightning.pytorch", tmp_path, cb, max_epochs=1)
    finally:
        plugins.set_strict(os.environ.get("CRUCIBLE_STRICT", "") not in ("", "0", "false"))
    assert trainer.global_step == 5 and len(cb.errors) == 5
    assert all(str(e) == "telemetry bug" for e in cb.errors)
    names = [e["event"] for e in events(hub, cb.experiment_id)]
    assert names[0] == "crucible_train.training.start" and names[-1] == "crucible_train.training.stop"
    assert "crucible_train.batch.stop" not in names


def test_strict_mode_reraises_telemetry_failures(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crucible_telemetry_lightning import _steps as steps_module

    def broken(batch: object) -> int:
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr(steps_module, "batch_size", broken)
    plugins.set_strict(True)
    try:
        cb = CrucibleCallback()
        with pytest.raises(RuntimeError, match=r"^telemetry bug$"):
            _fit("lightning.pytorch", tmp_path, cb, max_epochs=1)
    finally:
        plugins.set_strict(os.environ.get("CRUCIBLE_STRICT", "") not in ("", "0", "false"))
    assert [str(e) for e in cb.errors] == ["telemetry bug"]
    assert cb.experiment_id is not None and hub.get_experiment(cb.experiment_id).status == "failed"
    names = [e["event"] for e in events(hub, cb.experiment_id)]
    assert names[-1] == "crucible_train.training.exception" and "crucible_train.batch.stop" not in names


def test_rank_zero_only_option_and_no_gradient_norm(hub: ct.Telemetry, tmp_path: Path) -> None:
    cb = CrucibleCallback(gradient_norm=False, all_ranks=False)
    _fit("pytorch_lightning", tmp_path, cb, max_epochs=1)
    batches = [e for e in events(hub, cb.experiment_id) if e["event"] == "crucible_train.batch.stop"]
    assert len(batches) == 5 and not any("gradient_norm" in e["measurements"] for e in batches)


def test_gradient_norm_cadence(hub: ct.Telemetry, tmp_path: Path) -> None:
    cb = CrucibleCallback(gradient_norm=2)
    _fit("lightning.pytorch", tmp_path, cb, max_epochs=1)
    batches = [e for e in events(hub, cb.experiment_id) if e["event"] == "crucible_train.batch.stop"]
    assert [e["global_step"] for e in batches if "gradient_norm" in e["measurements"]] == [2, 4]
    cb = CrucibleCallback()  # True: on the steps Lightning logs
    _fit("lightning.pytorch", tmp_path, cb, CrucibleLogger(), max_epochs=1, log_every_n_steps=2)
    batches = [e for e in events(hub, cb.experiment_id) if e["event"] == "crucible_train.batch.stop"]
    assert [e["global_step"] for e in batches if "gradient_norm" in e["measurements"]] == [2, 4]
    steps = {r["step"] for r in metrics(hub, cb.experiment_id) if r["metric"] == "train_loss_step"}
    assert steps == {1, 3}  # the same cadence as the logger's rows


def test_pinned_experiment_id_and_environment(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cb = CrucibleCallback(experiment_id="pinned-run")
    _fit("lightning.pytorch", tmp_path, cb, CrucibleLogger(), max_epochs=1)
    monkeypatch.setenv("CRUCIBLE_EXPERIMENT_ID", "from-env")
    cb2 = CrucibleCallback()
    _fit("pytorch_lightning", tmp_path, cb2, max_epochs=1)
    assert (cb.experiment_id, cb2.experiment_id) == ("pinned-run", "from-env")
    assert sorted(e.id for e in ct.list_experiments()) == ["from-env", "pinned-run"]
    assert len(metrics(hub, "pinned-run")) > 0
    with pytest.raises(InvalidArgumentError, match="experiment_id"):
        CrucibleCallback(experiment_id="no/slashes")


def test_deferred_keeps_order_and_waits_for_host_copies() -> None:
    import torch

    from crucible_telemetry_lightning._values import Deferred

    got: list[tuple[object, dict[str, float]]] = []
    d = Deferred(lambda name, m, md: got.append((name, dict(m))))
    d.push("a", {"step": 0}, None, {"loss": torch.tensor(1.5)})  # not CUDA: converted when forced
    d.push("b", {"step": 1}, None, {})  # nothing to wait for, but it keeps its place behind "a"
    d.drain()
    assert got == [] and len(d) == 2
    d.drain(force=True)
    assert got == [("a", {"step": 0, "loss": 1.5}), ("b", {"step": 1})] and len(d) == 0


def test_gradient_norm_paths_agree_with_torch() -> None:
    import torch

    from crucible_telemetry_lightning._values import grad_norm, host_grad_norm, host_norm_ok

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2), torch.nn.Linear(2, 2))
    net[3].requires_grad_(False)  # frozen: no gradient, left out of the norm
    net(torch.randn(4, 8)).square().sum().backward()
    params = list(net.parameters())
    want = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
    assert host_norm_ok(params)
    host, fused = host_grad_norm(params), grad_norm(params)
    assert isinstance(host, float) and isinstance(fused, float)
    assert host == pytest.approx(want, rel=1e-6) and fused == pytest.approx(want, rel=1e-6)
    assert not host_norm_ok([p.to(torch.bfloat16) for p in params])  # numpy has no bfloat16
    net.zero_grad(set_to_none=True)
    assert host_grad_norm(params) is None and grad_norm(params) is None


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="experiment_name"):
        CrucibleCallback(experiment_name="")
    with pytest.raises(InvalidArgumentError, match="metadata"):
        CrucibleCallback(metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="hub"):
        CrucibleCallback(hub="nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="tags"):
        CrucibleCallback(tags=[1])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="run_id"):
        CrucibleLogger(run_id="bad/id")
    with pytest.raises(InvalidArgumentError, match="gradient_norm"):
        CrucibleCallback(gradient_norm=-1)


def test_plugin_module_does_not_import_lightning() -> None:
    """The core imports every plugin module when it builds its tables: that must stay cheap."""
    import subprocess
    import sys

    code = (
        "import sys, crucible_telemetry_lightning, crucible_telemetry_lightning.plugin; "
        "from crucible_telemetry import plugins; plugins.load_plugins(); "
        "assert 'lightning' in {n for n, _ in plugins.get_plugin_manager().list_name_plugin()}; "
        "print(sorted(m for m in ('lightning', 'pytorch_lightning', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_the_events_it_emits_beyond_the_seed_table_are_in_the_registry() -> None:
    for name in ("crucible_train.validation.stop", "crucible_train.training.exception"):
        info = ct.events.event_info(name)
        assert info.category == "training" and "epoch" in info.enriched_fields
    assert "crucible_train.validation.stop" in {e.dotted for e in ct.events.training_events()}
