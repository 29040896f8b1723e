"""Experiments: a named run with a hypothesis, an A/B condition, tags and its environment."""

from __future__ import annotations

import contextvars
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .hub import Telemetry

__all__ = ["Experiment", "new_experiment_id"]

RUNNING, PAUSED, STOPPED = 0, 1, 2
_STATUS = {RUNNING: "running", PAUSED: "paused", STOPPED: "stopped"}


def new_experiment_id() -> str:
    """A sortable, unique id: ``exp-YYYYmmddTHHMMSS-<8 hex>``."""
    return f"exp-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"


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

    def __enter__(self) -> Experiment:
        assert self._hub is not None
        self._tokens.append(self._hub._current.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._hub is not None
        if self._tokens:
            try:
                self._hub._current.reset(self._tokens.pop())
            except ValueError:  # exited in another context
                pass
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


def write_record(folder: Path, exp: Experiment) -> None:
    """Write an experiment's JSON atomically (tmp + rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{exp.id}.json"
    tmp = folder / f".{exp.id}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
    tmp.write_bytes(orjson.dumps(exp.to_json(), default=repr, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def read_record(folder: Path, experiment_id: str) -> Experiment | None:
    """Load ``experiments/<id>.json`` or None."""
    try:
        return Experiment.from_json(orjson.loads((folder / f"{experiment_id}.json").read_bytes()))
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, ValueError):
        return None
