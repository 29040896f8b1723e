"""Merges and summaries never lose, duplicate or double-count a row: while writers run, across a
crash, with readers listing mid-merge; and the summaries equal the same SQL over the events."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry.storage import listing, merge, segments
from crucible_telemetry.storage.summaries import SUMMARY_COLUMNS, summary_sql

ROOT = Path(__file__).resolve().parents[2]

_WRITER = """
import sys, time
import crucible_telemetry as ct
from crucible_telemetry.storage import segments
segments.COMPACT_EVERY = 5
hub = ct.Telemetry(sys.argv[1], flush_interval=3600)
exp = hub.join_experiment(sys.argv[2])
for b in range(int(sys.argv[4])):
    for i in range(25):
        hub.emit("w.e", {"i": b * 25 + i, "w": int(sys.argv[3])})
    hub.flush()
hub.close()
"""


def _tick() -> None:
    t = time.time_ns()
    while time.time_ns() // 1000 == t // 1000:  # a distinct microsecond per event: first/last are exact
        pass


def test_writers_merges_and_readers_at_once_never_lose_or_double_a_row(tmp_path: Path) -> None:
    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    exp = hub.start_experiment("busy", bind=False)
    folder = hub.events_writer.folder(exp.id)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(home), exp.id, str(w), "40"], env=env) for w in range(3)
    ]
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def read_loop() -> None:
        reader = ct.Telemetry(home)
        con = reader.connect()
        while not stop.is_set():
            seen.append(
                con.execute("SELECT count(*), count(DISTINCT (pid, seq)) FROM events_of([?])", [exp.id]).fetchone()
            )
        reader.close()

    def merge_loop() -> None:  # another process's final merges landing while the writers write
        while not stop.is_set():
            merge.merge_folder(folder, final=True, wait=True, min_files=1)
            merge.collect_garbage(folder, grace=0.5)
            time.sleep(0.05)

    threads = [threading.Thread(target=read_loop), threading.Thread(target=merge_loop)]
    for t in threads:
        t.start()
    for w in writers:
        assert w.wait(timeout=300) == 0
    stop.set()
    for t in threads:
        t.join()
    assert seen and all(total == distinct for total, distinct in seen), "a row was read twice"
    assert [t for t, _ in seen] == sorted(t for t, _ in seen), "rows disappeared"
    rows = hub.store.query(exp.id)
    assert len(rows) == 3 * 40 * 25
    assert sorted((int(r["measurements"]["w"]), int(r["measurements"]["i"])) for r in rows) == [
        (w, i) for w in range(3) for i in range(1000)
    ]
    hub.stop_experiment(exp.id)
    merge.collect_garbage(folder, grace=0)
    assert len(segments.live_files(folder)) == 1  # finished: one file
    assert len(hub.store.query(exp.id)) == 3000
    hub.close()


_CRASH = """
import os, sys, signal
from pathlib import Path
from crucible_telemetry.storage import merge
folder = Path(sys.argv[1])
real = os.replace
def die_before_data(src, dst):
    if str(dst).endswith(".parquet") and Path(dst).name.startswith("merge-"):
        os.kill(os.getpid(), signal.SIGKILL)  # after the summary and the manifest, before the data
    return real(src, dst)
os.replace = die_before_data
merge.merge_folder(folder, final=True, wait=True)
"""


def test_a_merge_killed_half_way_leaves_every_row_readable_once(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    exp = hub.start_experiment("crash", bind=False)
    for b in range(6):
        for i in range(10):
            hub.emit("c.e", {"i": b * 10 + i}, {"experiment_id": exp.id})
        hub.flush()
    folder = hub.events_writer.folder(exp.id)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", _CRASH, str(folder)], env=env, timeout=120)
    assert p.returncode == -signal.SIGKILL
    assert list(folder.glob("merge-*.covers")), "the crash came after the manifest"
    assert not list(folder.glob("merge-*.parquet"))
    assert list(folder.glob("merge-*.parquet.*.tmp")), "the data was written, under its temporary name"
    assert [r["measurements"]["i"] for r in hub.store.query(exp.id)] == list(range(60))
    hub.stop_experiment(exp.id)  # a later merge completes; the orphan manifest is collected
    assert [r["measurements"]["i"] for r in hub.store.query(exp.id)] == list(range(60))
    merge.collect_garbage(folder, grace=0)
    assert len(listing.list_folder(folder).live) == 1
    assert len(list(folder.glob("merge-*.covers"))) == 1
    assert not list(folder.glob("*.tmp"))
    hub.close()


def _random_run(hub: ct.Telemetry, exp_id: str, rng: random.Random, n: int, flushes: int) -> None:
    for k in range(n):
        name = rng.choice(["crucible_train.batch.stop", "crucible_train.validation.stop", "req_llm.request.stop"])
        m: dict[str, float] = {}
        for key in rng.sample(["loss", "accuracy", "tokens", "val_loss"], rng.randint(0, 3)):
            m[key] = (
                rng.choice([rng.gauss(0, 5), math.nan, math.inf, -math.inf, 0.0])
                if rng.random() < 0.1
                else (rng.gauss(1, 3))
            )
        if name == "req_llm.request.stop" and rng.random() < 0.7:
            m["duration"] = rng.random() * 1e9
        md = {"experiment_id": exp_id, "global_step": k if rng.random() < 0.8 else None, "rank": rng.choice([0, 1])}
        hub.emit(name, m, md)
        _tick()
        if k % (n // flushes) == 0:
            hub.flush()
    hub.flush()


def _same(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Rows with NaN made comparable (NaN != NaN in Python)."""
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in rows]


def test_summaries_equal_the_same_sql_over_the_events(tmp_path: Path) -> None:
    rng = random.Random(7)
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    runs = [hub.start_experiment(f"r{i}", bind=False) for i in range(4)]
    for i, exp in enumerate(runs):
        _random_run(hub, exp.id, rng, 400, 6)
        for s in range(30):
            hub.record_metric(exp.id, "val_loss", rng.gauss(1, 1) if s != 3 else math.nan, step=s)
            _tick()
        if i == 0:  # an event named like the metrics' source: its key clashes with the metric's
            hub.emit("metric", {"val_loss": 99.0}, {"experiment_id": exp.id})
        if i < 2:
            hub.stop_experiment(exp.id)  # merged: read from the merge's summary (and the catalog)
    hub.flush()  # runs 2 and 3 stay live: summarised from their raw segments
    con = hub.connect()
    cols = ", ".join(SUMMARY_COLUMNS)
    order = " ORDER BY experiment_id, source, name"
    fast = con.execute(f"SELECT {cols} FROM summaries{order}").fetchall()
    scan = con.execute(f"SELECT {cols} FROM ({summary_sql()}){order}").fetchall()
    assert len(fast) > 30
    assert _same(fast) == _same(scan)
    # A finished run's merged rows pass through uncombined (the catalog marks them), but not run 0's
    # (the clash above), nor those of a run that gets rows again after its merge (run 1, below).
    marks = "SELECT experiment_id, bool_and(_single) FROM read_parquet(ct_files('summaries', 0)) GROUP BY 1"
    assert dict(con.execute(marks).fetchall()) == {runs[0].id: False, runs[1].id: True}
    one_key = "SELECT count(*) FROM summaries WHERE experiment_id = ? AND source = 'metric' AND name = 'val_loss'"
    assert con.execute(one_key, [runs[0].id]).fetchall() == [(1,)]  # one row (as the scan), not one per merge
    more = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    more.join_experiment(runs[1].id, bind=False)
    more.emit("crucible_train.batch.stop", {"loss": -50.0}, {"experiment_id": runs[1].id})
    more.flush()
    fast = con.execute(f"SELECT {cols} FROM summaries{order}").fetchall()
    scan = con.execute(f"SELECT {cols} FROM ({summary_sql()}){order}").fetchall()
    assert _same(fast) == _same(scan)
    loss = (
        "SELECT min FROM summaries WHERE experiment_id = ? AND source = 'crucible_train.batch.stop' AND name = 'loss'"
    )
    assert con.execute(loss, [runs[1].id]).fetchall() == [(-50.0,)]
    more.close()
    one = con.execute(f"SELECT {cols} FROM summaries WHERE experiment_id = ? ORDER BY source, name", [runs[0].id])
    assert _same(one.fetchall()) == _same([r for r in scan if r[0] == runs[0].id])
    loss = con.execute(
        "SELECT count(*), min(measurements['loss']) FILTER (WHERE isfinite(measurements['loss'])) "
        "FROM events WHERE experiment_id = ? AND event = 'crucible_train.batch.stop' "
        "AND measurements['loss'] IS NOT NULL",
        [runs[3].id],
    ).fetchone()
    row = con.execute(
        "SELECT count, min FROM summaries WHERE experiment_id = ? AND source = 'crucible_train.batch.stop' "
        "AND name = 'loss'",
        [runs[3].id],
    ).fetchone()
    assert row == loss
    runs_view = dict(con.execute("SELECT experiment_id, events FROM runs").fetchall())
    counted = dict(con.execute("SELECT experiment_id, count(*) FROM events GROUP BY 1").fetchall())
    assert runs_view == counted
    hub.close()


@pytest.mark.parametrize("readers", [4])
def test_the_catalog_is_shared_and_checked_against_the_records(tmp_path: Path, readers: int) -> None:
    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    ids = []
    for i in range(6):
        exp = hub.start_experiment(f"c{i}", bind=False)
        hub.emit("x.y", {"v": float(i)}, {"experiment_id": exp.id})
        hub.stop_experiment(exp.id)
        ids.append(exp.id)
    code = (
        "import sys, crucible_telemetry as ct\n"
        "con = ct.Telemetry(sys.argv[1]).connect()\n"
        "print(con.execute('SELECT count(*), sum(events) FROM runs').fetchone())"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = [
        subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, env=env)
        for _ in range(readers)
    ]
    assert all(o.returncode == 0 and o.stdout.strip() == "(6, 6)" for o in outs), [o.stderr[-500:] for o in outs]
    assert list((home / "catalog").glob("experiments-*.parquet"))
    hub.update_experiment(ids[0], name="renamed")  # a record changed after the catalog was written
    con = hub.connect()
    assert con.execute("SELECT name FROM experiments WHERE experiment_id = ?", [ids[0]]).fetchone() == ("renamed",)
    (home / "experiments" / f"{ids[1]}.json").unlink()  # a record removed
    assert con.execute("SELECT count(*) FROM experiments").fetchone() == (5,)
    hub.close()


def test_standard_keys_are_columns_and_files_of_the_first_format_still_read_and_upgrade(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from crucible_telemetry.storage.schema import EVENTS_SCHEMA, STANDARD_KEYS

    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    exp = hub.start_experiment("formats", bind=False)
    hub.emit("crucible_train.batch.stop", {"loss": 0.5, "accuracy": 0.9}, {"experiment_id": exp.id})
    hub.emit("req_llm.request.stop", {"cost_usd": 0.01, "duration": 5.0}, {"experiment_id": exp.id})
    hub.flush()
    folder = hub.events_writer.folder(exp.id)
    (new,) = folder.glob("*.parquet")
    old_table = pq.read_table(new).drop_columns(list(STANDARD_KEYS))  # a file as the first format wrote it
    pq.write_table(old_table, folder / "oldhost-1-00aa00aa_0000000001_0000000001_1700000000000.parquet")
    con = hub.connect()
    got = con.execute(
        "SELECT event, loss, accuracy, cost_usd, measurements['loss'] FROM events ORDER BY event, pid"
    ).fetchall()
    assert got.count(("crucible_train.batch.stop", 0.5, 0.9, None, 0.5)) == 2  # one per file, columns alike
    assert got.count(("req_llm.request.stop", None, None, 0.01, None)) == 2
    assert con.execute("SELECT count(*) FROM events_of([?])", [exp.id]).fetchone() == (4,)
    # ct.store reads a run's files directly unless one has the first format (then through events_of):
    # the same rows, columns and order either way
    before = hub.store.query(exp.id)
    assert hub.store.count(exp.id) == 4 and len(hub.store.query_window(exp.id, ct.LastN(3))) == 3
    assert [r["loss"] for r in before].count(0.5) == 2
    hub.stop_experiment(exp.id)  # the merge upgrades the old file's rows to this release's columns
    after = hub.store.query(exp.id)
    key = ["event", "loss", "accuracy", "cost_usd", "measurements", "metadata", "tags", "experiment_id"]
    assert sorted(([r[k] for k in key] for r in after), key=repr) == sorted(
        ([r[k] for k in key] for r in before), key=repr
    )
    assert list(after[0]) == list(before[0])  # the same columns, in the same order
    assert hub.store.count(exp.id) == 4 and len(hub.store.query(exp.id, event="req_llm.*", limit=1)) == 1
    (merged,) = [p for p in segments.live_files(folder)]
    assert merged.name.endswith(".v2.parquet") and pq.read_schema(merged).names == EVENTS_SCHEMA.names
    assert pq.read_table(merged, columns=["loss"]).column("loss").to_pylist().count(0.5) == 2
    assert con.execute("SELECT count(*), count(loss) FROM events").fetchone() == (4, 2)
    hub.close()


def test_non_final_merges_run_on_the_merger_thread_never_inside_a_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    exp = hub.start_experiment("bg", bind=False)
    threads: list[str] = []
    real = merge.merge_folder

    def spy(folder: Path, **kw: object) -> object:
        threads.append(threading.current_thread().name)
        return real(folder, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(merge, "merge_folder", spy)
    for b in range(2 * segments.COMPACT_EVERY):
        for i in range(10):
            hub.emit("bg.e", {"i": b * 10 + i}, {"experiment_id": exp.id})
        hub.flush()
    assert hub.events_writer.wait_merges(timeout=60)
    assert threads and all(name.startswith("crucible-merge-") for name in threads), threads
    folder = hub.events_writer.folder(exp.id)
    assert len(segments.live_files(folder)) < segments.COMPACT_EVERY  # merged meanwhile
    con = hub.connect()
    assert (
        con.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (20 * segments.COMPACT_EVERY,) * 2
    )
    con.close()
    hub.stop_experiment(exp.id)  # the final merge runs in the caller's thread, after the merger's
    assert threads[-1] == threading.current_thread().name
    hub.close()


def test_two_merges_of_the_same_files_never_both_count(tmp_path: Path) -> None:
    """Made at once where the folder lock does not reach (two mounts of one network filesystem): the
    newer merge counts, the other is hidden, and what only it covered is read from its own files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    exp = hub.start_experiment("overlap", bind=False)
    for b in range(4):
        for i in range(10):
            hub.emit("o.e", {"i": b * 10 + i}, {"experiment_id": exp.id})
        hub.flush()
    folder = hub.events_writer.folder(exp.id)
    a, b, c, d = sorted(p.name for p in folder.glob("*.parquet"))

    def merged(names: list[str]) -> Path:
        table = pa.concat_tables([pq.read_table(folder / n, partitioning=None) for n in names])
        return merge._write_merge(folder, table, names, "events")

    first = merged([a, b, c])
    _tick()
    second = merged([b, c, d])
    view = listing.resolve(folder, os.listdir(folder))
    assert view.live == tuple(sorted([a, second.name])) and view.merges == (second.name,)
    assert first.name in view.hidden
    con = hub.connect()
    assert con.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (40, 40)
    assert con.execute("SELECT sum(events) FROM runs").fetchone() == (40,)
    con.close()
    hub.close()
