"""Small pieces of the callback: epoch indices and the watch that sees a failing ``train()``."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

__all__ = ["epoch_index", "watch"]


def epoch_index(epoch: float | None) -> int:
    """The Trainer's fractional ``state.epoch`` as the index of the epoch under way (0-based)."""
    return math.floor(epoch + 1e-9) if epoch else 0


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
