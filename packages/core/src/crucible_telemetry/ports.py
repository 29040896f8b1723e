"""Deprecated alias of ``crucible_telemetry.storage.metrics_store`` (kept for one release)."""

from .storage.metrics_store import *  # noqa: F403
from .storage.metrics_store import __all__  # noqa: F401
