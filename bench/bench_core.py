"""Core benchmark: emit hot path, flush throughput, window queries and memory, each beside its target.

Run with ``nox -s bench`` (or ``python bench/bench_core.py``). Peers are measured in the same run,
interleaved, and reported as ratios: these machines are shared and noisy, so absolute figures vary.
"""

from __future__ import annotations

import gc
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import numpy as np
import psutil

import crucible_telemetry as ct
from crucible_telemetry.storage import writer as writer_module
from crucible_telemetry.streaming import Streaming

DRAIN_AT = writer_module.DRAIN_AT

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
        hub.writer.closed = True  # keep the writer thread out of the timed flush
        rows = [
            (
                exp,
                "crucible_train.batch.stop",
                {"loss": 0.5, "global_step": i, "duration": 1e6},
                {"epoch": i // 1000},
                time.monotonic_ns(),
            )
            for i in range(n)
        ]
        hub._buf.extend(rows)
        del rows
        t = time.perf_counter()
        written = hub.flush()
        rates.append(written / (time.perf_counter() - t))
    hub.writer.closed = False
    r = statistics.median(rates)
    report("flush buffer -> Parquet store", f"{r / 1000:.0f}k events/s", ">= 500k/s", r >= 500_000)


def bench_queries(hub: ct.Telemetry) -> None:
    exp = hub.start_experiment("bench-1M")
    rng = np.random.default_rng(0)
    lat = rng.lognormal(17, 0.6, 1_000_000)
    emit = hub.emit
    for i, v in enumerate(lat.tolist()):
        emit("req_llm.request.stop", {"duration": v, "prompt_tokens": 100, "completion_tokens": 20}, None)
        if i % 100_000 == 99_999:
            hub.flush()  # loading data here, not measuring: keep the buffer under its bound
    hub.stop_experiment(exp.id)
    assert hub.store.count(exp.id) == 1_000_000, "events were dropped while loading"
    span_us = hub.store.execute(
        "SELECT epoch_us(max(ts)) - epoch_us(min(ts)) FROM events WHERE experiment_id = ?", [exp.id]
    ).fetchone()[0]
    times_w, times_p = [], []
    for _ in range(5):
        t = time.perf_counter()
        step = max(span_us // 50, 1)
        out = hub.store.windowed_metrics(exp.id, step * 10, step)
        times_w.append(time.perf_counter() - t)
        t = time.perf_counter()
        p95 = hub.store.execute(
            "SELECT quantile_cont(duration, 0.95) FROM events WHERE experiment_id = ? AND event = ?",
            [exp.id, "req_llm.request.stop"],
        ).fetchone()[0]
        times_p.append(time.perf_counter() - t)
    w, p = statistics.median(times_w) * 1000, statistics.median(times_p) * 1000
    report(f"windowed_metrics over 1M events ({len(out)} windows)", f"{w:.0f} ms", "<= 100 ms", w <= 100)
    report("p95 latency over 1M events (SQL)", f"{p:.0f} ms", "<= 100 ms", p <= 100)
    exact = float(np.percentile(lat, 95))
    print(f"{'  check: p95 vs numpy':<48} {abs(p95 - exact) / exact:>21.2e}   relative difference")
    from crucible_telemetry.analysis.summary import calculate_metrics

    t = time.perf_counter()
    calculate_metrics(hub, exp.id)
    print(f"{'  calculate_metrics over 1M events':<48} {(time.perf_counter() - t) * 1000:>19.0f} ms")


RATE = 100_000  # events/s for the memory run: a heavy training loop's telemetry, sustained


def memory_child(home: str) -> None:
    """In a fresh process: RSS growth after 1M events emitted at RATE/s and flushed (printed as MB)."""
    proc = psutil.Process()
    hub = ct.Telemetry(home)
    hub.start_experiment("bench-mem")
    for i in range(20_000):
        hub.emit("crucible_train.batch.stop", {"loss": 0.5, "global_step": i}, {"epoch": 0})
    hub.flush()
    gc.collect()
    base = proc.memory_info().rss
    emit = hub.emit
    peak = 0
    t0 = time.perf_counter()
    for i in range(1_000_000):
        emit("crucible_train.batch.stop", {"loss": 0.5, "global_step": i}, {"epoch": i // 1000})
        if i % 1000 == 999:
            ahead = (i + 1) / RATE - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
            if i % 50_000 == 49_999:
                peak = max(peak, proc.memory_info().rss)
    hub.flush()
    gc.collect()
    print((proc.memory_info().rss - base) / 2**20, (peak - base) / 2**20, hub.dropped_overflow)
    hub.close()


def bench_memory(home: str) -> None:
    out = subprocess.run([sys.executable, __file__, "--memory", home], capture_output=True, text=True, check=True)
    grew, peak, dropped = out.stdout.split()
    report(
        f"RSS above baseline, 1M events at {RATE // 1000}k/s, flushed",
        f"{float(grew):.1f} MB (peak {float(peak):.0f})",
        "<= 50 MB",
        float(grew) <= 50 and int(dropped) == 0,
    )

    sizes = {}
    hub = ct.Telemetry(home)
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
    hub.close()
    ratio = sizes[10_000_000] / sizes[10_000]
    report(
        "streaming stats memory, 10M vs 10k events",
        f"{sizes[10_000]:.0f} KiB -> {sizes[10_000_000]:.0f} KiB",
        "flat (<= 1.5x)",
        ratio <= 1.5,
    )


def main() -> None:
    print(f"crucible-telemetry core bench  (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    with tempfile.TemporaryDirectory() as d:
        # the writer thread flushes between timed loops, not inside them (its cost is the flush figure)
        hub = ct.Telemetry(os.path.join(d, "e"), flush_interval=3600, batch_size=10 * N_EMIT)
        writer_module.DRAIN_AT = 10 * N_EMIT
        bench_emit(hub)
        writer_module.DRAIN_AT = DRAIN_AT
        hub.close()
        hub = ct.Telemetry(os.path.join(d, "a"))
        bench_flush(hub)
        bench_queries(hub)
        hub.close()
        bench_memory(os.path.join(d, "b"))
    missed = [r for r in ROWS if r[2].endswith("MISSED")]
    print(f"\n{len(ROWS) - len(missed)} of {len(ROWS)} targets met")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory"]:
        memory_child(sys.argv[2])
    else:
        main()
