"""A tiny GPT-2 built from a config and an in-memory dataset: a real Trainer run in about a second on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

VOCAB = 64


class TokenDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """``n`` random sequences of ``length`` tokens, labels = inputs (causal LM)."""

    def __init__(self, n: int, length: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.rows = torch.randint(0, VOCAB, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


def tiny_model(seed: int = 0) -> GPT2LMHeadModel:
    """One layer, 16 wide: a few thousand parameters."""
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=16, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)


def tiny_args(out: Path, **overrides: Any) -> TrainingArguments:
    """2 epochs of 16 samples, batch 2, gradient accumulation 2 (4 optimizer steps an epoch), log every step."""
    kw: dict[str, Any] = dict(
        output_dir=str(out),
        num_train_epochs=2,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    kw.update(overrides)
    return TrainingArguments(**kw)


def tiny_trainer(
    out: Path, callbacks: list[TrainerCallback], n: int = 16, model: Any = None, **overrides: Any
) -> Trainer:
    """A Trainer on the tiny model with an eval set of 4 samples."""
    return Trainer(
        model=model if model is not None else tiny_model(),
        args=tiny_args(out, **overrides),
        train_dataset=TokenDataset(n),
        eval_dataset=TokenDataset(4, seed=1),
        callbacks=callbacks,
    )


def events(hub: Any, exp_id: str, prefix: str = "crucible_train.") -> list[dict[str, Any]]:
    """The experiment's events under ``prefix``, in emission order."""
    hub.flush()
    with hub.connect() as con:
        rows = con.execute(
            "SELECT event, epoch, global_step, batch, rank, measurements, metadata FROM events "
            "WHERE experiment_id = ? AND starts_with(event, ?) "
            # processes in the order they started (pids wrap around), each in its own seq order
            "ORDER BY min(ts) OVER (PARTITION BY pid), pid, seq",
            [exp_id, prefix],
        ).fetchall()
    return [
        {
            "event": r[0].removeprefix(prefix),
            "epoch": r[1],
            "global_step": r[2],
            "batch": r[3],
            "rank": r[4],
            "m": dict(r[5]),
            "md": r[6],
        }
        for r in rows
    ]
