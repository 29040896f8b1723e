"""Hook bodies never raise into the training loop: failures are recorded and logged once per hook.

Strict mode of the core (``CRUCIBLE_STRICT=1``, ``crucible_telemetry.plugins.set_strict``) re-raises,
so the test suite sees the plugin's own bugs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from crucible_telemetry import plugins

__all__ = ["failed", "guarded", "run_guarded"]

log = logging.getLogger("crucible_telemetry.lightning")

F = TypeVar("F", bound=Callable[..., Any])


def failed(owner: Any, hook: str, exc: Exception) -> None:
    """Record a hook's failure on ``owner.errors`` and log it once per hook (re-raised in strict mode)."""
    errors = owner.__dict__.setdefault("errors", [])
    errors.append(exc)
    warned = owner.__dict__.setdefault("_warned_hooks", set())
    if hook not in warned:
        warned.add(hook)
        log.warning("crucible_telemetry: %s.%s failed (%r); training goes on", type(owner).__name__, hook, exc)
    if plugins.strict():
        raise exc


def run_guarded(owner: Any, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``; a failure is recorded on ``owner.errors`` and returns None."""
    try:
        return fn(*args)
    except Exception as exc:
        failed(owner, hook, exc)
        return None


def guarded(fn: F) -> F:
    """Decorator for hook methods: same as ``run_guarded`` around the whole body."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            failed(self, fn.__name__, exc)
            return None

    return wrapper  # type: ignore[return-value]
