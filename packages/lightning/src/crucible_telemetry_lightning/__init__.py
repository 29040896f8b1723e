"""crucible-telemetry for Lightning: ``CrucibleCallback`` (training events) and ``CrucibleLogger`` (metrics).

Both classes subclass the base classes of every installed flavour, so they work with
``lightning.pytorch.Trainer`` and ``pytorch_lightning.Trainer`` alike. Lightning is imported on
first access, not when the core loads this plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .callback import CrucibleCallback
    from .logger import CrucibleLogger

__all__ = ["CrucibleCallback", "CrucibleLogger"]


def __getattr__(name: str) -> Any:
    if name == "CrucibleCallback":
        from .callback import CrucibleCallback

        return CrucibleCallback
    if name == "CrucibleLogger":
        from .logger import CrucibleLogger

        return CrucibleLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
