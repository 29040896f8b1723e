"""Experiments: lifecycle, enrichment, environment, pause, and isolation across threads, tasks, processes."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import crucible_telemetry as ct

from ._workers import write_experiment, write_into


def test_lifecycle_get_and_list(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment(
        "lr-sweep", hypothesis="lower lr converges", condition="treatment", tags=["sweep", "lr"], metadata={"lr": 1e-3}
    )
    assert exp.status == "running"
    assert ct.current_experiment() is exp
    ct.pause_experiment(exp.id)
    assert ct.is_paused(exp.id)
    ct.resume_experiment(exp.id)
    assert not ct.is_paused(exp.id)
    ct.stop_experiment(exp.id)
    assert exp.status == "stopped"
    assert exp.stopped_at is not None
    stored = ct.Telemetry(hub.home).get_experiment(exp.id)  # read back from disk by another hub
    assert (stored.name, stored.hypothesis, stored.condition, stored.tags) == (
        "lr-sweep",
        "lower lr converges",
        "treatment",
        ("sweep", "lr"),
    )
    assert stored.metadata == {"lr": 1e-3}
    assert stored.status == "stopped"
    assert [e.id for e in ct.list_experiments()] == [exp.id]


def test_context_manager_binds_and_stops(hub: ct.Telemetry) -> None:
    with ct.experiment("ctx", condition="control") as exp:
        ct.emit("a.b", {"v": 1})
        assert ct.current_experiment() is exp
    assert exp.status == "stopped"
    assert ct.current_experiment() is None
    ct.emit("a.b", {"v": 2})  # no live experiment: not stored
    assert [r["measurements"]["v"] for r in ct.store.get_all(exp.id)] == [1.0]


def test_bad_arguments_raise_clear_errors(hub: ct.Telemetry) -> None:
    with pytest.raises(ct.InvalidArgumentError, match=r"^name"):
        ct.start_experiment("")
    with pytest.raises(ct.InvalidArgumentError, match=r"^tags"):
        ct.start_experiment("x", tags=[1])  # type: ignore[list-item]
    with pytest.raises(ct.InvalidArgumentError, match=r"^condition"):
        ct.start_experiment("x", condition=3)  # type: ignore[arg-type]
    with pytest.raises(ct.InvalidArgumentError, match=r"^experiment_id"):
        ct.start_experiment("x", experiment_id="../../etc")
    with pytest.raises(ct.UnknownExperimentError, match="experiment_id"):
        ct.stop_experiment("exp-nope")
    with pytest.raises(ct.UnknownExperimentError):
        ct.get_experiment("exp-nope")
    with pytest.raises(ct.CrucibleError):
        ct.pause_experiment("exp-nope")


def test_every_event_is_enriched(hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    before = datetime.now(UTC)
    exp = ct.start_experiment("enrich", tags=["a", "b"])
    for i in range(3):
        ct.emit("crucible_train.batch.stop", {"loss": 1.0 / (i + 1), "global_step": i}, {"epoch": 0, "batch": i})
    rows = ct.store.get_all(exp.id)
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert len({r["seq"] for r in rows}) == 3
    for i, r in enumerate(rows):
        assert r["experiment_id"] == exp.id
        assert before - timedelta(seconds=1) <= r["ts"] <= datetime.now(UTC)
        assert r["ts"].tzinfo is not None
        assert r["mono_ns"] > 0
        assert (r["host"], r["pid"]) == (socket.gethostname(), os.getpid())
        assert (r["rank"], r["local_rank"], r["node"], r["world_size"]) == (3, 1, 1, 4)
        assert r["tags"] == ["a", "b"]
        assert (r["epoch"], r["global_step"], r["batch"]) == (0, i, i)
    assert rows[0]["mono_ns"] < rows[1]["mono_ns"] < rows[2]["mono_ns"]


def test_environment_is_recorded_once_with_git_commit(hub: ct.Telemetry, git_repo: str) -> None:
    head = git_repo
    exp = ct.start_experiment("env")
    env = ct.Telemetry(hub.home).get_experiment(exp.id).environment
    assert env["python"] == sys.version.split()[0]
    assert env["hostname"] == socket.gethostname()
    assert env["git"]["commit"] == head
    assert "duckdb" in env["packages"] and "crucible-telemetry" in env["packages"]


def test_paused_events_are_dropped_counted_and_streaming_kept(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("pause")
    ct.emit("a.b", {"v": 1.0})
    ct.emit("a.b", {"v": 3.0})
    before = ct.streaming.get_metrics(exp.id)
    ct.pause_experiment(exp.id)
    for _ in range(5):
        ct.emit("a.b", {"v": 100.0})
    ct.resume_experiment(exp.id)
    ct.emit("a.b", {"v": 5.0})
    m = ct.streaming.get_metrics(exp.id)
    assert before["events"]["a.b"]["measurements"]["v"]["count"] == 2
    assert m["events"]["a.b"]["measurements"]["v"]["count"] == 3
    assert m["events"]["a.b"]["measurements"]["v"]["mean"] == pytest.approx(3.0)
    assert m["dropped_paused"] == 5
    assert [r["measurements"]["v"] for r in ct.store.get_all(exp.id)] == [1.0, 3.0, 5.0]


def test_experiment_object_pauses_resumes_and_stops_itself(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("methods")
    exp.pause()
    assert exp.paused and exp.status == "paused" and ct.is_paused(exp.id)
    ct.emit("a.b", {"v": 1.0})
    exp.resume()
    assert not exp.paused and exp.status == "running"
    ct.emit("a.b", {"v": 2.0})
    assert exp.stop() is exp and exp.status == "stopped"
    assert exp.dropped_paused == 1
    assert [r["measurements"]["v"] for r in ct.store.get_all(exp.id)] == [2.0]


def test_threads_with_their_own_experiments_are_isolated(hub: ct.Telemetry) -> None:
    ids: dict[str, str] = {}
    barrier = threading.Barrier(4)

    def work(name: str) -> None:
        exp = ct.start_experiment(name)
        ids[name] = exp.id
        barrier.wait()
        for i in range(200):
            ct.emit("w.step", {"i": i}, {"who": name})
        barrier.wait()

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, exp_id in ids.items():
        rows = ct.store.get_all(exp_id)
        assert len(rows) == 200
        assert {r["metadata"]["who"] for r in rows} == {name}


async def test_asyncio_tasks_with_their_own_experiments_are_isolated(hub: ct.Telemetry) -> None:
    async def work(name: str) -> str:
        with ct.experiment(name) as exp:
            for i in range(50):
                ct.emit("task.step", {"i": i}, {"who": name})
                await asyncio.sleep(0)
            return exp.id

    ids = await asyncio.gather(*(work(f"task{i}") for i in range(5)))
    for i, exp_id in enumerate(ids):
        rows = ct.store.get_all(exp_id)
        assert len(rows) == 50
        assert {r["metadata"]["who"] for r in rows} == {f"task{i}"}


def test_explicit_experiment_id_in_metadata_wins(hub: ct.Telemetry) -> None:
    a = ct.start_experiment("a")
    b = ct.start_experiment("b", bind=False)
    ct.emit("x.y", {"v": 1}, {"experiment_id": b.id})
    ct.emit("x.y", {"v": 2})
    assert [r["measurements"]["v"] for r in ct.store.get_all(b.id)] == [1.0]
    assert [r["measurements"]["v"] for r in ct.store.get_all(a.id)] == [2.0]


def test_thread_without_copied_context_falls_back_to_latest_live_experiment(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("fallback")
    t = threading.Thread(target=lambda: ct.emit("bg.work", {"v": 1}))
    t.start()
    t.join()
    assert [r["event"] for r in ct.store.get_all(exp.id)] == ["bg.work"]


@pytest.mark.slow
def test_processes_write_their_own_experiments_into_one_store(hub: ct.Telemetry, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    outs = [tmp_path / f"id{i}" for i in range(2)]
    procs = [ctx.Process(target=write_experiment, args=(str(hub.home), f"p{i}", 3000, str(outs[i]))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for i, out in enumerate(outs):
        rows = ct.store.query(out.read_text(), where={"metadata.writer": f"p{i}"})
        assert len(rows) == 3000
        assert len(ct.store.get_all(out.read_text())) == 3000


@pytest.mark.slow
def test_ranks_join_one_experiment_from_other_processes(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("ddp-like")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=write_into, args=(str(hub.home), exp.id, 500, r)) for r in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    res = ct.store.execute(
        "SELECT rank, count(*) FROM events WHERE experiment_id = ? GROUP BY rank ORDER BY rank", [exp.id]
    )
    assert res.fetchall() == [(1, 500), (2, 500)]
    assert len(ct.list_experiments()) == 1


def test_environment_never_records_secrets_from_argv() -> None:
    from crucible_telemetry.environment import scrub_argv

    argv = [
        "train.py",
        "--api-key",
        "sk-live-123",
        "--token=abc",
        "--lr",
        "0.1",
        "sk-proj-xyz",
        "--hf_token",
        "hf_abcdef",
        "data/file.csv",
    ]
    assert scrub_argv(argv) == [
        "train.py",
        "--api-key",
        "***",
        "--token=***",
        "--lr",
        "0.1",
        "***",
        "--hf_token",
        "***",
        "data/file.csv",
    ]
