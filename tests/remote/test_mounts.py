"""Two nodes on one network filesystem: two ``weed mount`` FUSE mounts of the same SeaweedFS folder
(the folder lock does not reach across them). Writers on both, as node 0 and node 1 with two ranks
each, merging at once: readers on either mount see every row exactly once, while live and after."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import crucible_telemetry as ct

ROOT = Path(__file__).resolve().parents[2]
_RANK = """
import sys
import crucible_telemetry as ct
hub = ct.Telemetry(sys.argv[1], flush_interval=3600)
exp = hub.join_experiment(sys.argv[2])
for b in range(6):
    for i in range(100):
        hub.emit("m.e", {"i": b * 100 + i}, {"experiment_id": exp.id})
    hub.flush()
hub.close()  # each rank merges the whole folder at the end: on both mounts at once
"""


@pytest.fixture
def mounts(s3: dict[str, str], tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if not Path("/dev/fuse").exists():
        raise RuntimeError("weed mount needs /dev/fuse")
    dirs = (tmp_path / "node0", tmp_path / "node1")
    procs = []
    for d in dirs:
        d.mkdir()
        args = [s3["weed"], "mount", f"-filer={s3['filer']}", f"-dir={d}", f"-filer.path=/{tmp_path.name}"]
        procs.append(
            subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        )
    deadline = time.monotonic() + 30
    while not all(os.path.ismount(d) for d in dirs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("weed mount did not come up")
        time.sleep(0.2)
    try:
        yield dirs
    finally:
        for d, p in zip(dirs, procs):
            subprocess.run(["umount", "-l", str(d)], check=False)
            p.terminate()
            p.wait(20)


def _counts(home: Path) -> list[tuple[object, ...]]:
    con = ct.Telemetry(home).connect()
    try:
        return con.execute(
            "SELECT node, count(*), count(DISTINCT (pid, seq)) FROM events GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()


def test_two_mounts_two_nodes_every_row_once(mounts: tuple[Path, Path]) -> None:
    homes = [m / "store" for m in mounts]
    lead = ct.Telemetry(homes[0])
    exp = lead.start_experiment("mounts", bind=False)
    deadline = time.monotonic() + 10
    while not (homes[1] / "experiments" / f"{exp.id}.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    procs = []
    for rank, (home, node) in enumerate([(homes[0], 0), (homes[0], 0), (homes[1], 1), (homes[1], 1)]):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NODE_RANK": str(node), "RANK": str(rank), "WORLD_SIZE": "4"}
        procs.append(subprocess.Popen([sys.executable, "-c", _RANK, str(home), exp.id], env=env))
    assert [p.wait(180) for p in procs] == [0, 0, 0, 0]
    expected = [(0, 1200, 1200), (1, 1200, 1200)]
    for home in homes:
        assert _counts(home) == expected
    lead.stop_experiment(exp.id)
    lead.close()
    for home in homes:
        assert _counts(home) == expected
