"""Bring runs of other tools into the store: ``ct.importers.tensorboard(LOGDIR)``, ``lightning_csv(DIR)``, ``hf_trainer(DIR)``, ``wandb(DIR)``, ``trackio(PROJECT)``, ``mlflow(URI)``

Each source run becomes one experiment (name, start and end, status, params, tags, every scalar point
as a ``metrics`` row with its step and the source's wall time in the row's metadata), whose id is
derived from the source's run id: importing the same run twice adds nothing. The source's own package
is an optional extra (``crucible-telemetry[import-tensorboard]`` ...), imported only when used.
"""

from __future__ import annotations

from ._common import ImportResult, experiment_id_for
from .hf_trainer import hf_trainer
from .lightning_csv import lightning_csv
from .mlflow import mlflow
from .tensorboard import tensorboard
from .trackio import trackio
from .wandb import wandb

__all__ = [
    "ImportResult",
    "experiment_id_for",
    "hf_trainer",
    "lightning_csv",
    "mlflow",
    "tensorboard",
    "trackio",
    "wandb",
]
