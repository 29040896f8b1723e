"""Import W&B offline runs: each ``run-<id>.wandb`` file (an ``offline-run-*`` folder) is one experiment.

The file is W&B's record log (a 7-byte ``:W&B`` header, then 32 KiB blocks of checksummed chunks); each
record is parsed with the ``wandb`` package's own protobuf (``wandb.proto.wandb_internal_pb2.Record``).
``history`` rows become points (``_step`` the step, ``_timestamp`` the wall time), ``stats`` records
system metrics (``system/<key>``), ``run`` and ``config`` records the name, tags and params, ``exit``
the status. A damaged or truncated tail is reported, and what precedes it imported.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ImportResult, Point, Problems, SourceRun, existing_path, from_timestamp, import_runs

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["wandb"]

SOURCE = "wandb"
_BLOCK = 32768
_CHUNK = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb(
    path: Any, *, hub: Telemetry | None = None, name: str | None = None, progress: bool | None = None
) -> ImportResult:
    """Import every offline W&B run under ``path`` (needs ``pip install 'crucible-telemetry[import-wandb]'``).

    Args:
        path: a ``wandb`` folder or one ``offline-run-*`` folder (searched for ``*.wandb``), or one file.
        hub: the store to write to (default: the default hub).
        name: experiment name for every imported run (default: the run's display name).
        progress: progress lines on stderr (default: when stderr is a terminal).
    """
    root = existing_path("path", path)
    record = _record_class()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.wandb") if p.is_file())
    result = ImportResult(SOURCE)
    problems = Problems(result)
    if not files:
        problems(root, "no .wandb file found")
    runs = (r for r in (_run(f, record, problems) for f in files) if r is not None)
    return import_runs(SOURCE, runs, hub=hub, name=name, progress=progress, result=result)


def _record_class() -> Any:
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(
            "source", "importing W&B runs needs the wandb package: pip install 'crucible-telemetry[import-wandb]'"
        ) from None
    generated: Any = wandb_internal_pb2  # generated protobuf code, untyped
    return generated.Record


def records(path: Path, problems: Problems) -> Iterator[bytes]:
    """The records of a ``.wandb`` file; a bad header, checksum or a truncated tail is reported and ends it."""
    with path.open("rb") as fh:
        head = fh.read(7)
        if len(head) < 7 or head[:4] != b":W&B":
            problems(path, "not a W&B run file (no :W&B header)")
            return
        off, n, parts = 7, 0, b""
        while True:
            left = _BLOCK - off % _BLOCK
            if left < 7:  # the block's tail is padding
                fh.read(left)
                off += left
                continue
            header = fh.read(7)
            if not header:
                if parts:
                    problems(path, f"truncated after {n} records (a partial record)")
                return
            if len(header) < 7:
                problems(path, f"truncated after {n} records (a partial chunk header)")
                return
            crc, length, kind = _CHUNK.unpack(header)
            if kind == 0 and length == 0:  # zero padding up to the next block
                fh.read(left - 7)
                off += left
                continue
            data = fh.read(length)
            off += 7 + length
            if len(data) < length:
                problems(path, f"truncated after {n} records (a partial chunk)")
                return
            if zlib.crc32(bytes([kind]) + data) & 0xFFFFFFFF != crc:
                problems(path, f"damaged after {n} records (a checksum mismatch); the rest of the file skipped")
                return
            if kind == _FULL:
                n += 1
                yield data
            elif kind == _FIRST:
                parts = data
            elif kind == _MIDDLE:
                parts += data
            elif kind == _LAST:
                n += 1
                yield parts + data
                parts = b""


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _run(path: Path, record: Any, problems: Problems) -> SourceRun | None:
    info = None
    try:
        for data in records(path, Problems(ImportResult(SOURCE))):  # the tail is checked when the points stream
            rec = record.FromString(data)
            if rec.WhichOneof("record_type") == "run":
                info = rec.run
                break
    except Exception as exc:  # not protobuf records: the file is skipped
        problems(path, f"not a W&B run file: {type(exc).__name__}: {exc}")
        return None
    if info is None:
        problems(path, "no run record: skipped")
        return None
    params = {_key(u): _json(u.value_json) for u in info.config.update if _key(u) != "_wandb"}
    start = info.start_time.seconds + info.start_time.nanos / 1e9 if info.HasField("start_time") else None
    run = SourceRun(
        source=SOURCE,
        source_run_id=f"{info.entity}/{info.project}/{info.run_id}",
        name=info.display_name or info.run_id,
        points=lambda report: _points(run, path, record, report),
        params=params,
        tags=tuple(info.tags),
        started_at=from_timestamp(start),
        status="failed",  # until an exit record says otherwise: a run without one did not finish
        metadata={"source_path": str(path), "project": info.project, "wandb_run_id": info.run_id},
    )
    if info.host:
        run.environment["hostname"] = info.host
    if info.notes:
        run.metadata["notes"] = info.notes
    if info.run_group:
        run.metadata["group"] = info.run_group
    return run


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _points(run: SourceRun, path: Path, record: Any, problems: Problems) -> Iterator[Point]:
    parse = record.FromString
    k = 0
    try:
        for data in records(path, problems):
            k += 1
            rec = parse(data)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                row = {_key(i): i.value_json for i in rec.history.item}
                step_v = _json(row.pop("_step", "null"))
                wall_v = _json(row.pop("_timestamp", "null"))
                step = int(step_v) if _number(step_v) else (rec.history.step.num or None)
                wall = float(wall_v) if _number(wall_v) else None
                for key, text in row.items():
                    v = _json(text)
                    if _number(v) and not key.startswith("_"):
                        yield (key, float(v), step, None, wall, None)
            elif kind == "stats":
                ts = rec.stats.timestamp.seconds + rec.stats.timestamp.nanos / 1e9
                for item in rec.stats.item:
                    v = _json(item.value_json)
                    if _number(v):
                        yield (f"system/{item.key}", float(v), None, None, ts, None)
            elif kind == "config":
                for u in rec.config.update:
                    if _key(u) != "_wandb":
                        run.late_params[_key(u)] = _json(u.value_json)
            elif kind == "exit":
                run.status = "stopped" if rec.exit.exit_code == 0 else "failed"
                if rec.exit.runtime and run.started_at is not None:
                    end = run.started_at.timestamp() + rec.exit.runtime
                    run.stopped_at = from_timestamp(end) if math.isfinite(end) else None
    except Exception as exc:  # a record that is not a protobuf: the rest of the file skipped
        problems(path, f"damaged record {k}: {type(exc).__name__}: {exc}; the rest of the file skipped")
