"""Issue 12, case 3: events emitted in forked DataLoader and multiprocessing workers are stored."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

import crucible_telemetry as ct

from .._requires import requires_plugin


class _Emitting:
    """A dataset whose every item emits one event from the worker that loads it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        ct.emit("worker.item", {"i": i}, {"worker_pid": os.getpid()})
        return i


def _count(hub: ct.Telemetry, exp_id: str) -> tuple[int, int, set[int]]:
    con = hub.connect()
    n, distinct = con.execute(
        "SELECT count(*), count(DISTINCT measurements['i']) FROM events "
        "WHERE experiment_id = ? AND event = 'worker.item'",
        [exp_id],
    ).fetchone()
    pids = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT pid FROM events WHERE experiment_id = ? AND event = 'worker.item'", [exp_id]
        ).fetchall()
    }
    return n, distinct, pids


@requires_plugin("torch")
@pytest.mark.parametrize("persistent", [False, True], ids=["fresh", "persistent"])
def test_a_fast_dataloader_epoch_stores_every_worker_event(hub: ct.Telemetry, persistent: bool) -> None:
    import torch

    exp = hub.start_experiment("workers")
    loader = torch.utils.data.DataLoader(
        _Emitting(64), batch_size=4, num_workers=2, multiprocessing_context="fork", persistent_workers=persistent
    )
    epochs = 2 if persistent else 1
    for _ in range(epochs):
        assert sorted(int(x) for b in loader for x in b) == list(range(64))
    del loader  # persistent workers end here
    n, distinct, pids = _count(hub, exp.id)
    assert (n, distinct) == (64 * epochs, 64)
    assert len(pids) == 2 and os.getpid() not in pids  # stamped with each child's pid


def _mp_child(i: int) -> int:
    ct.emit("worker.item", {"i": i})
    return i


def test_a_multiprocessing_fork_pool_stores_every_event(hub: ct.Telemetry) -> None:
    exp = hub.start_experiment("pool")
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(_mp_child, range(50)) == list(range(50))
    n, distinct, _ = _count(hub, exp.id)
    assert (n, distinct) == (50, 50)


def test_a_plain_fork_after_a_query_stores_the_childs_events_and_never_hangs(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("plain-fork")
    ct.emit("fork.parent", {"i": 0})
    assert ct.store.count(exp.id) == 1  # the parent holds a DuckDB connection now
    pids = []
    for k in range(3):
        pid = os.fork()
        if pid == 0:  # the child: query (never hanging on the parent's connection), emit, then _exit at once
            try:
                n = ct.store.count(exp.id)
                for i in range(20):
                    ct.emit("fork.child", {"i": i, "k": k})
                os._exit(0 if n >= 1 else 3)  # no atexit runs: what the child buffered is flushed by then
            except BaseException:
                os._exit(4)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    rows = ct.store.query(exp.id, event="fork.child")
    assert len(rows) == 60
    assert {r["pid"] for r in rows} == set(pids)  # stored with the child's pid
