"""checkpoint.saved from on_save, and a run resumed from a checkpoint appending to the same experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

import crucible_telemetry as ct
from crucible_telemetry_hf import CrucibleCallback

from ._tiny import events, tiny_trainer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_save_steps_gives_checkpoint_saved_with_an_existing_folder(hub: ct.Telemetry, tmp_path: Path) -> None:
    cb = CrucibleCallback()
    tiny_trainer(tmp_path / "out", [cb], num_train_epochs=1, save_strategy="steps", save_steps=2).train()
    (exp,) = hub.list_experiments()
    evs = events(hub, exp.id)
    saved = [e for e in evs if e["event"] == "checkpoint.saved"]
    assert [e["global_step"] for e in saved] == [2, 4]
    for e in saved:
        path = Path(json.loads(e["md"])["checkpoint_path"])
        assert path.is_dir() and path == (tmp_path / "out" / f"checkpoint-{e['global_step']}").absolute()
        assert (path / "trainer_state.json").is_file()
        assert json.loads((path / "crucible_telemetry.json").read_text()) == {"experiment_id": exp.id}
    # Each checkpoint comes after the batch.stop of its step.
    names = [(e["event"], e["global_step"]) for e in evs]
    assert names.index(("batch.stop", 2)) < names.index(("checkpoint.saved", 2)) < names.index(("batch.stop", 3))
    assert cb.errors == []


def test_resume_from_checkpoint_appends_without_duplicates(hub: ct.Telemetry, home: Path, tmp_path: Path) -> None:
    class Crash(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                raise KeyboardInterrupt  # the run is killed mid-epoch, after checkpoint-2

    out = tmp_path / "out"
    first = tiny_trainer(out, [Crash(), CrucibleCallback()], save_strategy="steps", save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    (exp,) = hub.list_experiments()
    # A new process resumes from checkpoint-2 (mid-epoch 0) with a fresh Trainer and callback.
    proc = subprocess.run(
        [sys.executable, "-m", "tests.hf._resume_child", str(home), str(out), str(out / "checkpoint-2")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    assert child["errors"] == []
    assert [e.id for e in hub.list_experiments()] == [exp.id]  # appended, no new experiment
    evs = events(hub, exp.id)
    steps = [e["global_step"] for e in evs if e["event"] == "batch.stop"]
    assert steps == list(range(1, 9))  # every optimizer step once
    assert [e["batch"] for e in evs if e["event"] == "batch.stop"] == [1, 3, 5, 7] * 2
    assert [e["global_step"] for e in evs if e["event"] == "checkpoint.saved"] == [2, 4, 6, 8]
    assert [e["epoch"] for e in evs if e["event"] == "epoch.stop"] == [0, 1]
    assert [e["event"] for e in evs].count("training.exception") == 1
    starts = [json.loads(e["md"]) for e in evs if e["event"] == "training.start"]
    assert [s["resumed"] for s in starts] == [False, True]
    assert [json.loads(e["md"]).get("resumed", False) for e in evs if e["event"] == "epoch.start"] == [
        False,
        True,
        False,
    ]
    resumed = [e for e in evs if e["event"] == "batch.stop" and e["global_step"] > 2]
    logged = [h for h in child["log_history"] if "loss" in h and h["step"] > 2]
    assert [e["m"]["loss"] for e in resumed] == pytest.approx([h["loss"] for h in logged])


def test_resume_in_the_same_process_appends_to_the_stopped_experiment(hub: ct.Telemetry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tiny_trainer(out, [CrucibleCallback()], num_train_epochs=1, save_strategy="steps", save_steps=2).train()
    (exp,) = hub.list_experiments()
    assert exp.status == "stopped"
    # A notebook resumes the finished run for one more epoch from its last checkpoint.
    cb = CrucibleCallback()
    tiny_trainer(out, [cb], num_train_epochs=2, save_strategy="steps", save_steps=2).train(
        resume_from_checkpoint=str(out / "checkpoint-4")
    )
    assert cb.errors == [] and [e.id for e in hub.list_experiments()] == [exp.id]
    assert exp.status == "stopped"
    evs = events(hub, exp.id)
    assert [e["global_step"] for e in evs if e["event"] == "batch.stop"] == list(range(1, 9))
    assert [e["event"] for e in evs].count("training.stop") == 2
