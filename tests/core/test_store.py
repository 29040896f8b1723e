"""The store: queries, windows, views, several writers, a reader during writes, SIGKILL, compaction."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import crucible_telemetry as ct
from crucible_telemetry.storage import segments

from ._workers import emit_forever, write_experiment

EVENT_COLUMNS = [
    "experiment_id",
    "event",
    "category",
    "ts",
    "mono_ns",
    "seq",
    "host",
    "pid",
    "rank",
    "local_rank",
    "node",
    "world_size",
    "epoch",
    "global_step",
    "batch",
    "duration",
    "measurements",
    "metadata",
    "tags",
    # the standard keys, also columns of their own (README, "The store and SQL")
    "loss",
    "accuracy",
    "learning_rate",
    "gradient_norm",
    "samples_per_second",
    "tokens_per_second",
    "ttft_ns",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cost_usd",
]


def test_views_have_the_documented_schema(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("schema")
    ct.emit("a.b", {"v": 1})
    ct.MetricsStore.record("duckdb", exp.id, "loss", 0.5, step=1)
    con = ct.connect()
    cols = {
        v: [r[0] for r in con.execute(f"DESCRIBE {v}").fetchall()] for v in ("events", "metrics", "experiments", "runs")
    }
    assert cols["events"] == EVENT_COLUMNS
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE events)").fetchall())
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE"
    assert types["measurements"] == "MAP(VARCHAR, DOUBLE)"
    assert types["rank"] == "INTEGER" and types["global_step"] == "BIGINT"
    assert cols["metrics"][:6] == ["run_id", "metric", "value", "step", "epoch", "kind"]
    assert {"experiment_id", "name", "hypothesis", "condition", "tags", "status", "started_at", "environment"} <= set(
        cols["experiments"]
    )
    assert {"events", "duration_s", "metric_rows", "exceptions"} <= set(cols["runs"])


def test_views_work_on_an_empty_store(hub: ct.Telemetry) -> None:
    con = ct.connect()
    for v in ("events", "metrics", "experiments", "runs"):
        assert con.execute(f"SELECT count(*) FROM {v}").fetchone() == (0,)


def test_query_filters_are_bound_parameters(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("q", tags=["x'); DROP TABLE events; --"])
    for i in range(10):
        ct.emit("crucible_train.batch.stop", {"loss": 10 - i, "global_step": i}, {"epoch": i // 5, "model": "m'1"})
    ct.emit("crucible_train.epoch.stop", {"loss": 1.0}, {"epoch": 0})
    assert len(ct.store.query(exp.id, event="crucible_train.batch.stop")) == 10
    assert len(ct.store.query(exp.id, event="crucible_train.*")) == 11
    assert [r["global_step"] for r in ct.store.query(exp.id, where={"epoch": 1, "global_step": (">=", 7)})] == [7, 8, 9]
    assert len(ct.store.query(exp.id, where={"metadata.model": "m'1"})) == 10
    assert len(ct.store.query(exp.id, where={"measurements.loss": [10.0, 9.0]})) == 2
    assert len(ct.store.query(exp.id, limit=3)) == 3
    assert ct.store.get_all(exp.id)[0]["tags"] == ["x'); DROP TABLE events; --"]
    with pytest.raises(ct.InvalidArgumentError, match="where"):
        ct.store.query(exp.id, where={"1=1; --": 1})
    with pytest.raises(ct.InvalidArgumentError, match="limit"):
        ct.store.query(exp.id, limit=-1)
    with pytest.raises(ct.UnknownExperimentError, match="experiment_id"):
        ct.store.query("exp-missing")


def test_query_window_last_lastn_and_half_open_range(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("win")
    for i in range(20):
        ct.emit("w.e", {"i": i})
    rows = ct.store.get_all(exp.id)
    assert [r["measurements"]["i"] for r in ct.store.query_window(exp.id, ct.LastN(5))] == [15, 16, 17, 18, 19]
    assert len(ct.store.query_window(exp.id, ct.Last(minutes=5))) == 20
    assert len(ct.store.query_window(exp.id, ct.Last(seconds=5), filter="w.e")) == 20
    assert ct.store.query_window(exp.id, ct.Last(hours=1), filter="other.event") == []
    t5, t10 = rows[5]["ts"], rows[10]["ts"]
    got = ct.store.query_window(exp.id, ct.Range(t5, t10))
    assert all(t5 <= r["ts"] < t10 for r in got)
    assert rows[10]["seq"] not in {r["seq"] for r in got} or rows[10]["ts"] == rows[9]["ts"]
    assert rows[5]["seq"] in {r["seq"] for r in got}
    future = datetime.now(UTC) + timedelta(hours=1)
    assert ct.store.query_window(exp.id, ct.Range(future, future + timedelta(seconds=1))) == []


def test_malformed_windows_raise(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("bad-win")
    with pytest.raises(ct.InvalidWindowError, match="minutes"):
        ct.Last(minutes=-1)
    with pytest.raises(ct.InvalidWindowError):
        ct.Last()
    with pytest.raises(ct.InvalidWindowError, match="n"):
        ct.LastN(0)
    with pytest.raises(ct.InvalidWindowError, match="t_end"):
        ct.Range(10, 5)
    with pytest.raises(ct.InvalidWindowError, match="t_start"):
        ct.Range("yesterday", 5)
    with pytest.raises(ct.InvalidWindowError, match="window"):
        ct.store.query_window(exp.id, "last 5 minutes")
    with pytest.raises(ct.InvalidWindowError, match="step_us"):
        ct.store.windowed_metrics(exp.id, 1000, 0)


def test_windowed_metrics_match_numpy(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("windowed")
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=13, sigma=0.5, size=3000)
    for v in values:
        ct.emit("req_llm.request.stop", {"duration": float(v)})
    rows = ct.store.get_all(exp.id)
    ts = np.array([int(r["ts"].timestamp() * 1_000_000) for r in rows])
    vals = np.array([r["duration"] for r in rows])
    span = int(ts[-1] - ts[0]) + 1
    window, step = max(span // 3, 1), max(span // 6, 1)
    out = ct.store.windowed_metrics(exp.id, window, step)
    assert out, "no windows"
    assert sum(1 for w in out if w["count"]) >= 2
    for w in out:
        sel = vals[(ts >= w["window_start_us"]) & (ts < w["window_end_us"])]
        assert w["count"] == sel.size
        if sel.size:
            assert w["mean"] == pytest.approx(sel.mean(), rel=1e-9)
            assert (w["min"], w["max"]) == (sel.min(), sel.max())
            for q in (50, 95, 99):
                exact = np.quantile(sel, q / 100, method="inverted_cdf")
                assert w[f"p{q}"] == pytest.approx(exact, rel=0.0101)
    assert out[0]["window_start_us"] <= ts[0] < out[0]["window_end_us"]
    assert any(w["window_start_us"] <= ts[-1] < w["window_end_us"] for w in out)


@pytest.mark.slow
def test_two_writers_and_a_reader_at_once(hub: ct.Telemetry, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    outs = [tmp_path / f"id{i}" for i in range(2)]
    n = 20_000
    procs = [ctx.Process(target=write_experiment, args=(str(hub.home), f"w{i}", n, str(outs[i]))) for i in range(2)]
    for p in procs:
        p.start()
    reader = ct.Telemetry(hub.home)
    counts = []
    while any(p.is_alive() for p in procs):
        con = reader.connect()
        total, distinct = con.execute("SELECT count(*), count(DISTINCT (host, pid, seq)) FROM events").fetchone()
        assert total == distinct, "a row was read twice"
        counts.append(total)
        con.close()
        time.sleep(0.05)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert counts == sorted(counts), "the reader saw rows disappear"
    con = reader.connect()
    final = dict(
        con.execute("SELECT json_extract_string(metadata, '$.writer'), count(*) FROM events GROUP BY 1").fetchall()
    )
    assert final == {"w0": n, "w1": n}
    assert con.execute("SELECT count(*), count(DISTINCT (host, pid, seq)) FROM events").fetchone() == (2 * n, 2 * n)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_last_flush_interval(hub: ct.Telemetry, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=emit_forever, args=(str(hub.home), str(ready)))
    p.start()
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    exp_id = ready.read_text()
    time.sleep(1.5)
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    killed_ns = time.time_ns()
    p.join(10)
    rows = ct.store.query(exp_id)
    assert len(rows) > 100
    last_ns = max(r["measurements"]["t_ns"] for r in rows)
    # flush interval 0.2 s, plus one write's duration and scheduling slack on a loaded machine
    assert (killed_ns - last_ns) / 1e9 < 0.2 + 0.8
    assert len({r["seq"] for r in rows}) == len(rows)
    assert [r["measurements"]["i"] for r in rows] == list(range(len(rows)))


def test_compaction_bounds_files_and_never_duplicates(hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "COMPACT_EVERY", 4)
    exp = ct.start_experiment("compact")
    folder = hub.events_writer.folder(exp.id)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def read_loop() -> None:
        r = ct.Telemetry(hub.home)
        while not stop.is_set():
            con = r.connect()
            seen.append(con.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone())
            con.close()

    t = threading.Thread(target=read_loop)
    t.start()
    for batch in range(40):
        for i in range(50):
            ct.emit("c.e", {"i": batch * 50 + i})
        hub.flush()
    assert hub.events_writer.wait_merges(timeout=60)  # the merges run on the merger's thread
    stop.set()
    t.join()
    assert all(total == distinct for total, distinct in seen)
    assert [total for total, _ in seen] == sorted(total for total, _ in seen), "rows disappeared"
    live = segments.live_files(folder)
    assert len(live) <= 4  # one merge and the segments written since
    assert len(list(folder.glob("*.parquet"))) > len(live)  # superseded files wait out their grace period
    assert hub.events_writer.collect_garbage(grace=0) > 0
    assert len(list(folder.glob("*.parquet"))) == len(live)
    ct.stop_experiment(exp.id)
    hub.events_writer.collect_garbage(grace=0)
    assert len(list(folder.glob("*.parquet"))) == 1  # a finished run is one file
    assert [r["measurements"]["i"] for r in ct.store.get_all(exp.id)] == list(range(2000))


def test_a_store_query_sees_its_own_writes(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("own-writes")
    ct.emit("a.b", {"v": 1})
    assert ct.store.count(exp.id) == 1
    ct.emit("a.b", {"v": 2})
    assert ct.store.count(exp.id) == 2


def test_runs_view_summarises_experiments(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("runs", condition="control")
    for i in range(5):
        ct.emit("crucible_train.batch.stop", {"loss": 1.0, "global_step": i}, {"epoch": 0})
    ct.emit("req_llm.request.exception", {"duration": 1.0}, {"kind": "Timeout"})
    ct.stop_experiment(exp.id)
    con = ct.connect()
    row = con.execute(
        "SELECT name, condition, status, events, exceptions, max_global_step, duration_s > 0 FROM runs"
    ).fetchone()
    assert row == ("runs", "control", "stopped", 6, 1, 4, True)


def test_sql_rows_with_timestamps_fetch_as_python_datetimes(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("tz")
    ct.emit("a.b", {"v": 1})
    con = ct.connect()
    ((ts, started),) = con.execute(
        "SELECT e.ts, x.started_at FROM events e JOIN experiments x USING (experiment_id)"
    ).fetchall()
    assert ts.tzinfo is not None and started.tzinfo is not None
    assert ct.store.execute("SELECT ts FROM events WHERE experiment_id = ?", [exp.id]).fetchone()[0] == ts


def test_two_hubs_in_one_process_on_one_home_keep_all_rows(hub: ct.Telemetry) -> None:
    other = ct.Telemetry(hub.home)
    a = hub.start_experiment("a", bind=False)
    b = other.start_experiment("b", bind=False)
    for i in range(3):
        hub.emit("x.y", {"i": i}, {"experiment_id": a.id})
        hub.flush()
        other.emit("x.y", {"i": i}, {"experiment_id": b.id})
        other.flush()
    other.close()
    assert len(hub.store.get_all(a.id)) == 3
    assert len(hub.store.get_all(b.id)) == 3


def test_joining_a_stopped_experiment_reopens_it(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("resumable")
    ct.emit("x.y", {"i": 0})
    ct.stop_experiment(exp.id)
    again = ct.join_experiment(exp.id)
    assert again is exp and exp.status == "running" and exp.stopped_at is None
    ct.emit("x.y", {"i": 1})
    assert [r["measurements"]["i"] for r in ct.store.get_all(exp.id)] == [0, 1]
    assert ct.default(create=False) is hub


def test_a_merge_hides_what_it_covers_at_once_and_an_unfinished_one_is_ignored(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("merge")
    for i in range(3):
        ct.emit("m.e", {"i": i})
        hub.flush()
    folder = hub.events_writer.folder(exp.id)
    hub.events_writer.compact(exp.id)
    names = sorted(p.name for p in folder.glob("*.parquet"))
    assert len(names) == 4  # three segments and their merge
    (merged,) = [n for n in names if n.startswith("merge-")]
    assert [p.name for p in segments.live_files(folder)] == [merged]
    assert ct.store.count(exp.id) == 3
    # a merge whose manifest never landed (a crash between the two renames) is not read
    (folder / "merge-1-00ff00ff.parquet").write_bytes((folder / merged).read_bytes())
    assert ct.store.count(exp.id) == 3
    con = ct.connect()
    assert con.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (3, 3)
    # a manifest without its merge hides nothing
    (folder / "merge-2-00ee00ee.covers").write_text(merged + "\n")
    assert ct.store.count(exp.id) == 3


def test_windowed_metrics_of_a_signed_measurement(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("signed")
    values = [-5.0, -1.0, 0.0, 2.0, 8.0, float("nan")]
    for v in values:
        ct.emit("pnl.tick", {"delta": v})
    (w,) = ct.store.windowed_metrics(exp.id, 3_600_000_000, 3_600_000_000, event="pnl.tick", measurement="delta")
    assert (w["count"], w["min"], w["max"], w["mean"]) == (5, -5.0, 8.0, pytest.approx(0.8))
    assert w["p50"] == pytest.approx(0.0, abs=1e-12)
    assert w["p99"] == pytest.approx(8.0, rel=0.0101)


def test_readers_opening_a_new_store_at_once_do_not_trip_over_each_other(tmp_path: Path) -> None:
    """Many readers (``crucible`` commands, DDP ranks) open a fresh home together: each makes the
    schema files and catalog through temporary files of its own."""
    from crucible_telemetry.storage.views import connect

    errors: list[BaseException] = []
    for i in range(20):
        home = tmp_path / f"home{i}"
        start = threading.Barrier(6)

        def open_store(home: Path = home, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                con = connect(home)
                assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
                assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)
                con.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_snapshot_of_the_summaries_is_what_the_view_says_and_is_dropped_after(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h")
    exp = hub.start_experiment("snap", bind=False)
    for i in range(5):
        hub.emit("crucible_train.batch.stop", {"loss": 1.0 / (i + 1), "global_step": i}, {"experiment_id": exp.id})
    hub.stop_experiment(exp.id)
    view = sorted(hub.store.execute("SELECT * FROM summaries").fetchall(), key=repr)
    with hub.store.snapshot("summaries") as name:
        assert name != "summaries"
        hub.emit("crucible_train.batch.stop", {"loss": 9.0}, {"experiment_id": exp.id})
        hub.flush()  # a write after the snapshot: the snapshot keeps what the view said when it was made
        assert sorted(hub.store.execute(f"SELECT * FROM {name}").fetchall(), key=repr) == view
    with pytest.raises(Exception, match=name):  # dropped: the name is gone from the connection
        hub.store.execute(f"SELECT * FROM {name}")
    with pytest.raises(ct.InvalidArgumentError, match="view"), hub.store.snapshot("events"):
        pass
    hub.close()
