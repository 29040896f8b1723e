"""One SQL query over the ``events`` view gives the per-epoch loss of a Lightning run and an HF run alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from transformers import Trainer, TrainingArguments

import crucible_telemetry as ct
from crucible_telemetry_hf import CrucibleCallback as HFCallback
from crucible_telemetry_lightning import CrucibleCallback as LightningCallback
from tests.hf._tiny import TokenDataset, tiny_model

pytestmark = pytest.mark.slow

PER_EPOCH_LOSS = """
SELECT x.name, e.epoch, e.measurements['loss'] AS loss
FROM events e JOIN experiments x USING (experiment_id)
WHERE e.event = 'crucible_train.epoch.stop'
ORDER BY x.name, e.epoch
"""


class Regressor(pl.LightningModule):
    """A linear regressor that keeps its per-step training losses."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.losses: list[list[float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if batch_idx == 0:
            self.losses.append([])
        self.losses[-1].append(loss.item())
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def lightning_run(root: Path) -> list[list[float]]:
    torch.manual_seed(0)
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    y = x.sum(dim=1, keepdim=True)
    model = Regressor()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[LightningCallback(experiment_name="lightning-run")],
    )
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    return model.losses


def hf_run(out: Path) -> list[list[float]]:
    model = tiny_model()
    args = TrainingArguments(
        output_dir=str(out),
        run_name="hf-run",
        num_train_epochs=2,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=TokenDataset(16), callbacks=[HFCallback()])
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    return [[h["loss"] for h in logged if h["step"] <= 4], [h["loss"] for h in logged if h["step"] > 4]]


def test_one_sql_gives_per_epoch_loss_for_lightning_and_hf(hub: ct.Telemetry, tmp_path: Path) -> None:
    lightning_losses = lightning_run(tmp_path / "pl")
    hf_losses = hf_run(tmp_path / "hf")
    hub.flush()
    with hub.connect() as con:
        rows = con.execute(PER_EPOCH_LOSS).fetchall()
    assert [(name, epoch) for name, epoch, _ in rows] == [
        ("hf-run", 0),
        ("hf-run", 1),
        ("lightning-run", 0),
        ("lightning-run", 1),
    ]
    expected = [sum(v) / len(v) for v in hf_losses] + [sum(v) / len(v) for v in lightning_losses]
    assert [len(v) for v in hf_losses] == [4, 4] and [len(v) for v in lightning_losses] == [5, 5]
    assert [loss for *_, loss in rows] == pytest.approx(expected, rel=1e-6)
