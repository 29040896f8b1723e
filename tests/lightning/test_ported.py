"""Lightning's tests_pytorch/loggers/test_logger.py and test_all.py, ported: ours and the built-ins through one set of assertions.

Each test subclasses the logger under test the way upstream subclasses its ``CustomLogger`` or
``TensorBoardLogger`` (recording what Lightning hands it instead of patching with mocks), and runs
the built-ins (``CSVLogger``, ``TensorBoardLogger``) as controls in the same parametrisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import crucible_telemetry as ct
from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger

from .helpers import metrics

KINDS = pytest.mark.parametrize("kind", ["crucible", "csv", "tensorboard"])
_BASES = {"crucible": CrucibleLogger, "csv": CSVLogger, "tensorboard": TensorBoardLogger}


def _recording(kind: str, root: Path) -> Any:
    """The logger of ``kind``, subclassed to keep what Lightning calls it with (upstream's ``CustomLogger``)."""

    class Recording(_BASES[kind]):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.hparams_logged: Any = None
            self.metrics_logged: dict[str, Any] = {}
            self.finalized_status: str | None = None
            self.after_save_checkpoint_called = False

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            self.hparams_logged = params
            super().log_hyperparams(params, *args, **kwargs)

        def log_metrics(self, metrics: Any, step: Any = None) -> None:
            self.metrics_logged = metrics
            super().log_metrics(metrics, step)

        def finalize(self, status: str) -> None:
            self.finalized_status = status
            super().finalize(status)

        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            self.after_save_checkpoint_called = True
            super().after_save_checkpoint(checkpoint_callback)

    return Recording() if kind == "crucible" else Recording(save_dir=str(root))


def _trainer(root: Path, **kw: Any) -> Trainer:
    opts: dict[str, Any] = dict(default_root_dir=root, accelerator="cpu", enable_progress_bar=False)
    opts.update(kw)
    return Trainer(**opts)


class _LoggingModel(BoringModel):  # type: ignore[misc]
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.step(batch)
        self.log("train_loss", loss)
        return {"loss": loss}


@KINDS
def test_custom_logger(hub: ct.Telemetry, tmp_path: Path, kind: str) -> None:
    logger = _recording(kind, tmp_path)
    trainer = _trainer(tmp_path, max_steps=2, log_every_n_steps=1, logger=logger)
    trainer.fit(_LoggingModel())
    assert trainer.state.finished, f"Training failed with {trainer.state}"
    assert logger.metrics_logged != {}
    assert logger.after_save_checkpoint_called
    assert logger.finalized_status == "success"
    if kind == "crucible":  # and the run is a real experiment, ended as Lightning says
        assert hub.get_experiment(logger.run_id).status == "stopped"


@KINDS
def test_multiple_loggers(hub: ct.Telemetry, tmp_path: Path, kind: str) -> None:
    """Upstream's two ``CustomLogger``: here ours or a built-in beside a ``CSVLogger``, each sees the same calls."""
    logger1 = _recording(kind, tmp_path / "1")
    logger2 = _recording("csv", tmp_path / "2")
    trainer = _trainer(tmp_path, max_steps=2, log_every_n_steps=1, logger=[logger1, logger2])
    trainer.fit(_LoggingModel())
    assert trainer.state.finished, f"Training failed with {trainer.state}"
    for lg in (logger1, logger2):
        assert lg.metrics_logged != {}
        assert lg.finalized_status == "success"
    # BoringModel saves no hyper-parameters: Lightning logs none (ours records no params either)
    assert logger1.hparams_logged is None and logger2.hparams_logged is None
    if kind == "crucible":
        assert hub.get_experiment(logger1.run_id).params == {}


@KINDS
def test_adding_step_key(hub: ct.Telemetry, tmp_path: Path, kind: str) -> None:
    """A logged ``step`` key is the step Lightning hands the logger (upstream asserts it inside ``log_metrics``)."""
    seen: list[tuple[int, int]] = []
    logger = _recording(kind, tmp_path)
    logger.logged_step = 0
    base_log = logger.log_metrics

    def log_metrics(metrics: Any, step: Any = None) -> None:
        if "val_acc" in metrics:
            assert step == logger.logged_step
            seen.append((step, logger.logged_step))
        base_log(metrics, step)

    logger.log_metrics = log_metrics

    class CustomModel(BoringModel):  # type: ignore[misc]
        def on_train_epoch_end(self) -> None:
            self.logger.logged_step += 1
            self.log_dict({"step": self.logger.logged_step, "train_acc": self.logger.logged_step / 10})

        def on_validation_epoch_end(self) -> None:
            self.logger.logged_step += 1
            self.log_dict({"step": self.logger.logged_step, "val_acc": self.logger.logged_step / 10})

    trainer = _trainer(
        tmp_path, max_epochs=3, logger=logger, limit_train_batches=0.1, limit_val_batches=0.1, num_sanity_val_steps=0
    )
    trainer.fit(CustomModel())
    assert len(seen) == 3
    if kind == "crucible":
        stored = sorted((r["step"], r["value"]) for r in metrics(hub, logger.run_id) if r["metric"] == "val_acc")
        assert stored == [(s, pytest.approx(s / 10)) for s, _ in seen]


@KINDS
@pytest.mark.parametrize("log_hparams", [True, False])
def test_log_hyperparams_being_called(hub: ct.Telemetry, tmp_path: Path, kind: str, log_hparams: bool) -> None:
    """``save_hyperparameters(logger=False)``: Lightning does not call ``log_hyperparams``; ours records no params."""

    class TestModel(BoringModel):  # type: ignore[misc]
        def __init__(self, param_one: str, param_two: str) -> None:
            super().__init__()
            self.save_hyperparameters(logger=log_hparams)

    logger = _recording(kind, tmp_path)
    cb = CrucibleCallback(system_metrics=False)  # beside every logger: it must respect logger=False too
    trainer = _trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=0.1,
        limit_val_batches=0.1,
        num_sanity_val_steps=0,
        logger=logger,
        callbacks=[cb],
    )
    trainer.fit(TestModel("pytorch", "lightning"))
    if log_hparams:
        assert logger.hparams_logged is not None
    else:
        assert logger.hparams_logged is None
    params = hub.get_experiment(cb.experiment_id).params
    assert params == ({"param_one": "pytorch", "param_two": "lightning"} if log_hparams else {})


def test_logger_default_name(hub: ct.Telemetry, tmp_path: Path) -> None:
    """The built-ins default to ``lightning_logs``; ours deliberately names the experiment, unique in the store.

    ``name`` is both the folder under ``save_dir`` and the experiment's name in ``crucible runs``: a
    constant would give every run the same name, so a new one is ``lightning``, then ``lightning-2``
    ... (with a ``CrucibleCallback``: the LightningModule's class name, made unique the same way).
    """
    assert CSVLogger(save_dir=tmp_path).name == "lightning_logs"
    assert TensorBoardLogger(save_dir=tmp_path).name == "lightning_logs"
    first = CrucibleLogger()
    assert first.name == "lightning"
    first.log_metrics({"x": 1.0}, step=0)
    first.finalize("success")
    assert CrucibleLogger().name == "lightning-2"
