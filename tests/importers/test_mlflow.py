"""MLflow file and SQLite stores imported: points, params, tags and status equal what MLflow's own reader returned.

The stores were written by the real ``mlflow`` (``data/make_mlflow.py``, with MLflow's ``MlflowClient``
read-back in ``expected.json``): no mlflow release installs beside this venv's pins (protobuf, pandas,
pyarrow, numpy), so the fixture is written once by hand and read here without mlflow, as users' stores are.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import importers

from .._requires import requires_plugin

DATA = Path(__file__).parent / "data" / "mlflow"
EXPECTED = json.loads((DATA / "expected.json").read_text())


def sqlite_store(tmp_path: Path) -> Path:
    """The SQLite store rebuilt from its text dump."""
    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.executescript((DATA / "mlflow.sql").read_text())
    con.close()
    return db


@pytest.mark.parametrize("store", [pytest.param("file", marks=requires_plugin("pyyaml")), "sqlite"])
def test_an_mlflow_store_imports_what_mlflow_reads_back(hub: ct.Telemetry, tmp_path: Path, store: str) -> None:
    uri = f"sqlite:///{sqlite_store(tmp_path)}" if store == "sqlite" else (DATA / "mlruns").as_uri()
    res = importers.mlflow(uri, hub=hub)
    assert len(res.imported) == 2 and not res.problems
    want = EXPECTED[store]
    with hub.connect() as con:
        for eid in res.imported:
            exp = hub.get_experiment(eid)
            run_id = exp.metadata["mlflow_run_id"]
            w = want[run_id]
            assert exp.metadata["source_run_id"] == run_id and exp.metadata["mlflow_experiment"] == "sweep"
            assert exp.name == w["name"] and exp.params == w["params"]
            assert set(exp.tags) == {f"{k}={v}" if v else k for k, v in w["tags"].items()}
            assert exp.status == ("failed" if w["status"] == "FAILED" else "stopped")
            assert exp.metadata["mlflow_status"] == w["status"]
            assert round(exp.started_at.timestamp() * 1000) == w["start_time"]
            assert round(exp.stopped_at.timestamp() * 1000) == w["end_time"]
            got = con.execute(
                "SELECT metric, value, step, round(json_extract(metadata, '$.wall_time')::DOUBLE * 1000)::BIGINT "
                "FROM metrics WHERE run_id = ?",
                [eid],
            ).fetchall()
            got = sorted([m, None if math.isnan(v) else v, s, t] for m, v, s, t in got)
            assert got == w["points"]
    assert importers.mlflow(uri, hub=hub).existing == res.imported  # again: nothing added


@requires_plugin("pyyaml")  # the file store's meta.yaml
def test_a_damaged_line_and_a_damaged_database_are_reported(hub: ct.Telemetry, tmp_path: Path) -> None:
    mlruns = tmp_path / "mlruns"
    shutil.copytree(DATA / "mlruns", mlruns)
    (loss,) = sorted(mlruns.glob("*/*/metrics/loss"))[:1]
    loss.write_text(loss.read_text() + "1796198114160 0.1")  # a cut line: no step... still a point
    with loss.open("a") as fh:
        fh.write("\n17961981 garbage 3\n")
    res = importers.mlflow(mlruns, hub=hub)
    assert len(res.imported) == 2 and res.problems == [(str(loss.resolve()), "1 damaged line(s) skipped")]
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 200)
    bad = importers.mlflow(f"sqlite:///{junk}", hub=hub)
    assert bad.imported == [] and "not a readable MLflow database" in bad.problems[0][1]
    with pytest.raises(ct.InvalidArgumentError, match="tracking_uri"):
        importers.mlflow("http://127.0.0.1:5000", hub=hub)


def test_imported_runs_compare_and_list_like_native_ones(
    hub: ct.Telemetry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # the hub fixture puts back the default hub the commands replace
    from crucible_telemetry.cli import main

    home = ["--home", str(tmp_path / "store")]
    assert main(["import", "mlflow", f"sqlite:///{sqlite_store(tmp_path)}", "--no-progress", *home]) == 0
    capsys.readouterr()
    assert main(["compare", "lr-0.1", "lr-0.01", "--metric", "loss.min", *home]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "lr-0.1 0.2 lr-0.01 0.02" in out and "difference = -0.18" in out
    assert main(["runs", *home]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any("lr-0.01" in r and "failed" in r and "team=vision" in r for r in rows)
