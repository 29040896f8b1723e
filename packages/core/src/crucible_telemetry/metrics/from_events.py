"""``attach_telemetry``: events from ``ct.emit`` become counters, gauges or histograms.

For each ``(event_name, kind)`` (or ``(event_name, kind, options)``) one handler is attached
with ``ct.attach``. The metric name is the dotted event name with ``.`` turned into ``_``:

* counter: ``<event>_total``, +1 per event (or + the ``measurement`` when one is given);
* histogram / gauge: ``<event>_<measurement>``; the default measurement is ``duration``
  (nanoseconds, recorded in seconds as ``<event>_duration_seconds``) or else the event's first
  numeric measurement.

Tags come from the event's metadata keys in ``tags`` (default :data:`DEFAULT_TAGS`); the
``condition`` tag falls back to the current experiment's condition, and ``status`` to ``ok``
on ``*.stop`` and ``error`` on ``*.exception`` events. Points carry the event's ``epoch`` and
``global_step`` so SQL can join them with the events.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ..names import normalize
from .kinds import COUNTER, HISTOGRAM, KINDS

if TYPE_CHECKING:
    from .registry import Metrics

__all__ = ["DEFAULT_TAGS", "HANDLER_ID", "attach_telemetry", "detach_telemetry", "replay", "standard_specs"]

log = logging.getLogger("crucible_telemetry")

DEFAULT_TAGS = ("model", "provider", "operation", "dataset", "condition", "status", "framework", "model_name")
HANDLER_ID = "crucible_metrics"


def standard_specs() -> list[tuple[Any, ...]]:
    """The standard LLM and training events as metrics: request counts and latencies, losses, epochs."""
    return [
        ("req_llm.request.stop", COUNTER),
        ("req_llm.request.exception", COUNTER),
        ("req_llm.request.stop", HISTOGRAM),
        ("crucible_train.batch.stop", HISTOGRAM),
        ("crucible_train.epoch.stop", COUNTER),
        ("crucible_train.batch.stop", "gauge", {"measurement": "loss"}),
    ]


class _Spec:
    __slots__ = ("event", "kind", "measurement", "name", "seconds")

    def __init__(self, event: str, kind: str, measurement: str | None, name: str | None) -> None:
        self.event = event
        self.kind = kind
        self.measurement = measurement
        self.name = name
        self.seconds = False


def _parse(specs: Any, measurement: str | None) -> list[_Spec]:
    if isinstance(specs, tuple) and len(specs) in (2, 3) and isinstance(specs[1], str) and specs[1] in KINDS:
        specs = [specs]
    out = []
    try:
        items = list(specs)
    except TypeError:
        raise InvalidArgumentError("specs", f"expected a list of (event_name, kind) pairs, got {specs!r}") from None
    if not items:
        raise InvalidArgumentError("specs", "at least one (event_name, kind) pair is required")
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise InvalidArgumentError("specs", f"expected (event_name, kind[, options]), got {item!r}")
        event, kind = item[0], item[1]
        opts = dict(item[2]) if len(item) == 3 and item[2] else {}
        if kind not in KINDS:
            raise InvalidArgumentError("specs", f"unknown kind {kind!r} for {event!r}; valid: {', '.join(KINDS)}")
        unknown = set(opts) - {"measurement", "name"}
        if unknown:
            raise InvalidArgumentError(
                "specs", f"unknown options {sorted(unknown)} for {event!r}; valid: measurement, name"
            )
        dotted = normalize(event)[0]
        out.append(_Spec(dotted, kind, opts.get("measurement", measurement), opts.get("name")))
    return out


def _first_numeric(measurements: dict[str, Any]) -> tuple[str, Any] | None:
    for k, v in measurements.items():
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            return k, v
    return None


def attach_telemetry(
    m: Metrics,
    specs: Any,
    *,
    measurement: str | None = None,
    tags: Iterable[str] | None = None,
    handler_id: str = HANDLER_ID,
    backfill: Any = None,
) -> str:
    """Attach one handler turning the listed events into metrics; returns the handler id.

    ``backfill``: experiment id(s) whose stored events are replayed into metrics first
    (with their original timestamps and run), so a dashboard attached late sees the whole run.
    """
    parsed = _parse(specs, measurement)
    tag_keys = tuple(DEFAULT_TAGS if tags is None else tags)
    if any(not isinstance(k, str) for k in tag_keys):
        raise InvalidArgumentError("tags", f"metadata keys are strings, got {tag_keys!r}")
    by_event: dict[str, list[_Spec]] = {}
    for s in parsed:
        by_event.setdefault(s.event, []).append(s)
    base = {ev: ev.replace(".", "_") for ev in by_event}
    hub = m.hub

    def points(
        name: tuple[str, ...], measurements: dict[str, Any], metadata: dict[str, Any] | None, condition: str | None
    ) -> list[tuple[str, str, float, dict[str, Any], int | None, int | None]]:
        dotted = ".".join(name)
        md = metadata or {}
        point_tags: dict[str, Any] = {}
        for k in tag_keys:
            v = md.get(k)
            if v is not None:
                point_tags[k] = v
        if "condition" in tag_keys and "condition" not in point_tags and condition:
            point_tags["condition"] = condition
        if "status" in tag_keys and "status" not in point_tags:
            if name[-1] == "stop":
                point_tags["status"] = "ok"
            elif name[-1] == "exception":
                point_tags["status"] = "error"
        step = _int(measurements.get("global_step", md.get("global_step")))
        epoch = _int(measurements.get("epoch", md.get("epoch")))
        out = []
        for s in by_event.get(dotted, ()):
            if s.kind == COUNTER and s.measurement is None:
                out.append((s.name or f"{base[dotted]}_total", s.kind, 1.0, point_tags, step, epoch))
                continue
            key = s.measurement
            if key is None:
                key = "duration" if "duration" in measurements else None
                if key is None:
                    first = _first_numeric(measurements)
                    if first is None:
                        continue
                    key = first[0]
            raw = measurements.get(key)
            if not isinstance(raw, numbers.Real) or isinstance(raw, bool):
                continue
            value = float(raw)
            if key == "duration":  # ns -> s, the Prometheus base unit
                metric, value = s.name or f"{base[dotted]}_duration_seconds", value / 1e9
            elif s.kind == COUNTER:
                metric = s.name or f"{base[dotted]}_{key}_total"
            else:
                metric = s.name or f"{base[dotted]}_{key}"
            out.append((metric, s.kind, value, point_tags, step, epoch))
        return out

    def handler(name: tuple[str, ...], measurements: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        try:
            exp = hub.current_experiment()
            now = time.time()
            for metric, kind, value, tg, step, epoch in points(
                name, measurements, metadata, exp.condition if exp is not None else None
            ):
                m.record(metric, value, tg, kind=kind, step=step, epoch=epoch, timestamp=now)
        except Exception as exc:  # never into the emitting code
            m.handler_errors += 1
            if m.handler_errors == 1:
                log.warning("crucible_telemetry: attach_telemetry could not record %s: %r", ".".join(name), exc)

    hub.detach(handler_id)
    hub.attach(handler_id, list(by_event), handler)
    if backfill is not None:
        replay(m, points, [backfill] if isinstance(backfill, str) else list(backfill), list(by_event))
    return handler_id


def _int(v: Any) -> int | None:
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        f = float(v)
        if math.isfinite(f) and abs(f) < 2**53:
            return int(f)
    return None


def replay(m: Metrics, points: Any, experiment_ids: list[str], events: list[str]) -> int:
    """Turn stored events of ``experiment_ids`` into metrics, with their original time and run."""
    hub = m.hub
    hub.flush()
    n = 0
    for exp_id in experiment_ids:
        exp = hub.get_experiment(exp_id)
        tbl = hub.store.arrow(
            "SELECT event, epoch_us(ts) AS us, measurements, metadata FROM events "
            "WHERE experiment_id = ? AND list_contains(?, event) ORDER BY ts, seq",
            [exp_id, events],
        )
        for row in tbl.to_pylist():
            meas = dict(row["measurements"] or [])
            md = json.loads(row["metadata"]) if row["metadata"] else None
            for metric, kind, value, tg, step, epoch in points(tuple(row["event"].split(".")), meas, md, exp.condition):
                m.record(metric, value, tg, kind=kind, step=step, epoch=epoch, timestamp=row["us"] / 1e6, run_id=exp_id)
                n += 1
    return n


def detach_telemetry(m: Metrics, handler_id: str = HANDLER_ID) -> bool:
    """Detach what ``attach_telemetry`` attached; returns whether it was attached."""
    return bool(m.hub.detach(handler_id))
