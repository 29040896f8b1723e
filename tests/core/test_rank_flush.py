"""Fewer files from many ranks: ``$CRUCIBLE_RANK_FLUSH_INTERVAL`` makes every rank but 0 flush less
often (its rows arrive later, none is lost at a normal exit); an explicit ``flush_interval`` wins."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crucible_telemetry as ct

ROOT = Path(__file__).resolve().parents[2]
_RANK = """
import sys, time
import pytest

import crucible_telemetry as ct
hub = ct.Telemetry(sys.argv[1])
exp = hub.join_experiment(sys.argv[2])
print(hub.flush_interval, flush=True)
for i in range(40):
    hub.emit("r.e", {"i": i}, {"experiment_id": exp.id})
    time.sleep(0.05)
open(sys.argv[3], "w").close()
time.sleep(1.0)  # still alive: what it wrote so far is on disk
hub.close()
"""


def _env(rank: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "RANK": str(rank), "WORLD_SIZE": "2", **extra}


def _pid_files(folder: Path, pid: int) -> int:
    return sum(1 for p in folder.glob("*.parquet") if f"-{pid}-" in p.name)


def test_ranks_other_than_zero_flush_at_their_own_interval(tmp_path: Path) -> None:
    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    exp = hub.start_experiment("ranks", bind=False)
    folder = hub.events_writer.folder(exp.id)
    knobs = {"CRUCIBLE_FLUSH_INTERVAL": "0.1", "CRUCIBLE_RANK_FLUSH_INTERVAL": "3600"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RANK, str(home), exp.id, str(tmp_path / f"done{r}")],
            env=_env(r, **knobs),
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    intervals = [p.stdout.readline().strip() for p in procs if p.stdout]
    assert intervals == ["0.1", "3600.0"]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"done{r}").exists() for r in (0, 1)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert _pid_files(folder, procs[0].pid) >= 5  # rank 0: a segment every 0.1 s
    assert _pid_files(folder, procs[1].pid) == 0  # rank 1: nothing yet
    for p in procs:
        assert p.wait(60) == 0
    con = hub.connect()
    rows = con.execute("SELECT rank, count(*), count(DISTINCT seq) FROM events GROUP BY rank ORDER BY rank").fetchall()
    assert rows == [(0, 40, 40), (1, 40, 40)]  # at exit rank 1 wrote all it held
    con.close()
    hub.close()


def test_an_explicit_interval_wins_and_a_bad_setting_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("CRUCIBLE_RANK_FLUSH_INTERVAL", "7.5")
    assert ct.Telemetry(tmp_path / "a").flush_interval == 7.5
    assert ct.Telemetry(tmp_path / "b", flush_interval=0.5).flush_interval == 0.5
    monkeypatch.setenv("RANK", "0")
    assert ct.Telemetry(tmp_path / "c").flush_interval == 1.0
    monkeypatch.setenv("CRUCIBLE_FLUSH_INTERVAL", "soon")
    assert ct.Telemetry(tmp_path / "d").flush_interval == 1.0
