"""Many nodes, one store, other engines: files per second per node, the Delta log's publish, and
Spark's count and p95 (reading the log's file list) beside DuckDB's (``ct.connect()``) on one store.

``CRUCIBLE_BENCH_SCALE_NODES`` nodes (default 2) of ``CRUCIBLE_BENCH_SCALE_RANKS`` rank processes
each (default 2) write one run, ``CRUCIBLE_BENCH_SCALE_FLUSHES`` segments per rank (default 50) of
1,000 events, as fast as they can; then the run's small files are merged (as the writers' merger does),
their covered files still on disk: a glob over the folder would read every row twice, the log once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import crucible_telemetry as ct

NODES = int(os.environ.get("CRUCIBLE_BENCH_SCALE_NODES", "2"))
RANKS = int(os.environ.get("CRUCIBLE_BENCH_SCALE_RANKS", "2"))
FLUSHES = int(os.environ.get("CRUCIBLE_BENCH_SCALE_FLUSHES", "50"))
ROWS = 1000

RANK_CODE = """
import os, sys, time
import crucible_telemetry as ct
home, run, flushes, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
hub = ct.Telemetry(home, flush_interval=3600)
ct.set_default(hub)
hub.join_experiment(run)
rank = int(os.environ["RANK"])
t = time.perf_counter()
for f in range(flushes):
    for i in range(rows):
        ct.emit("crucible_train.batch.stop", {"duration": float((i * 7919 + rank * 104729 + f) % 100000)}, {"epoch": f})
    hub.flush()
print(flushes / (time.perf_counter() - t))
os._exit(0)
"""


def report(name: str, value: str, note: str = "") -> None:
    print(f"{name:<52} {value:>22}   {note}", flush=True)


def write(home: Path, run: str) -> list[float]:
    """Every rank of every node at once; each one's files per second."""
    procs = []
    for node in range(NODES):
        for local in range(RANKS):
            env = {**os.environ, "RANK": str(node * RANKS + local), "NODE_RANK": str(node), "LOCAL_RANK": str(local)}
            args = [sys.executable, "-c", RANK_CODE, str(home), run, str(FLUSHES), str(ROWS)]
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True))
    rates = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        rates.append(float(out.strip().splitlines()[-1]))
    return rates


def main() -> None:
    import deltalake
    from pyspark.sql import SparkSession

    from crucible_telemetry.storage import delta, merge

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "crucible"
        hub = ct.Telemetry(home)
        run = hub.start_experiment("scale-out").id
        hub.close()
        rates = write(home, run)
        per_node = [sum(rates[n * RANKS : (n + 1) * RANKS]) for n in range(NODES)]
        report(
            "files/s per node (each rank flushing at once)",
            f"{min(per_node):,.0f}-{max(per_node):,.0f}",
            f"{NODES} nodes x {RANKS} ranks, {ROWS:,} events a file",
        )
        folder = home / "events" / f"experiment_id={run}"
        merge.merge_folder(folder, final=False, dataset="events", min_files=2)
        t = time.perf_counter()
        delta.publish(home)
        report("crucible publish (first commit)", f"{time.perf_counter() - t:.3f} s")
        files = deltalake.DeltaTable(str(home / "events")).file_uris()
        report("files on disk / in the log", f"{len(list(folder.glob('*.parquet')))} / {len(files)}")

        hub = ct.Telemetry(home)
        prev = ct.set_default(hub)
        con = ct.connect()
        t = time.perf_counter()
        duck = con.execute("SELECT count(*), quantile_cont(duration, 0.95) FROM events").fetchone()
        duck_s = time.perf_counter() - t
        con.close()
        ct.set_default(prev)
        hub.close()

        t = time.perf_counter()
        spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        start_s = time.perf_counter() - t
        t = time.perf_counter()
        root = (home / "events").absolute().as_uri()
        df: Any = spark.read.option("basePath", root).parquet(*deltalake.DeltaTable(str(home / "events")).file_uris())
        df.createOrReplaceTempView("events")
        sp = spark.sql("SELECT count(*), percentile(duration, 0.95) FROM events").collect()[0]
        spark_s = time.perf_counter() - t
        spark.stop()
        assert duck is not None
        expected = NODES * RANKS * FLUSHES * ROWS
        report("rows written", f"{expected:,}")
        report("DuckDB ct.connect(): count, p95", f"{duck[0]:,}, {duck[1]:.1f}", f"{duck_s:.2f} s")
        report("Spark over the log's file list: count, p95", f"{sp[0]:,}, {sp[1]:.1f}", f"{spark_s:.2f} s")
        report("Spark session start", f"{start_s:.1f} s")
        same = sp[0] == duck[0] == expected and abs(sp[1] - duck[1]) <= 1e-9 * max(1.0, abs(duck[1]))
        report("Spark equals DuckDB", "yes" if same else "NO")


if __name__ == "__main__":
    main()
