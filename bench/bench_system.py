"""System-metrics benchmark: the sampler's CPU per sample, and the training-step overhead with it on.

Run with ``nox -s bench`` (or ``python bench/bench_system.py``). The step loop is a tiny torch
step when torch is installed (else pure-Python work). The sampler-on and sampler-off blocks are
interleaved, each block long enough to hold samples at the interval measured, and the paired
per-round ratios' median is reported (these machines are shared and noisy). The stress row (a
sample every 50 ms, 200 times the default rate) shows the cost where it is large enough to see.
``BENCH_QUICK=1`` shortens every block (the default-interval figure then means less).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import crucible_telemetry as ct
from crucible_telemetry import system
from crucible_telemetry.system.gpu import GpuReader
from crucible_telemetry.system.host import default_reader

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
DEFAULT_INTERVAL = 10.0
STRESS_INTERVAL = 0.05
ROUNDS = 3 if QUICK else 5
BLOCK_S = 1.0 if QUICK else DEFAULT_INTERVAL + 1.5  # a default-interval block holds at least one sample
STRESS_BLOCK_S = 1.0 if QUICK else 2.0
N_SAMPLES = 50 if QUICK else 300


def report(name: str, value: str, target: str, ok: bool) -> None:
    print(f"{name:<52} {value:>18}   target {target}  {'OK' if ok else 'MISSED'}", flush=True)


def note(name: str, value: str) -> None:
    print(f"{name:<52} {value:>18}", flush=True)


def cpu_per_sample(hub: ct.Telemetry, gpus: bool) -> tuple[float, float, int]:
    """(CPU µs, wall µs) of one sample, host reader plus GPU reader when ``gpus``, and the GPU count."""
    exp = hub.start_experiment(f"bench-sample-{'gpu' if gpus else 'host'}")
    s = system.Sampler(hub, DEFAULT_INTERVAL, experiment=exp, gpus=gpus)
    reader = default_reader()
    gpu = GpuReader() if gpus else None
    last = reader.read() if reader is not None else None
    try:
        for _ in range(5):  # warm-up
            last = s._sample(reader, gpu, last)
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        for _ in range(N_SAMPLES):
            last = s._sample(reader, gpu, last)
        cpu, wall = time.thread_time_ns() - c0, time.perf_counter_ns() - w0
    finally:
        if gpu is not None:
            gpu.close()
    hub.stop_experiment(exp.id)
    return cpu / N_SAMPLES / 1e3, wall / N_SAMPLES / 1e3, len(gpu.handles) if gpu is not None else 0


def step_fn() -> tuple[str, Callable[[], None]]:
    """A tiny training step: torch when available, else pure-Python arithmetic."""
    try:
        import torch
    except ImportError:
        data = list(range(2000))

        def py_step() -> None:
            sum(x * x for x in data)

        return "pure-Python step", py_step
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one core for the step: the sampler's thread competes for the others, as in a run
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 32), torch.randn(16, 1)

    def torch_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    return "tiny torch step", torch_step


def block(step: Callable[[], None], seconds: float) -> float:
    """Mean ns per step over a block of ``seconds``."""
    n, t0 = 0, time.perf_counter_ns()
    end = t0 + int(seconds * 1e9)
    while True:
        for _ in range(50):
            step()
        n += 50
        now = time.perf_counter_ns()
        if now >= end:
            return (now - t0) / n


def overhead(
    hub: ct.Telemetry, step: Callable[[], None], interval: float, seconds: float, rounds: int
) -> tuple[float, float, int]:
    """Median of the per-round (on / off) step-time ratios, the median step ns off, and samples taken."""
    exp = hub.start_experiment(f"bench-overhead-{interval:g}")
    ratios, offs, samples = [], [], 0
    for r in range(rounds):
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        got: dict[str, float] = {}
        for cond in order:
            sampler = system.start(hub=hub, interval=interval, experiment=exp) if cond == "on" else None
            try:
                got[cond] = block(step, seconds)
            finally:
                if sampler is not None:
                    samples += sampler.samples
                    system.stop()
        ratios.append(got["on"] / got["off"])
        offs.append(got["off"])
    hub.stop_experiment(exp.id)
    return statistics.median(ratios), statistics.median(offs), samples


def main() -> int:
    os.environ.pop(system.ENV_SWITCH, None)
    with tempfile.TemporaryDirectory() as home:
        hub = ct.Telemetry(home)
        try:
            cpu, wall, _ = cpu_per_sample(hub, gpus=False)
            report("sampler CPU per sample (host)", f"{cpu:,.0f} µs", "<= 1,000 µs", cpu <= 1000)
            note("  wall per sample (host)", f"{wall:,.0f} µs")
            note("  = share of one core at the default 10 s", f"{cpu / (DEFAULT_INTERVAL * 1e6):.4%}")
            gcpu, gwall, n_gpu = cpu_per_sample(hub, gpus=True)
            if n_gpu:
                report(f"sampler CPU per sample (host + {n_gpu} GPU)", f"{gcpu:,.0f} µs", "<= 2,000 µs", gcpu <= 2000)
                note("  wall per sample (host + GPU)", f"{gwall:,.0f} µs")
            else:
                note("sampler CPU per sample (GPU reader)", "no NVML GPU here")
            name, step = step_fn()
            ratio, off_ns, samples = overhead(hub, step, DEFAULT_INTERVAL, BLOCK_S, ROUNDS)
            note(f"{name}, sampler off", f"{off_ns / 1e3:,.1f} µs")
            report(
                f"{name}, sampler on ({DEFAULT_INTERVAL:g} s) / off" + (" [quick]" if QUICK else ""),
                f"{ratio:.4f}x ({samples} samples)",
                "<= 1.01x",
                ratio <= 1.01,
            )
            stress, _, samples = overhead(hub, step, STRESS_INTERVAL, STRESS_BLOCK_S, 3 * ROUNDS)
            note(f"  stress: on ({STRESS_INTERVAL:g} s) / off", f"{stress:.4f}x ({samples} samples)")
            scaled = 1 + max(0.0, stress - 1) * STRESS_INTERVAL / DEFAULT_INTERVAL
            report(f"  stress cost scaled to {DEFAULT_INTERVAL:g} s", f"{scaled:.5f}x", "<= 1.01x", scaled <= 1.01)
        finally:
            system.stop()
            hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
