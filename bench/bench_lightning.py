"""Lightning benchmark: per-step cost of CrucibleCallback + CrucibleLogger on a tiny-MLP Trainer.

The same fit runs with no logger ("none"), with CrucibleCallback + CrucibleLogger ("crucible"),
with CrucibleLogger alone ("logger-only", the like-for-like peer of CSVLogger), with Lightning's
CSVLogger and with its TensorBoardLogger. Runs are interleaved round by round; each ratio is the
median over rounds of the ratio within a round (runs of a round are back to back, so the drift of
a shared machine hits every configuration alike). Per fit: the median step wall time (robust to
preemption), and the process CPU per step (all threads, the hub's writer thread included). A
third, low-noise figure adds the CPU measured inside the callback's and logger's per-step methods
and the background CPU they add (the writer thread) to the bare step.

Two cadences: Lightning's default ``log_every_n_steps=50`` and ``log_every_n_steps=1``, the
stress case where every step is logged and the gradient norm is computed on every step. With
``log_every_n_steps=1`` Lightning's own logging path (a ``.item()`` per logged value, the logger
connector) costs every logger about 10% of this tiny step, so no logger meets 1.05x of "none"
there; compare with CSVLogger, which pays the same path.

Run with ``nox -s bench`` or ``python bench/bench_lightning.py``.
"""

from __future__ import annotations

import itertools
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import crucible_telemetry as ct

warnings.filterwarnings("ignore")

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402

from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger  # noqa: E402

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.ERROR)

STEPS = int(os.environ.get("BENCH_LIGHTNING_STEPS", "800"))
ROUNDS = int(os.environ.get("BENCH_LIGHTNING_ROUNDS", "5"))
WARMUP = 20


class MLP(pl.LightningModule):
    """Two-layer MLP; logs its loss every step like a typical training_step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class StepClock(pl.Callback):
    """Step marks from batch WARMUP on: wall, process CPU and main-thread CPU (present in every config)."""

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.c0 = self.c1 = self.m0 = self.m1 = 0.0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == WARMUP:
            self.marks.append(time.perf_counter())
            self.c0, self.m0 = time.process_time(), time.thread_time()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx >= WARMUP:
            self.marks.append(time.perf_counter())
            self.c1, self.m1 = time.process_time(), time.thread_time()


def run(
    config: str, root: Path, data: DataLoader[Any], every: int = 50, extra: tuple[Any, Any] | None = None
) -> dict[str, float]:
    """One fit; µs per step: median wall step, process CPU, background CPU (all threads but the main one)."""
    clock = StepClock()
    callbacks: list[Any] = [clock]
    logger: Any = False
    if config == "crucible":
        cb, logger = extra if extra else (CrucibleCallback(experiment_name="bench"), CrucibleLogger())
        callbacks.insert(0, cb)
    elif config == "logger-only":
        logger = CrucibleLogger()
    elif config == "csv":
        logger = CSVLogger(root / "csv")
    elif config == "tensorboard":
        logger = TensorBoardLogger(root / "tb")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=STEPS,
        log_every_n_steps=every,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(root),
    )
    trainer.fit(MLP(), data)
    m = clock.marks
    n = len(m) - 1
    cpu = (clock.c1 - clock.c0) / n * 1e6
    return {
        "wall": statistics.median(b - a for a, b in itertools.pairwise(m)) * 1e6,
        "cpu": cpu,
        "background": cpu - (clock.m1 - clock.m0) / n * 1e6,
    }


def hook_cost(root: Path, data: DataLoader[Any], every: int) -> float:
    """CPU µs per step spent inside the callback's and logger's own per-step methods (thread time)."""
    cb, lg = CrucibleCallback(experiment_name="bench-hooks"), CrucibleLogger()
    spent = [0]
    for obj, name in (
        (cb, "on_train_batch_start"),
        (cb, "on_before_optimizer_step"),
        (cb, "on_train_batch_end"),
        (lg, "log_metrics"),
    ):
        fn = getattr(obj, name)

        def timed(*a: Any, _fn: Any = fn, **k: Any) -> Any:
            t = time.thread_time_ns()
            try:
                return _fn(*a, **k)
            finally:
                spent[0] += time.thread_time_ns() - t

        setattr(obj, name, timed)
    run("crucible", root, data, every, extra=(cb, lg))
    return spent[0] / STEPS / 1e3


def line(
    name: str, value: float, target: str | None, ok: bool = True, unit: str = "x", note: str = "(peer, no target)"
) -> None:
    """One figure beside its target (or with a note where it has none)."""
    verdict = f"target {target:<8} {'OK' if ok else 'MISSED'}" if target else note
    print(f"  {name:<58} {value:8.3f}{unit:<6} {verdict}")


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = TensorDataset(torch.randn(STEPS * 16, 32), torch.randn(STEPS * 16, 1))
    data = DataLoader(ds, batch_size=16)
    configs = ("none", "crucible", "logger-only", "csv", "tensorboard")
    cadences = (50, 1)
    got: dict[tuple[str, int], list[dict[str, float]]] = {(c, e): [] for c in configs for e in cadences}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The default flush interval (1 s): a fit's window of about 1 s holds about one writer flush.
        hub = ct.configure(root / "crucible", flush_interval=1.0)
        run("none", root, data)  # warm-up: imports, allocator, first Trainer
        for r in range(ROUNDS):
            order = [(c, e) for e in cadences for c in configs]
            for c, e in order if r % 2 == 0 else reversed(order):
                got[c, e].append(run(c, root, data, e))
        hooks = {e: statistics.median(hook_cost(root, data, e) for _ in range(3)) for e in cadences}
        hub.flush()
        (rows,) = hub.store.execute(
            "SELECT count(*) FROM events WHERE event = 'crucible_train.batch.stop' "
            "AND experiment_id IN (SELECT experiment_id FROM experiments "
            "WHERE name = 'bench')"
        ).fetchone()
        hub.close()

    def med(c: str, e: int, field: str) -> float:
        return statistics.median(x[field] for x in got[c, e])

    def paired(c: str, base: str, e: int, field: str) -> float:
        return statistics.median(a[field] / b[field] for a, b in zip(got[c, e], got[base, e], strict=True))

    print(
        f"tiny MLP (32-64-1), {STEPS} steps per fit ({WARMUP} warm-up), {ROUNDS} interleaved rounds, "
        "1 torch thread; us per step, medians over rounds"
    )
    for e in cadences:
        for c in configs:
            print(
                f"  log_every_n_steps={e:<3} {c:<12} median step {med(c, e, 'wall'):8.1f} wall  "
                f"{med(c, e, 'cpu'):8.1f} CPU  {med(c, e, 'background'):6.1f} background CPU"
            )
    print(f"  recorded: {rows} batch.stop events (expected {2 * ROUNDS * STEPS})")
    for e in cadences:
        print(f"[log_every_n_steps={e}]")
        for kind, field in (("median step, wall", "wall"), ("CPU per step", "cpu")):
            r = paired("crucible", "none", e, field)
            line(f"crucible / no logger ({kind})", r, "<= 1.05x", r <= 1.05)
            r = paired("crucible", "csv", e, field)
            line(f"crucible / CSVLogger ({kind})", r, "< 1.00x", r < 1.0)
            r = paired("logger-only", "csv", e, field)
            line(f"CrucibleLogger alone / CSVLogger ({kind})", r, "< 1.00x", r < 1.0)
            line(f"crucible / TensorBoardLogger ({kind})", paired("crucible", "tensorboard", e, field), None)
        background = max(0.0, med("crucible", e, "background") - med("none", e, "background"))
        own = 1 + (hooks[e] + background) / med("none", e, "wall")
        line("crucible / no logger (own cost: hooks + writer, low noise)", own, "<= 1.05x", own <= 1.05)
        line("time inside the callback and logger hooks", hooks[e], None, unit=" us", note="")
        line("background CPU it adds (the hub's writer thread)", background, None, unit=" us", note="")


if __name__ == "__main__":
    main()
