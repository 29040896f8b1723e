"""Issue 12, case 5: a full disk; writes resume in pieces that fit, stop never raises, no descriptor leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import crucible_telemetry as ct

ROOT = Path(__file__).resolve().parents[2]


def test_a_full_disk_then_space_again_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-m", "tests.reliability._children", "full_disk", str(home)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["errors"] > 0  # the limit really refused writes
    assert out["after_pieces"]["stored"] == 100_001  # the backlog landed in pieces that fit
    assert out["while_full"]["pending"] == 2000  # kept while the disk is full, not lost
    end = out["end"]
    assert end["stored"] == end["emitted"] == 102_001 and end["pending"] == 0
    assert out["fd_growth"] <= 2  # no descriptor held by a kept error
    reader = ct.Telemetry(home)
    try:
        (n, distinct) = (
            reader.connect()
            .execute("SELECT count(*), count(DISTINCT measurements['i']) FROM events WHERE event = 'disk.fill'")
            .fetchone()
        )
    finally:
        reader.close()
    assert (n, distinct) == (102_000, 102_000)  # no holes, no duplicates
