"""A tiny LightningModule for either flavour, and a Trainer factory that runs in about a second on CPU."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

FLAVOURS = ("lightning.pytorch", "pytorch_lightning")


def flavour(name: str) -> Any:
    """The imported ``lightning.pytorch`` or ``pytorch_lightning``."""
    return importlib.import_module(name)


def module_class(name: str) -> type:
    """A regression MLP that logs ``train_loss`` (step and epoch), ``train_acc`` and ``val_loss``."""
    pl = flavour(name)

    class TinyRegressor(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self, lr: float = 0.05, hidden: int = 8, fail_at: int = -1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
            self.step_losses: list[float] = []
            self.val_losses: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == self.hparams.fail_at:
                raise ValueError(f"boom at batch {batch_idx}")
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.step_losses.append(loss.item())
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            self.log("train_acc", (loss < 1.0).float(), on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.val_losses.append(loss.item())
            self.log("val_loss", loss)

        def configure_optimizers(self) -> Any:
            first, last = self.net[0], self.net[2]  # two param groups: learning_rate and learning_rate_pg1
            return torch.optim.SGD(
                [{"params": first.parameters()}, {"params": last.parameters(), "lr": self.hparams.lr / 2}],
                lr=self.hparams.lr,
            )

    return TinyRegressor


def loaders(n: int = 64, batch: int = 8) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Train and validation loaders over a fixed random regression set."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=batch), DataLoader(ds, batch_size=batch)


def trainer(name: str, root: Any, **kw: Any) -> Any:
    """A quiet CPU Trainer of flavour ``name``."""
    pl = flavour(name)
    opts: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        limit_train_batches=5,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    opts.update(kw)
    return pl.Trainer(**{k: v for k, v in opts.items() if v is not None})
