"""Nodes with skewed clocks (libfaketime on the real code): every query exact while two writers on
clocks 10 s behind and 130 s ahead write one run as nodes 0 and 1, and ``crucible prune`` runs from
both; garbage collection on a node ahead never deletes files a reader may still be opening."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct
from crucible_telemetry.storage import listing, merge

from .conftest import WRITER, start_runs

pytestmark = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="needs Debian's faketime (noxfile installs it)"
)

SKEWED = Path(__file__).with_name("_skewed.py")
BEHIND, AHEAD = "-10s", "+130s"


def _on_clock(offset: str, *args: str) -> list[str]:
    return ["faketime", "-f", offset, sys.executable, str(SKEWED), *args]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1", **extra}


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_faketime_skews_pythons_wall_clock_and_sleep_still_works() -> None:
    probe = "import time; t = time.time(); time.sleep(0.01); print(t)"
    out = _run(["faketime", "-f", AHEAD, sys.executable, str(SKEWED), "-c", probe]).stdout
    assert float(out) - time.time() > 120


def _prune(offset: str, home: Path) -> subprocess.CompletedProcess[str]:
    return _run(_on_clock(offset, "-m", "crucible_telemetry.cli", "prune", "--home", str(home)))


def test_collect_garbage_on_a_node_ahead_keeps_what_another_node_just_covered(tmp_path: Path) -> None:
    home = tmp_path / "crucible"
    (run,) = start_runs(home, 1)
    _run(_on_clock(BEHIND, str(WRITER), str(home), "6", "5", run))  # 6 live segments, named 10 s behind
    _prune(BEHIND, home)  # merged on the node behind: the covered segments are hidden, not yet deletable
    folder = home / "events" / f"experiment_id={run}"
    hidden = listing.resolve(folder, os.listdir(folder)).hidden
    assert len(hidden) == 6
    _prune(AHEAD, home)  # by its own clock the cover looks 140 s old: past the 120 s grace
    assert all((folder / name).exists() for name in hidden)  # judged on the filesystem's clock: kept
    assert merge.collect_garbage(folder, grace=0) == 6  # an explicit grace still applies


def _check(con: Any, expected_max: int) -> int:
    rows = con.execute(
        "SELECT pid, count(*), count(DISTINCT seq), min(seq), max(seq) FROM events GROUP BY pid"
    ).fetchall()
    total = 0
    for _pid, n, distinct, lo, hi in rows:
        assert n == distinct == hi - lo + 1  # never a row twice, never one missing inside what is seen
        total += n
    assert total <= expected_max
    return total


@pytest.mark.slow
def test_queries_stay_exact_while_skewed_nodes_write_merge_and_prune(tmp_path: Path) -> None:
    home = tmp_path / "crucible"
    (run,) = start_runs(home, 1)
    epochs, batches = 12, 20
    expected = 2 * epochs * (batches + 1)
    writers = [
        subprocess.Popen(
            _on_clock(offset, str(WRITER), str(home), str(epochs), str(batches), run),
            env=_env(RANK=str(rank), NODE_RANK=str(rank), WORLD_SIZE="2", CT_WRITER_PAUSE="0.15"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, offset in enumerate((BEHIND, AHEAD))
    ]
    pruners = [(BEHIND, None), (AHEAD, None)]
    hub = ct.Telemetry(home)
    prev = ct.set_default(hub)
    seen, queries, last = 0, 0, 0
    try:
        con = ct.connect()
        k = 0
        while any(w.poll() is None for w in writers) or any(p is not None and p.poll() is None for _, p in pruners):
            offset, p = pruners[k % 2]
            if p is None or p.poll() is not None:
                assert p is None or p.returncode == 0, p.stderr.read()[-2000:] if p.stderr else ""
                cmd = _on_clock(offset, "-m", "crucible_telemetry.cli", "prune", "--home", str(home))
                if any(w.poll() is None for w in writers):
                    pruners[k % 2] = (offset, subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True))
                else:
                    pruners[k % 2] = (offset, None)
            k += 1
            seen = _check(con, expected)
            assert seen >= last  # rows once seen never vanish
            last, queries = seen, queries + 1
        for w in writers:
            _, err = w.communicate(timeout=60)
            assert w.returncode == 0, err[-2000:]
        _prune(AHEAD, home)
        assert _check(con, expected) == expected
        assert queries > 5
        con.close()
    finally:
        ct.set_default(prev)
        hub.close()


def test_a_node_ahead_never_prunes_a_catalog_file_another_node_just_wrote(tmp_path: Path) -> None:
    import crucible_telemetry as ct
    from crucible_telemetry.storage import catalog

    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    exp = hub.start_experiment("one", bind=False)
    hub.emit("c.e", {"i": 1}, {"experiment_id": exp.id})
    hub.stop_experiment(exp.id)
    fresh = Path(catalog.catalog_for(home).experiments())
    assert fresh.exists()
    code = (
        "import sys, pyarrow as pa\n"
        "from pathlib import Path\n"
        "from crucible_telemetry.storage import catalog\n"
        "from crucible_telemetry.storage.catalog import EXPERIMENT_SCHEMA\n"
        "catalog.catalog_for(Path(sys.argv[1]))._write('experiments', EXPERIMENT_SCHEMA.empty_table())\n"
    )
    _run(_on_clock("+300s", "-c", code.replace("sys.argv[1]", repr(str(home)))))
    assert fresh.exists(), "a node 300 s ahead judged a file written now as past its grace"
    assert len(list((home / "catalog").glob("experiments-*.parquet"))) == 2
    hub.close()
