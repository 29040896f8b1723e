"""Per-run history and per-run mean/p95 beside MLflow (SQLite store) and Trackio (its SQLite file).

The same runs (``CRUCIBLE_BENCH_PEER_RUNS``, default 200, of ``CRUCIBLE_BENCH_PEER_POINTS``
points each, default 1,000) are written to each tool through its own client, then each answers:
one run's ``loss`` history, and mean and p95 of ``loss`` for every run. Each figure is printed
beside its target (ours) and as a ratio against the peer. MLflow pins pyarrow below ours, so it
runs in a venv of its own (``CRUCIBLE_BENCH_MLFLOW_PYTHON``, else made once under
``~/.cache/crucible-bench/mlflow-3.17.2``); Trackio runs here (it is a test dependency).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench import report, timed

import crucible_telemetry as ct

RUNS = int(os.environ.get("CRUCIBLE_BENCH_PEER_RUNS", "200"))
POINTS = int(os.environ.get("CRUCIBLE_BENCH_PEER_POINTS", "1000"))
MLFLOW = "mlflow==3.17.2"  # 3.18.0 needs mlflow-tracing 3.18.0, not on the index here


def curve(run: int) -> np.ndarray:
    rng = np.random.default_rng(run)
    return 1.0 / (1.0 + np.arange(POINTS) / 50.0) + rng.normal(0, 0.01, POINTS)


def ours(base: Path) -> dict[str, float]:
    hub = ct.Telemetry(base / "crucible", flush_interval=3600)
    ids = []
    for run in range(RUNS):
        exp = hub.start_experiment(f"r{run}", bind=False, params={"run": run})
        for step, v in enumerate(curve(run)):
            hub.record_metric(exp.id, "loss", float(v), step=step)
        hub.stop_experiment(exp.id)
        ids.append(exp.id)
    con = hub.connect()
    probe = ids[RUNS // 2]
    one = "SELECT step, value FROM metrics_of([?]) WHERE metric = 'loss' ORDER BY step"
    assert len(con.execute(one, [probe]).fetchall()) == POINTS
    agg = "SELECT run_id, avg(value), quantile_cont(value, 0.95) FROM metrics WHERE metric = 'loss' GROUP BY run_id"
    assert len(con.execute(agg).fetchall()) == RUNS
    out = {
        "history": timed(lambda: con.execute(one, [probe]).fetchall()),
        "mean_p95": timed(lambda: con.execute(agg).fetchall(), repeats=5),
    }
    hub.close()
    return out


def trackio(base: Path) -> dict[str, float]:
    os.environ["TRACKIO_DIR"] = str(base / "trackio")
    from trackio.sqlite_storage import SQLiteStorage

    for run in range(RUNS):
        SQLiteStorage.bulk_log("bench", f"r{run}", [{"loss": float(v)} for v in curve(run)], steps=list(range(POINTS)))
    probe = f"r{RUNS // 2}"
    assert len(SQLiteStorage.get_logs("bench", probe)) == POINTS

    def mean_p95() -> None:
        for run in range(RUNS):
            values = np.array([row["loss"] for row in SQLiteStorage.get_logs("bench", f"r{run}")])
            values.mean(), np.quantile(values, 0.95)

    return {"history": timed(lambda: SQLiteStorage.get_logs("bench", probe)), "mean_p95": timed(mean_p95, repeats=3)}


_MLFLOW_SCRIPT = r"""
import json, statistics, sys, time
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
runs, points, uri = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
client = MlflowClient(tracking_uri=uri)
exp = client.create_experiment("bench")
ids = []
for run in range(runs):
    rng = np.random.default_rng(run)
    vals = 1.0 / (1.0 + np.arange(points) / 50.0) + rng.normal(0, 0.01, points)
    r = client.create_run(exp, run_name=f"r{run}")
    now = int(time.time() * 1000)
    ms = [Metric("loss", float(v), now, s) for s, v in enumerate(vals)]
    for i in range(0, points, 1000):
        client.log_batch(r.info.run_id, metrics=ms[i : i + 1000])
    client.set_terminated(r.info.run_id)
    ids.append(r.info.run_id)
probe = ids[runs // 2]
assert len(client.get_metric_history(probe, "loss")) == points

def timed(fn, repeats=7):
    fn(); ts = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

def mean_p95():
    for i in ids:
        v = np.array([m.value for m in client.get_metric_history(i, "loss")])
        v.mean(), np.quantile(v, 0.95)

print(json.dumps({"history": timed(lambda: client.get_metric_history(probe, "loss")), "mean_p95": timed(mean_p95, 3)}))
"""


def mlflow_python() -> str | None:
    given = os.environ.get("CRUCIBLE_BENCH_MLFLOW_PYTHON")
    if given:
        return given
    venv = Path.home() / ".cache" / "crucible-bench" / MLFLOW.replace("==", "-")
    py = venv / "bin" / "python"
    if not py.exists():
        t = time.perf_counter()
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", MLFLOW], check=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(venv, ignore_errors=True)
            print(f"MLflow: could not make its venv ({exc!r}); its figures are left out", flush=True)
            return None
        print(f"(made the MLflow venv in {time.perf_counter() - t:.0f} s at {venv})", flush=True)
    return str(py)


def mlflow(base: Path) -> dict[str, float] | None:
    py = mlflow_python()
    if py is None:
        return None
    uri = f"sqlite:///{base / 'mlflow.db'}"
    try:
        out = subprocess.run(
            [py, "-c", _MLFLOW_SCRIPT, str(RUNS), str(POINTS), uri], capture_output=True, text=True, timeout=1800
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"MLflow: {exc!r}; its figures are left out", flush=True)
        return None
    if out.returncode != 0:
        print(f"MLflow run failed: {out.stderr[-800:]}", flush=True)
        return None
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="crucible-bench-peers-"))
    print(f"peers benchmark: {RUNS} runs x {POINTS:,} points of `loss` in each tool", flush=True)
    us = ours(base)
    peers = {"Trackio 0.43 (SQLite)": trackio(base), "MLflow 3.17 (SQLite)": mlflow(base)}
    for key, label, target in (
        ("history", "one run's loss history", 0.05),
        ("mean_p95", f"mean and p95 of loss for each of {RUNS} runs", 0.2),
    ):
        report(f"{label} (ours)", f"{us[key] * 1000:.1f} ms", f"<= {target * 1000:.0f} ms", us[key] <= target)
        for name, fig in peers.items():
            if fig is None:
                continue
            ratio = fig[key] / us[key]
            report(f"  {name}: {fig[key] * 1000:.1f} ms", f"{ratio:.1f}x ours", "ours faster (>= 1x)", ratio >= 1)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
