"""Real learning-rate sweeps for the runs table tests: tiny Lightning and Hugging Face Trainers on CPU.

Each run is started with ``ct.start_experiment(..., params={"lr": ...})`` around the fit, so the
tests do not depend on what the framework plugins record as params themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import crucible_telemetry as ct

LIGHTNING_LRS = (0.002, 0.05, 0.2)
HF_LRS = (1e-5, 3e-3, 3e-2)


def lightning_sweep(
    hub: ct.Telemetry, root: Path, lrs: tuple[float, ...] = LIGHTNING_LRS, logger: bool = True
) -> dict[float, str]:
    """One 3-epoch run per lr (validation every epoch), all named ``sweep``; returns lr -> experiment id."""
    from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

    from ..lightning import tiny

    prev = ct.set_default(hub)
    ids: dict[float, str] = {}
    try:
        module = tiny.module_class("lightning.pytorch")
        for lr in lrs:
            exp = hub.start_experiment("sweep", params={"lr": lr, "seed": 0}, tags=["sweep"])
            train, val = tiny.loaders()
            kw: dict[str, Any] = {"max_epochs": 3, "callbacks": [CrucibleCallback(hub=hub)]}
            kw["logger"] = CrucibleLogger(hub=hub) if logger else False
            trainer = tiny.trainer("lightning.pytorch", root / f"pl-{lr}", enable_checkpointing=False, **kw)
            trainer.fit(module(lr=lr), train, val)
            hub.stop_experiment(exp.id)
            ids[lr] = exp.id
    finally:
        ct.set_default(prev)
    hub.flush()
    return ids


def hf_sweep(hub: ct.Telemetry, root: Path, lrs: tuple[float, ...] = HF_LRS) -> dict[float, str]:
    """One 3-epoch run of the tiny GPT-2 per lr, evaluated every epoch; returns lr -> experiment id."""
    from crucible_telemetry_hf import CrucibleCallback

    from ..hf import _tiny

    prev = ct.set_default(hub)
    ids: dict[float, str] = {}
    try:
        for lr in lrs:
            exp = hub.start_experiment("gpt2-sweep", params={"learning_rate": lr})
            trainer = _tiny.tiny_trainer(
                root / f"hf-{lr}",
                [CrucibleCallback(hub=hub)],
                eval_strategy="epoch",
                num_train_epochs=3,
                learning_rate=lr,
            )
            trainer.train()
            hub.stop_experiment(exp.id)
            ids[lr] = exp.id
    finally:
        ct.set_default(prev)
    hub.flush()
    return ids


def logged_values(hub: ct.Telemetry, exp_id: str, metric: str) -> list[float]:
    """The values of a logged metric straight from the ``metrics`` view, in step order."""
    rows = hub.store.execute(
        "SELECT value FROM metrics WHERE run_id = ? AND metric = ? ORDER BY step, ts", [exp_id, metric]
    ).fetchall()
    return [r[0] for r in rows]
