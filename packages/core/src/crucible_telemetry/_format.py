"""Number formatting shared by the command line and the HTML report."""

from __future__ import annotations

from typing import Any

__all__ = ["fmt_num"]


def fmt_num(x: Any, digits: int = 4) -> str:
    """Numbers short and readable; None as an empty cell."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x != x:  # nan
            return ""
        if x.is_integer() and abs(x) < 1e15:
            return f"{int(x):,}"
        if x == 0 or 1e-3 <= abs(x) < 1e6:
            return f"{x:.{digits}g}"
        return f"{x:.{max(1, digits - 1)}e}"
    return str(x)
