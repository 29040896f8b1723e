"""HF plugin benchmark: per-step overhead of CrucibleCallback on a real Trainer, beside TensorBoardCallback.

Run with ``nox -s bench`` (or ``python bench/bench_hf.py``). The same tiny Trainer run (a GPT-2 built
from a config, CPU) is timed without callback, with ``CrucibleCallback`` and with the Trainer's own
``TensorBoardCallback``; runs are interleaved in rounds and each ratio is the median over rounds of the ratio of median
step times within a round, so the drift of a shared machine hits every configuration alike. A
CPU-time figure (all threads of the process, the writer thread included) is immune to other
processes on the machine; the target is judged on it, with wall time printed beside. A third figure adds the time measured inside the callback's per-step hooks to the bare step. Every step is
logged (``logging_steps=1``), the heaviest case for both callbacks.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.trainer_callback import PrinterCallback

import crucible_telemetry as ct
from crucible_telemetry_hf import CrucibleCallback

STEPS = 40
REPEATS = 9
WARM = 5  # first steps left out: warm-up
TARGET = 1.05


class Tokens(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int) -> None:
        self.rows = torch.randint(0, 64, (n, 16), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


class StepClock(TrainerCallback):
    """Wall time between successive step starts: one whole optimizer step, every callback included."""

    def __init__(self) -> None:
        self.last = 0
        self.steps: list[int] = []
        self.cpu: list[int] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter_ns()
        self.cpu.append(time.process_time_ns())  # every thread of this process, writer thread included
        if self.last:
            self.steps.append(now - self.last)
        self.last = now


PER_STEP = ("on_step_begin", "on_substep_end", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end", "on_log")


def time_hooks(cb: TrainerCallback, total: list[int]) -> TrainerCallback:
    """Wrap the per-step hooks of ``cb`` to add the time spent inside them to ``total[0]``."""
    for name in PER_STEP:
        hook = getattr(cb, name)

        def timed(*a: Any, _hook: Any = hook, **kw: Any) -> Any:
            t = time.perf_counter_ns()
            try:
                return _hook(*a, **kw)
            finally:
                total[0] += time.perf_counter_ns() - t

        setattr(cb, name, timed)
    return cb


def run(kind: str, root: Path, i: int) -> tuple[float, float, float]:
    """Median wall time of a step, CPU time per step, and time inside the callback per step (ns)."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, n_positions=16,
                                       bos_token_id=0, eos_token_id=0))
    clock = StepClock()
    inside = [0]
    extra: list[TrainerCallback] = {"none": [], "crucible": [time_hooks(CrucibleCallback(), inside)],
                                    "tensorboard": [time_hooks(TensorBoardCallback(), inside)]}[kind]
    args = TrainingArguments(output_dir=str(root / f"{kind}-{i}"), max_steps=STEPS, per_device_train_batch_size=4,
                             logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                             use_cpu=True, log_level="error")
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(STEPS * 4), callbacks=[clock, *extra])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    cpu = (clock.cpu[-1] - clock.cpu[WARM]) / (len(clock.cpu) - 1 - WARM)
    return statistics.median(clock.steps[WARM:]), cpu, inside[0] / STEPS


def main() -> None:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hub = ct.configure(root / "crucible", flush_interval=1.0)
        kinds = ("none", "crucible", "tensorboard")
        times: dict[str, list[float]] = {k: [] for k in kinds}
        cpus: dict[str, list[float]] = {k: [] for k in kinds}
        inside: dict[str, list[float]] = {k: [] for k in kinds}
        run("none", root, -1)  # warm-up: imports, allocator, first compile paths
        for i in range(REPEATS):
            for k in kinds if i % 2 == 0 else reversed(kinds):
                step, cpu, hooks = run(k, root, i)
                times[k].append(step)
                cpus[k].append(cpu)
                inside[k].append(hooks)
        hub.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    hooks = {k: statistics.median(v) for k, v in inside.items()}

    def paired(k: str, base: str = "none", series: dict[str, list[float]] = times) -> float:
        """Median over rounds of the ratio within a round (runs of one round are back to back)."""
        return statistics.median(a / b for a, b in zip(series[k], series[base], strict=True))

    ratio = paired("crucible")
    cpu_ratio = paired("crucible", series=cpus)
    # Low-noise estimate: the bare step plus the time measured inside the callback's per-step hooks.
    direct = (med["none"] + hooks["crucible"]) / med["none"]
    print(f"HF Trainer, {STEPS} optimizer steps x {REPEATS} interleaved repeats, logging every step, CPU, 1 thread")
    for k in kinds:
        print(f"  {k:<12} median step {med[k] / 1e6:7.3f} ms wall, {statistics.median(cpus[k]) / 1e6:7.3f} ms CPU")
    ok = cpu_ratio <= TARGET
    print(f"{'CrucibleCallback / no callback (CPU per step)':<48} {cpu_ratio:8.3f}x   target <= {TARGET:.2f}x  "
          f"{'OK' if ok else 'MISSED'}")
    ok = ratio <= TARGET
    print(f"{'CrucibleCallback / no callback (wall per step)':<48} {ratio:8.3f}x   target <= {TARGET:.2f}x  "
          f"{'OK' if ok else 'MISSED'}")
    ok2 = direct <= TARGET
    print(f"{'CrucibleCallback / no callback (hook time)':<48} {direct:8.3f}x   target <= {TARGET:.2f}x  "
          f"{'OK' if ok2 else 'MISSED'}")
    print(f"{'TensorBoardCallback / no callback (CPU, peer)':<48} {paired('tensorboard', series=cpus):8.3f}x")
    print(f"{'TensorBoardCallback / no callback (wall, peer)':<48} {paired('tensorboard'):8.3f}x")
    print(f"{'CrucibleCallback / TensorBoardCallback (CPU)':<48} {paired('crucible', 'tensorboard', cpus):8.3f}x")
    print(f"{'time inside CrucibleCallback per step':<48} {hooks['crucible'] / 1e3:8.1f} us")
    print(f"{'time inside TensorBoardCallback per step (peer)':<48} {hooks['tensorboard'] / 1e3:8.1f} us")


if __name__ == "__main__":
    main()
