"""Plugin loading and the hook tables they fill.

Plugins are found once, lazily, through the entry-point group ``crucible_telemetry``.
Each fan-out hook runs one implementation at a time: a plugin that raises is logged
once with its name and the others go on, unless strict mode is on (tests), which re-raises.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import pluggy

from . import hookspecs

__all__ = ["get_plugin_manager", "load_plugins", "set_strict", "strict"]

log = logging.getLogger("crucible_telemetry")

ENTRY_POINT_GROUP = "crucible_telemetry"

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_loaded = False
_strict = os.environ.get("CRUCIBLE_STRICT", "") not in ("", "0", "false")

ENRICHERS: dict[str, Callable[..., Any]] = {}
ADAPTERS: dict[str, type] = {}
EXPORTERS: dict[str, Callable[..., Any]] = {}
FAILURES: list[tuple[str, str, BaseException]] = []


def set_strict(on: bool = True) -> None:
    """Re-raise plugin failures instead of logging them (meant for tests)."""
    global _strict
    _strict = on


def strict() -> bool:
    """Whether plugin failures re-raise."""
    return _strict


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (entry points loaded on first use)."""
    load_plugins()
    assert _pm is not None
    return _pm


def _call_each(hook_name: str, register: Callable[..., Any]) -> None:
    assert _pm is not None
    hook = getattr(_pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        try:
            impl.function(register=register)
        except Exception as exc:
            FAILURES.append((impl.plugin_name, hook_name, exc))
            if _strict:
                raise
            log.warning("crucible_telemetry plugin %r failed in %s: %r", impl.plugin_name, hook_name, exc)


def _register_event(name: object, category: str, description: str = "", enriched_fields: tuple[str, ...] = ()) -> None:
    from ..events import register_event

    register_event(name, category, description, tuple(enriched_fields))


def refresh() -> None:
    """Re-run the registration hooks (after registering a plugin by hand)."""
    with _lock:
        _call_each("register_events", _register_event)
        _call_each("register_enrichers", ENRICHERS.__setitem__)
        _call_each("register_metrics_adapters", ADAPTERS.__setitem__)
        _call_each("register_exporters", EXPORTERS.__setitem__)


def load_plugins() -> None:
    """Load built-ins and entry-point plugins once, then resolve their hooks into tables."""
    global _pm, _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        pm = pluggy.PluginManager("crucible_telemetry")
        pm.add_hookspecs(hookspecs)
        from . import builtin

        pm.register(builtin, name="crucible_telemetry.builtin")
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:
            FAILURES.append(("<entry points>", "load", exc))
            if _strict:
                raise
            log.warning("crucible_telemetry could not load a plugin: %r", exc)
        _pm = pm
        refresh()
        _loaded = True


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object at run time and resolve its hooks."""
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    refresh()
