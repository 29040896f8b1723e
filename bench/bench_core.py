"""Core benchmark: emit hot path, flush throughput, window queries and memory, each beside its target.

Run with ``nox -s bench`` (or ``python bench/bench_core.py``). Peers are measured in the same run,
interleaved, and reported as ratios: these machines are shared and noisy, so absolute figures vary.
"""

from __future__ import annotations

import gc
import os
import queue
import statistics
import tempfile
import time
import tracemalloc
from typing import Any

import numpy as np
import psutil

import crucible_telemetry as ct
from crucible_telemetry.live import Streaming

N_EMIT = 100_000
REPEATS = 7
ROWS: list[tuple[str, str, str]] = []


def report(name: str, value: str, target: str, ok: bool) -> None:
    ROWS.append((name, value, f"{target}  {'OK' if ok else 'MISSED'}"))
    print(f"{name:<48} {value:>22}   target {target}  {'OK' if ok else 'MISSED'}", flush=True)


def per_call_ns(fn: Any, n: int) -> float:
    t = time.perf_counter_ns()
    fn(n)
    return (time.perf_counter_ns() - t) / n


def bench_emit(hub: ct.Telemetry) -> None:
    hub.start_experiment("bench-emit")
    emit = hub.emit
    name = ("crucible_train", "batch", "stop")
    m = {"loss": 0.25, "global_step": 1}
    md = {"epoch": 1}
    table: dict[Any, Any] = {name: None}
    sink: list[Any] = []
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def floor(n_: Any, m_: Any, md_: Any) -> None:  # a dict lookup plus a list append
        table.get(n_)
        sink.append((n_, m_, md_))

    def run_emit(n: int) -> None:
        for _ in range(n):
            emit(name, m, md)

    def run_floor(n: int) -> None:
        for _ in range(n):
            floor(name, m, md)

    def run_queue(n: int) -> None:
        put = q.put
        for _ in range(n):
            put((name, m, md))

    res: dict[str, list[float]] = {"emit": [], "floor": [], "queue": []}
    for _ in range(REPEATS):
        for key, fn in (("emit", run_emit), ("floor", run_floor), ("queue", run_queue)):
            gc.collect()
            res[key].append(per_call_ns(fn, N_EMIT))
            sink.clear()
            while not q.empty():
                q.get_nowait()
        hub.flush()
    e, f, qq = (statistics.median(res[k]) for k in ("emit", "floor", "queue"))
    report("emit into a live experiment (median)", f"{e / 1000:.3f} us/call", "<= 2 us", e <= 2000)
    report("emit / bare floor (dict lookup + list append)", f"{e / f:.2f}x  (floor {f:.0f} ns)", "<= 3x", e / f <= 3)
    print(f"{'  peer: queue.SimpleQueue.put':<48} {qq:>19.0f} ns   emit/queue = {e / qq:.2f}x")


def bench_flush(hub: ct.Telemetry) -> None:
    exp = hub.start_experiment("bench-flush")
    n = 300_000
    rates = []
    for _ in range(3):
        hub._closed = True  # keep the writer thread out of the timed flush
        rows = [(exp, "crucible_train.batch.stop", {"loss": 0.5, "global_step": i, "duration": 1e6},
                 {"epoch": i // 1000}, time.monotonic_ns()) for i in range(n)]
        hub._buf.extend(rows)
        del rows
        t = time.perf_counter()
        written = hub.flush()
        rates.append(written / (time.perf_counter() - t))
    hub._closed = False
    r = statistics.median(rates)
    report("flush buffer -> Parquet store", f"{r / 1000:.0f}k events/s", ">= 500k/s", r >= 500_000)


def bench_queries(hub: ct.Telemetry) -> None:
    exp = hub.start_experiment("bench-1M")
    rng = np.random.default_rng(0)
    lat = rng.lognormal(17, 0.6, 1_000_000)
    emit = hub.emit
    for i, v in enumerate(lat.tolist()):
        emit("req_llm.request.stop", {"duration": v, "prompt_tokens": 100, "completion_tokens": 20}, None)
        if i % 100_000 == 0:
            time.sleep(0)  # let the writer keep up
    hub.stop_experiment(exp.id)
    hub.store.count(exp.id)  # warm the connection and file listing
    span_us = hub.store.execute("SELECT epoch_us(max(ts)) - epoch_us(min(ts)) FROM events WHERE experiment_id = ?", [exp.id]).fetchone()[0]
    times_w, times_p = [], []
    for _ in range(5):
        t = time.perf_counter()
        step = max(span_us // 50, 1)
        out = hub.store.windowed_metrics(exp.id, step * 10, step)
        times_w.append(time.perf_counter() - t)
        t = time.perf_counter()
        p95 = hub.store.execute("SELECT quantile_cont(duration, 0.95) FROM events WHERE experiment_id = ? AND event = ?",
                                [exp.id, "req_llm.request.stop"]).fetchone()[0]
        times_p.append(time.perf_counter() - t)
    w, p = statistics.median(times_w) * 1000, statistics.median(times_p) * 1000
    report(f"windowed_metrics over 1M events ({len(out)} windows)", f"{w:.0f} ms", "<= 100 ms", w <= 100)
    report("p95 latency over 1M events (SQL)", f"{p:.0f} ms", "<= 100 ms", p <= 100)
    exact = float(np.percentile(lat, 95))
    print(f"{'  check: p95 vs numpy':<48} {abs(p95 - exact) / exact:>21.2e}   relative difference")
    t = time.perf_counter()
    ct_metrics = ct.calculate_metrics.__wrapped__ if hasattr(ct.calculate_metrics, "__wrapped__") else None
    del ct_metrics
    from crucible_telemetry.calculate import calculate_metrics

    calculate_metrics(hub, exp.id)
    print(f"{'  calculate_metrics over 1M events':<48} {(time.perf_counter() - t) * 1000:>19.0f} ms")


def bench_memory(home: str) -> None:
    proc = psutil.Process()
    hub = ct.Telemetry(home, batch_size=50_000)
    exp = hub.start_experiment("bench-mem")
    for i in range(20_000):
        hub.emit("crucible_train.batch.stop", {"loss": 0.5, "global_step": i}, None)
    hub.flush()
    gc.collect()
    base = proc.memory_info().rss
    emit = hub.emit
    for i in range(1_000_000):
        emit("crucible_train.batch.stop", {"loss": 0.5, "global_step": i}, None)
        if i % 20_000 == 0:
            time.sleep(0)
    hub.flush()
    gc.collect()
    grew = (proc.memory_info().rss - base) / 2**20
    report("RSS above baseline after 1M events flushed", f"{grew:.1f} MB", "<= 50 MB", grew <= 50)
    hub.stop_experiment(exp.id)
    hub.close()

    sizes = {}
    for total in (10_000, 10_000_000):
        s = Streaming(hub)
        rng = np.random.default_rng(1)
        tracemalloc.start()
        left = total
        while left:
            k = min(left, 1_000_000)
            vals = rng.lognormal(0, 2, k)
            s.update("e", {"x.y": k}, {("x.y", "v"): vals, ("x.y", "w"): vals * 3})
            del vals
            left -= k
        gc.collect()
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        sizes[total] = sum(st.size for st in snap.statistics("filename")) / 1024
        del s
    ratio = sizes[10_000_000] / sizes[10_000]
    report("streaming stats memory, 10M vs 10k events", f"{sizes[10_000]:.0f} KiB -> {sizes[10_000_000]:.0f} KiB",
           "flat (<= 1.5x)", ratio <= 1.5)


def main() -> None:
    print(f"crucible-telemetry core bench  (python {os.sys.version.split()[0]}, {os.cpu_count()} cpus)")
    with tempfile.TemporaryDirectory() as d:
        # the writer thread flushes between timed loops, not inside them (its cost is the flush figure)
        hub = ct.Telemetry(os.path.join(d, "e"), flush_interval=3600, batch_size=10 * N_EMIT)
        bench_emit(hub)
        hub.close()
        hub = ct.Telemetry(os.path.join(d, "a"))
        bench_flush(hub)
        bench_queries(hub)
        hub.close()
        bench_memory(os.path.join(d, "b"))
    missed = [r for r in ROWS if r[2].endswith("MISSED")]
    print(f"\n{len(ROWS) - len(missed)} of {len(ROWS)} targets met")


if __name__ == "__main__":
    main()
