"""A real Lightning ``CSVLogger`` run imported: points, steps and params equal what the CSV holds; re-import adds nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import importers

from .._requires import requires_plugin

pytestmark = pytest.mark.slow  # a real Trainer


def _csv_run(root: Path) -> Path:
    from lightning.pytorch.loggers import CSVLogger

    from ..lightning import tiny

    model = tiny.module_class("lightning.pytorch")(lr=0.03, hidden=6)
    train, val = tiny.loaders()
    logger = CSVLogger(str(root), name="tiny")
    tiny.trainer("lightning.pytorch", root, logger=logger).fit(model, train, val)
    return Path(logger.log_dir)


def _rows_of_csv(path: Path) -> list[tuple[str, float, int, int]]:
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            for key, val in row.items():
                if key not in ("step", "epoch") and val != "":
                    out.append((key, float(val), int(row["step"]), int(float(row["epoch"]))))
    return sorted(out)


@requires_plugin("lightning")
def test_a_csvlogger_run_imports_with_every_point_and_its_hparams(hub: ct.Telemetry, tmp_path: Path) -> None:
    log_dir = _csv_run(tmp_path / "logs")
    expected = _rows_of_csv(log_dir / "metrics.csv")
    assert {m for m, *_ in expected} >= {"train_loss_step", "train_loss_epoch", "val_loss", "train_acc"}

    res = importers.lightning_csv(tmp_path / "logs", hub=hub)
    assert len(res.imported) == 1 and res.points == len(expected) and not res.problems
    eid = res.imported[0]
    exp = hub.get_experiment(eid)
    assert exp.name == "tiny/version_0" and exp.framework == "lightning" and exp.status == "stopped"
    assert exp.params == {"lr": 0.03, "hidden": 6, "fail_at": -1}
    assert exp.metadata["source"] == "lightning-csv" and exp.metadata["source_run_id"] == str(log_dir)
    assert exp.started_at <= exp.stopped_at
    with hub.connect() as con:
        got = con.execute("SELECT metric, value, step, epoch FROM metrics WHERE run_id = ?", [eid]).fetchall()
    assert sorted(got) == expected

    again = importers.lightning_csv(tmp_path / "logs", hub=hub)
    assert again.imported == [] and again.existing == [eid] and again.points == 0
    with hub.connect() as con:
        assert con.execute("SELECT count(*) FROM metrics WHERE run_id = ?", [eid]).fetchone()[0] == len(expected)
        assert con.execute("SELECT count(*) FROM experiments").fetchone()[0] == 1


@requires_plugin("pyyaml")  # hparams.yaml
def test_damaged_rows_and_a_missing_csv_are_reported_not_raised(hub: ct.Telemetry, tmp_path: Path) -> None:
    good = tmp_path / "logs" / "exp" / "version_0"
    good.mkdir(parents=True)
    (good / "metrics.csv").write_text("epoch,loss,step\n0,1.5,0\n0,oops,1\n0,1.25\n0,1.0,2\n")
    (good / "hparams.yaml").write_text("lr: 0.1\nopt: !!python/name:torch.optim.SGD ''\n")
    res = importers.lightning_csv(tmp_path / "logs", hub=hub)
    assert res.points == 2 and len(res.imported) == 1
    assert res.problems == [(str(good / "metrics.csv"), "2 damaged row(s) skipped")]
    assert hub.get_experiment(res.imported[0]).params == {"lr": 0.1, "opt": "python/name:torch.optim.SGD"}

    (tmp_path / "none").mkdir()
    nothing = importers.lightning_csv(tmp_path / "none", hub=hub)
    assert nothing.imported == [] and nothing.problems == [(str(tmp_path / "none"), "no metrics.csv found")]
    with pytest.raises(ct.InvalidArgumentError, match="path"):
        importers.lightning_csv(tmp_path / "nowhere", hub=hub)


def test_an_import_that_did_not_finish_is_reported_not_duplicated(hub: ct.Telemetry, tmp_path: Path) -> None:
    run = tmp_path / "logs" / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,loss\n0,0,1.5\n")
    eid = importers.experiment_id_for("lightning-csv", str(run.resolve()))
    hub.start_experiment("interrupted", experiment_id=eid, bind=False)  # as a killed import leaves it
    res = importers.lightning_csv(tmp_path / "logs", hub=hub)
    assert res.imported == [] and res.existing == [eid] and res.points == 0
    assert res.problems == [
        (str(run.resolve()), f"an earlier import into {eid} did not finish; delete it to import again")
    ]


def test_an_import_larger_than_the_hub_buffer_drops_nothing(tmp_path: Path) -> None:
    run = tmp_path / "logs" / "version_0"
    run.mkdir(parents=True)
    rows = "".join(f"0,{i},{i * 0.5}\n" for i in range(2500))
    (run / "metrics.csv").write_text("epoch,step,loss\n" + rows)
    hub = ct.Telemetry(tmp_path / "store", buffer_limit=1000)
    try:
        res = importers.lightning_csv(run / "metrics.csv", hub=hub)
        assert res.points == 2500
        with hub.connect() as con:
            assert con.execute("SELECT count(*), sum(step) FROM metrics").fetchone() == (2500, sum(range(2500)))
    finally:
        hub.close()
