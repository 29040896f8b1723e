"""Query windows: ``Last(minutes=5)``, ``LastN(200)``, ``Range(t_start, t_end)`` (half-open)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import InvalidWindowError

__all__ = ["Last", "LastN", "Range", "Window", "to_datetime"]


def to_datetime(value: object, argument: str) -> datetime:
    """Accept a datetime (naive = UTC), epoch seconds, or an ISO-8601 string."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            return to_datetime(datetime.fromisoformat(value), argument)
        except ValueError:
            pass
    raise InvalidWindowError(argument, f"expected a datetime, epoch seconds or ISO-8601 string, got {value!r}")


@dataclass(frozen=True)
class Last:
    """Events of the last ``seconds + minutes + hours`` (relative to now)."""

    seconds: float = 0
    minutes: float = 0
    hours: float = 0

    def __post_init__(self) -> None:
        for name in ("seconds", "minutes", "hours"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InvalidWindowError(name, f"Last() takes non-negative finite numbers, got {v!r}")
        if self.seconds == self.minutes == self.hours == 0:
            raise InvalidWindowError("window", "Last() needs seconds, minutes or hours > 0")

    @property
    def delta(self) -> timedelta:
        """The window's length."""
        return timedelta(seconds=self.seconds, minutes=self.minutes, hours=self.hours)


@dataclass(frozen=True)
class LastN:
    """The newest ``n`` events."""

    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n <= 0:
            raise InvalidWindowError("n", f"LastN() takes a positive int, got {self.n!r}")


@dataclass(frozen=True)
class Range:
    """Events with ``t_start <= ts < t_end``."""

    t_start: object
    t_end: object

    def __post_init__(self) -> None:
        start = to_datetime(self.t_start, "t_start")
        end = to_datetime(self.t_end, "t_end")
        if end <= start:
            raise InvalidWindowError(
                "t_end", f"Range() needs t_end > t_start, got {start.isoformat()} .. {end.isoformat()}"
            )
        object.__setattr__(self, "t_start", start)
        object.__setattr__(self, "t_end", end)


Window = Last | LastN | Range
