"""The README section's example runs as-is, and the demo section returns what it recorded."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crucible_telemetry as ct
from tests._readme import import_example, run_example

ROOT = Path(__file__).resolve().parents[2]


def test_readme_example_runs_standalone(tmp_path: Path) -> None:
    lines = run_example("Lightning", tmp_path, timeout=240)
    epochs = ast.literal_eval(lines[-2])  # [(epoch, loss, val_loss), ...]
    assert [e[0] for e in epochs] == [0, 1, 2] and all(e[1] > 0 and e[2] > 0 for e in epochs)
    assert "train_loss_step" in lines[-1] and "val_loss" in lines[-1]
    assert (tmp_path / ".crucible" / "experiments").is_dir()


def test_demo_section(hub: ct.Telemetry, capsys: pytest.CaptureFixture[str]) -> None:
    demo_lightning = import_example("demo_lightning")
    result = demo_lightning.run(hub)
    out = capsys.readouterr().out
    assert result["errors"] == 0 and result["global_step"] == 48 and result["steps"] == 48
    assert len(result["epoch_loss"]) == 3 and result["epoch_loss"][-1] < result["epoch_loss"][0]
    assert result["learning_rate"] == pytest.approx([0.05, 0.035, 0.0245])
    assert result["checkpoints"] >= 1 and result["metrics"] > 0
    assert hub.get_experiment(result["experiment_id"]).name == "Regressor"
    assert "per epoch" in out and "metrics view" in out
