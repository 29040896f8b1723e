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

__all__ = ["PAUSED", "RUNNING", "STOPPED", "Experiment", "check_tags", "new_experiment_id", "validate_id"]

RUNNING, PAUSED, STOPPED = 0, 1, 2
_STATUS = {RUNNING: "running", PAUSED: "paused", STOPPED: "stopped"}


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
    state: int = RUNNING
    owner: bool = True  # False when this process joined an experiment another process started
    _hub: Telemetry | None = field(default=None, repr=False)
    _tokens: list[contextvars.Token[Any]] = field(default_factory=list, repr=False)

    @property
    def status(self) -> str:
        """``running``, ``paused`` or ``stopped``."""
        return _STATUS[self.state]

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

    def stop(self) -> Experiment:
        """Stop the experiment and flush what it recorded."""
        assert self._hub is not None
        return self._hub.stop_experiment(self.id)

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

    def __exit__(self, *exc: object) -> None:
        assert self._hub is not None
        self.unbind()
        if self.state != STOPPED:
            self._hub.stop_experiment(self.id)

    async def __aenter__(self) -> Experiment:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

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
            "environment": self.environment,
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
            state={"running": RUNNING, "paused": PAUSED}.get(status, STOPPED),
            owner=False,
        )
