"""Issue 12, case 5: a read-only store is read by every query and command; a home that cannot be
created is one clear error at the API boundary and never an exception inside ``emit``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import crucible_telemetry as ct

ROOT = Path(__file__).resolve().parents[2]

_READER = """
import json, sys
import crucible_telemetry as ct
hub = ct.Telemetry(sys.argv[1])
con = hub.connect()
out = {
    "events": con.execute("SELECT count(*) FROM events").fetchone()[0],
    "runs": sorted(r[0] for r in con.execute("SELECT status FROM runs").fetchall()),
    "summary_rows": con.execute("SELECT count(*) FROM summaries").fetchone()[0],
    "one_run": len(hub.store.get_all(sys.argv[2])),
    "of": con.execute("SELECT count(*) FROM events_of([?])", [sys.argv[2]]).fetchone()[0],
}
print(json.dumps(out))
"""


@pytest.fixture
def ro_mount(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A small real tmpfs, remounted read-only by the test (root ignores file modes, not a ro mount)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"this suite needs root to mount a tmpfs: {r.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_read_only_store_reads_through_every_entry(ro_mount: Path) -> None:
    home = ro_mount / "h"
    hub = ct.Telemetry(home)
    done = hub.start_experiment("done", bind=False)
    live = hub.start_experiment("live", bind=False)
    for i in range(50):
        hub.emit("r.o", {"i": i}, {"experiment_id": done.id})
        hub.emit("r.o", {"i": i}, {"experiment_id": live.id})
    hub.stop_experiment(done.id)  # merged, with its summary
    hub.flush()  # live: raw segments only
    hub.writer.stop_thread()
    r = subprocess.run(["mount", "-o", "remount,ro", str(ro_mount)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with pytest.raises(OSError):
        (home / "probe").touch()  # really read-only, for root too
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", _READER, str(home), done.id],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["events"] == 100 and out["one_run"] == 50 and out["of"] == 50
    assert out["runs"] == ["running", "stopped"] and out["summary_rows"] >= 2
    for args in (["runs", "--format", "json"], ["sql", "SELECT count(*) AS n FROM events", "--format", "csv"]):
        cli = subprocess.run(
            [sys.executable, "-m", "crucible_telemetry.cli", "--home", str(home), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert cli.returncode == 0, (args, cli.stderr[-3000:])
    assert "100" in cli.stdout


def test_a_home_that_cannot_be_created_is_one_clear_error_and_emit_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ct.InvalidArgumentError, match=r"home.*cannot create the store folder"):
        ct.Telemetry(blocker / "home")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CRUCIBLE_HOME": str(blocker / "home")}
    code = "import crucible_telemetry as ct\nfor i in range(3): ct.emit('a.b', {'v': i})\nprint(ct.unrecorded)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "{'no_store': 3}"
    assert p.stderr.count("events are not recorded") == 1
