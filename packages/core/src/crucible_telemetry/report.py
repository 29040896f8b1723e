"""Deprecated alias of ``crucible_telemetry.analysis.report`` (kept for one release)."""

from .analysis.report import *  # noqa: F403
from .analysis.report import __all__  # noqa: F401
