"""``Telemetry``: one hub of bus, experiments, writer thread, store and live stats.

Module functions (``ct.emit`` ...) act on a process-wide default hub created on first
use; tests and advanced users build their own ``Telemetry(home=...)``. The buffers and the
writer thread live in ``storage/writer.py``, records in ``storage/records.py``, queries in
``storage/store.py``. About 640 lines, over the 400 the other modules keep: ``emit``'s fast
path reads experiment state inline, so the bus side and the lifecycle stay in one class; the
next split moves the lifecycle (start/join/stop/pause, signals) into a mixin of its own.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import multiprocessing.util as mp_util
import os
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import plugins
from .bus import Handler, HandlerFn, HandlerTable
from .environment import HOSTNAME, capture_environment, distributed_identity
from .errors import InvalidArgumentError, UnknownExperimentError
from .experiment import (
    ENDINGS,
    PAUSED,
    RUNNING,
    STOPPED,
    Experiment,
    check_params,
    check_tags,
    new_experiment_id,
    validate_id,
)
from .names import _CACHE as _NAMES
from .names import normalize
from .span import Span
from .storage import writer as writer_module
from .storage.records import read_record, write_record
from .storage.segments import SegmentWriter
from .storage.writer import Later, Writer
from .streaming import Streaming

__all__ = ["Telemetry", "default_home"]

log = logging.getLogger("crucible_telemetry")

_mono_ns = time.monotonic_ns
_HUBS: weakref.WeakSet[Telemetry] = weakref.WeakSet()


def default_home() -> Path:
    """``$CRUCIBLE_HOME`` or ``./.crucible``."""
    return Path(os.environ.get("CRUCIBLE_HOME") or ".crucible").absolute()


def _env_seconds(name: str) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        log.warning("crucible_telemetry: $%s=%r is not a number of seconds > 0; ignored", name, raw)
        return None
    return value


def default_flush_interval() -> float:
    """``$CRUCIBLE_RANK_FLUSH_INTERVAL`` in a distributed rank other than 0 (when set), else
    ``$CRUCIBLE_FLUSH_INTERVAL``, else 1 s."""
    rank = distributed_identity()[0]
    if rank:
        ranked = _env_seconds("CRUCIBLE_RANK_FLUSH_INTERVAL")
        if ranked is not None:
            return ranked
    return _env_seconds("CRUCIBLE_FLUSH_INTERVAL") or 1.0


class Telemetry:
    """A telemetry hub writing to one project folder (``home``).

    Args:
        home: project folder; default ``$CRUCIBLE_HOME`` or ``./.crucible``.
        flush_interval: seconds between writer flushes (a SIGKILL loses at most this much); default
            ``$CRUCIBLE_FLUSH_INTERVAL`` or 1 s, and in a distributed rank other than 0,
            ``$CRUCIBLE_RANK_FLUSH_INTERVAL`` when set (fewer files from many ranks; see the README).
        batch_size: buffered events that trigger an early flush.
        buffer_limit: events waiting for the writer at most (about 1 s of a tight emit loop); beyond
            it new events are dropped and counted in ``dropped_overflow``. Built rows not yet
            written are capped alike, so memory stays under about twice this many events; a
            flush writes what was buffered when it began, so a tight loop still writes each interval.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        flush_interval: float | None = None,
        batch_size: int = 100_000,
        buffer_limit: int = 500_000,
    ) -> None:
        if flush_interval is None:
            flush_interval = default_flush_interval()
        if flush_interval <= 0:
            raise InvalidArgumentError("flush_interval", "must be > 0 seconds")
        self.url: str | None = None  # the remote home (``s3://...``) this hub mirrors its spool to
        self.mirror: Any = None
        if home is None and "://" in os.environ.get("CRUCIBLE_HOME", ""):
            home = os.environ["CRUCIBLE_HOME"]
        if home is not None and "://" in str(home):
            from .storage.mirror import Mirror, spool_for

            self.url = str(home).rstrip("/")
            home = spool_for(self.url)
            self.mirror = Mirror(self.url, Path(home).absolute())
        self.home = Path(home).absolute() if home is not None else default_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidArgumentError(
                "home", f"cannot create the store folder {self.home}: {exc.strerror or exc}"
            ) from None
        self.flush_interval = float(flush_interval)
        self.batch_size = int(batch_size)
        self.buffer_limit = int(buffer_limit)
        self._limit = self.buffer_limit
        self._handlers = HandlerTable(on_change=self._set_table)
        self._table: dict[str, tuple[Handler, ...]] = {}
        self._current: contextvars.ContextVar[Experiment | None] = contextvars.ContextVar(
            "crucible_experiment", default=None
        )
        self._experiments: dict[str, Experiment] = {}
        self._samplers: dict[str, Any] = {}  # experiment id -> its system-metrics sampler
        self._fallback: Experiment | None = None
        self._run_ids: set[str] = set()  # run ids record_metric has validated
        plugins.load_plugins()  # the event registry and the enrichers, before the first batch is built
        self.writer = Writer(
            self.home,
            flush_interval=self.flush_interval,
            batch_size=self.batch_size,
            buffer_limit=self.buffer_limit,
            on_batch=self._on_batch,
            enrichers=lambda: list(plugins.ENRICHERS.values()),
        )
        if self.mirror is not None:
            from .storage.records import MIRRORS

            self.writer.events.mirror = self.writer.metrics.mirror = self.mirror
            MIRRORS[str(self.home / "experiments")] = self.mirror
            _close_before_executors_end()
        self._buf = self.writer.buf  # emit appends here directly: the hot path
        self._later = self.writer.later
        try:
            (self.home / "experiments").mkdir(exist_ok=True)
        except OSError:  # a read-only store: it can still be read
            pass
        self.streaming = Streaming(self)
        from .storage.store import Store

        self.store = Store(self)
        _HUBS.add(self)
        _install_signal_flush()
        mp_util.register_after_fork(self, Telemetry._in_mp_child)

    def _on_batch(self, exp_id: str, counts: dict[str, int], series: dict[tuple[str, str], Any]) -> None:
        self.streaming.update(exp_id, counts, series)

    # ------------------------------------------------------------------ events

    def emit(self, name: Any, measurements: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        """Record one event: the hot path (no I/O, no locks, no pluggy).

        ``measurements`` and ``metadata`` are read later by the writer thread: pass fresh
        dicts rather than mutating one after emitting it.
        """
        try:
            dotted, parts = _NAMES[name]
        except (KeyError, TypeError):
            try:
                dotted, parts = normalize(name)
            except Exception as exc:
                self._record_error(exc)
                self.writer.reject("invalid_name", at_emit=True)
                return
        hs = self._table.get(dotted)
        if hs is not None:
            self._handlers.dispatch(hs, parts, measurements, metadata)
        exp = self._current.get()
        if exp is None or exp.state:
            exp = self._resolve(exp, dotted)
            if exp is None:
                return
        if (
            metadata is not None
            and (type(metadata) is dict or isinstance(metadata, Mapping))
            and "experiment_id" in metadata
        ):
            exp = self._explicit(metadata["experiment_id"], dotted)
            if exp is None:
                return
        buf = self._buf
        if len(buf) < self._limit:
            buf.append((exp, dotted, measurements, metadata, _mono_ns()))
        else:
            self.writer.overflow()

    def emit_deferred(
        self,
        name: Any,
        build: Callable[[], tuple[dict[str, Any], dict[str, Any] | None]],
        experiment: Experiment | None = None,
    ) -> None:
        """Record an event now whose fields ``build()`` computes later, off the caller's thread.

        Time, order and experiment are taken now; ``build`` runs at the next flush (writer thread, or
        ``flush()``) and returns ``(measurements, metadata)``. For work too costly for the caller's
        thread, such as reading a finished stream's chunks. With handlers attached to the event it
        is built now, so handlers see it as with ``emit``. A ``build`` that raises is recorded in
        ``write_errors`` and its event dropped. ``experiment``: where it goes (default: as ``emit``).
        """
        mono = _mono_ns()
        try:
            dotted, parts = normalize(name)  # cached after the first call, like emit's lookup
        except Exception as exc:
            self._record_error(exc)
            self.writer.reject("invalid_name", at_emit=True)
            return
        if experiment is not None:
            exp: Experiment | None = experiment
            if experiment.state == PAUSED:
                experiment.dropped_paused += 1
                self.writer.dropped_paused += 1
                return
        else:
            exp = self._current.get()
            if exp is None or exp.state:
                exp = self._resolve(exp, dotted)
                if exp is None:
                    return
        buf = self._buf
        if len(buf) >= self._limit:
            self.writer.overflow()
            return
        hs = self._table.get(dotted)
        if hs is None:
            self._later.append(None)
            buf.append((exp, dotted, Later(build), None, mono))
            return
        try:
            m, md = build()
        except Exception as exc:
            self._record_error(exc)
            self.writer.reject("deferred_build_failed", dotted, at_emit=True)
            return
        self._handlers.dispatch(hs, parts, m, md)
        buf.append((exp, dotted, m, md, mono))

    def _resolve(self, exp: Experiment | None, name: str = "") -> Experiment | None:
        """Slow path of emit: a stopped context experiment falls back; a paused one counts the drop."""
        if exp is None or exp.state == STOPPED:
            exp = self._fallback
            if exp is None:
                self.writer.reject("no_experiment", name, at_emit=True)
                return None
        if exp.state == PAUSED:
            exp.dropped_paused += 1
            self.writer.dropped_paused += 1
            return None
        if exp.state != RUNNING:
            self.writer.reject("no_experiment", name, at_emit=True)
            return None
        return exp

    def _explicit(self, exp_id: Any, name: str = "") -> Experiment | None:
        """The experiment an event names in ``metadata['experiment_id']``; an invalid or unknown one is counted."""
        exp = self._experiments.get(exp_id) if isinstance(exp_id, str) else None
        if exp is None:
            try:
                validate_id("experiment_id", exp_id)
            except InvalidArgumentError:
                self.writer.reject("invalid_experiment_id", name, at_emit=True)
                return None
            try:
                exp = self.join_experiment(exp_id)
            except Exception:
                self.writer.reject("unknown_experiment_id", name, at_emit=True)
                return None
        if exp.state == PAUSED:
            exp.dropped_paused += 1
            self.writer.dropped_paused += 1
            return None
        return exp

    def _bind(self, exp: Experiment) -> contextvars.Token[Experiment | None]:
        """Bind ``exp`` to the current context (``Experiment.bind``)."""
        return self._current.set(exp)

    def _unbind(self, token: contextvars.Token[Experiment | None]) -> None:
        try:
            self._current.reset(token)
        except ValueError:  # unbound in another context than it was bound in
            pass

    def _set_table(self, table: dict[str, tuple[Handler, ...]]) -> None:
        self._table = table

    def span(self, prefix: Any, metadata: dict[str, Any] | None = None) -> Span:
        """Context manager (sync and async): ``prefix.start`` then ``.stop`` (duration ns) or ``.exception``."""
        return Span(self, prefix, metadata)

    def attach(self, handler_id: str, event_names: Iterable[Any] | Any, fn: HandlerFn, config: Any = None) -> None:
        """Call ``fn(name, measurements, metadata)`` on each of ``event_names``."""
        self._handlers.attach(handler_id, event_names, fn, config)

    def detach(self, handler_id: str) -> bool:
        """Detach a handler; returns whether it was attached."""
        return self._handlers.detach(handler_id)

    def list_handlers(self, prefix: Any = None) -> list[Handler]:
        """Attached handlers whose events start with ``prefix``."""
        return self._handlers.list(prefix)

    # ------------------------------------------------------------- experiments

    def start_experiment(
        self,
        name: str,
        hypothesis: str | None = None,
        condition: str | None = None,
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        store: Any = None,
        *,
        experiment_id: str | None = None,
        bind: bool = True,
        params: dict[str, Any] | None = None,
        framework: str | None = None,
        notes: str | None = None,
        system_metrics: bool | float = False,
    ) -> Experiment:
        """Start (or, given the id of an existing one, join) an experiment and bind it to this context.

        ``params`` are its hyper-parameters (nested dicts become dotted keys, see ``log_params``);
        ``framework`` names what trains it (``lightning``, ``transformers`` ...); ``notes`` is free text.
        ``system_metrics``: True (or an interval in seconds) samples the machine into the experiment
        until it stops (``crucible_telemetry.system``; ``$CRUCIBLE_SYSTEM_METRICS=0`` turns it off).
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("name", "an experiment needs a non-empty name")
        for arg, val in (("hypothesis", hypothesis), ("condition", condition)):
            if val is not None and not isinstance(val, str):
                raise InvalidArgumentError(arg, f"expected a string, got {type(val).__name__}")
        tag_tuple = check_tags(tags)
        flat = check_params("params", params)
        self._check_system_metrics(system_metrics)
        for arg, val in (("framework", framework), ("notes", notes)):
            if val is not None and not isinstance(val, str):
                raise InvalidArgumentError(arg, f"expected a string, got {type(val).__name__}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgumentError("metadata", f"expected a dict, got {type(metadata).__name__}")
        if store is not None and Path(store).absolute() != self.home:
            raise InvalidArgumentError(
                "store", f"this hub writes to {self.home}; build Telemetry(home={store!r}) for another store"
            )
        if experiment_id is not None:
            validate_id("experiment_id", experiment_id)
            existing = read_record(self.home / "experiments", experiment_id)
            if existing is not None:
                exp = self.join_experiment(experiment_id, bind=bind)
                if flat:
                    self.log_params(flat, experiment_id=exp.id)
                self._start_sampler(exp, system_metrics)
                return exp
        exp = Experiment(
            id=experiment_id or new_experiment_id(),
            name=name,
            hypothesis=hypothesis,
            condition=condition,
            tags=tag_tuple,
            metadata=dict(metadata or {}),
            params=flat,
            framework=framework,
            notes=notes,
            environment=capture_environment(),
            host=HOSTNAME,
            pid=os.getpid(),
            _hub=self,
        )
        self._ensure_writer()
        write_record(self.home / "experiments", exp)
        self._experiments[exp.id] = exp
        self._fallback = exp
        if bind:
            exp._tokens.append(self._current.set(exp))
        self._start_sampler(exp, system_metrics)
        return exp

    @staticmethod
    def _check_system_metrics(system_metrics: object) -> None:
        if system_metrics is True or system_metrics is False or system_metrics is None:
            return
        if isinstance(system_metrics, bool) or not isinstance(system_metrics, (int, float)) or system_metrics <= 0:
            raise InvalidArgumentError(
                "system_metrics", f"expected True, False or an interval in seconds, got {system_metrics!r}"
            )

    def _start_sampler(self, exp: Experiment, system_metrics: bool | float) -> None:
        if system_metrics is False or system_metrics is None:
            return
        from . import system

        interval = None if system_metrics is True else float(system_metrics)
        self._samplers[exp.id] = system.start(hub=self, interval=interval, experiment=exp)

    def _stop_sampler(self, exp: Experiment) -> None:
        sampler = self._samplers.pop(exp.id, None)
        if sampler is not None:
            from . import system

            if system.current() is sampler:
                system.stop()
            else:
                sampler.stop()

    def join_experiment(self, experiment_id: str, *, bind: bool = True) -> Experiment:
        """Record into an experiment another process started (DDP ranks, workers)."""
        exp = self._experiments.get(experiment_id)
        if exp is None:
            validate_id("experiment_id", experiment_id)
            exp = read_record(self.home / "experiments", experiment_id)
            if exp is None:
                raise UnknownExperimentError(experiment_id)
            exp._hub = self
            exp.state = RUNNING
            exp.dropped_paused = 0
            self._experiments[exp.id] = exp
        elif exp.state == STOPPED:  # joined again after it stopped here (a resumed run): reopen it
            exp.state = RUNNING
            exp.stopped_at = None
            if exp.owner:
                write_record(self.home / "experiments", exp)
        self._ensure_writer()
        self._fallback = exp
        if bind:
            exp._tokens.append(self._current.set(exp))
        return exp

    def experiment(
        self,
        name: str,
        hypothesis: str | None = None,
        condition: str | None = None,
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Experiment:
        """``with ct.experiment("name"):`` starts, binds, and stops on exit."""
        return self.start_experiment(name, hypothesis, condition, tags, metadata, bind=False, **kw)

    def _live(self, experiment_id: str) -> Experiment:
        exp = self._experiments.get(experiment_id) if isinstance(experiment_id, str) else None
        if exp is None:
            raise UnknownExperimentError(experiment_id)
        return exp

    def stop_experiment(self, experiment_id: str | Experiment, status: str = "stopped") -> Experiment:
        """Stop an experiment, flush its events and compact its segments.

        ``status="failed"`` records that its code failed (the exit of ``with ct.experiment()`` on an
        exception, a trainer's exception hook); stopping an already stopped experiment changes nothing.
        """
        if status not in ENDINGS:
            raise InvalidArgumentError("status", f"expected one of {', '.join(ENDINGS)}, got {status!r}")
        exp = self._live(experiment_id.id if isinstance(experiment_id, Experiment) else experiment_id)
        if exp.state == STOPPED:
            return exp
        self._stop_sampler(exp)
        self.flush()
        exp.ending = status
        exp.accounting = {"scope": "the process that stopped it", **self.stats()}
        exp.state = STOPPED
        exp.stopped_at = datetime.now(UTC)
        if self._fallback is exp:
            live = [e for e in self._experiments.values() if e.state != STOPPED]
            self._fallback = live[-1] if live else None
        if exp.owner:
            write_record(self.home / "experiments", exp)
        self.events_writer.compact(exp.id)
        self.metrics_writer.compact(exp.id)
        return exp

    def log_params(self, params: dict[str, Any], experiment_id: str | None = None) -> dict[str, Any]:
        """Add or overwrite parameters of an experiment (the current one by default) and record them.

        Nested dicts become dotted keys; numpy scalars and one-element tensors their Python value;
        anything else that is not a JSON scalar or a list of them its text. Returns all params.
        """
        flat = check_params("params", params)
        exp = self._live(experiment_id) if experiment_id is not None else self.current_experiment()
        if exp is None:
            raise InvalidArgumentError("experiment_id", "no experiment is live here: start one or pass its id")
        exp.params.update(flat)
        write_record(self.home / "experiments", exp)
        return dict(exp.params)

    def update_experiment(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        notes: str | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        params: dict[str, Any] | None = None,
    ) -> Experiment:
        """Rename, note, tag or add params to an experiment after the fact (live or stored)."""
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidArgumentError("name", "an experiment needs a non-empty name")
        if notes is not None and not isinstance(notes, str):
            raise InvalidArgumentError("notes", f"expected a string, got {type(notes).__name__}")
        add, remove = check_tags(add_tags), set(check_tags(remove_tags))
        flat = check_params("params", params)
        exp = self.get_experiment(experiment_id)
        if name is not None:
            exp.name = name
        if notes is not None:
            exp.notes = notes
        exp.tags = tuple(t for t in dict.fromkeys(exp.tags + add) if t not in remove)
        exp.params.update(flat)
        write_record(self.home / "experiments", exp)
        return exp

    def pause_experiment(self, experiment_id: str) -> None:
        """Drop and count events until resumed; streaming state is kept."""
        self._move(experiment_id, RUNNING, PAUSED)

    def resume_experiment(self, experiment_id: str) -> None:
        """Record events again after a pause."""
        self._move(experiment_id, PAUSED, RUNNING)

    def _move(self, experiment_id: str, before: int, after: int) -> None:
        """Change a live experiment's state from ``before`` to ``after`` (else nothing), and record it."""
        exp = self._live(experiment_id)
        if exp.state == before:
            exp.state = after
            if exp.owner:
                write_record(self.home / "experiments", exp)

    def is_paused(self, experiment_id: str) -> bool:
        """Whether an experiment is paused."""
        return self._live(experiment_id).state == PAUSED

    def get_experiment(self, experiment_id: str) -> Experiment:
        """A live experiment of this process, or a stored one."""
        exp = self._experiments.get(experiment_id) if isinstance(experiment_id, str) else None
        if exp is not None:
            return exp
        if isinstance(experiment_id, str):
            try:
                validate_id("experiment_id", experiment_id)
            except InvalidArgumentError:
                raise UnknownExperimentError(experiment_id) from None
            rec = read_record(self.home / "experiments", experiment_id)
            if rec is not None:
                return rec
        raise UnknownExperimentError(experiment_id)

    def list_experiments(self) -> list[Experiment]:
        """Every experiment in the store (any process), oldest first."""
        folder = self.home / "experiments"
        if self.mirror is not None:
            self.mirror.fetch_records(folder)  # every node's, from the remote home
        out: dict[str, Experiment] = {}
        for path in folder.glob("*.json"):
            rec = read_record(folder, path.stem)
            if rec is not None:
                out[rec.id] = rec
        out.update(self._experiments)
        return sorted(out.values(), key=lambda e: e.started_at)

    def current_experiment(self) -> Experiment | None:
        """The experiment events of this context go to, if any."""
        exp = self._current.get()
        if exp is None or exp.state == STOPPED:
            exp = self._fallback
        return exp

    # ----------------------------------------------------------------- writer

    def record_metric(
        self,
        run_id: str,
        metric: str,
        value: Any,
        step: Any = None,
        epoch: Any = None,
        kind: str = "value",
        tags: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        ts: float | datetime | None = None,
    ) -> None:
        """Buffer one metric row for the ``metrics`` dataset (used by the MetricsStore adapter).

        ``run_id`` names a folder, so it follows the rule of experiment ids (checked once per id).
        ``ts`` is when the value was measured (epoch seconds or an aware datetime; default now), for
        rows recorded after the fact, as importers do.
        """
        if run_id not in self._run_ids:
            validate_id("run_id", run_id)
            self._run_ids.add(run_id)
        wall_ns = None
        if ts is not None:
            if isinstance(ts, datetime):
                wall_ns = int(ts.timestamp() * 1e9)
            elif isinstance(ts, (int, float)) and not isinstance(ts, bool) and ts == ts:
                wall_ns = int(ts * 1e9)
            else:
                raise InvalidArgumentError("ts", f"expected epoch seconds or a datetime, got {ts!r}")
        self.writer.record_metric(run_id, metric, value, step, epoch, kind, tags, metadata, wall_ns)

    def reserve_metric_seq(self, n: int) -> int:
        """Reserve ``n`` sequence numbers of the ``metrics`` dataset (for rows written by other code); returns the first."""
        return self.writer.reserve_metric_seq(n)

    def add_flush_hook(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` at the start of every flush (so ``connect()`` and ``close()`` too)."""
        self.writer.add_flush_hook(fn)

    def flush(self) -> int:
        """Write everything buffered to the store now; returns the number of events written."""
        return self.writer.flush()

    def _ensure_writer(self) -> None:
        self.writer.ensure_thread()

    def _record_error(self, exc: BaseException) -> None:
        self.writer.record_error(exc)

    def stats(self) -> dict[str, Any]:
        """Where every event emitted in this process went.

        ``emitted = stored + pending + dropped_overflow + dropped_paused + rejected_total``, with
        ``rejected`` by reason (``metadata_not_a_dict``, ``unknown_experiment_id`` ...); ``pending``
        is what waits in the buffers, 0 right after ``flush()``.
        """
        return self.writer.stats()

    @property
    def dropped_overflow(self) -> int:
        """Events and metric rows dropped because a buffer was full (or the disk refused them)."""
        return self.writer.dropped_overflow

    @property
    def write_errors(self) -> deque[BaseException]:
        """The latest problems met while recording (bounded), never raised into the caller."""
        return self.writer.write_errors

    @property
    def error_count(self) -> int:
        """How many problems were recorded in ``write_errors`` (all of them, not only the latest)."""
        return self.writer.error_count

    @property
    def events_written(self) -> int:
        """Events this hub wrote to segments."""
        return self.writer.events_written

    @property
    def events_writer(self) -> SegmentWriter:
        """The segment writer of the ``events`` dataset."""
        return self.writer.events

    @property
    def metrics_writer(self) -> SegmentWriter:
        """The segment writer of the ``metrics`` dataset."""
        return self.writer.metrics

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran (a later ``emit`` into a live experiment reopens the writer)."""
        return self.writer.closed

    def close(self) -> None:
        """Flush, stop the writer thread and compact this process's segments."""
        if self.writer.closed:
            return
        self.writer.stop_thread()
        try:
            self.flush()
            for exp in list(self._experiments.values()):
                if exp.state != STOPPED and exp.owner:
                    write_record(self.home / "experiments", exp)
            self.writer.compact()
        except Exception as exc:
            log.warning("crucible_telemetry: close failed: %r", exc)

    def _in_mp_child(self) -> None:
        """In a multiprocessing child (a DataLoader worker): flush when it ends, for it ends with
        ``os._exit`` and so skips ``atexit``. Records stay the parent's to write."""
        mp_util.Finalize(self, self._flush_at_exit, exitpriority=100)

    def _flush_at_exit(self) -> None:
        self.writer.stop_thread()
        try:
            self.flush()
        except Exception as exc:
            log.warning("crucible_telemetry: flush at process exit failed: %r", exc)

    def _after_fork(self) -> None:
        self.writer.after_fork()
        if any(e.state != STOPPED for e in self._experiments.values()):
            self._ensure_writer()

    # ------------------------------------------------------------------- query

    def connect(self, read_only: bool = True) -> Any:
        """A DuckDB connection with the views ``experiments``, ``events``, ``metrics`` and ``runs``."""
        self.flush()
        if self.mirror is not None:  # a remote home: what every node has sent there
            return self.mirror.connect()
        from .storage.views import connect

        return connect(self.home, read_only=read_only)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Experiment]:
        return iter(self.list_experiments())


def _close_all() -> None:
    """At interpreter exit: end the experiments this process started and never stopped (``failed``
    when an uncaught exception is ending it, else ``stopped``, as MLflow and W&B do), then close.
    A process killed by a signal never gets here: its runs read as ``crashed``."""
    import sys

    raised = getattr(sys, "last_value", None)
    status = "failed" if raised is not None and not isinstance(raised, (SystemExit, KeyboardInterrupt)) else "stopped"
    if isinstance(raised, SystemExit) and raised.code not in (None, 0):
        status = "failed"
    for hub in list(_HUBS):
        if not hub.writer.closed:
            for exp in list(hub._experiments.values()):
                if exp.state != STOPPED and exp.owner:
                    try:
                        hub.stop_experiment(exp.id, status=status)
                    except Exception as exc:  # never raise at exit
                        log.warning("crucible_telemetry: stopping %s at exit failed: %r", exp.id, exc)
        hub.close()


def _after_fork_in_child() -> None:
    for hub in list(_HUBS):
        hub._after_fork()
    if _HUBS and os._exit is not _exit_after_flush:
        os._exit = _exit_after_flush  # type: ignore[assignment]


_real_exit = os._exit


def _exit_after_flush(code: int) -> None:  # type: ignore[misc]
    """``os._exit`` in a forked child (how DataLoader and multiprocessing workers, and many plain
    ``os.fork`` children, end): flush what the child buffered first, since no ``atexit`` runs."""
    try:
        for hub in list(_HUBS):
            hub._flush_at_exit()
    except BaseException:  # never keep a child from exiting
        pass
    _real_exit(code)


def _flush_all() -> None:
    for hub in list(_HUBS):  # never inside a flush of this thread: ``on_signal`` defers those
        try:
            hub.flush()
        except Exception as exc:
            log.warning("crucible_telemetry: flush on signal failed: %r", exc)


_SIGNALS = ("SIGTERM", "SIGHUP")  # what schedulers (SLURM, Kubernetes) send before a kill
_signals_installed = False


def _install_signal_flush() -> None:
    """Flush every hub on SIGTERM and SIGHUP, then hand the signal on to the handler installed before.

    Installed once, from the main thread (Python allows no other); an ignored signal stays
    ignored. A handler installed later should call the one it replaces for this to run.
    """
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    for name in _SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            prev = signal.getsignal(sig)
            if prev is signal.SIG_IGN:
                continue
            signal.signal(sig, _chain(prev))
        except (ValueError, OSError):  # not the main interpreter, or an embedding that forbids it
            continue


_deferred: list[int] = []  # signals that came while this (main) thread was inside a flush


def _redeliver() -> None:
    """After the main thread's flush: deliver the signals that waited for it (``Writer.AFTER_FLUSH``)."""
    if _deferred and threading.current_thread() is threading.main_thread():
        while _deferred:
            signal.raise_signal(_deferred.pop(0))


def _chain(prev: Any) -> Callable[[int, Any], None]:
    def on_signal(signum: int, frame: Any) -> None:
        if any(hub.writer.main_flushing for hub in list(_HUBS)):
            # interrupted inside a flush (a pool worker flushing at exit when terminate() comes):
            # let it finish, then this signal is raised again (``_redeliver``) and handled in full
            _deferred.append(signum)
            return
        _flush_all()
        if callable(prev):
            prev(signum, frame)
            return
        if signal.getsignal(signum) is not on_signal:
            return  # called by a later handler (Lightning's) that chains to us: ending is its call
        # the default action (or one set outside Python): end the process as that signal would
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    return on_signal


writer_module.AFTER_FLUSH.append(_redeliver)
atexit.register(_close_all)
_early_close: list[bool] = []


def _close_before_executors_end() -> None:
    """With a remote home, close at exit before ``concurrent.futures`` shuts its executors down
    (``threading._shutdown`` runs first, then ``atexit``): the uploads need them."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None and not _early_close:
        _early_close.append(True)
        register(_close_all)


os.register_at_fork(after_in_child=_after_fork_in_child)
