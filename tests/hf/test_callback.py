"""CrucibleCallback on a real transformers Trainer (tiny GPT-2 from a config, CPU, no hub access)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

import crucible_telemetry as ct
from crucible_telemetry import plugins
from crucible_telemetry_hf import CrucibleCallback

from ._tiny import events, tiny_trainer

pytestmark = pytest.mark.slow


def _only_exp(hub: ct.Telemetry) -> ct.Experiment:
    exps = hub.list_experiments()
    assert len(exps) == 1, [e.id for e in exps]
    return exps[0]


def test_exact_sequence_two_epochs_grad_accum_eval_each_epoch(hub: ct.Telemetry, tmp_path: Path) -> None:
    cb = CrucibleCallback()
    trainer = tiny_trainer(tmp_path / "out", [cb], eval_strategy="epoch")
    trainer.train()
    assert cb.errors == []
    exp = _only_exp(hub)
    assert exp.status == "stopped"  # started by the callback, so stopped by it
    evs = events(hub, exp.id)
    per_epoch = ["epoch.start", *["batch.stop"] * 4, "validation.stop", "epoch.stop"]
    assert [e["event"] for e in evs] == ["training.start", *per_epoch, *per_epoch, "training.stop"]
    assert len(evs) == 16
    # Epoch indices are integers 0, 1 on every epoch-scoped event.
    assert [e["epoch"] for e in evs if e["event"] == "epoch.stop"] == [0, 1]
    assert [e["epoch"] for e in evs if e["event"] == "batch.stop"] == [0] * 4 + [1] * 4
    # One batch.stop per optimizer step, with the Trainer's own logged numbers.
    logged = [h for h in trainer.state.log_history if "loss" in h]
    batches = [e for e in evs if e["event"] == "batch.stop"]
    assert [e["global_step"] for e in batches] == [h["step"] for h in logged] == list(range(1, 9))
    for e, h in zip(batches, logged, strict=True):
        assert e["m"]["loss"] == pytest.approx(h["loss"], rel=1e-12)
        assert e["m"]["learning_rate"] == pytest.approx(h["learning_rate"], rel=1e-12)
        assert e["m"]["gradient_norm"] == pytest.approx(h["grad_norm"], rel=1e-12)
        assert e["m"]["duration"] > 0
    assert [e["batch"] for e in batches] == [1, 3, 5, 7] * 2  # last micro-batch of each step
    # Epoch loss is the mean of the epoch's step losses; evaluation rides along as val_*.
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    for i, e in enumerate(e for e in evs if e["event"] == "epoch.stop"):
        assert e["m"]["loss"] == pytest.approx(sum(h["loss"] for h in logged[4 * i : 4 * i + 4]) / 4)
        assert e["m"]["val_loss"] == pytest.approx(evals[i]["eval_loss"])
    vals = [e for e in evs if e["event"] == "validation.stop"]
    assert [e["m"]["val_loss"] for e in vals] == pytest.approx([h["eval_loss"] for h in evals])
    start, stop = evs[0], evs[-1]
    md = json.loads(start["md"])
    assert md["framework"] == "transformers" and md["model_name"] == "GPT2LMHeadModel"
    assert md["parameters"] == sum(p.numel() for p in trainer.model.parameters())
    summary = trainer.state.log_history[-1]
    assert stop["global_step"] == 8 and stop["m"]["loss"] == pytest.approx(summary["train_loss"])
    assert stop["m"]["samples_per_second"] == pytest.approx(summary["train_samples_per_second"])


def test_experiment_named_after_model_with_training_arguments_as_config(hub: ct.Telemetry, tmp_path: Path) -> None:
    tiny_trainer(tmp_path / "out", [CrucibleCallback()], num_train_epochs=1).train()
    exp = _only_exp(hub)
    assert exp.name == "GPT2LMHeadModel"
    # TrainingArguments under their own names, the model config under model. (dotted), framework a field.
    p = exp.params
    assert p["gradient_accumulation_steps"] == 2 and p["per_device_train_batch_size"] == 2
    assert p["learning_rate"] == 5e-05 and p["model.n_embd"] == 16 and p["model.vocab_size"] == 64
    assert "config" not in exp.metadata and exp.framework == "transformers" and exp.metadata["parameters"] > 0
    tiny_trainer(tmp_path / "out2", [CrucibleCallback()], num_train_epochs=1, run_name="my-run").train()
    assert sorted(e.name for e in hub.list_experiments()) == ["GPT2LMHeadModel", "my-run"]


def test_every_logged_scalar_lands_in_metrics_with_its_step(hub: ct.Telemetry, tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path / "out", [CrucibleCallback()], eval_strategy="epoch")
    trainer.train()
    exp = _only_exp(hub)
    hub.flush()
    with hub.connect() as con:
        got = con.execute("SELECT metric, step, value FROM metrics WHERE run_id = ? ORDER BY seq", [exp.id]).fetchall()
    want = [(k, h["step"], float(v)) for h in trainer.state.log_history for k, v in h.items() if k != "step"]
    assert [(m, s) for m, s, _ in got] == [(m, s) for m, s, _ in want]
    assert [v for *_, v in got] == pytest.approx([v for *_, v in want])
    rows = ct.DuckDBMetrics(hub=hub).read(exp.id)
    assert {r["metric"] for r in rows} >= {"loss", "grad_norm", "learning_rate", "eval_loss", "train_loss"}
    assert {r["epoch"] for r in rows if r["metric"] == "loss"} == {0, 1}


def test_non_scalar_logged_values_are_skipped_with_one_warning(
    hub: ct.Telemetry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def compute_metrics(pred: Any) -> dict[str, Any]:
        return {"accuracy": 0.5, "confusion": [[1, 2], [3, 4]], "note": "text"}

    cb = CrucibleCallback()
    trainer = tiny_trainer(tmp_path / "out", [cb], eval_strategy="epoch")
    trainer.compute_metrics = compute_metrics
    with caplog.at_level(logging.WARNING, logger="crucible_telemetry.hf"):
        trainer.train()
    warnings = [r for r in caplog.records if "not a scalar" in r.getMessage()]
    assert len(warnings) == 1
    assert cb.skipped == {"eval_confusion", "eval_note"} and cb.errors == []
    exp = _only_exp(hub)
    metrics = {r["metric"] for r in ct.DuckDBMetrics(hub=hub).read(exp.id)}
    assert "eval_accuracy" in metrics and "eval_confusion" not in metrics
    vals = [e for e in events(hub, exp.id) if e["event"] == "validation.stop"]
    assert [e["m"]["val_accuracy"] for e in vals] == [0.5, 0.5]


def test_reuses_a_user_started_experiment_without_stopping_it(hub: ct.Telemetry, tmp_path: Path) -> None:
    with ct.experiment("mine", condition="treatment") as exp:
        trainer = tiny_trainer(tmp_path / "out", [CrucibleCallback()], num_train_epochs=1)
        trainer.train()
        assert exp.status == "running"
        assert ct.current_experiment() is exp
        trainer.evaluate()  # outside train(): still recorded into the live experiment
    assert _only_exp(hub).id == exp.id and exp.status == "stopped"
    evs = [e["event"] for e in events(hub, exp.id)]
    assert evs[0] == "training.start" and evs[-2:] == ["training.stop", "validation.stop"]
    assert exp.params["num_train_epochs"] == 1 and exp.params["model.n_layer"] == 1  # params join the live one


def test_epoch_loss_without_per_step_logging(hub: ct.Telemetry, tmp_path: Path) -> None:
    # logging_steps far above the run: nothing is logged, and the callback asks for no log either
    # (a passive observer); the epoch's loss comes from what the Trainer accumulated since its last log.
    trainer = tiny_trainer(tmp_path / "out", [CrucibleCallback()], logging_steps=500)
    trainer.train()
    evs = events(hub, _only_exp(hub).id)
    stops = [e for e in evs if e["event"] == "epoch.stop"]
    assert [h for h in trainer.state.log_history if "loss" in h] == []  # not one log added
    # Control: the same run logging once per epoch (4 steps) logs these very means.
    control = tiny_trainer(tmp_path / "control", [], logging_steps=4)
    control.train()
    logged = [h for h in control.state.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [4, 8]
    assert [e["m"]["loss"] for e in stops] == pytest.approx([h["loss"] for h in logged], rel=1e-6)
    batches = [e for e in evs if e["event"] == "batch.stop"]
    assert [e["global_step"] for e in batches] == list(range(1, 9))
    assert all("loss" not in e["m"] for e in batches)  # no step was logged


def test_beside_other_callbacks_with_report_to_none(hub: ct.Telemetry, tmp_path: Path) -> None:
    seen: list[str] = []

    class Counter(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen.append("step")

    cb = CrucibleCallback()
    trainer = tiny_trainer(tmp_path / "out", [Counter(), cb, TensorBoardCallback()], num_train_epochs=1)
    assert trainer.args.report_to in ([], "none", ["none"])
    trainer.train()
    assert seen == ["step"] * 4 and cb.errors == []
    assert any((tmp_path / "out").rglob("events.out.tfevents*"))  # TensorBoard wrote its own log
    assert sum(e["event"] == "batch.stop" for e in events(hub, _only_exp(hub).id)) == 4


def test_tokens_seen_and_tokens_per_second_when_the_trainer_counts_them(hub: ct.Telemetry, tmp_path: Path) -> None:
    trainer = tiny_trainer(
        tmp_path / "out", [CrucibleCallback()], num_train_epochs=1, include_num_input_tokens_seen="all"
    )
    trainer.train()
    batches = [e for e in events(hub, _only_exp(hub).id) if e["event"] == "batch.stop"]
    # 2 micro-batches of 2 sequences of 8 tokens per optimizer step.
    assert [e["m"]["tokens_seen"] for e in batches] == [32.0, 64.0, 96.0, 128.0]
    assert all(e["m"]["tokens_per_second"] > 0 for e in batches)


class Boom(RuntimeError):
    pass


def test_failure_emits_exception_and_the_error_propagates_unchanged(hub: ct.Telemetry, tmp_path: Path) -> None:
    err = Boom("exploded at step 3")

    class Explode(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                raise err

    cb = CrucibleCallback()
    trainer = tiny_trainer(tmp_path / "out", [Explode(), cb])
    with pytest.raises(Boom) as info:
        trainer.train()
    assert info.value is err
    exp = _only_exp(hub)
    assert exp.status == "failed"  # train() raised
    evs = events(hub, exp.id)
    assert [e["event"] for e in evs][-1] == "training.exception"
    exc = evs[-1]
    md = json.loads(exc["md"])
    assert md["kind"] == "Boom" and md["reason"] == "exploded at step 3" and "raise err" in md["stacktrace"]
    assert exc["global_step"] == 3 and exc["epoch"] == 0
    assert cb.experiment is None  # reset: the callback can serve another train()


def test_callback_added_after_init_still_records_failures_in_steps(hub: ct.Telemetry, tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path / "out", [], num_train_epochs=1)
    trainer.add_callback(CrucibleCallback())

    def broken_loss(*a: Any, **kw: Any) -> Any:
        raise ValueError("bad batch")

    trainer.compute_loss = broken_loss  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="bad batch"):
        trainer.train()
    evs = events(hub, _only_exp(hub).id)
    assert [e["event"] for e in evs] == ["training.start", "epoch.start", "training.exception"]


@pytest.fixture
def strict_mode() -> Iterator[Callable[[bool], None]]:
    """Set strict mode for one test; the suite's setting comes back afterwards."""
    yield plugins.set_strict
    plugins.set_strict(os.environ.get("CRUCIBLE_STRICT", "") not in ("", "0", "false"))


def _broken_emit(*a: Any, **kw: Any) -> None:
    raise OSError("disk gone")


def test_telemetry_failures_never_reach_the_training_loop(
    hub: ct.Telemetry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    strict_mode: Callable[[bool], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(hub, "emit", _broken_emit)
    strict_mode(False)
    cb = CrucibleCallback()
    trainer = tiny_trainer(tmp_path / "out", [cb], num_train_epochs=1)
    with caplog.at_level(logging.WARNING, logger="crucible_telemetry"):
        out = trainer.train()
    assert out.global_step == 4 and math.isfinite(out.training_loss)
    assert cb.errors and all(isinstance(e, OSError) for e in cb.errors)
    # Logged once per failing hook, however often it fails.
    failed = [r.getMessage() for r in caplog.records if "training goes on" in r.getMessage()]
    assert len(cb.errors) > len(failed) > 0
    assert len(failed) == len(set(failed))
    assert any("on_train_begin" in m for m in failed)


def test_strict_mode_reraises_a_callback_failure(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strict_mode: Callable[[bool], None]
) -> None:
    monkeypatch.setattr(hub, "emit", _broken_emit)
    strict_mode(True)
    cb = CrucibleCallback()
    trainer = tiny_trainer(tmp_path / "out", [cb], num_train_epochs=1)
    with pytest.raises(OSError, match="disk gone"):
        trainer.train()
    assert trainer.state.global_step == 0  # raised from on_train_begin, before any step
    assert len(cb.errors) >= 1 and all(isinstance(e, OSError) for e in cb.errors)
    assert [e.status for e in hub.list_experiments()] == ["failed"]  # closed all the same, as failed
    assert cb.experiment is None and ct.current_experiment() is None


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ct.InvalidArgumentError, match="experiment_id"):
        CrucibleCallback(experiment_id="")
    with pytest.raises(ct.InvalidArgumentError, match="hub"):
        CrucibleCallback(hub="not a hub")  # type: ignore[arg-type]


def test_plugin_entry_point_loads_and_its_events_are_in_the_registry() -> None:
    from importlib.metadata import entry_points

    from crucible_telemetry import plugins

    assert any(ep.value == "crucible_telemetry_hf.plugin" for ep in entry_points(group="crucible_telemetry"))
    assert "hf" in {name for name, _ in plugins.get_plugin_manager().list_name_plugin()}
    # Defined by the core registry, as the callback emits them.
    for name, fields in (
        ("crucible_train.validation.stop", ("duration", "epoch", "global_step")),
        ("crucible_train.training.exception", ("duration", "epoch", "global_step", "kind", "reason", "stacktrace")),
    ):
        info = ct.event_info(name)
        assert info.category == "training"
        assert set(fields) <= set(info.enriched_fields)
        assert name in {e.dotted for e in ct.events.training_events()}


def test_experiment_id_from_the_argument_or_the_environment(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_trainer(tmp_path / "a", [CrucibleCallback(experiment_id="hf-pinned")], num_train_epochs=1).train()
    monkeypatch.setenv("CRUCIBLE_EXPERIMENT_ID", "hf-from-env")
    cb = CrucibleCallback()
    tiny_trainer(tmp_path / "b", [cb], num_train_epochs=1).train()
    assert sorted(e.id for e in hub.list_experiments()) == ["hf-from-env", "hf-pinned"]
    assert sum(e["event"] == "batch.stop" for e in events(hub, "hf-from-env")) == 4
    monkeypatch.delenv("CRUCIBLE_EXPERIMENT_ID")
    tiny_trainer(tmp_path / "c", [cb], num_train_epochs=1).train()  # the same callback, a second run
    assert len(hub.list_experiments()) == 3


def test_evaluate_alone_records_into_a_new_experiment(hub: ct.Telemetry, tmp_path: Path) -> None:
    """``trainer.evaluate()`` without ``train()`` opens an experiment for it (TensorBoardCallback records it too)."""
    cb = CrucibleCallback()
    metrics = tiny_trainer(tmp_path / "out", [cb]).evaluate()
    assert "eval_loss" in metrics and cb.errors == []
    exp = _only_exp(hub)
    assert exp.status == "stopped" and exp.framework == "transformers" and exp.params["model.n_embd"] == 16
    (val,) = [e for e in events(hub, exp.id) if e["event"] == "validation.stop"]
    assert val["m"]["val_loss"] == pytest.approx(metrics["eval_loss"]) and val["global_step"] == 0
    rows = dict(hub.store.execute("SELECT metric, value FROM metrics WHERE run_id = ?", [exp.id]).fetchall())
    assert rows["eval_loss"] == pytest.approx(metrics["eval_loss"])
