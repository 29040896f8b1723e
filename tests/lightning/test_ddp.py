"""A real 2-process DDP run (CPU, gloo): one experiment, rows of both ranks, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import crucible_telemetry as ct

from .helpers import duplicates, events, metrics

SCRIPT = Path(__file__).with_name("ddp_script.py")


@pytest.mark.slow
def test_ddp_two_ranks_one_experiment(hub: ct.Telemetry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(hub.home), str(tmp_path / "root"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["errors"] for r in reports] == [[], []]
    exp_id = reports[0]["experiment_id"]
    assert reports[1]["experiment_id"] == exp_id and reports[0]["run_id"] == exp_id
    assert [e.id for e in hub.list_experiments()] == [exp_id]

    evs = events(hub, exp_id)
    per_rank = {r: Counter(e["event"] for e in evs if e["rank"] == r) for r in (0, 1)}
    expected = Counter(
        {
            "crucible_train.training.start": 1,
            "crucible_train.epoch.start": 2,
            "crucible_train.batch.stop": 10,
            "crucible_train.validation.stop": 2,
            "crucible_train.epoch.stop": 2,
            "crucible_train.training.stop": 1,
        }
    )
    assert per_rank[1] == expected
    assert per_rank[0] == expected + Counter({"crucible_train.checkpoint.saved": 2})
    assert {e["rank"] for e in evs} == {0, 1}
    worlds = hub.store.execute(
        "SELECT DISTINCT world_size, node FROM events WHERE experiment_id = ?", [exp_id]
    ).fetchall()
    assert worlds == [(2, 0)]
    for r in (0, 1):
        steps = sorted(
            (e["epoch"], e["batch"], e["global_step"])
            for e in evs
            if e["rank"] == r and e["event"] == "crucible_train.batch.stop"
        )
        assert steps == [(ep, b, ep * 5 + b + 1) for ep in (0, 1) for b in range(5)]

    # self.log metrics: rank 0 only by default; every rank with all_ranks=True.
    rows = metrics(hub, exp_id)
    assert {r["rank"] for r in rows} == {0}
    assert sorted(r["step"] for r in rows if r["metric"] == "train_loss_step") == list(range(10))
    every = metrics(hub, "ddp-all-ranks")
    for r in (0, 1):
        mine = [x for x in every if x["rank"] == r and x["metric"] == "train_loss_step"]
        assert sorted(x["step"] for x in mine) == list(range(10)) and {x["node"] for x in mine} == {0}
    assert duplicates(hub, exp_id) == [] and duplicates(hub, "ddp-all-ranks") == []
