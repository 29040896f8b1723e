"""Small pieces of the callback: scalars, epoch indices, the never-raise guard, the failure watch."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["epoch_index", "guard", "scalar", "watch"]


def scalar(value: Any) -> float | None:
    """``value`` as a float, or None when it is not one number."""
    t = type(value)
    if t is float or t is int or t is bool or isinstance(value, numbers.Real):
        return float(value)
    numel = getattr(value, "numel", None)
    if numel is not None and callable(numel) and numel() == 1:
        return float(value.item())
    return None


def epoch_index(epoch: float | None) -> int:
    """The Trainer's fractional ``state.epoch`` as the index of the epoch under way (0-based)."""
    return math.floor(epoch + 1e-9) if epoch else 0


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a callback body; a failure is recorded and logged once, never raised into the Trainer."""

    @functools.wraps(fn)
    def wrapper(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            fn(self, args, state, control, **kwargs)
        except Exception as exc:
            self._failed(fn.__name__, exc)

    return wrapper


def watch(trainer: Any, method: str, owner: object, on_error: Callable[[Any, BaseException], None]) -> None:
    """Wrap ``trainer.<method>`` so that ``on_error(trainer, exc)`` sees a failure, then re-raise it unchanged."""
    original = getattr(trainer, method)
    if getattr(original, "__crucible_watched__", None) is owner:
        return

    @functools.wraps(original)
    def watched(*a: Any, **kw: Any) -> Any:
        try:
            return original(*a, **kw)
        except BaseException as exc:
            on_error(trainer, exc)
            raise

    watched.__crucible_watched__ = owner  # type: ignore[attr-defined]
    setattr(trainer, method, watched)
