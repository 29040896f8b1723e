"""A store pushed to a real S3 server (SeaweedFS): the same views and answers as the local store,
live runs and merges included, every row once; each object is written once under its final name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import crucible_telemetry as ct

ROOT = Path(__file__).resolve().parents[2]
QUERIES = [
    "SELECT count(*), count(DISTINCT (experiment_id, seq)) FROM events",
    "SELECT experiment_id, avg(duration), quantile_cont(duration, 0.95) FROM events GROUP BY 1 ORDER BY 1",
    "SELECT experiment_id, epoch, avg(loss) FROM events WHERE loss IS NOT NULL GROUP BY ALL ORDER BY ALL",
    "SELECT name, status, events, metric_rows FROM runs ORDER BY name",
    "SELECT experiment_id, source, name, count, min, max FROM summaries ORDER BY ALL",
    "SELECT count(*), min(seq), max(seq) FROM events_of([?])",
]


def _store(home: Path) -> list[str]:
    hub = ct.Telemetry(home, flush_interval=3600)
    ids = []
    for r in range(3):
        exp = hub.start_experiment(f"run{r}", bind=False, params={"lr": 0.1 * (r + 1)})
        for epoch in range(3):
            for i in range(20):
                hub.emit(
                    "crucible_train.batch.stop",
                    {"loss": 1.0 / (i + 1 + r), "duration": 1e6 * (i + 1)},
                    {"experiment_id": exp.id, "epoch": epoch},
                )
                hub.record_metric(exp.id, "val_loss", 0.5 / (i + 1), step=epoch * 20 + i)
            hub.flush()
        if r < 2:
            hub.stop_experiment(exp.id)  # merged; the last run stays live: unmerged segments
        ids.append(exp.id)
    return ids


def _answers(con: object, run: str) -> list[list[tuple[object, ...]]]:
    return [con.execute(q, [run] if "?" in q else None).fetchall() for q in QUERIES]  # type: ignore[attr-defined]


def test_a_pushed_store_answers_like_the_local_one(tmp_path: Path, s3: dict[str, str]) -> None:
    home = tmp_path / "h"
    ids = _store(home)
    url = f"s3://{s3['bucket']}/lab/a"
    first = ct.push(url, home)
    assert not first.failed and first.uploaded > 0 and first.records == 3
    local = ct.Telemetry(home).connect()
    remote = ct.connect_remote(url)
    expected = _answers(local, ids[0])
    assert expected[0][0] == (180, 180)
    assert _answers(remote, ids[0]) == expected
    again = ct.push(url, home)  # immutable names: nothing is sent twice
    assert again.uploaded == 0 and again.skipped == first.uploaded
    # the live run goes on and ends (merged): push again; the remote store shows the merge, once
    hub = ct.Telemetry(home)
    (live,) = [e for e in hub.list_experiments() if e.name == "run2"]
    exp = hub.join_experiment(live.id)
    hub.emit("crucible_train.batch.stop", {"loss": 0.01, "duration": 5e6}, {"experiment_id": exp.id, "epoch": 3})
    hub.stop_experiment(exp.id)
    hub.close()
    third = ct.push(url, home)
    assert third.uploaded >= 3  # the merge's summary, manifest and data (and the metrics' merge)
    local = ct.Telemetry(home).connect()
    expected = _answers(local, ids[0])
    assert expected[0][0] == (181, 181)
    assert _answers(remote, ids[0]) == expected  # the same connection: each query lists the store again


def test_the_cli_pushes_and_queries_a_remote_store(tmp_path: Path, s3: dict[str, str]) -> None:
    home = tmp_path / "h"
    _store(home)
    url = f"s3://{s3['bucket']}/lab/cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    cli = [sys.executable, "-m", "crucible_telemetry.cli", "--home", str(home)]
    out = subprocess.run([*cli, "push", url], capture_output=True, text=True, env=env, check=True).stdout
    assert "pushed" in out and "3 records" in out
    sql = "SELECT name, events FROM runs ORDER BY name"
    out = subprocess.run(
        [*cli, "sql", "--remote", url, sql, "--format", "csv"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.split() == ["name,events", "run0,60", "run1,60", "run2,60"]
