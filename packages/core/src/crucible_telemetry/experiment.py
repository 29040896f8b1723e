"""Experiments: a named run with a hypothesis, an A/B condition, tags and its environment."""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .hub import Telemetry

__all__ = [
    "ENDINGS",
    "PAUSED",
    "RUNNING",
    "STOPPED",
    "Experiment",
    "check_params",
    "check_tags",
    "flatten_params",
    "new_experiment_id",
    "validate_id",
]

RUNNING, PAUSED, STOPPED = 0, 1, 2
_STATUS = {RUNNING: "running", PAUSED: "paused", STOPPED: "stopped"}
#: How a stopped experiment ended: ``stopped`` (normally) or ``failed`` (its code raised).
ENDINGS = ("stopped", "failed")


def new_experiment_id() -> str:
    """A sortable, unique id: ``exp-YYYYmmddTHHMMSS-<8 hex>``."""
    return f"exp-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"


_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@-]{0,199}\Z")  # \Z: no trailing newline, unlike $


def validate_id(argument: str, value: object) -> str:
    """Check an experiment or run id (it names a folder); raise naming ``argument`` otherwise."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidArgumentError(
            argument,
            f"{value!r} is not a valid id: use 1-200 of letters, digits and . _ : + @ - (starting alphanumeric)",
        )
    return value


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def check_tags(tags: object) -> tuple[str, ...]:
    """Tags are an iterable of strings (a lone string is one tag)."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        return (tags,)
    if not isinstance(tags, Iterable):
        raise InvalidArgumentError("tags", f"expected an iterable of strings, got {type(tags).__name__}")
    try:
        out: tuple[Any, ...] = tuple(tags)
    except TypeError:
        raise InvalidArgumentError("tags", f"expected an iterable of strings, got {type(tags).__name__}") from None
    for t in out:
        if not isinstance(t, str):
            raise InvalidArgumentError("tags", f"every tag is a string, got {t!r}")
    return out


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys (``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``); values become
    JSON scalars (numpy scalars and 0-d tensors numbers, bools bools), else lists of them, else text."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, f"{name}."))
        else:
            out[name] = _param_value(value)
    return out


def _param_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    try:  # numpy scalars, one-element arrays and tensors: their Python value (params are logged once: a sync is fine)
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else getattr(value, "size", None)
        if size == 1 and hasattr(value, "item"):
            item = value.item()
            if isinstance(item, float) and getattr(getattr(value, "dtype", None), "itemsize", 8) < 8:
                item = float(f"{item:.7g}")  # a float32 0.9 is 0.9, not 0.8999999761581421
            if isinstance(item, (bool, int, float, str)):
                return item
        return str(value)
    except Exception:  # a conversion or __str__ that raises: keep the type's name
        return f"<{type(value).__name__}>"


def check_params(argument: str, params: object) -> dict[str, Any]:
    """Validate and flatten a params dict (keys are strings); raise naming ``argument`` otherwise."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidArgumentError(argument, f"expected a dict of parameters, got {type(params).__name__}")
    bad = [k for k in params if not isinstance(k, str) or not k]
    if bad:
        raise InvalidArgumentError(argument, f"parameter names are non-empty strings, got {bad[0]!r}")
    return flatten_params(params)


@dataclass(eq=False)
class Experiment:
    """A live or finished experiment; also a context manager that binds it to the current context."""

    id: str
    name: str
    hypothesis: str | None = None
    condition: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stopped_at: datetime | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    pid: int = 0
    dropped_paused: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    framework: str | None = None
    notes: str | None = None
    ending: str = "stopped"  # how a stopped experiment ended: one of ENDINGS
    accounting: dict[str, Any] = field(default_factory=dict)  # the owner's hub.stats() when it stopped
    state: int = RUNNING
    owner: bool = True  # False when this process joined an experiment another process started
    _hub: Telemetry | None = field(default=None, repr=False)
    _tokens: list[contextvars.Token[Any]] = field(default_factory=list, repr=False)

    @property
    def status(self) -> str:
        """``running``, ``paused``, ``stopped`` or ``failed``."""
        return self.ending if self.state == STOPPED else _STATUS[self.state]

    @property
    def stopped(self) -> bool:
        """Whether the experiment has stopped (here, or in the record another process wrote)."""
        return self.state == STOPPED

    @property
    def hub(self) -> Telemetry | None:
        """The hub recording this experiment (None for a record read from the store)."""
        return self._hub

    @property
    def paused(self) -> bool:
        """Whether events are being dropped (and counted)."""
        return self.state == PAUSED

    def stop(self, status: str = "stopped") -> Experiment:
        """Stop the experiment (``status="failed"`` when its code failed) and flush what it recorded."""
        assert self._hub is not None
        return self._hub.stop_experiment(self.id, status=status)

    def log_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add (or overwrite) parameters; nested dicts become dotted keys. Returns all params."""
        assert self._hub is not None
        return self._hub.log_params(params, experiment_id=self.id)

    def pause(self) -> None:
        """Drop (and count) events until ``resume``."""
        assert self._hub is not None
        self._hub.pause_experiment(self.id)

    def resume(self) -> None:
        """Record events again."""
        assert self._hub is not None
        self._hub.resume_experiment(self.id)

    def bind(self) -> Experiment:
        """Make this the experiment of the current context (events of ``ct.emit`` go to it)."""
        assert self._hub is not None
        self._tokens.append(self._hub._bind(self))
        return self

    def unbind(self) -> None:
        """Undo the latest ``bind`` (a no-op when it was undone, or made in another context)."""
        assert self._hub is not None
        if self._tokens:
            self._hub._unbind(self._tokens.pop())

    def __enter__(self) -> Experiment:
        return self.bind()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        assert self._hub is not None
        self.unbind()
        if self.state != STOPPED:
            failed = exc_type is not None and not (isinstance(exc_type, type) and issubclass(exc_type, GeneratorExit))
            self._hub.stop_experiment(self.id, status="failed" if failed else "stopped")

    async def __aenter__(self) -> Experiment:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        self.__exit__(exc_type, *exc)

    def to_json(self) -> dict[str, Any]:
        """The record written to ``experiments/<id>.json``."""
        return {
            "experiment_id": self.id,
            "name": self.name,
            "hypothesis": self.hypothesis,
            "condition": self.condition,
            "tags": list(self.tags),
            "metadata": self.metadata,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "stopped_at": _iso(self.stopped_at),
            "host": self.host,
            "pid": self.pid,
            "dropped_paused": self.dropped_paused,
            "params": self.params,
            "framework": self.framework,
            "notes": self.notes,
            "environment": self.environment,
            "accounting": self.accounting,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Experiment:
        """Rebuild an experiment from its JSON record."""
        stopped = data.get("stopped_at")
        status = data.get("status", "stopped")
        return cls(
            id=data["experiment_id"],
            name=data.get("name", ""),
            hypothesis=data.get("hypothesis"),
            condition=data.get("condition"),
            tags=tuple(data.get("tags") or ()),
            metadata=data.get("metadata") or {},
            started_at=datetime.fromisoformat(data["started_at"]),
            stopped_at=datetime.fromisoformat(stopped) if stopped else None,
            environment=data.get("environment") or {},
            host=data.get("host", ""),
            pid=int(data.get("pid") or 0),
            dropped_paused=int(data.get("dropped_paused") or 0),
            params=data.get("params") or {},
            framework=data.get("framework"),
            notes=data.get("notes"),
            accounting=data.get("accounting") or {},
            ending=status if status in ENDINGS else "stopped",
            state={"running": RUNNING, "paused": PAUSED}.get(status, STOPPED),
            owner=False,
        )
