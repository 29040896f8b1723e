"""Import Hugging Face ``Trainer`` runs from their ``trainer_state.json`` (``log_history``): one run per output dir.

The newest state of a run (its last checkpoint, or the output dir's own ``save_state()``) holds the whole
history. ``training_args.bin`` is a pickle and is never loaded; params come from the state and the
model's ``config.json``. The file holds no wall times: start and end are file modification times.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ImportResult, Point, Problems, SourceRun, existing_path, from_timestamp, import_runs

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["hf_trainer"]

SOURCE = "hf-trainer"
#: Fields of ``trainer_state.json`` kept as params.
STATE_PARAMS = (
    "max_steps",
    "num_train_epochs",
    "train_batch_size",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "best_metric",
    "best_model_checkpoint",
    "trial_name",
)
#: Fields of the model's ``config.json`` kept as ``model.<key>`` params.
CONFIG_PARAMS = ("model_type", "architectures", "vocab_size", "hidden_size", "n_embd", "n_layer", "num_hidden_layers")


def hf_trainer(
    path: Any, *, hub: Telemetry | None = None, name: str | None = None, progress: bool | None = None
) -> ImportResult:
    """Import every Trainer run under ``path`` (an output dir, a checkpoint dir, a folder of them, or the file).

    Args:
        path: searched recursively for ``trainer_state.json``.
        hub: the store to write to (default: the default hub).
        name: experiment name for every imported run (default: the output dir's name).
        progress: progress lines on stderr (default: when stderr is a terminal).
    """
    root = existing_path("path", path)
    files = [root] if root.is_file() else sorted(root.rglob("trainer_state.json"))
    result = ImportResult(SOURCE)
    problems = Problems(result)
    if not files:
        problems(root, "no trainer_state.json found")
    by_run: dict[Path, list[Path]] = {}
    for f in files:
        out_dir = f.parent.parent if f.parent.name.startswith("checkpoint-") else f.parent
        by_run.setdefault(out_dir, []).append(f)
    runs = (r for r in (_run(d, fs, problems) for d, fs in by_run.items()) if r is not None)
    return import_runs(SOURCE, runs, hub=hub, name=name, progress=progress, result=result)


def _load(path: Path, problems: Problems) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems(path, f"not a readable trainer state: {exc}")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("log_history"), list):
        problems(path, "not a trainer state (no log_history list)")
        return None
    return data


def _run(out_dir: Path, files: list[Path], problems: Problems) -> SourceRun | None:
    states = [(f, s) for f in files if (s := _load(f, problems)) is not None]
    if not states:
        return None
    path, state = max(states, key=lambda fs: (int(fs[1].get("global_step") or 0), fs[0].parent == out_dir))
    params: dict[str, Any] = {k: state[k] for k in STATE_PARAMS if state.get(k) is not None}
    if isinstance(state.get("trial_params"), dict):
        params["trial"] = state["trial_params"]
    near = [path.parent, out_dir, *sorted((f.parent for f in files), key=lambda d: d.stat().st_mtime, reverse=True)]
    config = next((d / "config.json" for d in near if (d / "config.json").exists()), None)
    if config is not None:
        try:
            cfg = json.loads(config.read_text(encoding="utf-8"))
            params["model"] = {k: cfg[k] for k in CONFIG_PARAMS if k in cfg}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems(config, f"model config not read: {exc}")
    times = [f.stat().st_mtime for f in files] + [p.stat().st_mtime for p in out_dir.glob("checkpoint-*")]
    history = state["log_history"]
    return SourceRun(
        source=SOURCE,
        source_run_id=str(out_dir),
        name=out_dir.name,
        points=lambda report: _points(path, history, report),
        params=params,
        started_at=from_timestamp(min(times)),
        stopped_at=from_timestamp(max(times)),
        framework="transformers",
        metadata={"source_path": str(path), "times": "file modification times"},
    )


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _points(path: Path, history: list[Any], problems: Problems) -> Iterator[Point]:
    bad = 0
    for entry in history:
        if not isinstance(entry, dict) or not _number(entry.get("step")):
            bad += 1
            continue
        step = int(entry["step"])
        epoch = entry.get("epoch")
        frac = float(epoch) if _number(epoch) and math.isfinite(epoch) else None  # type: ignore[arg-type]
        extra = {"epoch": frac} if frac is not None else None
        index = math.floor(frac + 1e-9) if frac is not None else None  # the epoch under way, as the HF plugin
        for key, value in entry.items():
            if key not in ("step", "epoch") and _number(value):
                yield (key, float(value), step, index, None, extra)
    if bad:
        problems(path, f"{bad} log_history entr(y/ies) without a step skipped")
