"""Issue 12, case 2: a tight emit loop writes every flush interval, in bounded memory, dropping and counting the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from crucible_telemetry.storage import segments

ROOT = Path(__file__).resolve().parents[2]


def _child(home: Path, seconds: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability._children", "runaway", str(home), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _stored(home: Path) -> int:
    # the live files only: a merge at exit leaves the files it covers for their grace period
    files = [f for d in (home / "events").glob("experiment_id=*") for f in segments.live_files(d)]
    if not files:
        return 0
    (n,) = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [[str(f) for f in files]]).fetchone()
    return int(n)


def test_a_tight_loop_writes_every_interval_in_bounded_memory(tmp_path: Path) -> None:
    home = tmp_path / "h"
    p = _child(home, 4.0)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0
    lines = [json.loads(x) for x in out.splitlines()]
    late = [x for x in lines if x["t"] > 1.0]
    assert late, lines
    # segments were written while the loop ran, not only at exit
    assert all(x["stored"] > 0 for x in late), [x["stored"] for x in late]
    assert late[-1]["stored"] > late[0]["stored"]
    # all buffers together stay under two buffer_limits (50,000); stats() reads the two buffers
    # one after the other while the writer moves rows between them, so allow one more chunk
    assert max(x["pending"] for x in lines) <= 3 * 50_000, [x["pending"] for x in lines]
    rss = [x["rss"] for x in late]
    assert max(rss) - min(rss) < 100 << 20, [r >> 20 for r in rss]  # flat, not growing ~40 MiB/s
    for x in lines:
        assert (
            x["emitted"]
            == x["stored"] + x["pending"] + x["dropped_overflow"] + x["dropped_paused"] + x["rejected_total"]
        )


def test_sigkill_in_a_tight_loop_loses_about_one_flush_interval(tmp_path: Path) -> None:
    home = tmp_path / "h"
    p = _child(home, 60.0)
    assert p.stdout is not None
    seen: list[tuple[float, dict[str, int]]] = []
    t0 = time.monotonic()
    for line in p.stdout:
        seen.append((time.monotonic(), json.loads(line)))
        if time.monotonic() - t0 > 4.0:
            break
    killed_at = time.monotonic()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    stored = _stored(home)
    # every event handed to the writer 1.5 s (six flush intervals) before the kill is on disk
    before = [s for t, s in seen if t <= killed_at - 1.5]
    assert before
    handed = before[-1]["emitted"] - before[-1]["dropped_overflow"]
    assert stored >= handed > 0, (stored, handed)
