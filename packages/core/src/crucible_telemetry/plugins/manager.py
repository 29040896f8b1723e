"""Plugin loading and the hook tables they fill.

Plugins are found once, lazily, through the entry-point group ``crucible_telemetry``; the
built-in plugin goes through the same door. The registration hooks are historic (marked so in
the specs): each plugin receives each of them once, when it is registered, however late. The
manager replays them itself, one implementation at a time, rather than through pluggy's
``call_historic``: pluggy drops an implementation whose replay raises, together with the rest
of its plugin's hooks. A plugin that raises is logged once with its name and the others go
on, unless strict mode is on (tests), which re-raises.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pluggy

from ..events import register_event, set_loader
from . import hookspecs

__all__ = [
    "ADAPTERS",
    "ENRICHERS",
    "ENTRY_POINT_GROUP",
    "EXPORTERS",
    "FAILURES",
    "call_each",
    "get_plugin_manager",
    "load_plugins",
    "refresh",
    "register_plugin",
    "set_strict",
    "strict",
]

log = logging.getLogger("crucible_telemetry")

ENTRY_POINT_GROUP = "crucible_telemetry"

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_loaded = False
_loading = False  # this thread is loading: a plugin querying the registry meanwhile must not recurse
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
    """Whether plugin failures re-raise (``$CRUCIBLE_STRICT`` or ``set_strict``)."""
    return _strict


def _register_event(name: object, category: str, description: str = "", enriched_fields: tuple[str, ...] = ()) -> None:
    register_event(name, category, description, tuple(enriched_fields))


#: Each registration hook and the callback its implementations receive.
REGISTRATIONS: dict[str, Callable[..., Any]] = {
    "register_events": _register_event,
    "register_enrichers": ENRICHERS.__setitem__,
    "register_metrics_adapters": ADAPTERS.__setitem__,
    "register_exporters": EXPORTERS.__setitem__,
}


def _failed(plugin_name: str, hook_name: str, exc: BaseException) -> None:
    FAILURES.append((plugin_name, hook_name, exc))
    if _strict:
        raise exc
    log.warning("crucible_telemetry plugin %r failed in %s: %r", plugin_name, hook_name, exc)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (entry points loaded on first use)."""
    load_plugins()
    assert _pm is not None, "plugins are still loading"
    return _pm


def call_each(hook_name: str, register: Callable[..., Any], plugin: object = None) -> None:
    """Call every implementation of ``hook_name`` (or ``plugin``'s alone) with ``register``, failures isolated.

    In registration order: the built-in plugin first, so a plugin may replace a built-in adapter or
    exporter by registering the same name, while a command name already taken is refused.
    """
    pm = get_plugin_manager() if _pm is None else _pm
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        if plugin is not None and impl.plugin is not plugin:
            continue
        try:
            impl.function(register=register)
        except Exception as exc:
            _failed(impl.plugin_name, hook_name, exc)


def refresh() -> None:
    """Run every registration hook again over every plugin (tables are keyed, so nothing doubles)."""
    with _lock:
        for hook_name, register in REGISTRATIONS.items():
            call_each(hook_name, register)


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    """Register one plugin and replay the registration hooks for it alone."""
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # a malformed plugin (a hook with a wrong signature ...)
        _failed(name or repr(plugin), "register", exc)
        return
    for hook_name, register in REGISTRATIONS.items():
        call_each(hook_name, register, plugin)


def load_plugins() -> None:
    """Load the built-in plugin and the entry-point plugins once, each through the historic hooks."""
    global _loaded, _loading
    if _loaded:
        return
    with _lock:
        if _loaded or _loading:
            return
        _loading = True
        try:
            _load()
            _loaded = True
        finally:
            _loading = False


def _load() -> None:
    """Build the manager, make the historic calls, then register the built-in and entry-point plugins."""
    global _pm
    pm = pluggy.PluginManager("crucible_telemetry")
    pm.add_hookspecs(hookspecs)
    _pm = pm
    from . import builtin

    _register(pm, builtin, "crucible_telemetry.builtin")
    try:
        points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:
        points = []
        _failed("<entry points>", "load", exc)
    for ep in points:
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            _failed(ep.name, "load", exc)
            continue
        _register(pm, plugin, ep.name)


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object at run time; the registration hooks reach it at once."""
    pm = get_plugin_manager()
    with _lock:
        _register(pm, plugin, name)


set_loader(load_plugins)
