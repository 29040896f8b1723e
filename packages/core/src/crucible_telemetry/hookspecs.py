"""Deprecated alias of ``crucible_telemetry.plugins.hookspecs`` (kept for one release)."""

from .plugins.hookspecs import *  # noqa: F403
from .plugins.hookspecs import __all__, hookimpl, hookspec  # noqa: F401
