"""torchrun with 2 CPU processes (gloo): rank on every row, one experiment for both ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import crucible_telemetry as ct

from ._tiny import events

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_two_ranks_share_one_experiment(hub: ct.Telemetry, home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("CRUCIBLE_EXPERIMENT_ID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "tests.hf._ddp_child", str(home), str(tmp_path / "out")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # a hung rank: end the whole process group torchrun started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr[-4000:]
    results = [json.loads((tmp_path / "out" / f"result-rank{r}.json").read_text()) for r in (0, 1)]
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
        ranks = con.execute("SELECT DISTINCT rank FROM metrics WHERE run_id = ? ORDER BY rank",
                            [exps[0].id]).fetchall()
    assert ranks == [(0,), (1,)]
