"""Demo: a real Lightning run (a tiny MLP, seconds on CPU) recorded by CrucibleCallback and CrucibleLogger."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import crucible_telemetry as ct

PER_EPOCH = """
    SELECT epoch, round(measurements['loss'], 4) AS loss, round(measurements['val_loss'], 4) AS val_loss,
           round(measurements['learning_rate'], 4) AS lr, global_step, round(duration / 1e6, 1) AS ms
    FROM events WHERE experiment_id = ? AND event = 'crucible_train.epoch.stop' ORDER BY epoch
"""
STEPS = """
    SELECT count(*) AS steps, round(median(duration) / 1e3) AS median_step_us,
           round(median(measurements['samples_per_second'])) AS samples_per_s,
           round(avg(measurements['gradient_norm']), 3) AS mean_grad_norm
    FROM events WHERE experiment_id = ? AND event = 'crucible_train.batch.stop'
"""
LOGGED = """
    SELECT metric, count(*) AS rows, min(step) AS first_step, max(step) AS last_step, round(last(value ORDER BY seq), 4) AS last
    FROM metrics WHERE run_id = ? AND kind = 'value' GROUP BY metric ORDER BY metric
"""


def _model() -> Any:
    import lightning.pytorch as pl

    class Regressor(pl.LightningModule):
        """y = sum(x) + noise, learned by a 2-layer MLP."""

        def __init__(self, lr: float = 0.05, hidden: int = 16) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)}

    return Regressor()


def run(hub: ct.Telemetry) -> dict[str, Any]:
    """Train 3 epochs with validation and checkpoints; print what was recorded, from SQL."""
    import lightning.pytorch as pl

    from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(512, 1))
    train, val = DataLoader(data, batch_size=32, shuffle=True), DataLoader(data, batch_size=128)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        cb, lg = CrucibleCallback(hub=hub, tags=("demo",)), CrucibleLogger(hub=hub)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=3,
            log_every_n_steps=4,
            default_root_dir=root,
            callbacks=[cb],
            logger=lg,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(_model(), train, val)
        exp_id = cb.experiment_id
        ckpt_exists = bool(trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path)
    seconds = time.perf_counter() - t0
    exp = hub.get_experiment(exp_id)
    print(
        f"  Lightning: {trainer.global_step} steps in {seconds:.1f} s -> experiment {exp.id} "
        f"({exp.name}, {exp.metadata['parameters']} parameters, params {exp.params})"
    )
    with hub.connect() as con:
        epochs = con.execute(PER_EPOCH, [exp.id]).fetchall()
        steps = con.execute(STEPS, [exp.id]).fetchone()
        logged = con.execute(LOGGED, [exp.id]).fetchall()
        (n_ckpt,) = con.execute(
            "SELECT count(*) FROM events WHERE experiment_id = ? AND event = 'crucible_train.checkpoint.saved'",
            [exp.id],
        ).fetchone()
    print("  per epoch (epoch, loss, val_loss, lr, global_step, ms):")
    for row in epochs:
        print("   ", row)
    print(
        f"  batch.stop: {steps[0]} steps, median {steps[1]} us/step, {steps[2]} samples/s, "
        f"mean gradient norm {steps[3]}; {n_ckpt} checkpoint.saved"
    )
    print("  metrics view (metric, rows, first step, last step, last value):")
    for row in logged:
        print("   ", row)
    print(f"  callback errors: {len(cb.errors)}, logger errors: {len(lg.errors)}, checkpoint written: {ckpt_exists}")
    return {
        "experiment_id": exp.id,
        "global_step": trainer.global_step,
        "epoch_loss": [r[1] for r in epochs],
        "val_loss": [r[2] for r in epochs],
        "learning_rate": [r[3] for r in epochs],
        "steps": steps[0],
        "checkpoints": n_ckpt,
        "metrics": sum(r[1] for r in logged),
        "seconds": round(seconds, 2),
        "errors": len(cb.errors) + len(lg.errors),
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as home:
        hub = ct.configure(home)
        print(run(hub))
        hub.close()
