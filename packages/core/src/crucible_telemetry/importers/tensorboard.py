"""Import TensorBoard logdirs: each folder holding ``*tfevents*`` files is one run (TensorBoard's own rule).

Records are framed here (a truncated file is reported and what precedes the damage kept) and parsed
with the ``tensorboard`` package's protobufs: scalars (``simple_value`` and the ``scalars`` plugin's
tensors) become points with their step and wall time; the ``hparams`` plugin's session becomes params.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ImportResult, Point, Problems, SourceRun, existing_path, import_runs

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["tensorboard"]

SOURCE = "tensorboard"
_LENGTH = struct.Struct("<Q")
_READ = 1 << 22  # bytes read at a time
_FAILURE = 3  # hparams Status.STATUS_FAILURE


def tensorboard(
    logdir: Any, *, hub: Telemetry | None = None, name: str | None = None, progress: bool | None = None
) -> ImportResult:
    """Import every run under ``logdir`` (needs ``pip install 'crucible-telemetry[import-tensorboard]'``).

    Args:
        logdir: a TensorBoard logdir (searched recursively), one run's folder, or one events file.
        hub: the store to write to (default: the default hub).
        name: experiment name for every imported run (default: the run's folder relative to ``logdir``).
        progress: progress lines on stderr (default: when stderr is a terminal).
    """
    root = existing_path("logdir", logdir)
    pb = _protos()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*tfevents*") if p.is_file())
    by_dir: dict[Path, list[Path]] = {}
    for f in files:
        by_dir.setdefault(f.parent, []).append(f)
    result = ImportResult(SOURCE)
    if not files:
        Problems(result)(root, "no *tfevents* file found")
    base = root.parent if root.is_file() else root
    runs = (_run(d, fs, base, pb) for d, fs in by_dir.items())
    return import_runs(SOURCE, runs, hub=hub, name=name, progress=progress, result=result)


def _protos() -> Any:
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.plugins.hparams import plugin_data_pb2
        from tensorboard.util import tensor_util
    except ImportError:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(
            "source",
            "importing TensorBoard runs needs the tensorboard package: "
            "pip install 'crucible-telemetry[import-tensorboard]'",
        ) from None
    return event_pb2, plugin_data_pb2, tensor_util


def _run(run_dir: Path, files: list[Path], base: Path, pb: Any) -> SourceRun:
    rel = run_dir.relative_to(base).as_posix() if run_dir != base else ""
    run = SourceRun(
        source=SOURCE,
        source_run_id=files[0].name,  # events.out.tfevents.<time>.<host>.<pid>...: the same wherever the logdir moves
        name=rel or run_dir.name,
        points=lambda report: _points(run, files, pb, report),
        framework=None,
        metadata={"source_path": str(run_dir)},
    )
    return run


def records(path: Path, problems: Problems) -> Iterator[bytes]:
    """The records of a TFRecord file, read in large chunks; a truncated tail is reported and ends the file."""
    n, buf, pos, base = 0, b"", 0, 0  # base: the file offset of buf[0]
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        while True:
            if len(buf) - pos < 12:
                buf, base, pos = buf[pos:] + fh.read(_READ), base + pos, 0
                if not buf:
                    return
                if len(buf) < 12:
                    problems(path, f"truncated after {n} records (a partial record header)")
                    return
            length = _LENGTH.unpack_from(buf, pos)[0]
            end = pos + 16 + length  # header (length, crc), data, crc of the data
            if base + end > size:
                problems(path, f"truncated after {n} records (a partial record)")
                return
            if end > len(buf):
                buf, base, end, pos = buf[pos:] + fh.read(max(_READ, end - len(buf))), base + pos, end - pos, 0
            n += 1
            yield buf[pos + 12 : end - 4]
            pos = end


def _points(run: SourceRun, files: list[Path], pb: Any, problems: Problems) -> Iterator[Point]:
    event_pb2, plugin_data_pb2, tensor_util = pb
    parse = event_pb2.Event.FromString
    for path in files:
        k = 0
        try:
            for data in records(path, problems):
                k += 1
                ev = parse(data)
                if not ev.HasField("summary"):
                    continue
                step, wall = int(ev.step), float(ev.wall_time)
                for v in ev.summary.value:
                    kind = v.WhichOneof("value")
                    if kind == "simple_value":
                        yield (v.tag, float(v.simple_value), step, None, wall, None)
                        continue
                    plugin = v.metadata.plugin_data.plugin_name
                    if kind == "tensor" and plugin == "scalars":
                        yield (v.tag, float(tensor_util.make_ndarray(v.tensor).item()), step, None, wall, None)
                    elif plugin == "hparams":
                        _hparams(run, plugin_data_pb2, v.metadata.plugin_data.content)
        except Exception as exc:  # a damaged record (bad length, not a protobuf): the rest of the file skipped
            problems(path, f"damaged record {k}: {type(exc).__name__}: {exc}; the rest of the file skipped")


def _hparams(run: SourceRun, plugin_data_pb2: Any, content: bytes) -> None:
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    which = data.WhichOneof("data")
    if which == "session_start_info":
        for key, val in data.session_start_info.hparams.items():
            kind = val.WhichOneof("kind")
            run.late_params[key] = getattr(val, kind) if kind else None
    elif which == "session_end_info" and data.session_end_info.status == _FAILURE:
        run.status = "failed"
