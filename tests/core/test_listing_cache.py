"""The listings a process saves for the next one (``catalog/listing-<dataset>.json``) never hide a
change: a folder whose mtime moved is listed again, and a torn or foreign file is ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import crucible_telemetry as ct
from crucible_telemetry.storage import catalog

ROOT = Path(__file__).resolve().parents[2]
_COUNT = """
import sys, crucible_telemetry as ct
con = ct.Telemetry(sys.argv[1]).connect()
print(con.execute("SELECT count(*), count(DISTINCT experiment_id) FROM events").fetchone())
print(con.execute("SELECT sum(events) FROM runs").fetchone()[0])
"""


def _another_process(code: str, home: Path) -> str:
    """What ``code`` prints, run by a new Python process on the store at ``home``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, str(home)], capture_output=True, text=True, check=True, env=env
    ).stdout


def _count(home: Path) -> list[str]:
    return _another_process(_COUNT, home).split("\n")[:2]


def _settle(home: Path) -> None:
    """Age every folder past the settle time, as a store not written for a few seconds is."""
    old = time.time() - 10
    for p in [home / "events", *(home / "events").iterdir(), home / "metrics", *(home / "metrics").iterdir()]:
        os.utime(p, (old, old))


def _three_runs(home: Path) -> list[str]:
    """Three finished runs of 10 events, settled, counted once by another process (which saves its listings)."""
    hub = ct.Telemetry(home)
    ids = []
    for r in range(3):
        exp = hub.start_experiment(f"r{r}", bind=False)
        for i in range(10):
            hub.emit("c.e", {"i": i}, {"experiment_id": exp.id})
        hub.stop_experiment(exp.id)
        ids.append(exp.id)
    hub.close()
    _settle(home)
    assert _count(home) == ["(30, 3)", "30"]
    return ids


def test_a_saved_listing_is_used_by_the_next_process_and_never_hides_a_change(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ids = _three_runs(home)
    saved = json.loads((home / "catalog" / "listing-events.json").read_text())
    assert set(saved["folders"]) == set(ids)
    # while a folder is unchanged, the next process reads what was saved for it (no listing of its own)
    entry = saved["folders"][ids[1]]
    (home / "catalog" / "listing-events.json").write_text(
        json.dumps({**saved, "folders": {**saved["folders"], ids[1]: [entry[0], entry[1], [], {}, []]}})
    )
    assert _count(home)[0] == "(20, 2)"
    (home / "catalog" / "listing-events.json").write_text(json.dumps(saved))
    assert _count(home) == ["(30, 3)", "30"]
    # another writer adds rows to one run and a new run: the next process sees every row once
    hub2 = ct.Telemetry(home)
    exp = hub2.join_experiment(ids[0])
    for i in range(5):
        hub2.emit("c.e", {"i": 100 + i}, {"experiment_id": exp.id})
    hub2.flush()
    new = hub2.start_experiment("r3", bind=False)
    hub2.emit("c.e", {"i": 0}, {"experiment_id": new.id})
    hub2.flush()
    assert _count(home) == ["(36, 4)", "36"]
    # a torn file and one of another layout are ignored, never trusted
    (home / "catalog" / "listing-events.json").write_text('{"version": 1, "key": "experiment_id", "folders": {"x')
    assert _count(home) == ["(36, 4)", "36"]
    (home / "catalog" / "listing-events.json").write_text(json.dumps({"version": 1, "key": "run_id", "folders": {}}))
    assert _count(home) == ["(36, 4)", "36"]
    hub2.close()


def test_a_whole_listing_checked_under_its_age_is_taken_by_the_next_process_unchecked(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ids = _three_runs(home)
    path = home / "catalog" / "listing-events.json"
    saved = json.loads(path.read_text())
    assert saved["whole"][0] == (home / "events").stat().st_mtime_ns
    # one folder's entry says it is empty and has another mtime: checked folder by folder it would be
    # listed again; taken whole (checked moments ago, the root unchanged) it is not
    entry = saved["folders"][ids[1]]
    hidden = {**saved["folders"], ids[1]: [entry[0] + 1, entry[1], [], {}, []]}
    path.write_text(json.dumps({**saved, "folders": hidden, "whole": [saved["whole"][0], time.time()]}))
    assert _count(home)[0] == "(20, 2)"
    # past FULL_MAX_AGE the whole listing is not taken: each folder is checked and listed again
    path.write_text(json.dumps({**saved, "folders": hidden, "whole": [saved["whole"][0], time.time() - 60]}))
    assert _count(home) == ["(30, 3)", "30"]
    # nor when the dataset root changed since (a writer touches it after placing a file)
    path.write_text(json.dumps({**saved, "folders": hidden, "whole": [saved["whole"][0] - 1, time.time()]}))
    assert _count(home) == ["(30, 3)", "30"]


def test_a_catalog_file_pruned_by_another_process_is_written_again(tmp_path: Path) -> None:
    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    exp = hub.start_experiment("one", bind=False)
    hub.emit("c.e", {"i": 1}, {"experiment_id": exp.id})
    hub.stop_experiment(exp.id)
    con = hub.connect()
    assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    for p in (home / "catalog").glob("*-*.parquet"):  # as another process's prune does after the grace
        if not p.name.startswith("schema-"):
            p.unlink()
    assert con.execute("SELECT count(*), sum(events) FROM runs").fetchone() == (1, 1)
    assert catalog.catalog_for(home).experiments().startswith((home / "catalog").as_posix())
    hub.close()


_RUNS = """
import sys, crucible_telemetry as ct
con = ct.Telemetry(sys.argv[1]).connect()
print(con.execute("SELECT string_agg(name, ',' ORDER BY name), sum(events) FROM runs").fetchone())
"""


def _runs(home: Path) -> str:
    return _another_process(_RUNS, home).strip()


def test_the_catalog_state_is_used_by_the_next_process_and_never_hides_a_change(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    ids = []
    for r in range(3):
        exp = hub.start_experiment(f"r{r}", bind=False)
        hub.emit("c.e", {"i": r}, {"experiment_id": exp.id})
        hub.stop_experiment(exp.id)
        ids.append(exp.id)
    _settle(home)
    old = time.time() - 10
    os.utime(home / "experiments", (old, old))
    assert _runs(home) == "('r0,r1,r2', 3)"
    state = json.loads((home / "catalog" / "state-experiments.json").read_text())
    assert state["mtime_ns"] == (home / "experiments").stat().st_mtime_ns
    # while the records folder is unchanged, the next process takes the saved catalog file unread
    table = pq.read_table(home / "catalog" / state["path"])
    pq.write_table(table.slice(0, 2), home / "catalog" / "experiments-0000000000001-feedbeef.parquet")
    (home / "catalog" / "state-experiments.json").write_text(
        json.dumps({**state, "path": "experiments-0000000000001-feedbeef.parquet"})
    )
    two = ",".join(sorted(table.slice(0, 2).column("name").to_pylist()))
    assert _runs(home) == f"('{two}', 2)"
    # a record changed (written under a new name, so the folder's mtime moves): seen by the next one
    hub.update_experiment(ids[2], name="renamed")
    assert _runs(home) == "('r0,r1,renamed', 3)"
    # the summaries' state names the merges it holds: a new finished run, or a torn state, is not trusted
    (home / "catalog" / "state-experiments.json").write_text('{"path": "experi')
    assert (home / "catalog" / "state-summaries.json").exists()
    exp = hub.start_experiment("r3", bind=False)
    for i in range(4):
        hub.emit("c.e", {"i": i}, {"experiment_id": exp.id})
    hub.stop_experiment(exp.id)
    assert _runs(home) == "('r0,r1,r3,renamed', 7)"
    (home / "catalog" / "state-summaries.json").write_text('{"path": "summ')
    assert _runs(home) == "('r0,r1,r3,renamed', 7)"
    hub.close()
