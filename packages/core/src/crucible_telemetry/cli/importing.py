"""``crucible import SOURCE PATH``: runs of TensorBoard, Lightning's CSVLogger, a HF Trainer, W&B (offline), Trackio or MLflow into the store."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ._common import home_of, out_console

__all__ = ["SOURCES", "register"]

#: Command word -> function name in ``crucible_telemetry.importers``.
SOURCES = {
    "tensorboard": "tensorboard",
    "lightning-csv": "lightning_csv",
    "hf-trainer": "hf_trainer",
    "wandb": "wandb",
    "trackio": "trackio",
    "mlflow": "mlflow",
}


def _import(args: argparse.Namespace) -> int:
    from .. import importers
    from .._hubs import set_default
    from ..hub import Telemetry

    hub = Telemetry(home_of(args))
    set_default(hub)
    log = logging.getLogger("crucible_telemetry.importers")
    quiet, log.disabled = log.disabled, True  # problems are printed below, once each
    try:
        result = getattr(importers, SOURCES[args.source])(args.path, hub=hub, name=args.name, progress=args.progress)
    finally:
        log.disabled = quiet
        hub.close()
    for path, message in result.problems:
        sys.stderr.write(f"crucible import: skipped {path}: {message}\n")
    out_console().print(str(result), markup=False, highlight=False)
    return 1 if result.problems and not (result.imported or result.existing) else 0


def register(add: Any) -> None:
    """Add ``import``."""
    p = add(
        "import",
        _import,
        help="import runs from TensorBoard, Lightning CSV logs, HF Trainer checkpoints, W&B offline runs, Trackio projects or MLflow stores",
        description=(
            "Import each run under PATH as one experiment (name, times, params, every scalar point).\n"
            "Importing the same runs again adds nothing; a damaged file is reported and skipped."
        ),
        epilog=(
            "examples:\n  crucible import tensorboard runs/\n  crucible import lightning-csv lightning_logs/\n"
            "  crucible import hf-trainer out/ --name gpt2-baseline\n  crucible import wandb wandb/"
        ),
    )
    p.add_argument("source", metavar="SOURCE", choices=sorted(SOURCES), help=", ".join(sorted(SOURCES)))
    p.add_argument(
        "path",
        metavar="PATH",
        help="logdir, log folder, output dir (searched recursively), Trackio project or MLflow tracking URI",
    )
    p.add_argument("--name", default=None, help="experiment name for every imported run (default: the source's)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress lines on stderr")
