"""The kit's experiment order on a real Trainer: explicit > $CRUCIBLE_EXPERIMENT_ID > resumed checkpoint > live > new."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry.integration import ENV_EXPERIMENT_ID, read_checkpoint_marker
from crucible_telemetry_hf import CrucibleCallback

from ._tiny import events, tiny_trainer

pytestmark = pytest.mark.slow


def _starts(hub: ct.Telemetry) -> dict[str, int]:
    """``training.start`` events per experiment id."""
    return {e.id: sum(ev["event"] == "training.start" for ev in events(hub, e.id)) for e in hub.list_experiments()}


def test_each_rung_of_the_order_beats_the_ones_below(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_EXPERIMENT_ID, raising=False)
    # A finished run whose checkpoints name the experiment "hf-ckpt".
    first = tmp_path / "first"
    tiny_trainer(
        first, [CrucibleCallback(experiment_id="hf-ckpt")], num_train_epochs=1, save_strategy="steps", save_steps=2
    ).train()
    checkpoint = str(first / "checkpoint-2")
    assert read_checkpoint_marker(checkpoint) == "hf-ckpt"
    assert _starts(hub) == {"hf-ckpt": 1}

    def train(rung: str, resume: bool, **cb_kw: str) -> None:
        cb = CrucibleCallback(**cb_kw)
        trainer = tiny_trainer(tmp_path / rung, [cb], num_train_epochs=1)
        trainer.train(resume_from_checkpoint=checkpoint if resume else None)
        assert cb.errors == []

    with ct.experiment("live") as live:
        # 1. explicit beats the environment, the checkpoint and the live experiment.
        monkeypatch.setenv(ENV_EXPERIMENT_ID, "hf-env")
        train("explicit", True, experiment_id="hf-explicit")
        assert _starts(hub) == {"hf-ckpt": 1, "hf-explicit": 1, live.id: 0}
        (start,) = [e for e in events(hub, "hf-explicit") if e["event"] == "training.start"]
        assert json.loads(start["md"])["resumed"] is True and start["global_step"] == 2  # the checkpoint was there
        # 2. the environment beats the checkpoint and the live experiment.
        train("env", True)
        assert _starts(hub) == {"hf-ckpt": 1, "hf-explicit": 1, "hf-env": 1, live.id: 0}
        monkeypatch.delenv(ENV_EXPERIMENT_ID)
        # 3. the resumed checkpoint beats the live experiment (the old HF order had it the other way).
        train("checkpoint", True)
        assert _starts(hub) == {"hf-ckpt": 2, "hf-explicit": 1, "hf-env": 1, live.id: 0}
        # 4. the live experiment beats a new one: used, left running and current.
        train("live", False)
        assert _starts(hub) == {"hf-ckpt": 2, "hf-explicit": 1, "hf-env": 1, live.id: 1}
        assert not live.stopped and ct.current_experiment() is live
        # Every owned experiment was stopped; the live one never was.
        status = {e.id: e.status for e in hub.list_experiments()}
        assert status == {"hf-ckpt": "stopped", "hf-explicit": "stopped", "hf-env": "stopped", live.id: "running"}
    assert live.stopped and ct.current_experiment() is None
    # 5. nothing given and nothing live: a new experiment, started and stopped by the callback.
    train("new", False)
    starts = _starts(hub)
    (new_id,) = set(starts) - {"hf-ckpt", "hf-explicit", "hf-env", live.id}
    assert starts[new_id] == 1 and ct.get_experiment(new_id).status == "stopped"
    assert ct.current_experiment() is None
