"""The hyper-parameters a fit records as params: what Lightning itself would hand its loggers.

Lightning logs ``hparams_initial`` of the module and of the datamodule, each only when its
``save_hyperparameters(logger=...)`` left logging on (``_log_hyperparams``); the callback follows
the same rule, so ``save_hyperparameters(logger=False)`` keeps secrets out of the store even
without a ``CrucibleLogger``.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

__all__ = ["hyperparameters", "plain_params"]


def plain_params(params: Mapping[str, Any] | Namespace | None) -> dict[str, Any]:
    """A plain nested dict (``Namespace`` and ``AttributeDict`` opened) for ``log_params``."""
    if params is None:
        return {}
    if isinstance(params, Namespace):
        params = vars(params)
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, Namespace):
            v = vars(v)
        out[str(k)] = plain_params(v) if isinstance(v, Mapping) and v else v
    return out


def hyperparameters(trainer: Any, pl_module: Any) -> dict[str, Any]:
    """The module's and datamodule's initial hparams that Lightning would log (empty when logging is off)."""
    out: dict[str, Any] = {}
    dm = getattr(trainer, "datamodule", None)
    for owner in (dm, pl_module):
        if owner is None or not getattr(owner, "_log_hyperparams", True):
            continue
        hp = getattr(owner, "hparams_initial", None)
        if hp:
            out.update(plain_params(hp))
    return out
