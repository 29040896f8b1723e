"""Deprecated alias of ``crucible_telemetry.analysis.plots`` (kept for one release)."""

from .analysis.plots import *  # noqa: F403
from .analysis.plots import __all__  # noqa: F401
