"""The ``postgres`` MetricsStore adapter against a real PostgreSQL server: round-trip, schema, failures."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from crucible_telemetry_postgres import (
    MIGRATIONS,
    PostgresMetrics,
    PostgresUnavailableError,
    applied,
    migrate,
)

import crucible_telemetry as ct

from .server import PgServer, free_port

CALLS: list[tuple[str, str, float, int | None, dict[str, Any] | None]] = [
    ("run-a", "loss", 2.5, 0, {"phase": "train", "lr": 0.1, "tags": ["x", "y"]}),
    ("run-a", "loss", 1.25, 1, None),
    ("run-a", "acc", 0.5, None, {"nested": {"k": 1}}),
    ("run-b", "loss", 9.0, 0, {}),
    ("run-a", "grad_norm", math.inf, 2, None),
    ("run-a", "grad_norm", -math.inf, 3, None),
    ("run-a", "weird", math.nan, 4, {"note": "nan kept"}),
    ("run-a", "loss", 3, 5, {"int value": True}),
]


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their timestamps, values by repr (so NaN equals NaN)."""
    return [{**{k: v for k, v in r.items() if k != "timestamp"}, "value": repr(r["value"])} for r in rows]


def test_round_trip_equals_the_jsonl_adapter(dsn: str, tmp_path: Path) -> None:
    pg = ("postgres", {"dsn": dsn})
    jl = ("jsonl", {"path": str(tmp_path / "m.jsonl")})
    for run_id, metric, value, step, metadata in CALLS:
        for adapter in (pg, jl):
            ct.MetricsStore.record(adapter, run_id, metric, value, step=step, metadata=metadata)
    for adapter in (pg, jl):
        ct.MetricsStore.flush(adapter, "run-a")
    for run_id in ("run-a", "run-b", "run-none"):
        got, want = ct.MetricsStore.read(pg, run_id), ct.MetricsStore.read(jl, run_id)
        assert _comparable(got) == _comparable(want), run_id
        stamps = [datetime.fromisoformat(r["timestamp"]) for r in got]
        assert all(r["timestamp"].endswith("Z") for r in got) and stamps == sorted(stamps)
    assert len(ct.MetricsStore.read(pg, "run-a")) == 7
    with psycopg.connect(dsn) as conn:  # the rows are in the documented table, as written
        assert conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE source = 'adapter') FROM crucible_metrics"
        ).fetchone() == (8, 8)


def test_the_migrations_run_once_in_order_and_are_recorded(dsn: str) -> None:
    first = PostgresMetrics(dsn)
    second = PostgresMetrics(dsn)  # two writers on one database: each migration still runs once
    try:
        for i, adapter in enumerate((first, second, first)):
            adapter.record("run", "loss", float(i), step=i)
            adapter.flush("run")
        with psycopg.connect(dsn) as conn:
            assert migrate(conn) == []  # nothing left to apply
            rows = applied(conn)
            assert [name for name, _ in rows] == [m.name for m in MIGRATIONS] == sorted(m.name for m in MIGRATIONS)
            n = conn.execute("SELECT count(*) FROM crucible_migrations").fetchone()[0]
            indexdef = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'crucible_metrics'").fetchall()
            has_timescale = conn.execute(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()[0]
        assert n == len(MIGRATIONS) == 3
        assert any("(run_id, metric, step)" in d for (d,) in indexdef), indexdef
        note = dict(rows)["0003_timescaledb_hypertable"]
        if has_timescale:  # said either way: a hypertable, or why not
            assert note == "hypertable on ts" or note.startswith("skipped: timescaledb is available"), note
        else:
            assert note == "skipped: the timescaledb extension is not available on this server", note
        assert [r["step"] for r in first.read("run")] == [0, 1, 2]
    finally:
        first.close()
        second.close()


def test_a_server_restart_in_the_middle_of_a_run_loses_nothing(dsn: str, pg: PgServer) -> None:
    adapter = PostgresMetrics(dsn, flush_interval=0.05, retry_max=0.5, flush_timeout=60)
    try:
        for step in range(50):
            adapter.record("run", "loss", 1.0 / (step + 1), step=step)
        adapter.flush("run")
        pg.stop()
        t0 = time.monotonic()
        for step in range(50, 250):  # the training loop goes on: record never raises nor waits
            adapter.record("run", "loss", 1.0 / (step + 1), step=step, metadata={"while": "down"})
        assert time.monotonic() - t0 < 1.0
        deadline = time.monotonic() + 10
        while adapter.retries == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert adapter.retries >= 1 and adapter.last_error is not None
        pg.start()
        adapter.flush("run")
        rows = adapter.read("run")
        assert [r["step"] for r in rows] == list(range(250))
        assert [r["value"] for r in rows] == [1.0 / (s + 1) for s in range(250)]
        assert adapter.dropped == 0 and adapter.written == 250 and adapter.last_error is None
    finally:
        adapter.close()


def test_a_wrong_dsn_is_one_clear_error_at_the_boundary_never_in_record() -> None:
    with pytest.raises(ct.InvalidArgumentError, match="dsn"):
        PostgresMetrics("this is not a dsn")
    with pytest.raises(ct.InvalidArgumentError, match="dsn"):
        PostgresMetrics("")
    port = free_port()  # nothing listens there
    adapter = PostgresMetrics(
        f"host=127.0.0.1 port={port} user=u password=hunter2 dbname=d connect_timeout=1",
        flush_timeout=1.0,
        retry_max=0.2,
        max_buffer=10,
    )
    try:
        for step in range(15):
            adapter.record("run", "loss", 0.5, step=step)  # never raises for the server's sake
        assert adapter.dropped == 5  # bounded, and counted
        with pytest.raises(PostgresUnavailableError) as info:
            adapter.flush("run")
        msg = str(info.value)
        assert f"127.0.0.1:{port}/d" in msg and "10 rows kept" in msg and "hunter2" not in msg
        assert isinstance(info.value, ct.CrucibleError)
        with pytest.raises(PostgresUnavailableError):
            adapter.read("run")
        assert adapter.retries >= 1
    finally:
        adapter.close(flush=False)  # nothing to flush to
    assert adapter.unwritten == 10 and not adapter._thread.is_alive()


def test_bad_arguments_raise_invalid_argument(dsn: str) -> None:
    pg = ("postgres", {"dsn": dsn})
    for args, name in [
        (("", "m", 1.0), "run_id"),
        (("r", "", 1.0), "metric"),
        (("r", "m", "1"), "value"),
        (("r", "m", True), "value"),
    ]:
        with pytest.raises(ct.InvalidArgumentError, match=name):
            ct.MetricsStore.record(pg, *args)
    with pytest.raises(ct.InvalidArgumentError, match="step"):
        ct.MetricsStore.record(pg, "r", "m", 1.0, step=1.5)
    with pytest.raises(ct.InvalidArgumentError, match="batch_size"):
        PostgresMetrics(dsn, batch_size=0)
    assert ct.MetricsStore.read(pg, "r") == []


def test_rows_buffered_at_exit_are_written(dsn: str) -> None:
    code = (
        "import crucible_telemetry as ct\n"
        f"pg = ('postgres', {{'dsn': {dsn!r}, 'flush_interval': 60.0}})\n"
        "for s in range(20):\n"
        "    ct.MetricsStore.record(pg, 'run-exit', 'loss', float(s), step=s)\n"
    )  # no flush: exit drains
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(dsn) as conn:
        steps = [s for (s,) in conn.execute("SELECT step FROM crucible_metrics WHERE run_id = 'run-exit' ORDER BY id")]
    assert steps == list(range(20))
