"""One rule for what counts as a number, shared by the writer thread and the plugin kit."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["to_scalar"]


def to_scalar(value: Any, *, host_only: bool = False) -> float | None:
    """``value`` as a float when it is one real number, else None.

    Python and numpy numbers and bools, and one-element tensors or arrays (0-d included), are
    numbers; NaN and infinities are kept. Strings, None, complex numbers and anything with more
    or fewer than one element are not: they are dropped (with one warning), never parsed.
    ``host_only`` leaves a tensor on an accelerator alone (reading it would synchronise the
    device), as the writer thread must. A conversion raising TypeError, ValueError or
    OverflowError means "not a number"; any other error (a lost device ...) propagates to the
    caller's failure guard, except with ``host_only``, where the writer thread takes it as None.
    """
    t = type(value)
    if t is float:
        return value  # type: ignore[no-any-return]
    if t is int or t is bool:
        return float(value)
    if isinstance(value, (str, bytes)) or value is None:
        return None
    try:
        if isinstance(value, numbers.Real):
            return float(value)
        if host_only:
            device = getattr(value, "device", None)
            if device is not None and getattr(device, "type", "cpu") != "cpu":
                return None
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else getattr(value, "size", None)
        if size != 1 or not hasattr(value, "item"):
            return None
        item = value.item()
    except (TypeError, ValueError, OverflowError):
        return None
    except Exception:
        if host_only:
            return None
        raise
    return float(item) if isinstance(item, numbers.Real) else None
