"""Write the MLflow fixtures with the real ``mlflow`` package (run by hand: ``mlflow`` cannot join the test venv).

``python tests/importers/data/make_mlflow.py`` in a venv with ``mlflow`` writes ``mlflow/mlruns`` (the file
store), ``mlflow/mlflow.sql`` (the SQLite store, dumped as text) and ``mlflow/expected.json``: what MLflow's own reader
(``MlflowClient``) returns for each run, which the import tests compare against. The pins of the test
venv (protobuf, pandas, pyarrow, numpy) leave no mlflow release installable there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

HERE = Path(__file__).parent / "mlflow"


def write(uri: str) -> dict:
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_id = client.create_experiment("sweep")
    out = {}
    for name, lr, failed in (("lr-0.1", 0.1, False), ("lr-0.01", 0.01, True)):
        with mlflow.start_run(experiment_id=exp_id, run_name=name) as run:
            mlflow.log_params({"lr": lr, "optimizer": "adam"})
            mlflow.set_tags({"team": "vision", "best": ""})
            for step in range(5):
                mlflow.log_metrics({"loss": lr * 10 / (step + 1), "val/acc": 0.5 + step * 0.1}, step=step)
            mlflow.log_metric("bad", math.nan, step=5)
            if failed:
                mlflow.end_run(status="FAILED")
        r = client.get_run(run.info.run_id)
        out[r.info.run_id] = {
            "name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "params": r.data.params,
            "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
            "points": sorted(
                [m.key, None if math.isnan(m.value) else m.value, m.step, m.timestamp]
                for key in r.data.metrics
                for m in client.get_metric_history(r.info.run_id, key)
            ),
        }
    return out


if __name__ == "__main__":
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps the file store in maintenance mode
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    expected = {
        "file": write((HERE / "mlruns").as_uri()),
        "sqlite": write(f"sqlite:///{HERE / 'mlflow.db'}"),
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    db = sqlite3.connect(HERE / "mlflow.db")
    (HERE / "mlflow.sql").write_text("\n".join(db.iterdump()) + "\n")  # text in git; the tests rebuild the file
    db.close()
    (HERE / "mlflow.db").unlink()
