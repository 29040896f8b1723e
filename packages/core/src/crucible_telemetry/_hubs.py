"""The process-wide default hub, created on first use (no state at import time)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal, overload

from .hub import Telemetry

__all__ = ["configure", "default", "hub_for", "set_default"]

_lock = threading.Lock()
_default: Telemetry | None = None
_others: dict[Path, Telemetry] = {}


@overload
def default() -> Telemetry: ...
@overload
def default(create: Literal[True]) -> Telemetry: ...
@overload
def default(create: bool) -> Telemetry | None: ...


def default(create: bool = True) -> Telemetry | None:
    """The default hub (``$CRUCIBLE_HOME`` or ``./.crucible``); ``create=False`` never makes one."""
    global _default
    hub = _default
    if hub is None:
        if not create:
            return None
        with _lock:
            if _default is None:
                _default = Telemetry()
            hub = _default
    return hub


def set_default(hub: Telemetry | None) -> Telemetry | None:
    """Make ``hub`` the default (None: the next call creates a fresh one); returns the previous."""
    global _default
    with _lock:
        prev, _default = _default, hub
    return prev


def configure(home: str | os.PathLike[str] | None = None, **options: Any) -> Telemetry:
    """Replace the default hub with one writing to ``home`` (the old one is flushed and closed)."""
    hub = Telemetry(home, **options)
    prev = set_default(hub)
    if prev is not None and prev is not hub:
        prev.close()
    return hub


def hub_for(home: str | os.PathLike[str] | None) -> Telemetry:
    """The default hub when ``home`` is None or its home; otherwise one hub per other folder."""
    d = default()
    if home is None or Path(home).absolute() == d.home:
        return d
    path = Path(home).absolute()
    with _lock:
        hub = _others.get(path)
        if hub is None:
            hub = _others[path] = Telemetry(path)
        return hub
