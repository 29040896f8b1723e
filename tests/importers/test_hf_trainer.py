"""A real HF ``Trainer`` run's checkpoints imported: the points equal the Trainer's own ``log_history``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import importers

from .._requires import requires_plugin

pytestmark = pytest.mark.slow  # a real Trainer


def _points(history: list[dict]) -> list[tuple[str, float, int]]:
    return sorted(
        (k, float(v), int(e["step"]))
        for e in history
        for k, v in e.items()
        if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)
    )


@requires_plugin("transformers")
def test_a_trainer_output_dir_imports_as_one_run_from_its_last_checkpoint(hub: ct.Telemetry, tmp_path: Path) -> None:
    from transformers import TrainerState

    from ..hf._tiny import tiny_trainer

    out = tmp_path / "gpt2-tiny"
    trainer = tiny_trainer(out, [], n=8, save_strategy="steps", save_steps=2, eval_strategy="epoch")
    trainer.train()
    trainer.save_state()  # the output dir's own state: the whole history, the last checkpoint's lacks the end
    assert len(list(out.glob("checkpoint-*"))) == 2
    state = TrainerState.load_from_json(str(out / "trainer_state.json"))
    assert state.log_history == trainer.state.log_history
    expected = _points(state.log_history)
    assert {m for m, *_ in expected} >= {"loss", "learning_rate", "eval_loss", "train_runtime"}

    res = importers.hf_trainer(tmp_path, hub=hub)
    assert len(res.imported) == 1 and res.points == len(expected) and not res.problems
    eid = res.imported[0]
    exp = hub.get_experiment(eid)
    assert (exp.name, exp.framework, exp.status) == ("gpt2-tiny", "transformers", "stopped")
    assert exp.params["max_steps"] == state.max_steps and exp.params["train_batch_size"] == 2
    assert exp.params["model.model_type"] == "gpt2"
    assert exp.metadata["source_run_id"] == str(out.resolve())
    with hub.connect() as con:
        got = con.execute("SELECT metric, value, step FROM metrics WHERE run_id = ?", [eid]).fetchall()
        epochs = con.execute(
            "SELECT DISTINCT epoch, json_extract(metadata, '$.epoch')::DOUBLE FROM metrics "
            "WHERE run_id = ? AND metric = 'eval_loss' ORDER BY 1",
            [eid],
        ).fetchall()
    assert sorted(got) == expected
    assert epochs == [(1, 1.0), (2, 2.0)]  # the Trainer's fractional epoch kept in metadata

    assert importers.hf_trainer(out, hub=hub).existing == [eid]
    with hub.connect() as con:
        assert con.execute("SELECT count(*) FROM metrics WHERE run_id = ?", [eid]).fetchone()[0] == len(expected)


def test_a_damaged_state_is_reported_and_the_other_runs_imported(hub: ct.Telemetry, tmp_path: Path) -> None:
    good = tmp_path / "good" / "checkpoint-2"
    good.mkdir(parents=True)
    history = [{"loss": 2.0, "step": 1, "epoch": 0.5}, {"loss": 1.5, "grad_norm": 3.0, "step": 2, "epoch": 1.0}]
    (good / "trainer_state.json").write_text(json.dumps({"global_step": 2, "max_steps": 2, "log_history": history}))
    bad = tmp_path / "bad" / "checkpoint-1"
    bad.mkdir(parents=True)
    text = json.dumps({"global_step": 1, "log_history": history})
    (bad / "trainer_state.json").write_text(text[: len(text) // 2])  # truncated
    res = importers.hf_trainer(tmp_path, hub=hub)
    assert len(res.imported) == 1 and res.points == 3
    assert [p for p, _ in res.problems] == [str(bad / "trainer_state.json")]
    assert "not a readable trainer state" in res.problems[0][1]
    assert hub.get_experiment(res.imported[0]).params == {"max_steps": 2}
