"""The MetricsStore port: record, flush and read metric values through pluggable adapters.

An adapter is an instance, ``(AdapterClass, options)`` or a registered name (``"jsonl"``,
``"duckdb"`` and whatever plugins add through ``register_metrics_adapters``).
"""

from __future__ import annotations

import json
import numbers
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidArgumentError

__all__ = ["DuckDBMetrics", "JSONLMetrics", "MetricsAdapter", "MetricsStore"]


@runtime_checkable
class MetricsAdapter(Protocol):
    """What a MetricsStore adapter implements."""

    def record(
        self, run_id: str, metric: str, value: float, step: int | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """Buffer one value."""

    def flush(self, run_id: str) -> None:
        """Make everything recorded for ``run_id`` durable."""

    def read(self, run_id: str) -> list[dict[str, Any]]:
        """Every value recorded for ``run_id``, oldest first."""


def check_record(run_id: Any, metric: Any, value: Any, step: Any = None, metadata: Any = None) -> float:
    """Check one ``record`` call's arguments (naming the bad one); returns the value as a float.

    Every adapter calls it first, built-in or a plugin's (``ct.MetricsStore.check``), so bad input is
    refused the same way whichever store it was meant for.
    """
    if not isinstance(run_id, str) or not run_id:
        raise InvalidArgumentError("run_id", f"expected a non-empty string, got {run_id!r}")
    if not isinstance(metric, str) or not metric:
        raise InvalidArgumentError("metric", f"expected a non-empty string, got {metric!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError("value", f"metric {metric!r} needs a real number, got {type(value).__name__}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
        raise InvalidArgumentError("step", f"expected an int or None, got {step!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidArgumentError("metadata", f"expected a dict or None, got {type(metadata).__name__}")
    return float(value)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JSONLMetrics:
    """One JSON object per line: ``run_id, metric, value, step, timestamp`` (ISO-8601 UTC), ``metadata``.

    NaN and ±inf are written as the JSON extensions ``NaN``/``Infinity`` so they round-trip.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []

    def record(
        self, run_id: str, metric: str, value: float, step: int | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """Buffer one line."""
        v = check_record(run_id, metric, value, step, metadata)
        line = {
            "run_id": run_id,
            "metric": metric,
            "value": v,
            "step": None if step is None else int(step),
            "timestamp": _iso_now(),
            "metadata": metadata or {},
        }
        with self._lock:
            self._pending.append(line)

    def flush(self, run_id: str | None = None) -> None:
        """Append buffered lines to the file (all runs: lines are written in record order)."""
        with self._lock:
            lines, self._pending = self._pending, []
            if not lines:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                for line in lines:
                    f.write(json.dumps(line, default=repr) + "\n")

    def read(self, run_id: str) -> list[dict[str, Any]]:
        """Lines of ``run_id`` (flushed first)."""
        self.flush(run_id)
        if not self.path.exists():
            return []
        out = []
        with self.path.open(encoding="utf-8") as f:
            for raw in f:
                if raw.strip():
                    row = json.loads(raw)
                    if row.get("run_id") == run_id:
                        out.append(row)
        return out


class DuckDBMetrics:
    """Metrics into the store's ``metrics`` dataset (Parquet segments, the ``metrics`` view).

    With neither ``home`` nor ``hub`` it writes to the default hub of the moment (the ``"duckdb"``
    instance is shared, and ``ct.configure`` may replace the default after it was made).
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, hub: Any = None) -> None:
        from .. import _hubs

        self._hub = hub if hub is not None or home is None else _hubs.hub_for(home)

    @property
    def hub(self) -> Any:
        """The hub rows go to."""
        from .. import _hubs

        return self._hub if self._hub is not None else _hubs.default()

    def record(
        self,
        run_id: str,
        metric: str,
        value: float,
        step: int | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        epoch: int | None = None,
        kind: str = "value",
        tags: dict[str, str] | None = None,
    ) -> None:
        """Buffer one row for the writer thread."""
        from ..experiment import validate_id

        v = check_record(run_id, metric, value, step, metadata)
        validate_id("run_id", run_id)
        if metadata is not None and epoch is None and isinstance(metadata.get("epoch"), int):
            epoch = metadata["epoch"]
        self.hub.record_metric(run_id, metric, v, step, epoch, kind, tags, metadata)

    def flush(self, run_id: str | None = None) -> None:
        """Write buffered rows now."""
        self.hub.flush()

    def read(self, run_id: str) -> list[dict[str, Any]]:
        """Rows of ``run_id`` ordered by time: ``run_id, metric, value, step, timestamp, metadata`` and more."""
        rows: list[dict[str, Any]] = self.hub.store.arrow(
            "SELECT run_id, metric, value, step, epoch, kind, ts AS timestamp, rank, node, metadata "
            "FROM metrics WHERE run_id = ? ORDER BY ts, host, pid, seq",
            [run_id],
        ).to_pylist()
        for r in rows:
            r["metadata"] = json.loads(r["metadata"]) if r["metadata"] else {}
        return rows


_instances: dict[Any, MetricsAdapter] = {}
_lock = threading.Lock()


def resolve_class(name: str) -> type:
    """The adapter class registered as ``name``."""
    from .. import plugins

    plugins.load_plugins()
    cls = plugins.ADAPTERS.get(name)
    if cls is None:
        raise InvalidArgumentError("adapter", f"unknown adapter {name!r}; registered: {sorted(plugins.ADAPTERS)}")
    return cls


def resolve(adapter: Any) -> MetricsAdapter:
    """An adapter instance from an instance, ``(Class, options)``, a registered name, or ``(name, options)``."""
    if isinstance(adapter, str):
        adapter = (resolve_class(adapter), {})
    if isinstance(adapter, tuple) and len(adapter) == 2 and isinstance(adapter[0], str):
        adapter = (resolve_class(adapter[0]), adapter[1])  # ("name", options), as docs/plugins.md says
    if isinstance(adapter, tuple) and len(adapter) == 2 and isinstance(adapter[0], type):
        cls, options = adapter
        if not isinstance(options, dict):
            raise InvalidArgumentError("adapter", "options of (AdapterClass, options) must be a dict")
        try:
            key: Any = (cls, tuple(sorted((k, str(v)) for k, v in options.items())))
        except TypeError:
            key = None
        with _lock:
            inst = _instances.get(key) if key is not None else None
            if inst is None:
                inst = cls(**options)
                if key is not None:
                    _instances[key] = inst
        return inst
    if isinstance(adapter, MetricsAdapter):
        return adapter
    raise InvalidArgumentError(
        "adapter", f"expected an adapter instance, (AdapterClass, options) or a name, got {adapter!r}"
    )


class MetricsStore:
    """Static entry points of the port."""

    check = staticmethod(check_record)

    @staticmethod
    def record(
        adapter: Any,
        run_id: str,
        metric: str,
        value: float,
        step: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record one value through ``adapter``."""
        resolve(adapter).record(run_id, metric, value, step=step, metadata=metadata)

    @staticmethod
    def flush(adapter: Any, run_id: str) -> None:
        """Make ``run_id``'s values durable."""
        resolve(adapter).flush(run_id)

    @staticmethod
    def read(adapter: Any, run_id: str) -> list[dict[str, Any]]:
        """Every value recorded for ``run_id``."""
        return resolve(adapter).read(run_id)
