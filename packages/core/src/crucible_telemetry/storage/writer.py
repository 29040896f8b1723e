"""The writer: buffers filled by ``emit`` and ``record_metric``, and the thread that turns them into segments.

``emit`` only appends a tuple to ``Writer.buf``. The thread (one per process, restarted after
fork) drains the buffer into per-experiment Arrow tables every ``flush_interval`` seconds, or
early when ``batch_size`` rows wait, and writes one segment per experiment and flush.
About 470 lines, over 400: the thread, the event and metric buffers and their retry-in-pieces
on a refused write share one lock and one set of counters; the retry logic is the next to move out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..environment import HOSTNAME, distributed_identity
from . import encode
from .schema import EVENTS_SCHEMA, METRICS_SCHEMA
from .segments import SegmentWriter

__all__ = ["DRAIN_AT", "FLUSH_CHUNK", "Later", "Writer"]

log = logging.getLogger("crucible_telemetry")

_wall_ns = time.time_ns
#: Called when a thread's outermost ``Writer.flush`` ends (the hub re-delivers a deferred signal).
AFTER_FLUSH: list[Callable[[], None]] = []
DRAIN_AT = 10_000  # buffered events that the writer turns into Arrow columns before the interval
FLUSH_CHUNK = 100_000  # rows built into Arrow at a time by a flush (bounds its working memory)

#: ``on_batch(experiment_id, counts, series)``: the live stats of each built batch.
OnBatch = Callable[[str, dict[str, int], dict[tuple[str, str], Any]], None]


class Later:
    """Stands for the fields of an ``emit_deferred`` event in the buffer until the writer builds them."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        self.build = build


class Writer:
    """The buffers of one hub and the thread that writes them to the ``events`` and ``metrics`` datasets.

    A buffered event row is ``(experiment, dotted_name, measurements, metadata, mono_ns)``;
    ``experiment`` needs ``.id`` and ``.tags``.
    """

    def __init__(
        self,
        home: Path,
        *,
        flush_interval: float,
        batch_size: int,
        buffer_limit: int,
        on_batch: OnBatch,
        enrichers: Callable[[], list[Callable[..., Any]]],
    ) -> None:
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.buffer_limit = buffer_limit
        self._on_batch = on_batch
        self._enrichers = enrichers
        self.buf: deque[tuple[Any, ...]] = deque()
        self.later: deque[None] = deque()  # one entry per deferred event not built yet (added before its row)
        self._pending: dict[str, list[pa.Table]] = {}
        self._pending_rows = 0
        self._flush_hooks: list[Callable[[], object]] = []
        self._mbuf: deque[tuple[Any, ...]] = deque()
        self._flush_lock = threading.RLock()
        self.main_flushing = 0  # the main thread's flushes under way (signals wait for them)
        self._wake = threading.Event()
        self.closed = False
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._mseq = 0
        self.dropped_overflow = 0  # events and metric rows refused by a full buffer or the disk
        self.dropped_paused = 0  # events emitted into a paused experiment
        self.rejected: dict[str, int] = {}  # events that could not be stored, by reason
        self.recent_rejects: deque[tuple[str, str]] = deque(maxlen=100)  # (reason, event name), latest
        self.drained = 0  # events taken out of ``buf`` by the writer
        self._event_overflow = 0  # the share of ``dropped_overflow`` that were events
        self._unwritable = 0  # built events dropped because the disk refused them beyond the limit
        self._emit_rejects = 0  # rejected before reaching the buffer (never drained)
        self.write_errors: deque[BaseException] = deque(maxlen=100)  # the latest problems, bounded
        self.error_count = 0
        self._logged: set[str] = set()
        self.events_written = 0
        self.events = SegmentWriter(home, "events", "experiment_id", EVENTS_SCHEMA)
        self.metrics = SegmentWriter(home, "metrics", "run_id", METRICS_SCHEMA)

    # ------------------------------------------------------------------ errors

    def record_error(self, exc: BaseException) -> None:
        """Keep a problem for inspection and log its kind once; never raise into the caller."""
        self.error_count += 1
        e: BaseException | None = exc
        for _ in range(8):  # tracebacks hold frames, and frames hold open files (ENOSPC temporaries)
            if e is None:
                break
            e.__traceback__ = None
            e = e.__context__ or e.__cause__
        self.write_errors.append(exc)
        key = f"{type(exc).__name__}:{str(exc)[:60]}"
        if key not in self._logged:
            self._logged.add(key)
            log.warning("crucible_telemetry: %s (recorded, not raised; see Telemetry.write_errors)", exc)

    def reject(self, reason: str, name: str = "", n: int = 1, *, at_emit: bool = False) -> None:
        """Count ``n`` events that could not be stored, by ``reason``; logged once per reason.

        ``at_emit``: refused by ``emit`` itself, so never in the buffer.
        """
        self.rejected[reason] = self.rejected.get(reason, 0) + n
        if at_emit:
            self._emit_rejects += n
        self.recent_rejects.append((reason, name))
        if reason != "no_experiment" and f"reject:{reason}" not in self._logged:  # that one is by design
            self._logged.add(f"reject:{reason}")
            log.warning(
                "crucible_telemetry: an event (%s) was rejected: %s (counted in Telemetry.stats())", name, reason
            )

    def overflow(self) -> None:
        """Count one event dropped because the buffer was full."""
        self.dropped_overflow += 1
        self._event_overflow += 1

    def stats(self) -> dict[str, Any]:
        """Where every event went: ``stored + pending + dropped_overflow + dropped_paused + rejected = emitted``.

        ``pending`` (still buffered) is 0 right after ``flush()``. Counts are of this process; it
        waits for a flush in progress, so that no row is counted between two places.
        """
        with self._flush_lock:
            buffered = len(self.buf)
            pending = buffered + self._pending_rows
            overflow = self._event_overflow + self._unwritable
            rejected = dict(self.rejected)
            emitted = self.drained + buffered + self._event_overflow + self.dropped_paused + self._emit_rejects
        return {
            "emitted": emitted,
            "stored": self.events_written,
            "pending": pending,
            "dropped_overflow": overflow,
            "dropped_paused": self.dropped_paused,
            "rejected": rejected,
            "rejected_total": sum(rejected.values()),
        }

    # ---------------------------------------------------------------- metrics

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
        wall_ns: int | None = None,
    ) -> None:
        """Buffer one row of the ``metrics`` dataset (``wall_ns``: when it was measured; default now)."""
        if len(self._mbuf) >= self.buffer_limit:
            self.dropped_overflow += 1  # a metric row: not an event, so not in stats()
            return
        self.ensure_thread()
        self._mbuf.append(
            (run_id, metric, value, step, epoch, kind, tags, _wall_ns() if wall_ns is None else wall_ns, metadata)
        )

    def reserve_metric_seq(self, n: int) -> int:
        """Reserve ``n`` sequence numbers of the ``metrics`` dataset; returns the first."""
        with self._flush_lock:
            first = self._mseq
            self._mseq = first + n
        return first

    # ----------------------------------------------------------------- thread

    def ensure_thread(self) -> None:
        """Start the writer thread of this process unless it runs (a forked child starts its own)."""
        if self._thread is not None and not self.closed:  # fast path: forking resets _thread to None
            return
        t = self._thread
        if t is not None and t.is_alive() and getattr(t, "_crucible_pid", None) == os.getpid():
            return
        with self._flush_lock:
            t = self._thread
            if t is not None and t.is_alive() and getattr(t, "_crucible_pid", None) == os.getpid():
                return
            self.closed = False
            t = threading.Thread(target=self._run, name="crucible-writer", daemon=True)
            t._crucible_pid = os.getpid()  # type: ignore[attr-defined]
            self._thread = t
            t.start()

    def _run(self) -> None:
        last = time.monotonic()
        poll = min(0.05, self.flush_interval)
        while not self.closed:
            self._wake.wait(poll)
            self._wake.clear()
            now = time.monotonic()
            try:
                if (
                    now - last >= self.flush_interval
                    or self._pending_rows >= self.batch_size
                    or len(self._mbuf) >= self.batch_size
                ):
                    last = now
                    self.flush()
                else:
                    # turn buffered dicts into compact Arrow columns early; the segment is written at the interval
                    while len(self.buf) >= DRAIN_AT and self._pending_rows < self.batch_size and not self.closed:
                        with self._flush_lock:
                            self._build_pending(DRAIN_AT)
            except Exception as exc:  # never dies: the error is recorded and retried next round
                self.record_error(exc)

    def add_flush_hook(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` at the start of every flush."""
        self._flush_hooks.append(fn)

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written.

        ``main_flushing`` counts the main thread's flushes under way: a signal handled there
        meanwhile (a pool worker flushing at exit when ``terminate()`` comes) waits until the
        outermost one ends, when the ``AFTER_FLUSH`` callbacks run (see ``hub.py``), rather than
        ending the process with the drained rows not yet written.
        """
        main = threading.current_thread() is threading.main_thread()
        if main:
            self.main_flushing += 1
        try:
            return self._flush()
        finally:
            if main:
                self.main_flushing -= 1
                if not self.main_flushing:
                    for fn in AFTER_FLUSH:
                        fn()

    def _flush(self) -> int:
        for fn in list(self._flush_hooks):
            try:
                fn()
            except Exception as exc:
                self.record_error(exc)
        with self._flush_lock:
            # what is buffered now, not what arrives meanwhile: a tight emit loop cannot keep a
            # flush from writing (it would build forever while the buffer refills)
            todo = len(self.buf)
            while todo > 0 and self.buf:
                n = min(todo, FLUSH_CHUNK, self.buffer_limit)
                self._build_pending(n)
                todo -= n
            return self._write_pending() + self._flush_metrics()

    # ----------------------------------------------------------------- events

    @staticmethod
    def _drain(buf: deque[tuple[Any, ...]], limit: int | None = None) -> list[tuple[Any, ...]]:
        pop = buf.popleft
        n = len(buf) if limit is None else min(limit, len(buf))
        return [pop() for _ in range(n)]

    def _build_later(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Build the deferred rows among ``rows``, in place of their stand-in."""
        out = []
        later = self.later
        for row in rows:
            fields = row[2]
            if type(fields) is Later:
                if later:
                    later.popleft()
                try:
                    m, md = fields.build()
                except Exception as exc:
                    self.record_error(exc)
                    self.reject("deferred_build_failed", row[1])
                    continue
                row = (row[0], row[1], m, md, row[4])
            out.append(row)
        return out

    def _build_pending(self, limit: int | None = None) -> None:
        """Drain the buffer (at most ``limit`` rows) into per-experiment Arrow tables and live stats.

        Every drained row ends up built, or rejected and counted: nothing raises past this point.
        """
        if self._pending_rows + min(len(self.buf), limit or len(self.buf)) > self.buffer_limit:
            self._write_pending()  # built rows are capped too: write them first
        rows = self._drain(self.buf, limit)
        self.drained += len(rows)
        try:
            self._build_rows(rows)
        except Exception as exc:  # a bug of ours, not of the events: counted, never lost silently
            self.record_error(exc)
            self.reject("internal_error", n=len(rows) - self._built)

    def _build_rows(self, rows: list[tuple[Any, ...]]) -> None:
        total = len(rows)
        self._built = 0  # rows of ``rows`` accounted for so far (built, or rejected)
        if self.later and rows:  # a deferred row is counted in `later` before it enters the buffer
            rows = self._build_later(rows)
            self._built = total - len(rows)
        if not rows:
            return
        seq0 = self._seq
        self._seq += len(rows)
        groups: dict[str, tuple[Any, list[tuple[Any, ...]], Any]] = {}
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
        host_ident = identity()
        # wall time = monotonic + offset taken now: one clock read per event on the hot path, and
        # the offset only moves if the system clock is stepped within one flush interval
        wall_offset = time.time_ns() - time.monotonic_ns()
        enrichers = self._enrichers()
        for exp_id, (exp, grows, seqs) in groups.items():
            try:
                batch = encode.build_events(grows, seqs, host_ident, exp.tags, enrichers, wall_offset)
            except Exception:  # one bad event: quarantine it, keep its neighbours
                batch = self._quarantine(grows, seqs, host_ident, exp.tags, enrichers, wall_offset)
            self._built += len(grows)
            if batch is None:
                continue
            self._pending.setdefault(exp_id, []).append(batch.table)
            self._pending_rows += batch.table.num_rows
            try:
                self._on_batch(exp_id, batch.counts, batch.series)
            except Exception as exc:  # the live stats may miss a batch; the store does not
                self.record_error(exc)

    def _quarantine(self, rows: list[tuple[Any, ...]], seqs: Any, *args: Any) -> encode.EventBatch | None:
        """Build ``rows`` after cleaning each one; what still cannot be built is rejected row by row."""
        kept: list[tuple[Any, ...]] = []
        kept_seqs: list[int] = []
        for row, seq in zip(rows, seqs):
            clean, reason = encode.clean_row(row)
            if clean is None:
                self.reject(reason or "invalid_event", _name(row))
            else:
                kept.append(clean)
                kept_seqs.append(int(seq))
        if not kept:
            return None
        try:
            return encode.build_events(kept, kept_seqs, *args)
        except Exception:
            pass
        good: list[tuple[Any, ...]] = []
        good_seqs: list[int] = []
        for row, seq in zip(kept, kept_seqs):
            try:
                encode.build_events([row], [seq], *args)
            except Exception as exc:
                self.reject(f"unbuildable:{type(exc).__name__}", _name(row))
                continue
            good.append(row)
            good_seqs.append(seq)
        return encode.build_events(good, good_seqs, *args) if good else None

    def _write_pending(self) -> int:
        written = 0
        for exp_id in list(self._pending):
            tables = self._pending[exp_id]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            try:
                self.events.write(exp_id, table)
            except Exception as exc:  # a full disk: write what fits in pieces, keep the rest
                self.record_error(exc)
                done, rest = self._write_pieces(exp_id, table)
                written += done
                self._pending_rows -= done
                if rest is None:
                    del self._pending[exp_id]
                    continue
                excess = min(rest.num_rows, self._pending_rows - self.buffer_limit)
                if excess > 0:  # beyond the limit: the oldest rows are dropped, and counted
                    rest = rest.slice(excess)
                    self._pending_rows -= excess
                    self.dropped_overflow += excess
                    self._unwritable += excess
                self._pending[exp_id] = [rest] if rest.num_rows else []
                if not rest.num_rows:
                    del self._pending[exp_id]
                continue
            del self._pending[exp_id]
            self._pending_rows -= table.num_rows
            written += table.num_rows
        self.events_written += written
        if written >= DRAIN_AT:  # Arrow's allocator keeps freed pages; hand big batches' memory back
            pa.default_memory_pool().release_unused()
        return written

    def _write_pieces(self, exp_id: str, table: pa.Table) -> tuple[int, pa.Table | None]:
        """Write ``table`` in eighths (at least 1,000 rows) until one fails; returns rows written and the rest."""
        step = max(table.num_rows // 8, 1000)
        done = 0
        while done < table.num_rows:
            piece = table.slice(done, step)
            try:
                self.events.write(exp_id, piece)
            except Exception as exc:
                self.record_error(exc)
                return done, table.slice(done)
            done += piece.num_rows
        return done, None

    def _flush_metrics(self) -> int:
        rows = self._drain(self._mbuf)
        if not rows:
            return 0
        seq0 = self._mseq
        self._mseq += len(rows)
        ident = identity()
        groups: dict[str, tuple[list[tuple[Any, ...]], list[int]]] = {}
        for i, row in enumerate(rows):
            g = groups.setdefault(row[0], ([], []))
            g[0].append(row)
            g[1].append(seq0 + i)
        for run_id, (grows, seqs) in groups.items():
            try:
                self.metrics.write(run_id, encode.build_metrics(grows, seqs, ident))
            except Exception as exc:
                self.record_error(exc)
                log.warning("crucible_telemetry: could not write %d metrics of %s: %r", len(grows), run_id, exc)
        return len(rows)

    # -------------------------------------------------------------- lifecycle

    def stop_thread(self) -> None:
        """Stop the thread (it finishes its round) and wait for it, from any thread but itself."""
        self.closed = True
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread() and getattr(t, "_crucible_pid", None) == os.getpid():
            t.join(timeout=10)

    def compact(self) -> None:
        """Merge this process's segments of both datasets, and end their merger threads."""
        self.events.compact()
        self.metrics.compact()
        self.events.merger.close()
        self.metrics.merger.close()

    def after_fork(self) -> None:
        """In a forked child: drop the parent's buffers and locks (its rows are the parent's to write)."""
        self._thread = None
        self._flush_lock = threading.RLock()
        self.main_flushing = 0
        self.buf.clear()
        self.later.clear()
        self._mbuf.clear()
        self._pending.clear()
        self._pending_rows = 0
        self.dropped_overflow = self.dropped_paused = self.drained = self.events_written = 0
        self._event_overflow = self._unwritable = self._emit_rejects = 0
        self.rejected = {}
        self.events.after_fork()
        self.metrics.after_fork()


def _name(row: tuple[Any, ...]) -> str:
    return row[1] if len(row) > 1 and type(row[1]) is str else "?"


def identity() -> tuple[str, int, int | None, int | None, int | None, int | None]:
    """``(host, pid, rank, local_rank, node, world_size)`` of this process, stamped on each row."""
    rank, local, node, world = distributed_identity()
    return (HOSTNAME, os.getpid(), rank, local, node, world)
