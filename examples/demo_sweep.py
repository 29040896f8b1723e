"""A Lightning learning-rate sweep with validation, and "which lr gave the lowest val loss?" in one step.

Three runs x two epochs of a tiny regressor on CPU (seconds). The answer comes from
``ct.runs(order_by="metrics.val_loss.min")`` and from ``crucible runs --params lr --metrics
val_loss.min --sort val_loss.min``. Run on its own: ``python examples/demo_sweep.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import crucible_telemetry as ct

LRS = (0.003, 0.03, 0.3)


def _regressor() -> type:
    import torch
    from lightning.pytorch import LightningModule

    class Regressor(LightningModule):  # type: ignore[misc]
        """y = sum(x) + noise, learnt by a linear layer; logs train_loss and val_loss."""

        def __init__(self, lr: float) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return Regressor


def _data() -> tuple[Any, Any]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(128, 1, generator=g)
    return DataLoader(TensorDataset(x[:96], y[:96]), batch_size=16), DataLoader(
        TensorDataset(x[96:], y[96:]), batch_size=16
    )


def run(hub: ct.Telemetry) -> dict[str, Any]:
    """Run the sweep into ``hub``, answer the question twice; returns the best lr and the runs frame."""
    from lightning.pytorch import Trainer

    from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

    regressor, (train, val) = _regressor(), _data()
    ids = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in LRS:
            with hub.experiment("lr-sweep", params={"lr": lr}, tags=("demo-sweep",)) as exp:
                trainer = Trainer(
                    max_epochs=2,
                    accelerator="cpu",
                    devices=1,
                    callbacks=[CrucibleCallback(hub=hub)],
                    logger=CrucibleLogger(hub=hub),
                    enable_progress_bar=False,
                    enable_model_summary=False,
                    enable_checkpointing=False,
                    log_every_n_steps=1,
                    default_root_dir=tmp,
                )
                trainer.fit(regressor(lr), train, val)
            ids.append(exp.id)
    frame = ct.runs({"tags": "demo-sweep"}, order_by="metrics.val_loss.min", hub=hub)
    print(frame[["name", "params.lr", "metrics.val_loss", "metrics.val_loss.min"]].to_string(index=False))
    best = frame.iloc[0]
    print(f"lowest val_loss: lr = {best['params.lr']} (val_loss.min = {best['metrics.val_loss.min']:.4g})")
    from demo_cli import _cli

    _cli(
        hub,
        "runs",
        "--tag",
        "demo-sweep",
        "--params",
        "lr",
        "--metrics",
        "val_loss,val_loss.min",
        "--sort",
        "val_loss.min",
    )
    curves = ct.history(frame, "val_loss", x="epoch", hub=hub)
    print(f"val_loss per run, one value per validation: {curves.groupby('experiment_id').size().tolist()}")
    return {"ids": ids, "best_lr": float(best["params.lr"]), "runs": frame}


def main() -> dict[str, Any]:
    """The sweep in a temporary store."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    with ct.Telemetry(Path(tempfile.mkdtemp(prefix="crucible-sweep-")) / "store", flush_interval=0.2) as hub:
        return run(hub)


if __name__ == "__main__":
    main()
