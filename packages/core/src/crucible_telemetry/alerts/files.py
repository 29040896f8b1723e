"""Rule files: TOML or JSON (standard library only), the same fields as the Python constructors.

TOML::

    interval = "10s"            # optional: the evaluation grid

    [[rule]]
    name = "loss_nan"
    kind = "nonfinite"          # nonfinite | threshold | absent
    measurement = "loss"        # event defaults to crucible_train.batch.stop

    [[rule]]
    name = "llm_p95_slow"
    kind = "threshold"
    event = "req_llm.request.stop"
    measurement = "duration"
    agg = "p95"
    window = "5m"
    op = ">"
    value = 2e9
    for = "1m"
    labels = { severity = "page" }

JSON: ``{"interval": "10s", "rules": [{...}, ...]}`` (``rule`` or ``rules`` in either format).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from .rules import KINDS, Rule, absent, nonfinite, parse_duration, threshold

__all__ = ["load", "load_file", "rules_from"]

_FIELDS = {
    "nonfinite": {"measurement", "event", "window", "for_", "keep_firing_for", "where", "by", "labels", "summary"},
    "threshold": {
        "measurement",
        "op",
        "value",
        "event",
        "agg",
        "window",
        "for_",
        "keep_firing_for",
        "where",
        "by",
        "labels",
        "summary",
    },
    "absent": {"event", "window", "for_", "keep_firing_for", "where", "labels", "summary"},
}
_MAKERS: dict[str, Callable[..., Rule]] = {"nonfinite": nonfinite, "threshold": threshold, "absent": absent}


def _rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise InvalidArgumentError("rules", f"{where}: expected a table of fields, got {type(spec).__name__}")
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise InvalidArgumentError("rules", f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    name = spec.pop("name", None)
    if "for" in spec:
        spec["for_"] = spec.pop("for")
    unknown = set(spec) - _FIELDS[kind]
    if unknown:
        raise InvalidArgumentError("rules", f"{where} ({name!r}): unknown field(s) {', '.join(sorted(unknown))}")
    try:
        return _MAKERS[kind](name, **spec)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError("rules", f"{where} ({name!r}): {exc}") from None
    except TypeError as exc:
        raise InvalidArgumentError("rules", f"{where} ({name!r}): {exc}") from None


def rules_from(data: Any, source: str = "rules") -> tuple[list[Rule], float | None]:
    """Rules (and the optional ``interval``) from parsed TOML/JSON data."""
    if isinstance(data, list):
        data = {"rules": data}
    if not isinstance(data, dict):
        raise InvalidArgumentError("rules", f"{source}: expected a table with 'rule' entries")
    specs = data.get("rules", data.get("rule"))
    if not isinstance(specs, list) or not specs:
        raise InvalidArgumentError("rules", f"{source}: no rules (write [[rule]] tables, or a 'rules' list)")
    interval = data.get("interval")
    iv = None if interval is None else parse_duration("interval", interval, allow_zero=False)
    rules = [_rule(s, f"{source}: rule {i + 1}") for i, s in enumerate(specs)]
    names = [r.name for r in rules]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InvalidArgumentError("rules", f"{source}: rule names used twice: {', '.join(sorted(dup))}")
    return rules, iv


def load_file(path: str | os.PathLike[str]) -> tuple[list[Rule], float | None]:
    """Rules and interval of a ``.toml`` or ``.json`` file (a clear error naming the file otherwise)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError("rules", f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgumentError("rules", f"{p} is not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    return rules_from(data, str(p))


def load(path: str | os.PathLike[str]) -> list[Rule]:
    """The rules of a TOML or JSON rule file."""
    return load_file(path)[0]
