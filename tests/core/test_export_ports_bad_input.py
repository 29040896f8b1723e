"""Export (csv, jsonl, parquet), the MetricsStore port, and bad input at every boundary."""

from __future__ import annotations

import csv
import json
import logging
import math
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

import crucible_telemetry as ct
from crucible_telemetry import plugins
from crucible_telemetry.hookspecs import hookimpl


def _sample(n: int = 50) -> str:
    exp = ct.start_experiment("export", tags=["t"])
    for i in range(n):
        ct.emit(
            "crucible_train.batch.stop", {"loss": 1.0 / (i + 1), "global_step": i}, {"epoch": i // 10, "note": "ok"}
        )
    ct.emit("weird.values", {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
    return exp.id


def test_export_three_formats_round_trip(hub: ct.Telemetry, tmp_path: Path) -> None:
    exp_id = _sample()
    p = ct.export(exp_id, "parquet", tmp_path / "e.parquet")
    t = pq.read_table(p)
    assert t.num_rows == 51
    assert t.column("global_step").to_pylist()[:3] == [0, 1, 2]
    weird = dict(
        t.filter(t.column("event").to_numpy(zero_copy_only=False) == "weird.values")
        .column("measurements")
        .to_pylist()[0]
    )
    assert math.isnan(weird["nan"]) and weird["inf"] == math.inf and weird["ninf"] == -math.inf

    p = ct.export(exp_id, "jsonl", tmp_path / "e.jsonl")
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert len(lines) == 51
    assert lines[0]["metadata"] == {"epoch": 0, "note": "ok"}
    assert lines[0]["experiment_id"] == exp_id
    assert math.isnan(lines[-1]["measurements"]["nan"]) and lines[-1]["measurements"]["inf"] == math.inf

    p = ct.export(exp_id, "csv", tmp_path / "e.csv")
    rows = list(csv.DictReader(p.open()))
    assert len(rows) == 51 and rows[5]["global_step"] == "5"
    assert json.loads(rows[0]["metadata"])["note"] == "ok"

    default = ct.export(exp_id, "csv")
    assert default == hub.home / "exports" / f"{exp_id}.csv" and default.exists()


def test_export_refuses_to_overwrite_and_unknown_format(hub: ct.Telemetry, tmp_path: Path) -> None:
    exp_id = _sample(5)
    target = tmp_path / "x.csv"
    target.write_text("precious")
    with pytest.raises(ct.ExportExistsError, match="overwrite=True"):
        ct.export(exp_id, "csv", target)
    assert target.read_text() == "precious"
    ct.export(exp_id, "csv", target, overwrite=True)
    assert target.read_text().startswith("experiment_id,")
    with pytest.raises(ct.InvalidArgumentError, match="fmt"):
        ct.export(exp_id, "xlsx", tmp_path / "x.xlsx")
    with pytest.raises(ct.UnknownExperimentError):
        ct.export("exp-nope", "csv", tmp_path / "y.csv")


@pytest.mark.slow
def test_export_memory_is_flat_in_the_number_of_events(tmp_path: Path) -> None:
    record = textwrap.dedent("""
        import sys
        import crucible_telemetry as ct
        hub = ct.Telemetry(sys.argv[1])
        exp = hub.start_experiment("big")
        for i in range(int(sys.argv[2])):
            hub.emit("crucible_train.batch.stop", {"loss": 0.5, "global_step": i}, {"epoch": i // 1000})
            if i % 20000 == 0:
                hub.flush()
        hub.stop_experiment(exp.id)
        hub.close()
        print(exp.id)
    """)
    export = textwrap.dedent("""
        import resource, sys
        import crucible_telemetry as ct
        from crucible_telemetry.storage.export import export
        hub = ct.Telemetry(sys.argv[1])
        hub.store.count(sys.argv[2])  # connections, views and imports warm
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        export(hub, sys.argv[2], sys.argv[3], sys.argv[1] + "/out." + sys.argv[3])
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    for fmt in ("jsonl", "parquet"):
        growth = {}
        for n in (150_000, 600_000):
            home = str(tmp_path / f"h{n}")
            if not Path(home).exists():
                exp_id = subprocess.run(
                    [sys.executable, "-c", record, home, str(n)], capture_output=True, text=True, check=True
                ).stdout.strip()
                (tmp_path / f"id{n}").write_text(exp_id)
            exp_id = (tmp_path / f"id{n}").read_text()
            out = subprocess.run(
                [sys.executable, "-c", export, home, exp_id, fmt], capture_output=True, text=True, check=True
            )
            growth[n] = int(out.stdout.strip().splitlines()[-1])  # KiB
        # ten times the events must not cost ten times the memory: streamed in slices, not materialised
        assert growth[600_000] < growth[150_000] + 30_000, (fmt, growth)


def test_nonnumeric_measurement_moves_to_metadata_with_one_warning(
    hub: ct.Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    exp = ct.start_experiment("bad")
    with caplog.at_level(logging.WARNING, logger="crucible_telemetry"):
        ct.emit("x.y", {"loss": 0.5, "label": "cat"}, {"k": 1})
        ct.emit("x.y", {"loss": 0.6, "label": "dog"})
        hub.flush()
    rows = ct.store.get_all(exp.id)
    assert [r["measurements"] for r in rows] == [{"loss": 0.5}, {"loss": 0.6}]
    assert [r["metadata"] for r in rows] == [{"k": 1, "label": "cat"}, {"label": "dog"}]
    assert sum("'label'" in r.getMessage() for r in caplog.records) == 1


def test_unjsonable_metadata_is_stored_as_repr(hub: ct.Telemetry) -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<Thing 7>"

    exp = ct.start_experiment("repr")
    ct.emit("x.y", {"v": 1}, {"obj": Thing(), "s": {1, 2}, 3: "int key"})
    md = ct.store.get_all(exp.id)[0]["metadata"]
    assert md["obj"] == "<Thing 7>"
    assert md["3"] == "int key"


def test_jsonl_metrics_adapter_writes_the_seed_line_format(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    adapter = (ct.JSONLMetrics, {"path": str(path)})
    ct.MetricsStore.record(adapter, "run-1", "loss", 0.25, step=3, metadata={"split": "train"})
    ct.MetricsStore.record(adapter, "run-1", "loss", float("nan"), step=4)
    ct.MetricsStore.record(adapter, "run-2", "acc", float("inf"), step=1)
    ct.MetricsStore.flush(adapter, "run-1")
    line = json.loads(path.read_text().splitlines()[0])
    assert list(line) == ["run_id", "metric", "value", "step", "timestamp", "metadata"]
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]
    rows = ct.MetricsStore.read(adapter, "run-1")
    assert [r["step"] for r in rows] == [3, 4] and math.isnan(rows[1]["value"])
    assert ct.MetricsStore.read(adapter, "run-2")[0]["value"] == math.inf


def test_duckdb_metrics_adapter(hub: ct.Telemetry) -> None:
    ct.MetricsStore.record("duckdb", "run-a", "loss", 0.5, step=1, metadata={"epoch": 0})
    ct.MetricsStore.record((ct.DuckDBMetrics, {}), "run-a", "loss", 0.25, step=2)
    rows = ct.MetricsStore.read("duckdb", "run-a")
    assert [(r["metric"], r["value"], r["step"]) for r in rows] == [("loss", 0.5, 1), ("loss", 0.25, 2)]
    assert rows[0]["epoch"] == 0
    con = ct.connect()
    assert con.execute("SELECT count(*) FROM metrics WHERE run_id = 'run-a'").fetchone() == (2,)


def test_duckdb_adapter_follows_the_default_hub(hub: ct.Telemetry, tmp_path: Path) -> None:
    ct.MetricsStore.record("duckdb", "run-a", "loss", 0.5, step=1)  # the shared "duckdb" instance is made here
    moved = ct.Telemetry(tmp_path / "moved", flush_interval=0.2)
    ct.set_default(moved)  # a new default hub, as ct.configure makes
    try:
        ct.MetricsStore.record("duckdb", "run-b", "loss", 0.25, step=1)
        assert [r["value"] for r in ct.MetricsStore.read("duckdb", "run-b")] == [0.25]
        assert moved.connect().execute("SELECT count(*) FROM metrics WHERE run_id = 'run-b'").fetchone() == (1,)
    finally:
        ct.set_default(hub)
        moved.close()
    assert hub.connect().execute("SELECT count(*) FROM metrics WHERE run_id = 'run-b'").fetchone() == (0,)


def test_metrics_store_bad_input(hub: ct.Telemetry, tmp_path: Path) -> None:
    adapter = (ct.JSONLMetrics, {"path": str(tmp_path / "m.jsonl")})
    ct.MetricsStore.record(adapter, "r", "ok", 1.0)
    with pytest.raises(ct.InvalidArgumentError, match=r"^value"):
        ct.MetricsStore.record(adapter, "r", "loss", "high")
    with pytest.raises(ct.InvalidArgumentError, match=r"^metric"):
        ct.MetricsStore.record(adapter, "r", "", 1.0)
    with pytest.raises(ct.InvalidArgumentError, match=r"^run_id"):
        ct.MetricsStore.record("duckdb", "../x", "loss", 1.0)
    with pytest.raises(ct.InvalidArgumentError, match=r"^adapter"):
        ct.MetricsStore.record("nope", "r", "loss", 1.0)
    assert [r["metric"] for r in ct.MetricsStore.read(adapter, "r")] == ["ok"]  # nothing lost


class _MemoryAdapter:
    rows: list[tuple[Any, ...]] = []

    def record(self, run_id: str, metric: str, value: float, step: int | None = None, metadata: Any = None) -> None:
        self.rows.append((run_id, metric, value, step))

    def flush(self, run_id: str) -> None:
        pass

    def read(self, run_id: str) -> list[dict[str, Any]]:
        return [{"metric": m, "value": v} for r, m, v, _ in self.rows if r == run_id]


class _AdapterPlugin:
    @hookimpl
    def register_metrics_adapters(self, register: Callable[..., Any]) -> None:
        register("memory", _MemoryAdapter)


def test_third_party_adapter_registers_through_the_hook() -> None:
    plugins.register_plugin(_AdapterPlugin(), name="memory-adapter")
    try:
        ct.MetricsStore.record("memory", "r1", "loss", 2.0, step=1)
        assert ct.MetricsStore.read("memory", "r1") == [{"metric": "loss", "value": 2.0}]
    finally:
        plugins.get_plugin_manager().unregister(name="memory-adapter")


def test_store_files_are_plain_parquet_any_engine_reads(hub: ct.Telemetry) -> None:
    exp_id = _sample(5)
    hub.flush()
    files = list((hub.home / "events" / f"experiment_id={exp_id}").glob("*.parquet"))
    assert files
    n = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [[str(f) for f in files]]).fetchall()
    assert n == [(6,)]
    assert pq.read_table(files[0]).num_rows == 6


def test_a_full_buffer_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600, buffer_limit=10)
    try:
        exp = hub.start_experiment("bounded", bind=False)
        for i in range(25):
            hub.emit("x.y", {"i": i}, {"experiment_id": exp.id})
        assert hub.dropped_overflow == 15
        assert [r["measurements"]["i"] for r in hub.store.get_all(exp.id)] == list(range(10))
    finally:
        hub.close()
