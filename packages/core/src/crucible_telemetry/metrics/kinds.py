"""Metric kinds, the kind ``record()`` infers from a name and value, and tag normalisation."""

from __future__ import annotations

import itertools
import math
import numbers
import re
from typing import Any

from ..errors import InvalidArgumentError

__all__ = [
    "COUNTER",
    "DEFAULT_BUCKETS",
    "GAUGE",
    "HISTOGRAM",
    "KINDS",
    "OVERFLOW",
    "check_buckets",
    "check_name",
    "infer_kind",
    "tag_value",
    "tags_key",
]

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
KINDS = (COUNTER, GAUGE, HISTOGRAM)

#: The tag value of the series that new tag sets fold into once a metric hits its cardinality bound.
OVERFLOW = "__overflow__"

#: Prometheus' default buckets (seconds): fine for latencies recorded in seconds.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Buckets for names ending in ``_ms`` (milliseconds).
MS_BUCKETS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)

_COUNTER_SUFFIXES = ("_total", "_count", "_counter", "_errors", "_requests")
_HISTOGRAM_SUFFIXES = ("_seconds", "_ms", "_us", "_ns", "_duration", "_latency", "_time", "_size", "_bytes")
_HISTOGRAM_WORDS = ("duration", "latency", "elapsed", "ttft")


def infer_kind(name: str, value: Any) -> str:
    """The kind a user would guess for ``record(name, value)``.

    * ``*_total``, ``*_count`` (also ``_counter``, ``_errors``, ``_requests``), or an int value
      of exactly 1 (counting one occurrence): **counter**;
    * ``*_seconds``, ``*_ms``, ``*_us``, ``*_ns``, ``*_bytes``, ``*_size``, ``*_time`` or a name
      containing ``duration``, ``latency``, ``elapsed`` or ``ttft``: **histogram**;
    * anything else (a level such as ``queue_depth`` or ``loss``): **gauge**.
    """
    low = name.lower()
    if low.endswith(_COUNTER_SUFFIXES):
        return COUNTER
    if low.endswith(_HISTOGRAM_SUFFIXES) or any(w in low for w in _HISTOGRAM_WORDS):
        return HISTOGRAM
    if type(value) is int and value == 1:
        return COUNTER
    return GAUGE


def check_name(name: Any) -> str:
    """A metric name is a non-empty string."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("name", f"a metric name must be a non-empty string, got {name!r}")
    return name


def check_value(name: str, value: Any, argument: str = "value") -> float:
    """A metric value is a real number (bools count as 0/1); NaN is allowed and stored."""
    if not isinstance(value, numbers.Real):
        raise InvalidArgumentError(argument, f"metric {name!r} needs a real number, got {type(value).__name__}")
    return float(value)


def tag_value(value: Any) -> str:
    """Tag values are strings; others are converted (None -> "", bools -> "true"/"false")."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


def normalize_tags(tags: Any) -> dict[str, str]:
    """A ``{str: str}`` copy of ``tags`` (keys and values converted to strings)."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        try:
            tags = dict(tags)
        except (TypeError, ValueError):
            raise InvalidArgumentError("tags", f"expected a dict of tag values, got {type(tags).__name__}") from None
    return {str(k): tag_value(v) for k, v in tags.items()}


def tags_key(tags: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The canonical (sorted) key of a normalised tag set."""
    return tuple(sorted(tags.items()))


def check_buckets(buckets: Any) -> tuple[float, ...]:
    """Histogram bucket upper bounds: finite, strictly increasing (``+Inf`` is always added)."""
    try:
        bs = tuple(float(b) for b in buckets)
    except (TypeError, ValueError):
        raise InvalidArgumentError("buckets", f"expected a sequence of numbers, got {buckets!r}") from None
    bs = tuple(b for b in bs if b != math.inf)
    if not bs or any(not math.isfinite(b) for b in bs) or any(b2 <= b1 for b1, b2 in itertools.pairwise(bs)):
        raise InvalidArgumentError("buckets", f"need finite, strictly increasing upper bounds, got {buckets!r}")
    return bs


def default_buckets(name: str) -> tuple[float, ...]:
    """Milliseconds buckets for ``*_ms`` names, Prometheus' seconds buckets otherwise."""
    return MS_BUCKETS if name.lower().endswith("_ms") else DEFAULT_BUCKETS


_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")


def prom_name(name: str) -> str:
    """A valid Prometheus metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``)."""
    out = _NAME_BAD.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def prom_label(name: str) -> str:
    """A valid Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``, not starting with ``__``)."""
    out = _LABEL_BAD.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    if out.startswith("__"):
        out = "x" + out
    return out
