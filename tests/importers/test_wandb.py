"""A real ``wandb`` offline run imported: every logged point, its step, wall time, config and tags; a cut file."""

from __future__ import annotations

from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import importers

from .._requires import requires_plugin

pytestmark = pytest.mark.slow  # the wandb service starts

LOGGED = [(0, {"loss": 1.0, "acc": 0.0}), (1, {"loss": 0.5, "acc": 0.25}), (2, {"loss": 0.25}), (7, {"val/loss": 0.3})]


def _offline_run(root: Path, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> tuple[Path, str]:
    import wandb

    for k, v in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root)}.items():
        monkeypatch.setenv(k, v)
    run = wandb.init(project="tiny", name="wb-tiny", config={"lr": 0.1, "opt": {"name": "adam"}}, tags=["x", "y"])
    for step, row in LOGGED:
        run.log(row, step=step)
    run.config.update({"late": 3})
    run.finish(exit_code=1 if fail else 0)
    wandb.teardown()  # the service writes the run file's last records when it exits
    (path,) = (root / "wandb").glob(f"offline-run-*-{run.id}/run-{run.id}.wandb")
    return path, run.id


@requires_plugin("wandb")
def test_an_offline_run_imports_its_history_config_tags_and_status(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, run_id = _offline_run(tmp_path, monkeypatch)
    res = importers.wandb(tmp_path / "wandb", hub=hub)
    assert len(res.imported) == 1 and not res.problems
    eid = res.imported[0]
    exp = hub.get_experiment(eid)
    assert (exp.name, exp.status, exp.tags) == ("wb-tiny", "stopped", ("x", "y"))
    assert exp.params == {"lr": 0.1, "opt.name": "adam", "late": 3}
    assert set(exp.environment) == {"hostname"}  # the run's machine, not the importing process's environment
    assert exp.metadata["wandb_run_id"] == run_id and exp.metadata["source_run_id"].endswith(f"/tiny/{run_id}")
    with hub.connect() as con:
        got = con.execute(
            "SELECT metric, value, step, json_extract(metadata, '$.wall_time')::DOUBLE FROM metrics "
            "WHERE run_id = ? AND NOT starts_with(metric, 'system/')",
            [eid],
        ).fetchall()
    assert sorted((m, v, s) for m, v, s, _ in got) == sorted((k, v, s) for s, row in LOGGED for k, v in row.items())
    walls = [w for *_, w in got]
    assert all(w is not None for w in walls)
    assert exp.started_at.timestamp() <= min(walls) <= max(walls) <= exp.stopped_at.timestamp() + 1

    assert importers.wandb(path.parent, hub=hub).existing == [eid]  # the run's own folder: the same run


@requires_plugin("wandb")
def test_a_failed_run_and_a_cut_file_are_imported_as_far_as_they_go(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _offline_run(tmp_path, monkeypatch, fail=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the last records (exit, final) cut short
    res = importers.wandb(path, hub=hub)
    assert len(res.imported) == 1 and [p for p, _ in res.problems] == [str(path)]
    assert "truncated after" in res.problems[0][1]
    exp = hub.get_experiment(res.imported[0])
    assert exp.status == "failed"
    assert res.points >= sum(len(row) for _, row in LOGGED)
