"""Imports whichever Lightning flavours are installed: ``lightning.pytorch`` and/or ``pytorch_lightning``.

The two are distinct class hierarchies (a callback subclassing one is rejected by the other's
Trainer), so the public classes subclass the base classes of every flavour found: one
``CrucibleCallback`` works with ``lightning.Trainer`` and ``pytorch_lightning.Trainer`` alike.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

__all__ = [
    "FLAVOURS",
    "callback_bases",
    "dummy_experiment_class",
    "flavours",
    "global_rank",
    "logger_bases",
    "rank_zero_experiment",
]

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


def _logger_module(m: ModuleType) -> Any:
    return importlib.import_module(f"{m.__name__}.loggers.logger")


_dummy: type | None = None


def dummy_experiment_class() -> type:
    """A ``DummyExperiment`` of every installed flavour at once (``isinstance`` holds for each)."""
    global _dummy
    if _dummy is None:
        bases = tuple(dict.fromkeys(_logger_module(m).DummyExperiment for m in flavours()))
        _dummy = type("DummyExperiment", bases, {"__module__": __name__})
    return _dummy


def rank_zero_experiment(fn: Any) -> Any:
    """Lightning's own ``@rank_zero_experiment``: rank > 0 gets a ``DummyExperiment`` (of every flavour)."""
    primary = _logger_module(flavours()[0])
    wrapped = primary.rank_zero_experiment(fn)

    @functools.wraps(fn)
    def experiment(self: Any) -> Any:
        out = wrapped(self)
        return dummy_experiment_class()() if isinstance(out, primary.DummyExperiment) else out

    return experiment


def global_rank() -> int:
    """This process's global rank as Lightning set it (``rank_zero_only.rank``), else from the environment."""
    for m in flavours():
        rank: Any = getattr(getattr(m.utilities, "rank_zero", None), "rank_zero_only", None)
        r = getattr(rank, "rank", None)
        if isinstance(r, int) and r > 0:
            return r
    from crucible_telemetry.integration import distributed_identity

    return distributed_identity()[0] or 0
