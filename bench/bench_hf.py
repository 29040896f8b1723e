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
REPEATS = 11
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
    """Wall, process-CPU and main-thread-CPU clocks at each step start: a step is one whole optimizer step."""

    def __init__(self) -> None:
        self.wall: list[int] = []
        self.cpu: list[int] = []
        self.main: list[int] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.wall.append(time.perf_counter_ns())
        self.cpu.append(time.process_time_ns())
        self.main.append(time.thread_time_ns())


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


def _median_delta(xs: list[int]) -> float:
    return statistics.median(b - a for a, b in zip(xs[WARM:], xs[WARM + 1 :]))


def run(kind: str, root: Path, i: int) -> dict[str, float]:
    """One run with callback ``kind``: per-step wall and CPU medians, hook time and background CPU per step (ns)."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, n_positions=16, bos_token_id=0, eos_token_id=0)
    )
    clock = StepClock()
    inside = [0]
    extra: list[TrainerCallback] = {
        "none": [],
        "crucible": [time_hooks(CrucibleCallback(), inside)],
        "tensorboard": [time_hooks(TensorBoardCallback(), inside)],
    }[kind]
    args = TrainingArguments(
        output_dir=str(root / f"{kind}-{i}"),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        log_level="error",
    )
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(STEPS * 4), callbacks=[clock, *extra])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    n = len(clock.wall) - 1 - WARM
    background = ((clock.cpu[-1] - clock.cpu[WARM]) - (clock.main[-1] - clock.main[WARM])) / n
    return {
        "wall": _median_delta(clock.wall),
        "cpu": _median_delta(clock.cpu),
        "hooks": inside[0] / STEPS,
        "background": background,
    }


def line(name: str, value: float, unit: str = "x", target: float | None = TARGET) -> None:
    """One figure, with its target where it has one."""
    tail = f"   target <= {target:.2f}x  {'OK' if value <= target else 'MISSED'}" if target is not None else ""
    print(f"{name:<52} {value:9.3f}{unit}{tail}")


def main() -> None:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    kinds = ("none", "crucible", "tensorboard")
    got: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hub = ct.configure(root / "crucible", flush_interval=1.0)
        run("none", root, -1)  # warm-up: imports, allocator, first compile paths
        for i in range(REPEATS):
            for k in kinds if i % 2 == 0 else reversed(kinds):
                got[k].append(run(k, root, i))
        hub.close()

    def med(k: str, field: str) -> float:
        return statistics.median(r[field] for r in got[k])

    def paired(k: str, field: str, base: str = "none") -> float:
        """Median over rounds of the ratio within a round (the runs of a round are back to back)."""
        return statistics.median(a[field] / b[field] for a, b in zip(got[k], got[base], strict=True))

    def own_cost(k: str) -> float:
        """Hook time plus the background CPU it adds over the bare run, per step (ns)."""
        return med(k, "hooks") + max(0.0, med(k, "background") - med("none", "background"))

    print(
        f"HF Trainer, tiny GPT-2, {STEPS} optimizer steps x {REPEATS} interleaved rounds, logging every step, "
        "CPU, 1 torch thread"
    )
    for k in kinds:
        print(f"  {k:<12} median step {med(k, 'wall') / 1e6:7.3f} ms wall, {med(k, 'cpu') / 1e6:7.3f} ms CPU")
    line("CrucibleCallback / no callback, wall per step", paired("crucible", "wall"))
    line("CrucibleCallback / no callback, CPU per step", paired("crucible", "cpu"))
    line("CrucibleCallback / no callback, own cost (low noise)", 1 + own_cost("crucible") / med("none", "wall"))
    line("TensorBoardCallback / no callback, wall (peer)", paired("tensorboard", "wall"), target=None)
    line("TensorBoardCallback / no callback, CPU (peer)", paired("tensorboard", "cpu"), target=None)
    line(
        "TensorBoardCallback / no callback, own cost (peer)",
        1 + own_cost("tensorboard") / med("none", "wall"),
        target=None,
    )
    line(
        "CrucibleCallback / TensorBoardCallback, own cost", own_cost("crucible") / own_cost("tensorboard"), target=None
    )
    line("CrucibleCallback hooks per step", med("crucible", "hooks") / 1e3, " us", target=None)
    line(
        "CrucibleCallback background CPU per step (writer)",
        (med("crucible", "background") - med("none", "background")) / 1e3,
        " us",
        target=None,
    )
    line("TensorBoardCallback hooks per step (peer)", med("tensorboard", "hooks") / 1e3, " us", target=None)


if __name__ == "__main__":
    main()
