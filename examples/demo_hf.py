"""Demo: a real Hugging Face Trainer run (a tiny GPT-2 built from a config, seconds on CPU) recorded by CrucibleCallback."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

import crucible_telemetry as ct
from crucible_telemetry_hf import CrucibleCallback

PER_EPOCH = """
    SELECT epoch, round(measurements['loss'], 4) AS loss, round(measurements['val_loss'], 4) AS val_loss,
           global_step, round(duration / 1e6, 1) AS ms
    FROM events WHERE experiment_id = ? AND event = 'crucible_train.epoch.stop' ORDER BY epoch
"""


class Tokens(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Random token sequences; the labels are the inputs (causal language modelling)."""

    def __init__(self, n: int, seed: int) -> None:
        self.rows = torch.randint(0, 64, (n, 16), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


def run(hub: ct.Telemetry) -> dict[str, Any]:
    """Train 3 epochs with evaluation each epoch; print the per-epoch loss from SQL."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, n_positions=16, bos_token_id=0, eos_token_id=0)
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            run_name="hf-tiny-gpt2",
            num_train_epochs=3,
            learning_rate=5e-3,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=2,
            logging_steps=1,
            eval_strategy="epoch",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            log_level="error",
        )
        cb = CrucibleCallback(hub=hub, tags=("demo",))
        trainer = Trainer(
            model=model, args=args, train_dataset=Tokens(64, 0), eval_dataset=Tokens(16, 1), callbacks=[cb]
        )
        trainer.remove_callback(PrinterCallback)
        result = trainer.train()
    seconds = time.perf_counter() - t0
    exp = next(e for e in reversed(hub.list_experiments()) if e.name == "hf-tiny-gpt2")
    hub.flush()
    print(f"  HF Trainer: {result.global_step} optimizer steps in {seconds:.1f} s -> experiment {exp.id}")
    print("  " + " ".join(PER_EPOCH.split()))
    with hub.connect() as con:
        rows = con.execute(PER_EPOCH, [exp.id]).fetchall()
        (n_metrics,) = con.execute("SELECT count(*) FROM metrics WHERE run_id = ?", [exp.id]).fetchone()
    for row in rows:
        print("   ", row)
    print(f"  {n_metrics} logged values in the `metrics` view; callback errors: {len(cb.errors)}")
    return {
        "experiment_id": exp.id,
        "global_step": result.global_step,
        "train_loss": result.training_loss,
        "epoch_loss": [r[1] for r in rows],
        "val_loss": [r[2] for r in rows],
        "metrics": n_metrics,
        "seconds": round(seconds, 2),
        "errors": len(cb.errors),
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as home:
        hub = ct.configure(home)
        print(run(hub))
        hub.close()
