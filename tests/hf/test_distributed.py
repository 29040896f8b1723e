"""torchrun with 2 CPU processes (gloo): rank on every row, one experiment for both ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct

from ._tiny import events

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(home: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    """Run the tiny Trainer on 2 CPU ranks; each rank's report."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # the caller's kept
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    env.pop("CRUCIBLE_EXPERIMENT_ID", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "tests.hf._ddp_child",
            str(home),
            str(out),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # a hung rank: end the whole process group torchrun started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr[-4000:]
    return [json.loads((out / f"result-rank{r}.json").read_text()) for r in (0, 1)]


def test_torchrun_two_ranks_share_one_experiment(hub: ct.Telemetry, home: Path, tmp_path: Path) -> None:
    results = _torchrun(home, tmp_path / "out")
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["errors"] == [] for r in results)
    exps = hub.list_experiments()
    assert len(exps) == 1  # one record, written by rank 0
    evs = events(hub, exps[0].id)
    assert {e["rank"] for e in evs} == {0, 1}
    steps = results[0]["steps"]
    for rank in (0, 1):
        mine = [e for e in evs if e["rank"] == rank]
        assert [e["event"] for e in mine].count("training.start") == 1
        assert [e["global_step"] for e in mine if e["event"] == "batch.stop"] == list(range(1, steps + 1))
        assert [e["epoch"] for e in mine if e["event"] == "epoch.stop"] == [0, 1]
    hub.flush()
    with hub.connect() as con:
        ranks = con.execute("SELECT DISTINCT rank FROM metrics WHERE run_id = ? ORDER BY rank", [exps[0].id]).fetchall()
        dup = con.execute(
            # (``epoch`` rides on both the training and the evaluation log of a step: two rows of one rank)
            "SELECT metric, step, count(*) FROM metrics WHERE run_id = ? AND metric <> 'epoch' "
            "GROUP BY ALL HAVING count(*) > 1",
            [exps[0].id],
        ).fetchall()
    # Logged values are stored once, by the world's process zero (as HF's reporting callbacks log);
    # events carry every rank.
    assert ranks == [(0,)] and dup == []


def test_torchrun_rank_zero_chooses_for_every_rank(hub: ct.Telemetry, home: Path, tmp_path: Path) -> None:
    # Each rank sees a different $CRUCIBLE_EXPERIMENT_ID: both record into rank 0's.
    results = _torchrun(home, tmp_path / "out", "hf-ddp")
    assert all(r["errors"] == [] for r in results)
    assert [(e.id, e.status) for e in hub.list_experiments()] == [("hf-ddp-rank0", "stopped")]
    evs = events(hub, "hf-ddp-rank0")
    assert {e["rank"] for e in evs if e["event"] == "training.start"} == {0, 1}
