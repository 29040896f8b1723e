"""``Telemetry``: one hub of bus, experiments, writer thread, store and live stats.

Module functions (``ct.emit`` ...) act on a process-wide default hub created on first
use; tests and advanced users build their own ``Telemetry(home=...)``.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import plugins
from .storage import encode
from .bus import Handler, HandlerFn, HandlerTable
from .environment import HOSTNAME, capture_environment, distributed_identity
from .errors import InvalidArgumentError, UnknownExperimentError
from .experiment import (
    PAUSED,
    RUNNING,
    STOPPED,
    Experiment,
    check_tags,
    new_experiment_id,
    validate_id,
)
from .streaming import Streaming
from .names import _CACHE as _NAMES
from .names import normalize
from .span import Span
from .storage.schema import EVENTS_SCHEMA, METRICS_SCHEMA
from .storage.records import read_record, write_record
from .storage.segments import SegmentWriter

__all__ = ["Telemetry", "default_home"]

log = logging.getLogger("crucible_telemetry")

_wall_ns = time.time_ns
_mono_ns = time.monotonic_ns
_HUBS: weakref.WeakSet[Telemetry] = weakref.WeakSet()
DRAIN_AT = 10_000  # buffered events that the writer turns into Arrow columns before the interval
FLUSH_CHUNK = 100_000  # rows built into Arrow at a time by a flush (bounds its working memory)


class _Later:
    """Stands for the fields of an ``emit_deferred`` event in the buffer until the writer builds them."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        self.build = build


def default_home() -> Path:
    """``$CRUCIBLE_HOME`` or ``./.crucible``."""
    return Path(os.environ.get("CRUCIBLE_HOME") or ".crucible").absolute()


class Telemetry:
    """A telemetry hub writing to one project folder (``home``).

    Args:
        home: project folder; default ``$CRUCIBLE_HOME`` or ``./.crucible``.
        flush_interval: seconds between writer flushes (a SIGKILL loses at most this much).
        batch_size: buffered events that trigger an early flush.
        buffer_limit: events waiting for the writer at most (about 1 s of a tight emit loop); beyond
            it new events are dropped and counted in ``dropped_overflow``, so memory stays bounded.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 100_000,
        buffer_limit: int = 500_000,
    ) -> None:
        if flush_interval <= 0:
            raise InvalidArgumentError("flush_interval", "must be > 0 seconds")
        self.home = Path(home).absolute() if home is not None else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.flush_interval = float(flush_interval)
        self.batch_size = int(batch_size)
        self.buffer_limit = int(buffer_limit)
        self._limit = self.buffer_limit
        self._handlers = HandlerTable(on_change=self._set_table)
        self._table: dict[str, tuple[Handler, ...]] = {}
        self._current: contextvars.ContextVar[Experiment | None] = contextvars.ContextVar("crucible_experiment", default=None)
        self._experiments: dict[str, Experiment] = {}
        self._fallback: Experiment | None = None
        self._buf: deque[tuple[Any, ...]] = deque()
        self._later: deque[None] = deque()  # one entry per deferred event not built yet (added before its row)
        self._pending: dict[str, list[pa.Table]] = {}
        self._pending_rows = 0
        self._flush_hooks: list[Callable[[], object]] = []
        self._mbuf: deque[tuple[Any, ...]] = deque()
        self._flush_lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._mseq = 0
        self.dropped_overflow = 0
        self.write_errors: deque[BaseException] = deque(maxlen=100)  # the latest problems, bounded
        self.error_count = 0
        self._logged: set[str] = set()
        self.events_written = 0
        self.events_writer = SegmentWriter(self.home, "events", "experiment_id", EVENTS_SCHEMA)
        self.metrics_writer = SegmentWriter(self.home, "metrics", "run_id", METRICS_SCHEMA)
        (self.home / "experiments").mkdir(exist_ok=True)
        self.streaming = Streaming(self)
        from .storage.store import Store

        self.store = Store(self)
        _HUBS.add(self)

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
                return
        hs = self._table.get(dotted)
        if hs is not None:
            self._handlers.dispatch(hs, parts, measurements, metadata)
        exp = self._current.get()
        if exp is None or exp.state:
            exp = self._resolve(exp)
            if exp is None:
                return
        if metadata is not None and "experiment_id" in metadata:
            exp = self._explicit(metadata["experiment_id"])
            if exp is None:
                return
        buf = self._buf
        if len(buf) < self._limit:
            buf.append((exp, dotted, measurements, metadata, _mono_ns()))
        else:
            self.dropped_overflow += 1

    def emit_deferred(self, name: Any, build: Callable[[], tuple[dict[str, Any], dict[str, Any] | None]],
                      experiment: Experiment | None = None) -> None:
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
            return
        if experiment is not None:
            exp: Experiment | None = experiment
            if experiment.state == PAUSED:
                experiment.dropped_paused += 1
                return
        else:
            exp = self._current.get()
            if exp is None or exp.state:
                exp = self._resolve(exp)
                if exp is None:
                    return
        buf = self._buf
        if len(buf) >= self._limit:
            self.dropped_overflow += 1
            return
        hs = self._table.get(dotted)
        if hs is None:
            self._later.append(None)
            buf.append((exp, dotted, _Later(build), None, mono))
            return
        try:
            m, md = build()
        except Exception as exc:
            self._record_error(exc)
            return
        self._handlers.dispatch(hs, parts, m, md)
        buf.append((exp, dotted, m, md, mono))

    def _build_later(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Writer side of ``emit_deferred``: build the deferred rows among ``rows``, in place of their stand-in."""
        out = []
        later = self._later
        for row in rows:
            fields = row[2]
            if type(fields) is _Later:
                if later:
                    later.popleft()
                try:
                    m, md = fields.build()
                except Exception as exc:
                    self._record_error(exc)
                    continue
                row = (row[0], row[1], m, md, row[4])
            out.append(row)
        return out

    def _resolve(self, exp: Experiment | None) -> Experiment | None:
        """Slow path of emit: a stopped context experiment falls back; a paused one counts the drop."""
        if exp is None or exp.state == STOPPED:
            exp = self._fallback
            if exp is None:
                return None
        if exp.state == PAUSED:
            exp.dropped_paused += 1
            return None
        return exp if exp.state == RUNNING else None

    def _record_error(self, exc: BaseException) -> None:
        """Keep a problem for inspection and log its kind once; never raise into the caller."""
        self.error_count += 1
        self.write_errors.append(exc)
        key = f"{type(exc).__name__}:{str(exc)[:60]}"
        if key not in self._logged:
            self._logged.add(key)
            log.warning("crucible_telemetry: %s (recorded, not raised; see Telemetry.write_errors)", exc)

    def _explicit(self, exp_id: Any) -> Experiment | None:
        exp = self._experiments.get(exp_id) if isinstance(exp_id, str) else None
        if exp is None and isinstance(exp_id, str):
            try:
                exp = self.join_experiment(exp_id)
            except Exception:
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
    ) -> Experiment:
        """Start (or, given the id of an existing one, join) an experiment and bind it to this context."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("name", "an experiment needs a non-empty name")
        for arg, val in (("hypothesis", hypothesis), ("condition", condition)):
            if val is not None and not isinstance(val, str):
                raise InvalidArgumentError(arg, f"expected a string, got {type(val).__name__}")
        tag_tuple = check_tags(tags)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgumentError("metadata", f"expected a dict, got {type(metadata).__name__}")
        if store is not None and Path(store).absolute() != self.home:
            raise InvalidArgumentError("store", f"this hub writes to {self.home}; build Telemetry(home={store!r}) for another store")
        if experiment_id is not None:
            validate_id("experiment_id", experiment_id)
            existing = read_record(self.home / "experiments", experiment_id)
            if existing is not None:
                return self.join_experiment(experiment_id, bind=bind)
        exp = Experiment(
            id=experiment_id or new_experiment_id(),
            name=name,
            hypothesis=hypothesis,
            condition=condition,
            tags=tag_tuple,
            metadata=dict(metadata or {}),
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
        return exp

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

    def experiment(self, name: str, hypothesis: str | None = None, condition: str | None = None,
                   tags: Iterable[str] = (), metadata: dict[str, Any] | None = None, **kw: Any) -> Experiment:
        """``with ct.experiment("name"):`` starts, binds, and stops on exit."""
        return self.start_experiment(name, hypothesis, condition, tags, metadata, bind=False, **kw)

    def _live(self, experiment_id: str) -> Experiment:
        exp = self._experiments.get(experiment_id) if isinstance(experiment_id, str) else None
        if exp is None:
            raise UnknownExperimentError(experiment_id)
        return exp

    def stop_experiment(self, experiment_id: str | Experiment) -> Experiment:
        """Stop an experiment, flush its events and compact its segments."""
        exp = self._live(experiment_id.id if isinstance(experiment_id, Experiment) else experiment_id)
        if exp.state == STOPPED:
            return exp
        self.flush()
        exp.state = STOPPED
        exp.stopped_at = datetime.now(UTC)
        if self._fallback is exp:
            live = [e for e in self._experiments.values() if e.state != STOPPED]
            self._fallback = live[-1] if live else None
        if exp.owner:
            write_record(self.home / "experiments", exp)
        self.events_writer.compact(exp.id)
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

    def _require_known(self, experiment_id: str) -> None:
        self.get_experiment(experiment_id)

    # --------------------------------------------------------- metrics records

    def record_metric(self, run_id: str, metric: str, value: Any, step: Any = None, epoch: Any = None,
                      kind: str = "value", tags: dict[str, str] | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Buffer one metric row for the ``metrics`` dataset (used by the MetricsStore adapter)."""
        if len(self._mbuf) >= self.buffer_limit:
            self.dropped_overflow += 1
            return
        self._ensure_writer()
        self._mbuf.append((run_id, metric, value, step, epoch, kind, tags, _wall_ns(), metadata))

    def reserve_metric_seq(self, n: int) -> int:
        """Reserve ``n`` sequence numbers of the ``metrics`` dataset (for rows written by other code); returns the first."""
        with self._flush_lock:
            first = self._mseq
            self._mseq = first + n
        return first

    # ------------------------------------------------------------------ writer

    def _ensure_writer(self) -> None:
        if self._thread is not None and not self._closed:  # fast path: forking resets _thread to None
            return
        t = self._thread
        if t is not None and t.is_alive() and getattr(t, "_crucible_pid", None) == os.getpid():
            return
        with self._flush_lock:
            t = self._thread
            if t is not None and t.is_alive() and getattr(t, "_crucible_pid", None) == os.getpid():
                return
            self._closed = False
            t = threading.Thread(target=self._run, name="crucible-writer", daemon=True)
            t._crucible_pid = os.getpid()  # type: ignore[attr-defined]
            self._thread = t
            t.start()

    def _run(self) -> None:
        last = time.monotonic()
        poll = min(0.05, self.flush_interval)
        while not self._closed:
            self._wake.wait(poll)
            self._wake.clear()
            now = time.monotonic()
            try:
                if now - last >= self.flush_interval or self._pending_rows >= self.batch_size or len(self._mbuf) >= self.batch_size:
                    last = now
                    self.flush()
                else:
                    # turn buffered dicts into compact Arrow columns early; the segment is written at the interval
                    while len(self._buf) >= DRAIN_AT and self._pending_rows < self.batch_size and not self._closed:
                        with self._flush_lock:
                            self._build_pending(DRAIN_AT)
            except Exception as exc:  # never dies: the error is recorded and retried next round
                self._record_error(exc)

    def add_flush_hook(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` at the start of every flush (so ``connect()`` and ``close()`` too)."""
        self._flush_hooks.append(fn)

    def flush(self) -> int:
        """Write everything buffered to the store now; returns the number of events written."""
        for fn in list(self._flush_hooks):
            try:
                fn()
            except Exception as exc:
                self._record_error(exc)
        with self._flush_lock:
            while self._buf:
                self._build_pending(FLUSH_CHUNK)
            return self._write_pending() + self._flush_metrics()

    def _drain(self, buf: deque[tuple[Any, ...]], limit: int | None = None) -> list[tuple[Any, ...]]:
        pop = buf.popleft
        n = len(buf) if limit is None else min(limit, len(buf))
        return [pop() for _ in range(n)]

    def _build_pending(self, limit: int | None = None) -> None:
        """Drain the buffer (at most ``limit`` rows) into per-experiment Arrow tables and live stats."""
        rows = self._drain(self._buf, limit)
        if self._later and rows:  # a deferred row is counted in _later before it enters the buffer
            rows = self._build_later(rows)
        if not rows:
            return
        seq0 = self._seq
        self._seq += len(rows)
        groups: dict[str, tuple[Experiment, list[tuple[Any, ...]], Any]] = {}
        exps = list(map(itemgetter(0), rows))
        first = exps[0]
        if exps.count(first) == len(exps):  # the usual case: one experiment, no regrouping
            groups[first.id] = (first, rows, np.arange(seq0, seq0 + len(rows), dtype=np.int64))
        else:
            for i, row in enumerate(rows):
                g = groups.get(row[0].id)
                if g is None:
                    g = groups[row[0].id] = (row[0], [], [])
                g[1].append(row)
                g[2].append(seq0 + i)
        del rows, exps
        host_ident = self._ident()
        # wall time = monotonic + offset taken now: one clock read per event on the hot path, and
        # the offset only moves if the system clock is stepped within one flush interval
        wall_offset = time.time_ns() - time.monotonic_ns()
        enrichers = list(plugins.ENRICHERS.values())
        for exp_id, (exp, grows, seqs) in groups.items():
            batch = encode.build_events(grows, seqs, host_ident, exp.tags, enrichers, wall_offset)
            self._pending.setdefault(exp_id, []).append(batch.table)
            self._pending_rows += batch.table.num_rows
            self.streaming.update(exp_id, batch.counts, batch.series)

    def _write_pending(self) -> int:
        written = 0
        for exp_id in list(self._pending):
            tables = self._pending[exp_id]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            try:
                self.events_writer.write(exp_id, table)
            except Exception as exc:  # kept for the next round, within the buffer limit
                self._record_error(exc)
                if self._pending_rows > self.buffer_limit:
                    dropped = tables.pop(0).num_rows
                    self._pending_rows -= dropped
                    self.dropped_overflow += dropped
                continue
            del self._pending[exp_id]
            self._pending_rows -= table.num_rows
            written += table.num_rows
        self.events_written += written
        if written >= DRAIN_AT:  # Arrow's allocator keeps freed pages; hand big batches' memory back
            pa.default_memory_pool().release_unused()
        return written

    def _flush_metrics(self) -> int:
        rows = self._drain(self._mbuf)
        if not rows:
            return 0
        seq0 = self._mseq
        self._mseq += len(rows)
        ident = self._ident()
        groups: dict[str, tuple[list[tuple[Any, ...]], list[int]]] = {}
        for i, row in enumerate(rows):
            g = groups.setdefault(row[0], ([], []))
            g[0].append(row)
            g[1].append(seq0 + i)
        for run_id, (grows, seqs) in groups.items():
            try:
                self.metrics_writer.write(run_id, encode.build_metrics(grows, seqs, ident))
            except Exception as exc:
                self._record_error(exc)
                log.warning("crucible_telemetry: could not write %d metrics of %s: %r", len(grows), run_id, exc)
        return len(rows)

    def _ident(self) -> tuple[str, int, int | None, int | None, int | None, int | None]:
        rank, local, node, world = distributed_identity()
        return (HOSTNAME, os.getpid(), rank, local, node, world)

    def close(self) -> None:
        """Flush, stop the writer thread and compact this process's segments."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread() and getattr(t, "_crucible_pid", None) == os.getpid():
            t.join(timeout=10)
        try:
            self.flush()
            for exp in list(self._experiments.values()):
                if exp.state != STOPPED and exp.owner:
                    write_record(self.home / "experiments", exp)
            self.events_writer.compact()
            self.metrics_writer.compact()
        except Exception as exc:
            log.warning("crucible_telemetry: close failed: %r", exc)

    def _after_fork(self) -> None:
        self._thread = None
        self._flush_lock = threading.RLock()
        self._buf.clear()
        self._later.clear()
        self._mbuf.clear()
        self._pending.clear()
        self._pending_rows = 0
        self.events_writer._lock = threading.Lock()
        self.metrics_writer._lock = threading.Lock()
        if any(e.state != STOPPED for e in self._experiments.values()):
            self._ensure_writer()

    # ------------------------------------------------------------------- query

    def connect(self, read_only: bool = True) -> Any:
        """A DuckDB connection with the views ``experiments``, ``events``, ``metrics`` and ``runs``."""
        self.flush()
        from .storage.views import connect

        return connect(self.home, read_only=read_only)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Experiment]:
        return iter(self.list_experiments())


def _close_all() -> None:
    for hub in list(_HUBS):
        hub.close()


def _after_fork_in_child() -> None:
    for hub in list(_HUBS):
        hub._after_fork()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
