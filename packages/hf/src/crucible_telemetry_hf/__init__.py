"""crucible-telemetry for Hugging Face: ``Trainer(..., callbacks=[CrucibleCallback()])``.

``transformers`` loads only when ``CrucibleCallback`` is first used, so the plugin's entry
point (which the core loads to read event definitions) stays free of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .callback import CrucibleCallback

__all__ = ["CrucibleCallback"]


def __getattr__(name: str) -> Any:
    if name == "CrucibleCallback":
        from .callback import CrucibleCallback

        return CrucibleCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
