"""A tiny Lightning lr sweep with seeds, run by real Trainers on CPU (about a second for six runs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import crucible_telemetry as ct

LRS = (0.005, 0.02, 0.08)


def lightning_sweep(
    hub: ct.Telemetry,
    root: Path,
    lrs: Sequence[float] = LRS,
    seeds: Sequence[int] = (0, 1),
    epochs: int = 3,
    tag: str = "sweep",
) -> list[str]:
    """One run per (lr, seed): params ``lr``, ``seed`` and ``hidden`` set at the start; returns the ids."""
    import torch

    from crucible_telemetry_lightning import CrucibleCallback

    from ..lightning import tiny

    ids = []
    for lr in lrs:
        for seed in seeds:
            exp = hub.start_experiment(
                "lr-sweep", params={"lr": lr, "seed": seed, "hidden": 8}, tags=(tag,), framework="lightning"
            )
            torch.manual_seed(seed)
            model = tiny.module_class("lightning.pytorch")(lr=lr)
            train, val = tiny.loaders()
            trainer = tiny.trainer(
                "lightning.pytorch",
                root,
                max_epochs=epochs,
                limit_train_batches=4,
                callbacks=[CrucibleCallback(experiment_id=exp.id, hub=hub, gradient_norm=False)],
                enable_checkpointing=False,
                logger=False,
            )
            trainer.fit(model, train, val)
            hub.stop_experiment(exp.id)
            ids.append(exp.id)
    hub.flush()
    return ids


def hf_sweep(
    hub: ct.Telemetry, root: Path, lrs: Sequence[float] = (1e-4, 3e-3), seeds: Sequence[int] = (0, 1)
) -> list[str]:
    """One 2-epoch run of the tiny GPT-2 per (learning_rate, seed), evaluated each epoch; the callback
    starts each run and records the ``TrainingArguments`` as its params (``output_dir`` differs too)."""
    import transformers

    from crucible_telemetry_hf import CrucibleCallback

    from ..hf import _tiny

    before = {e.id for e in hub.list_experiments()}
    prev = ct.set_default(hub)
    try:
        for lr in lrs:
            for seed in seeds:
                transformers.set_seed(seed)
                trainer = _tiny.tiny_trainer(
                    root / f"hf-{lr}-{seed}",
                    [CrucibleCallback(hub=hub)],
                    n=8,
                    eval_strategy="epoch",
                    num_train_epochs=2,
                    learning_rate=lr,
                    seed=seed,
                )
                trainer.train()
    finally:
        ct.set_default(prev)
    hub.flush()
    return [e.id for e in sorted(hub.list_experiments(), key=lambda e: e.started_at) if e.id not in before]
