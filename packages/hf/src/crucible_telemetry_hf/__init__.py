"""crucible-telemetry for Hugging Face: ``Trainer(..., callbacks=[CrucibleCallback()])``."""

from .callback import CrucibleCallback

__all__ = ["CrucibleCallback"]
