"""Store benchmark at scale: many runs, one-run queries, the runs table, a scan, ingest and merge.

Run with ``nox -s bench`` (or ``python bench/bench_store.py``). The store is generated here:
``CRUCIBLE_BENCH_RUNS`` experiments (default 10,000) holding ``CRUCIBLE_BENCH_EVENTS`` events
(default 100,000,000; a few large runs with 4 ranks, many small ones), each run merged as our
writer leaves a finished run, plus a 100-run store for the growth ratio. ``CRUCIBLE_BENCH_DIR``
keeps the generated stores between runs. Each figure is printed beside its target, and beside
DuckDB reading the same Parquet files directly in the same run: these machines are shared and
noisy, so read the ratios.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _bench import interleaved, report, timed

import crucible_telemetry as ct
from crucible_telemetry.experiment import Experiment
from crucible_telemetry.storage import merge
from crucible_telemetry.storage.records import write_record
from crucible_telemetry.storage.schema import FORMAT, METRICS_SCHEMA, with_standard_columns
from crucible_telemetry.storage.summaries import summarize_table

RUNS = int(os.environ.get("CRUCIBLE_BENCH_RUNS", "10000"))
EVENTS = int(os.environ.get("CRUCIBLE_BENCH_EVENTS", "100000000"))
LARGE = 8  # runs holding 60% of the events, 4 ranks each
METRICS = ("val_loss", "val_accuracy", "train_loss_epoch", "learning_rate", "grad_norm")


def _events(n: int, run: int, ranks: int, t0: datetime) -> pa.Table:
    rng = np.random.default_rng(run)
    i = np.arange(n, dtype=np.int64)
    llm = (i % 10) == 9
    ts = np.datetime64(t0.replace(tzinfo=None), "us") + (i * 1000).astype("timedelta64[us]")
    loss = (2.0 / (1 + i / max(n, 1) * 10) + rng.normal(0, 0.01, n)).astype(np.float64)
    keys = pa.array(np.where(llm, "tokens", "loss").tolist() * 1, pa.string())
    offsets = pa.array(np.arange(0, n + 1, dtype=np.int32))
    measurements = pa.MapArray.from_arrays(offsets, keys, pa.array(np.where(llm, 100.0, loss)))
    cols = {
        "event": pa.array(np.where(llm, "req_llm.request.stop", "crucible_train.batch.stop").tolist(), pa.string()),
        "category": pa.array(np.where(llm, "llm", "training").tolist(), pa.string()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "mono_ns": pa.array(i * 1_000_000),
        "seq": pa.array(i),
        "host": pa.array(["bench"] * n, pa.string()),
        "pid": pa.array(np.full(n, 1000 + run % 1000, dtype=np.int32)),
        "rank": pa.array((i % ranks).astype(np.int32)),
        "local_rank": pa.array((i % ranks).astype(np.int32)),
        "node": pa.array(np.zeros(n, dtype=np.int32)),
        "world_size": pa.array(np.full(n, ranks, dtype=np.int32)),
        "epoch": pa.array(i * 10 // max(n, 1)),
        "global_step": pa.array(i // ranks),
        "batch": pa.array(i % 100),
        "duration": pa.array(np.where(llm, rng.lognormal(17, 0.5, n), np.nan)),
        "measurements": measurements,
        "metadata": pa.array(["{}"] * n, pa.string()),
        "tags": pa.array([[]] * n, pa.list_(pa.string())),
    }
    t = pa.table(cols)
    dur = pc_where_nan_null(t.column("duration"))
    return with_standard_columns(t.set_column(t.schema.get_field_index("duration"), "duration", dur))


def pc_where_nan_null(col: Any) -> Any:
    import pyarrow.compute as pc

    return pc.if_else(pc.is_nan(col), pa.scalar(None, pa.float64()), col)


def _metrics(run: int, t0: datetime) -> pa.Table:
    rng = np.random.default_rng(run + 7)
    rows = {c: [] for c in METRICS_SCHEMA.names}  # type: ignore[var-annotated]
    for m in METRICS:
        for step in range(10):
            rows["metric"].append(m)
            rows["value"].append(float(rng.random()))
            rows["step"].append(step * 100)
            rows["epoch"].append(step)
            rows["kind"].append("value")
            rows["tags"].append([])
            rows["ts"].append(t0 + timedelta(seconds=step))
            rows["seq"].append(len(rows["seq"]))
            rows["host"].append("bench")
            for c in ("pid", "rank", "local_rank", "node"):
                rows[c].append(0)
            rows["metadata"].append("{}")
    return pa.table(rows, schema=METRICS_SCHEMA)


def _write_run(home: Path, run: int, n: int, ranks: int) -> str:
    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=run)
    exp = Experiment(id=f"exp-bench-{run:05d}", name=f"run-{run}", started_at=t0, host="bench", pid=1)
    exp.params = {"lr": 10 ** -(1 + run % 4), "seed": run % 3}
    exp.state, exp.stopped_at = 2, t0 + timedelta(hours=1)
    for dataset, key, table in (
        ("events", "experiment_id", _events(n, run, ranks, t0)),
        ("metrics", "run_id", _metrics(run, t0)),
    ):
        folder = home / dataset / f"{key}={exp.id}"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"merge-{int(t0.timestamp() * 1000)}-{run:08x}{FORMAT}"
        pq.write_table(summarize_table(table, dataset, exp.id), folder / f"{stem}.summary", compression="zstd")
        (folder / f"{stem}.covers").write_text("\n")
        pq.write_table(table, folder / f"{stem}.parquet", compression="zstd", row_group_size=256_000)
    write_record(home / "experiments", exp)
    return exp.id


def _write_job(job: tuple[Path, int, int, int]) -> str:
    return _write_run(*job)


def build(home: Path, runs: int, events: int) -> list[str]:
    """Generate (or reuse) a store of ``runs`` finished runs holding ``events`` events."""
    marker = home / f".bench-{runs}-{events}"
    large = min(LARGE, runs)
    big = int(events * 0.6) // large if runs > large else events // runs
    small = (events - big * large) // max(runs - large, 1) if runs > large else 0
    ids = [f"exp-bench-{r:05d}" for r in range(runs)]
    if marker.exists():
        return ids
    shutil.rmtree(home, ignore_errors=True)
    t = time.perf_counter()
    jobs = [(home, r, big if r < large else max(small, 1), 4 if r < large else 1) for r in range(runs)]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(os.cpu_count() or 2) as pool:
        for done, _ in enumerate(pool.imap_unordered(_write_job, jobs, chunksize=16), 1):
            if done % 1000 == 0:
                print(f"  generated {done} runs ({time.perf_counter() - t:.0f} s)", flush=True)
    marker.touch()
    print(f"generated {runs} runs, {events:,} events in {time.perf_counter() - t:.0f} s at {home}", flush=True)
    return ids


def one_run_queries(home: Path, run_id: str) -> dict[str, float]:
    """Seconds for one run's 1,000 rows: ct.store.query, events_of, the plain view, raw DuckDB."""
    hub = ct.Telemetry(home)
    con = hub.connect()
    (file,) = [p for p in (home / "events" / f"experiment_id={run_id}").glob("merge-*.parquet")]
    raw = duckdb.connect()
    out = interleaved(
        {
            "store.query": lambda: hub.store.query(run_id, limit=1000),
            "events_of": lambda: con.sql(
                "SELECT * FROM events_of([?]) ORDER BY ts LIMIT 1000", params=[run_id]
            ).to_arrow_table(),
            "raw": lambda: raw.sql(
                "SELECT * FROM read_parquet(?) ORDER BY ts LIMIT 1000", params=[str(file)]
            ).to_arrow_table(),
        }
    )
    view = "SELECT * FROM events WHERE experiment_id = ? ORDER BY ts LIMIT 1000"
    out["view"] = timed(lambda: con.sql(view, params=[run_id]).to_arrow_table(), repeats=3)
    files = [str(p) for p in (home / "events").glob("*/merge-*.parquet")]
    out["bind"] = timed(lambda: raw.sql("SELECT 1 FROM read_parquet(?) LIMIT 0", params=[files]).fetchall(), repeats=3)
    out["files"] = len(files)
    hub.close()
    return out


def main() -> None:
    base = Path(os.environ.get("CRUCIBLE_BENCH_DIR") or tempfile.mkdtemp(prefix="crucible-bench-store-"))
    print(
        f"store benchmark: {RUNS:,} runs, {EVENTS:,} events (python {sys.version.split()[0]}, duckdb {duckdb.__version__})"
    )
    big_home, small_home = base / f"store-{RUNS}", base / "store-100"
    ids = build(big_home, RUNS, EVENTS)
    build(small_home, 100, 100 * 1000)
    probe = ids[LARGE + 1]  # a small run (about EVENTS * 0.4 / RUNS rows)

    # --- the runs table and `crucible runs`
    hub = ct.Telemetry(big_home)
    con = hub.connect()
    pivot = ", ".join(f"max(s.last) FILTER (WHERE s.name = '{m}') AS \"{m}\"" for m in METRICS)
    table_sql = (
        f"SELECT e.experiment_id, e.name, e.status, {pivot} FROM experiments e "
        "LEFT JOIN summaries s ON s.experiment_id = e.experiment_id AND s.source = 'metric' GROUP BY ALL"
    )
    n_rows = len(con.execute(table_sql).fetchall())
    t_table = timed(lambda: con.execute(table_sql).fetchall(), repeats=5)
    report(f"runs table, 5 summary metrics, {n_rows:,} runs", f"{t_table * 1000:.0f} ms", "<= 200 ms", t_table <= 0.2)
    files = [str(p) for p in (big_home / "metrics").glob("*/merge-*.parquet")]
    raw = duckdb.connect()
    raw_sql = (
        "SELECT split_part(split_part(filename, 'run_id=', 2), '/', 1) AS id, "
        + ", ".join(f"arg_max(value, ts) FILTER (WHERE metric = '{m}')" for m in METRICS)
        + " FROM read_parquet(?, filename = true) GROUP BY 1"
    )
    t_raw_table = timed(lambda: raw.execute(raw_sql, [files]).fetchall(), repeats=3)
    report(
        "  the same from the raw metric files (DuckDB)",
        f"{t_raw_table * 1000:.0f} ms",
        f"ours {t_table / t_raw_table:.2f}x of it",
        True,
    )
    env = {**os.environ, "COLUMNS": "120"}
    cmd = [sys.executable, "-m", "crucible_telemetry.cli", "--home", str(big_home), "runs", "--format", "csv"]
    subprocess.run(cmd, capture_output=True, env=env)  # warm the disk and the catalog

    def runs_cli() -> None:
        subprocess.run(cmd, capture_output=True, env=env, check=True)

    t_cli = timed(runs_cli, repeats=3)
    t_py = timed(lambda: subprocess.run([sys.executable, "-c", "import crucible_telemetry.cli"], check=True), repeats=3)
    report("`crucible runs` as a process", f"{t_cli:.2f} s", "<= 1 s", t_cli <= 1.0)
    report("  of which starting python and importing the CLI", f"{t_py:.2f} s", "(peer)", True)

    # --- one run's rows
    big = one_run_queries(big_home, probe)
    smallq = one_run_queries(small_home, f"exp-bench-{LARGE + 1:05d}")
    for key, label in (
        ("store.query", "ct.store.query, one run, 1,000 rows"),
        ("events_of", "events_of([?]), one run"),
    ):
        report(f"{label} ({RUNS:,} runs)", f"{big[key] * 1000:.1f} ms", "<= 50 ms", big[key] <= 0.05)
        ratio = big[key] / big["raw"]
        report(f"  vs DuckDB reading that one file ({big['raw'] * 1000:.1f} ms)", f"{ratio:.2f}x", "<= 3x", ratio <= 3)
        growth = big[key] / smallq[key]
        report("  growth from 100 runs to this store", f"{growth:.2f}x", "<= 2x", growth <= 2)
    report(
        f"SELECT ... FROM events WHERE experiment_id = ? ({RUNS:,} runs)",
        f"{big['view'] * 1000:.0f} ms",
        "<= 50 ms",
        big["view"] <= 0.05,
    )
    report(
        f"  DuckDB binding a list of the {big['files']:,.0f} files alone (LIMIT 0)",
        f"{big['bind'] * 1000:.0f} ms",
        "(the floor of a plain view)",
        True,
    )

    # --- a scan of everything: p95 of duration per experiment
    ev_files = [str(p) for p in (big_home / "events").glob("*/merge-*.parquet")]
    scan = "SELECT experiment_id, quantile_cont(duration, 0.95) FROM events GROUP BY 1"
    t_scan = timed(lambda: con.execute(scan).fetchall(), repeats=3)
    raw_scan = (
        "SELECT split_part(split_part(filename, 'experiment_id=', 2), '/', 1), quantile_cont(duration, 0.95) "
        "FROM read_parquet(?, filename = true) GROUP BY 1"
    )
    t_raw_scan = timed(lambda: raw.execute(raw_scan, [ev_files]).fetchall(), repeats=3)
    r = t_scan / t_raw_scan
    report(f"p95 duration per run over {EVENTS:,} events", f"{t_scan:.2f} s", f"<= 3x raw ({t_raw_scan:.2f} s)", r <= 3)
    hub.close()

    # a process of its own, as a training run is: not one holding what the 100M-event scan left in memory
    subprocess.run([sys.executable, __file__, "--ingest", str(base)], check=True)


def ingest_only(base: Path) -> None:
    """The ingest figures alone (``bench_store.py --ingest DIR``)."""
    ingest_and_merge(base)
    start_cost(base)


def start_cost(base: Path) -> None:
    """start_experiment after the first: the environment is captured once per process (git each time)."""
    hub = ct.Telemetry(base / "starts")
    hub.start_experiment("first", bind=False)
    t = timed(lambda: hub.start_experiment("next", bind=False), repeats=15)
    report("start_experiment after the first", f"{t * 1000:.1f} ms", "a few ms", t <= 0.005)
    hub.close()


def ingest_and_merge(base: Path) -> None:
    """Flush rate, the merge of a finished 1M-event run, and its size beside one zstd file."""
    home = base / "ingest"
    shutil.rmtree(home, ignore_errors=True)
    hub = ct.Telemetry(home, flush_interval=3600, buffer_limit=2_000_000)
    exp = hub.start_experiment("ingest", bind=False)
    n = 1_000_000
    chunk = n // 32
    t_flush = 0.0
    for c in range(32):
        for i in range(c * chunk, (c + 1) * chunk):
            hub.emit("crucible_train.batch.stop", {"loss": 1.0 / (i + 1), "global_step": i}, {"experiment_id": exp.id})
        t = time.perf_counter()
        hub.flush()
        t_flush += time.perf_counter() - t
    rate = n / t_flush
    report("flush, events/s (32 flushes of 31,250)", f"{rate:,.0f}", ">= 500,000", rate >= 500_000)
    folder = hub.events_writer.folder(exp.id)
    hub.events_writer.wait_merges()  # the non-final merge ran on the merger's thread, outside the flushes
    for p in folder.glob("merge-*"):  # time the merge of the 32 segments from scratch
        p.unlink()
    live = [p for p in folder.glob("*.parquet")]
    t = time.perf_counter()
    merged = merge.merge_folder(folder, final=True, wait=True)
    t_merge = time.perf_counter() - t
    report(f"merge of a finished 1M-event run ({len(live)} files)", f"{t_merge:.2f} s", "<= 2 s", t_merge <= 2.0)
    assert merged is not None
    table = pq.read_table(merged)
    one = home / "one.parquet"
    pq.write_table(table, one, compression="zstd")
    ours = sum(p.stat().st_size for p in folder.glob(merged.name.replace(".parquet", ".*")))
    ratio = ours / one.stat().st_size
    report("disk of the merged run (data, summary, manifest)", f"{ratio:.2f}x", "<= 1.5x one zstd file", ratio <= 1.5)
    hub.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ingest"]:
        ingest_only(Path(sys.argv[2]))
    else:
        main()
