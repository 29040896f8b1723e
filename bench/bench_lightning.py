"""Lightning benchmark: per-step cost of CrucibleCallback + CrucibleLogger on a tiny-MLP Trainer.

The same fit runs with no logger, with CrucibleCallback + CrucibleLogger, with Lightning's
CSVLogger and with its TensorBoardLogger; runs are interleaved round by round and each figure is
the median over rounds, reported as a ratio (these machines are shared and noisy, so absolute
times vary more than ratios). Per fit three figures: the median step (robust to the machine's
other work preempting a few steps), the mean step and the mean process CPU per step (both include
the hub's writer thread, which flushes about once a second). Two cadences: Lightning's default
``log_every_n_steps=50`` (the target) and ``log_every_n_steps=1``, the stress case where every
step is logged and the gradient norm is computed on every step. Step time runs from batch WARMUP
to the last batch, so start-up (experiment record, environment capture, warm-up) is excluded; the
hub's writer thread runs during the window and is included. "crucible" is CrucibleCallback +
CrucibleLogger; "logger-only" is CrucibleLogger alone, the like-for-like peer of CSVLogger.

Reading the figures: with ``log_every_n_steps=1`` Lightning's own logging path (a ``.item()`` per
logged value, the logger connector) costs every logger about 10% of this tiny step, so no logger
meets 1.05x of "none" there; the callback's own share is the "time inside the hooks" line.

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

STEPS = int(os.environ.get("BENCH_LIGHTNING_STEPS", "400"))
ROUNDS = int(os.environ.get("BENCH_LIGHTNING_ROUNDS", "7"))
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
    """Per-step wall times from batch WARMUP on, and the window's process CPU (present in every config)."""

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.c0 = self.c1 = 0.0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == WARMUP:
            self.marks.append(time.perf_counter())
            self.c0 = time.process_time()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx >= WARMUP:
            self.marks.append(time.perf_counter())
            self.c1 = time.process_time()


def run(config: str, root: Path, data: DataLoader[Any], every: int = 50,
        extra: list[Any] | None = None) -> tuple[float, float, float]:
    """One fit; returns µs per step: median step (wall), mean step (wall), mean step (process CPU)."""
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
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=STEPS, log_every_n_steps=every,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, logger=logger, callbacks=callbacks, default_root_dir=str(root),
    )
    trainer.fit(MLP(), data)
    m = clock.marks
    steps = [b - a for a, b in itertools.pairwise(m)]
    n = len(steps)
    return statistics.median(steps) * 1e6, (m[-1] - m[0]) / n * 1e6, (clock.c1 - clock.c0) / n * 1e6


def hook_cost(root: Path, data: DataLoader[Any], every: int) -> float:
    """CPU µs per step spent inside the callback's and logger's own per-step methods (thread time)."""
    cb, lg = CrucibleCallback(experiment_name="bench-hooks"), CrucibleLogger()
    spent = [0]
    for obj, name in ((cb, "on_train_batch_start"), (cb, "on_before_optimizer_step"),
                      (cb, "on_train_batch_end"), (lg, "log_metrics")):
        fn = getattr(obj, name)

        def timed(*a: Any, _fn: Any = fn, **k: Any) -> Any:
            t = time.thread_time_ns()
            try:
                return _fn(*a, **k)
            finally:
                spent[0] += time.thread_time_ns() - t

        setattr(obj, name, timed)
    run("crucible", root, data, every, extra=[cb, lg])
    return spent[0] / STEPS / 1e3


def line(name: str, value: float, target: str, ok: bool) -> None:
    """One figure beside its target."""
    print(f"{name:<66} {value:7.3f}x   target {target:<8} {'OK' if ok else 'MISSED'}")


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = TensorDataset(torch.randn(STEPS * 16, 32), torch.randn(STEPS * 16, 1))
    data = DataLoader(ds, batch_size=16)
    configs = ("none", "crucible", "logger-only", "csv", "tensorboard")
    cadences = (50, 1)
    kinds = ("median step, wall", "mean step, wall", "mean step, process CPU")
    got: dict[tuple[str, int], list[tuple[float, float, float]]] = {(c, e): [] for c in configs for e in cadences}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hub = ct.configure(root / "crucible")
        run("none", root, data)  # warm-up: imports, allocator, first Trainer
        for r in range(ROUNDS):
            order = [(c, e) for e in cadences for c in configs]
            for c, e in order if r % 2 == 0 else reversed(order):
                got[c, e].append(run(c, root, data, e))
        hooks = {e: statistics.median(hook_cost(root, data, e) for _ in range(3)) for e in cadences}
        hub.flush()
        (rows,) = hub.store.execute("SELECT count(*) FROM events WHERE event = 'crucible_train.batch.stop' "
                                    "AND experiment_id IN (SELECT experiment_id FROM experiments "
                                    "WHERE name = 'bench')").fetchone()
        hub.close()

    def med(c: str, e: int, k: int) -> float:
        return statistics.median(x[k] for x in got[c, e])

    print(f"tiny MLP (32-64-1), {STEPS} steps per fit ({WARMUP} warm-up), {ROUNDS} interleaved rounds; "
          "medians over rounds, us per step")
    print(f"  {'':<37}" + "".join(f"{k:>24}" for k in kinds))
    for e in cadences:
        for c in configs:
            print(f"  log_every_n_steps={e:<3} {c:<15}" + "".join(f"{med(c, e, k):>24.1f}" for k in range(3)))
    print(f"  recorded: {rows} batch.stop events (expected {2 * ROUNDS * STEPS})")
    for e in cadences:
        print(f"[log_every_n_steps={e}]")
        for k, kind in enumerate(kinds):
            if k == 1:
                continue  # the mean wall step is printed above; preemption makes it the noisiest ratio
            r_none = med("crucible", e, k) / med("none", e, k)
            r_csv = med("crucible", e, k) / med("csv", e, k)
            r_tb = med("crucible", e, k) / med("tensorboard", e, k)
            line(f"  crucible / no logger ({kind})", r_none, "<= 1.05x", r_none <= 1.05)
            line(f"  crucible / CSVLogger ({kind})", r_csv, "< 1.00x", r_csv < 1.0)
            line(f"  crucible / TensorBoardLogger ({kind})", r_tb, "< 1.00x", r_tb < 1.0)
            r_lg = med("logger-only", e, k) / med("csv", e, k)
            line(f"  CrucibleLogger alone / CSVLogger ({kind})", r_lg, "< 1.00x", r_lg < 1.0)
        share = hooks[e] / med("none", e, 0)
        print(f"  {'time inside the callback and logger hooks':<50} {hooks[e]:7.1f} us/step "
              f"= {share:.1%} of a no-logger step (target <= 5%) {'OK' if share <= 0.05 else 'MISSED'}")


if __name__ == "__main__":
    main()
