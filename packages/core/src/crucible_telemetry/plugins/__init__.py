"""Plugins: the hook specifications, the plugin manager and the built-in plugin.

A plugin implements hooks from ``crucible_telemetry.plugins.hookspecs`` with ``@hookimpl`` and
registers itself through the entry-point group ``crucible_telemetry`` (or ``register_plugin``).
"""

from .hookspecs import hookimpl, hookspec
from .manager import (
    ADAPTERS,
    ENRICHERS,
    ENTRY_POINT_GROUP,
    EXPORTERS,
    FAILURES,
    call_each,
    get_plugin_manager,
    load_plugins,
    refresh,
    register_plugin,
    set_strict,
    strict,
)

__all__ = [
    "ADAPTERS",
    "ENRICHERS",
    "ENTRY_POINT_GROUP",
    "EXPORTERS",
    "FAILURES",
    "call_each",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "load_plugins",
    "refresh",
    "register_plugin",
    "set_strict",
    "strict",
]
