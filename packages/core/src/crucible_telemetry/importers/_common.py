"""What every importer shares: a source run, its deterministic experiment id, the streamed writer, progress.

A source run becomes one experiment whose id is derived from the source's run id, so importing the
same run again finds it in the store and adds nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CrucibleError, InvalidArgumentError, UnknownExperimentError

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["ImportResult", "Point", "SourceRun", "experiment_id_for", "import_runs"]

log = logging.getLogger("crucible_telemetry.importers")

#: One scalar point: metric, value, step, epoch (or None), wall time in seconds since the epoch (or None),
#: extra per-point metadata (or None).
Point = tuple[str, float, int | None, int | None, float | None, dict[str, Any] | None]

#: Rows buffered between flushes (at most half the hub's buffer limit, so nothing is dropped).
FLUSH_EVERY = 100_000
#: Points between two progress lines.
PROGRESS_EVERY = 250_000


@dataclass
class SourceRun:
    """One run of another tool, ready to become an experiment; ``points()`` streams its scalars."""

    source: str
    source_run_id: str
    name: str
    points: Callable[[Problems], Iterator[Point]]
    params: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    status: str = "stopped"
    framework: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Params found while the points stream (TensorBoard's hparams): written once they are read.
    late_params: dict[str, Any] = field(default_factory=dict)
    #: What the source knows of the machine that ran it (``hostname`` ...), never the importer's.
    environment: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportResult:
    """What an import did: ``imported`` and ``existing`` experiment ids, ``points`` written, ``problems``
    as ``(path, message)`` pairs (each damaged file or row, reported and skipped)."""

    source: str
    imported: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    points: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.source}: imported {len(self.imported)} run(s), {self.points} point(s)"
        if self.existing:
            text += f"; {len(self.existing)} already in the store"
        if self.problems:
            text += f"; {len(self.problems)} problem(s)"
        return text


class Problems:
    """Collects damaged files and rows: each is logged (stderr) and kept in the result, never raised."""

    def __init__(self, result: ImportResult) -> None:
        self.result = result

    def __call__(self, path: Any, message: str) -> None:
        self.result.problems.append((str(path), message))
        log.warning("crucible import %s: skipped %s: %s", self.result.source, path, message)


class Progress:
    """Lines on stderr: points so far of the current run, then one line per run."""

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)

    def say(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"crucible import: {text}\n")
            sys.stderr.flush()


def experiment_id_for(source: str, source_run_id: str) -> str:
    """The experiment id of a source run: the same every time, so a re-import finds it."""
    digest = hashlib.sha256(f"{source}\0{source_run_id}".encode()).hexdigest()[:24]
    return f"{source}-{digest}"


def resolve_hub(hub: Telemetry | None) -> Telemetry:
    """The given hub, else the default one."""
    if hub is not None:
        return hub
    from .._hubs import default

    return default()


def existing_path(argument: str, path: Any) -> Path:
    """``path`` as an existing folder or file, else an error naming ``argument``."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise InvalidArgumentError(argument, f"expected a path, got {path!r}")
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidArgumentError(argument, f"{p} does not exist")
    return p.resolve()


def from_timestamp(seconds: float | None) -> datetime | None:
    """UTC datetime of a wall time in seconds, None for None or non-finite."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return datetime.fromtimestamp(seconds, UTC)


def import_runs(
    source: str,
    runs: Iterable[SourceRun],
    *,
    hub: Telemetry | None,
    name: str | None,
    progress: bool | None,
    result: ImportResult | None = None,
) -> ImportResult:
    """Write each source run as one experiment (skipping those already imported); returns what happened."""
    h = resolve_hub(hub)
    out = result or ImportResult(source)
    problems = Problems(out)
    bar = Progress(progress)
    for run in runs:
        eid = experiment_id_for(run.source, run.source_run_id)
        try:
            before = h.get_experiment(eid)
        except UnknownExperimentError:
            pass
        else:
            out.existing.append(eid)
            bar.say(f"{run.name}: already imported as {eid}")
            if before.status in ("running", "paused"):
                problems(run.source_run_id, f"an earlier import into {eid} did not finish; delete it to import again")
            continue
        try:
            n = _write_run(h, eid, run, name, problems, bar)
        except CrucibleError as exc:  # the run cannot become an experiment (a name, a param): the others go on
            problems(run.source_run_id, str(exc))
            continue
        out.imported.append(eid)
        out.points += n
    return out


def _write_run(h: Telemetry, eid: str, run: SourceRun, name: str | None, problems: Problems, bar: Progress) -> int:
    meta = {**run.metadata, "source": run.source, "source_run_id": run.source_run_id}
    exp = h.start_experiment(
        name or run.name,
        tags=run.tags,
        metadata=meta,
        experiment_id=eid,
        bind=False,
        params=run.params,
        framework=run.framework,
    )
    n, first, last, failed = 0, math.inf, -math.inf, False
    every = max(1, min(FLUSH_EVERY, int(getattr(h, "buffer_limit", FLUSH_EVERY)) // 2))  # never past the buffer
    try:
        for metric, value, step, epoch, wall, extra in run.points(problems):
            row = {"wall_time": wall} if wall is not None else None
            if extra:
                row = {**(row or {}), **extra}
            h.record_metric(eid, metric, value, step=step, epoch=epoch, metadata=row, ts=wall)
            if wall is not None:
                first, last = min(first, wall), max(last, wall)
            n += 1
            if n % every == 0:
                h.flush()
            if n % PROGRESS_EVERY == 0:
                bar.say(f"{exp.name}: {n} points")
    except Exception as exc:  # an unexpected failure of one run's reader: reported, the run kept as failed
        problems(run.source_run_id, f"reading stopped after {n} points: {type(exc).__name__}: {exc}")
        failed = True
    if run.late_params:
        h.log_params(run.late_params, experiment_id=eid)
    started = run.started_at or from_timestamp(first if n else None)
    stopped = run.stopped_at or from_timestamp(last if n else None)
    if started is not None:
        exp.started_at = started
    exp.environment = dict(run.environment)  # the importing process is not where the run ran
    h.stop_experiment(eid, status="failed" if failed else run.status)
    if stopped is not None:
        exp.stopped_at = max(stopped, exp.started_at)
        h.update_experiment(eid)  # writes the record again, with the source's start and end times
    bar.say(f"{exp.name}: {n} points -> {eid}")
    return n
