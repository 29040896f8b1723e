"""Import Lightning ``CSVLogger`` runs: each ``metrics.csv`` (with its ``hparams.yaml``) is one experiment.

The CSV holds no wall times, so a run's start and end are its files' modification times.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ImportResult, Point, Problems, SourceRun, existing_path, from_timestamp, import_runs

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["lightning_csv"]

SOURCE = "lightning-csv"


def lightning_csv(
    path: Any, *, hub: Telemetry | None = None, name: str | None = None, progress: bool | None = None
) -> ImportResult:
    """Import every ``metrics.csv`` under ``path`` (a ``CSVLogger`` save dir, one of its versions, or the file).

    Args:
        path: folder searched recursively, or one ``metrics.csv``.
        hub: the store to write to (default: the default hub).
        name: experiment name for every imported run (default ``<logger name>/<version>``).
        progress: progress lines on stderr (default: when stderr is a terminal).
    """
    root = existing_path("path", path)
    files = [root] if root.is_file() else sorted(root.rglob("metrics.csv"))
    result = ImportResult(SOURCE)
    if not files:
        Problems(result)(root, "no metrics.csv found")
    return import_runs(
        SOURCE, (_run(f, Problems(result)) for f in files), hub=hub, name=name, progress=progress, result=result
    )


def _run(csv_path: Path, problems: Problems) -> SourceRun:
    vdir = csv_path.parent
    params = _hparams(vdir / "hparams.yaml", problems)
    times = [p.stat().st_mtime for p in (vdir / "hparams.yaml", csv_path) if p.exists()]
    times += [p.stat().st_mtime for p in vdir.glob("checkpoints/*")]
    return SourceRun(
        source=SOURCE,
        source_run_id=str(vdir),
        name=f"{vdir.parent.name}/{vdir.name}",
        points=lambda report: _points(csv_path, report),
        params=params,
        started_at=from_timestamp(min(times)) if times else None,
        stopped_at=from_timestamp(max(times)) if times else None,
        framework="lightning",
        metadata={"source_path": str(csv_path), "times": "file modification times"},
    )


def _hparams(path: Path, problems: Problems) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        import yaml
    except ImportError:
        problems(path, "hparams not read: PyYAML is not installed (pip install pyyaml)")
        return {}

    class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no type stubs here
        """Safe loading; a Python-object tag becomes its text instead of running code."""

    _Loader.add_multi_constructor("", lambda loader, suffix, node: suffix.removeprefix("tag:yaml.org,2002:"))
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        problems(path, f"hparams not read: {exc}")
        return {}
    return data if isinstance(data, dict) else {}


def _int(text: str | None) -> int | None:
    if not text:
        return None
    v = float(text)
    return int(v) if math.isfinite(v) else None


def _points(csv_path: Path, problems: Problems) -> Iterator[Point]:
    bad = 0
    try:
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                problems(csv_path, "empty file")
                return
            i_step = header.index("step") if "step" in header else -1
            i_epoch = header.index("epoch") if "epoch" in header else -1
            cols = [(i, h) for i, h in enumerate(header) if i not in (i_step, i_epoch)]
            for row in reader:
                if len(row) != len(header):
                    bad += 1
                    continue
                try:
                    step = _int(row[i_step]) if i_step >= 0 else None
                    epoch = _int(row[i_epoch]) if i_epoch >= 0 else None
                    values = [(h, float(row[i])) for i, h in cols if row[i] != ""]
                except ValueError:
                    bad += 1
                    continue
                for metric, value in values:
                    yield (metric, value, step, epoch, None, None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems(csv_path, f"read stopped: {exc}")
    if bad:
        problems(csv_path, f"{bad} damaged row(s) skipped")
