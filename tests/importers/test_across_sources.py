"""One SQL question over imported MLflow runs, an imported TensorBoard run and a native Lightning run;
and ``crucible import`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import importers
from crucible_telemetry.cli import main

from .._requires import requires_plugin
from .test_mlflow import sqlite_store

pytestmark = pytest.mark.slow  # a real Trainer


@requires_plugin("lightning", "torch", "tensorboard")
def test_one_query_ranks_imported_and_native_runs_by_their_last_train_loss(hub: ct.Telemetry, tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

    from ..lightning import tiny

    model = tiny.module_class("lightning.pytorch")()
    tiny.trainer("lightning.pytorch", tmp_path / "pl", callbacks=[CrucibleCallback()], logger=CrucibleLogger()).fit(
        model, *tiny.loaders()
    )
    with SummaryWriter(str(tmp_path / "tb" / "old-sweep")) as w:
        for step in range(20):
            w.add_scalar("train_loss_step", 4.0 - step * 0.1, step)
    (run,) = importers.tensorboard(tmp_path / "tb", hub=hub).imported
    assert len(importers.mlflow(sqlite_store(tmp_path), hub=hub).imported) == 2

    # Which run ended with the lowest training loss, whichever tool recorded it (and whatever it called it)?
    with hub.connect() as con:
        rows = con.execute(
            "SELECT e.name, coalesce(e.metadata->>'$.source', e.framework) AS source, s.last, s.last_step "
            "FROM summaries s JOIN experiments e USING (experiment_id) "
            "WHERE s.source = 'metric' AND s.name IN ('train_loss_step', 'loss') ORDER BY s.last"
        ).fetchall()
    by_name = {r[0]: r[1:] for r in rows}
    assert [r[2] for r in rows] == sorted(r[2] for r in rows) and len(rows) == 4
    assert by_name["old-sweep"] == ("tensorboard", pytest.approx(2.1), 19)
    assert by_name["lr-0.1"] == ("mlflow", pytest.approx(0.2), 4)
    assert by_name["lr-0.01"] == ("mlflow", pytest.approx(0.02), 4)
    (native,) = [v for k, v in by_name.items() if v[0] == "lightning"]
    assert native[1] == pytest.approx(model.step_losses[-1]) and native[2] == 9
    assert hub.get_experiment(run).name == "old-sweep"
    frame = ct.runs(hub=hub).set_index("name")  # the imported run is a run like the others
    assert frame.loc["old-sweep", "metrics.train_loss_step"] == pytest.approx(2.1)
    assert frame.loc["old-sweep", "metrics.train_loss_step.max"] == pytest.approx(4.0)


def test_crucible_import_from_the_command_line_is_idempotent(
    hub: ct.Telemetry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # the hub fixture puts back the default hub the command replaces
    run = tmp_path / "lightning_logs" / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,train_loss\n0,0,2.0\n0,1,1.5\n1,2,1.0\n")
    home = tmp_path / "store"
    assert (
        main(["import", "lightning-csv", str(tmp_path / "lightning_logs"), "--home", str(home), "--name", "old"]) == 0
    )
    out, err = capsys.readouterr()
    assert out.strip() == "lightning-csv: imported 1 run(s), 3 point(s)"
    assert "old: 3 points -> lightning-csv-" in err
    assert main(["import", "lightning-csv", str(run), "--home", str(home), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "lightning-csv: imported 0 run(s), 0 point(s); 1 already in the store" and err == ""
    other = ct.Telemetry(home)
    try:
        (exp,) = other.list_experiments()
        assert (exp.name, exp.framework, exp.metadata["source"]) == ("old", "lightning", "lightning-csv")
    finally:
        other.close()

    assert main(["import", "tensorboard", str(tmp_path / "nowhere"), "--home", str(home)]) == 1
    assert "logdir" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import", "hf-trainer", str(empty), "--home", str(home)]) == 1
    assert f"skipped {empty}: no trainer_state.json found" in capsys.readouterr().err
