"""Imports whichever Lightning flavours are installed: ``lightning.pytorch`` and/or ``pytorch_lightning``.

The two are distinct class hierarchies (a callback subclassing one is rejected by the other's
Trainer), so the public classes subclass the base classes of every flavour found: one
``CrucibleCallback`` works with ``lightning.Trainer`` and ``pytorch_lightning.Trainer`` alike.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["FLAVOURS", "callback_bases", "flavours", "global_rank", "logger_bases"]

#: Import names tried, in order; the first installed is the primary flavour.
FLAVOURS = ("lightning.pytorch", "pytorch_lightning")

_found: list[ModuleType] | None = None


def flavours() -> list[ModuleType]:
    """The installed flavours, ``lightning.pytorch`` first; ImportError when neither is."""
    global _found
    if _found is None:
        found = []
        for name in FLAVOURS:
            try:
                found.append(importlib.import_module(name))
            except ImportError:
                continue
        if not found:
            raise ImportError(
                "crucible-telemetry-lightning needs Lightning: pip install 'crucible-telemetry-lightning[lightning]' "
                "(lightning.pytorch) or '[pytorch-lightning]' (pytorch_lightning)"
            )
        _found = found
    return _found


def callback_bases() -> tuple[type, ...]:
    """``Callback`` of every installed flavour."""
    return tuple(m.Callback for m in flavours())


def logger_bases() -> tuple[type, ...]:
    """``loggers.Logger`` of every installed flavour."""
    return tuple(importlib.import_module(f"{m.__name__}.loggers").Logger for m in flavours())


def global_rank() -> int:
    """This process's global rank as Lightning set it (``rank_zero_only.rank``), else from the environment."""
    for m in flavours():
        rank: Any = getattr(getattr(m.utilities, "rank_zero", None), "rank_zero_only", None)
        r = getattr(rank, "rank", None)
        if isinstance(r, int) and r > 0:
            return r
    from crucible_telemetry.integration import distributed_identity

    return distributed_identity()[0] or 0
