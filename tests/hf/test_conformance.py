"""CrucibleCallback against HF's own callback suite (tests/trainer/test_trainer_callback.py, transformers 5.x).

``EventRecorderCallback`` and ``_get_expected_events`` are ported as they are upstream; each
configuration runs with ``TensorBoardCallback`` alone (the control), ours alone and both, in the
same test, with the same assertions: the exact event sequence every other callback sees, and the
same ``state.log_history`` values. Upstream builds a regression model from its test utilities; a
tiny GPT-2 from a config stands in (the assertions only read the arguments and the loaders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import IntervalStrategy, Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback

import crucible_telemetry as ct
from crucible_telemetry_hf import CrucibleCallback

from ._tiny import TokenDataset, events, tiny_model

pytestmark = pytest.mark.slow


class EventRecorderCallback(TrainerCallback):
    """Upstream's recorder: every event a callback receives, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_init_end")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_train_begin")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_train_end")

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_epoch_begin")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_epoch_end")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_step_begin")

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_pre_optimizer_step")

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_optimizer_step")

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_substep_end")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_step_end")

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_evaluate")

    def on_predict(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_predict")

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_save")

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_log")

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.events.append("on_prediction_step")


def _get_expected_events(trainer: Trainer) -> list[str]:
    """Upstream's exact expected event sequence for a training run."""
    expected_events = ["on_init_end", "on_train_begin"]
    step = 0
    train_dl_len = len(trainer.get_eval_dataloader())
    evaluation_events = ["on_prediction_step"] * len(trainer.get_eval_dataloader()) + ["on_log", "on_evaluate"]
    for _ in range(trainer.state.num_train_epochs):
        expected_events.append("on_epoch_begin")
        for _ in range(train_dl_len):
            step += 1
            expected_events += ["on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end"]
            if step % trainer.args.logging_steps == 0:
                expected_events.append("on_log")
            if trainer.args.eval_strategy == IntervalStrategy.STEPS and step % trainer.args.eval_steps == 0:
                expected_events += evaluation_events.copy()
            if (
                step == trainer.state.max_steps
                and trainer.args.eval_strategy == IntervalStrategy.STEPS
                and step % trainer.args.eval_steps != 0
                and trainer.args.eval_delay <= step
            ):
                expected_events += evaluation_events.copy()
            if step % trainer.args.save_steps == 0 or step == trainer.state.max_steps:
                expected_events.append("on_save")
        expected_events.append("on_epoch_end")
        if trainer.args.eval_strategy == IntervalStrategy.EPOCH:
            expected_events += evaluation_events.copy()
    expected_events += ["on_log", "on_train_end"]
    return expected_events


def _create_trainer(out: Path, callbacks: list[Any], **kwargs: Any) -> Trainer:
    """Upstream's ``_create_trainer``: equal train and eval sets, defaults otherwise (3 epochs, batch 8)."""
    kwargs.setdefault("disable_tqdm", True)
    args = TrainingArguments(str(out), report_to="none", use_cpu=True, seed=0, **kwargs)
    return Trainer(
        tiny_model(), args, train_dataset=TokenDataset(16), eval_dataset=TokenDataset(16), callbacks=callbacks
    )


_TIMING = ("runtime", "per_second", "flos")


def _history(trainer: Trainer) -> list[dict[str, Any]]:
    """``state.log_history`` without wall-clock figures (they differ between any two runs)."""
    return [{k: v for k, v in h.items() if not any(t in k for t in _TIMING)} for h in trainer.state.log_history]


CONFIGS = {
    "default": {},
    "logging_steps=5": {"logging_steps": 5},
    "eval_strategy=epoch": {"eval_strategy": "epoch", "logging_steps": 1},
    "a bit of everything": {"logging_steps": 3, "save_steps": 10, "eval_steps": 5, "eval_strategy": "steps"},
}
REPORTERS = {
    "tensorboard (control)": lambda: [TensorBoardCallback()],
    "crucible": lambda: [CrucibleCallback(system_metrics=False)],
    "both": lambda: [CrucibleCallback(system_metrics=False), TensorBoardCallback()],
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_event_flow_and_log_history_are_the_same_with_any_reporter(
    hub: ct.Telemetry, tmp_path: Path, config: str
) -> None:
    """Upstream's ``test_event_flow``; a passive reporter changes neither the events others see nor the values."""
    histories = {}
    for name, reporters in REPORTERS.items():
        out = tmp_path / name.split()[0]
        trainer = _create_trainer(out, [EventRecorderCallback(), *reporters()], **CONFIGS[config])
        trainer.train()
        recorder = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EventRecorderCallback))
        assert recorder.events == _get_expected_events(trainer), name
        histories[name] = _history(trainer)
        ours = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CrucibleCallback)]
        if ours:
            assert ours[0].errors == []
        if "tensorboard" in name or name == "both":
            assert any(out.rglob("events.out.tfevents*"))
    assert histories["crucible"] == histories["tensorboard (control)"] == histories["both"]
    # What ours recorded: one batch.stop per step, one epoch.stop per epoch, each with its mean loss.
    (exp,) = [e for e in hub.list_experiments() if e.status == "stopped"][-1:]
    evs = events(hub, exp.id)
    assert sum(e["event"] == "batch.stop" for e in evs) == 6
    stops = [e for e in evs if e["event"] == "epoch.stop"]
    assert [e["epoch"] for e in stops] == [0, 1, 2] and all(e["m"]["loss"] > 0 for e in stops)


def test_train_then_evaluate_keeps_the_final_evaluation(hub: ct.Telemetry, tmp_path: Path) -> None:
    """``TensorBoardCallback`` writes the evaluation after ``train()``; so do we (the experiment is joined again)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cb = CrucibleCallback(system_metrics=False)
    trainer = _create_trainer(tmp_path / "out", [cb, TensorBoardCallback()], num_train_epochs=1, save_strategy="no")
    trainer.train()
    final = trainer.evaluate()
    (exp,) = hub.list_experiments()
    assert exp.status == "stopped" and exp.id == cb._last_id
    vals = [e for e in events(hub, exp.id) if e["event"] == "validation.stop"]
    assert [v["m"]["val_loss"] for v in vals] == pytest.approx([final["eval_loss"]])
    rows = hub.store.execute("SELECT step, value FROM metrics WHERE run_id = ? AND metric = 'eval_loss'", [exp.id])
    assert rows.fetchall() == [(2, pytest.approx(final["eval_loss"]))]
    acc = EventAccumulator(str(next(p.parent for p in tmp_path.rglob("events.out.tfevents*"))))
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("eval/loss")] == [(2, pytest.approx(final["eval_loss"]))]


def test_system_samples_land_in_the_run_and_join_its_steps(hub: ct.Telemetry, tmp_path: Path) -> None:
    """``system_metrics`` (default on): the callback samples the machine into its experiment until it stops."""
    import time

    from crucible_telemetry import system

    class WaitsForSamples(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 2:  # two samples land inside the run, whatever the machine's speed
                s, deadline = system.current(), time.monotonic() + 20
                while s is not None and s.samples < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)

    cb = CrucibleCallback(system_metrics=0.2)
    _create_trainer(tmp_path / "out", [WaitsForSamples(), cb], num_train_epochs=2, save_strategy="no").train()
    s = system.current()
    assert s is None or not s.running  # stopped with the experiment
    (exp,) = hub.list_experiments()
    hub.flush()
    joined = hub.store.execute(
        "SELECT b.global_step, s.measurements['memory_used_bytes'] FROM "
        "(SELECT * FROM events WHERE experiment_id = ? AND event = 'crucible_train.batch.stop') b "
        "ASOF JOIN (SELECT * FROM events WHERE experiment_id = ? AND event = 'crucible_system.sample' "
        "AND json_extract_string(metadata, '$.device') = 'host') s ON b.host = s.host AND b.ts >= s.ts",
        [exp.id, exp.id],
    ).fetchall()
    # every step recorded after the samples began has the latest sample before it
    assert {2, 3, 4} <= {step for step, _ in joined} and all(mem > 0 for _, mem in joined)


def test_evaluate_after_a_failed_train_keeps_it_failed(hub: ct.Telemetry, tmp_path: Path) -> None:
    class Boom(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            raise RuntimeError("boom")

    cb = CrucibleCallback(system_metrics=False)
    trainer = _create_trainer(tmp_path / "out", [Boom(), cb], num_train_epochs=1, save_strategy="no")
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    trainer.evaluate()
    (exp,) = hub.list_experiments()
    assert exp.status == "failed" and [e["event"] for e in events(hub, exp.id)][-1] == "validation.stop"
