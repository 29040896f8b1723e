"""The table of ``crucible runs``: which params and metrics to show, and the cells, from ``ct.runs()``'s frame.

By default it shows the params whose values differ between the listed runs and the validation
metrics (last value and best), plus a one-line request summary for LLM runs; ``--params``,
``--metrics`` and ``--sort`` name them (``lr``, ``val_loss.min``), and a misspelt name is an error
with suggestions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..analysis.names import STATS, resolve_metric
from ..analysis.summary import REQUEST_EVENTS
from ..errors import InvalidArgumentError
from ._common import CommandError, fmt_duration, fmt_num

if TYPE_CHECKING:
    import pandas as pd

    from ..hub import Telemetry

__all__ = [
    "Table",
    "default_metrics",
    "differing_params",
    "lower_is_better",
    "request_summary",
    "split_names",
]

_VALIDATION = re.compile(r"^(val|valid|validation|eval|test)[_/.]")
_NOT_HEADLINE = re.compile(r"(runtime|per_second|_steps?$|samples|flos|epoch)")
_HIGHER = re.compile(r"(acc|accuracy|f1|auc|auroc|precision|recall|bleu|rouge|map|iou|score|r2)($|[_/.])")
_LOWER = re.compile(r"(loss|error|err|mse|mae|rmse|perplexity|ppl|nll|wer|cer)($|[_/.])")


class Table(dict[str, list[Any]]):
    """The runs as columns (name -> list of values), with the few DataFrame reads the table's helpers
    make (``columns``, ``table[col]``): ``crucible runs`` never imports pandas unless it sorts."""

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return list(self)

    @property
    def height(self) -> int:
        """The number of runs."""
        return len(self["id"]) if "id" in self else 0

    def take(self, rows: Sequence[int]) -> Table:
        """These rows, in this order."""
        return Table({c: [v[i] for i in rows] for c, v in self.items()})


def split_names(values: Sequence[str] | None) -> list[str]:
    """``["lr,hidden", "seed"]`` -> ``["lr", "hidden", "seed"]`` (repeat or comma-separate)."""
    return [v.strip() for raw in values or () for v in raw.split(",") if v.strip()]


def lower_is_better(metric: str) -> bool | None:
    """``val_loss``: True; ``val_acc``: False; unknown: None (from the name alone)."""
    key = metric.rpartition(":")[2].lower()
    if _LOWER.search(key):
        return True
    if _HIGHER.search(key):
        return False
    return None


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def differing_params(frame: pd.DataFrame, limit: int = 4) -> tuple[list[str], list[str]]:
    """Param keys whose values differ between the rows (numbers first), and those left over ``limit``."""
    keys = []
    for col in frame.columns:
        if not col.startswith("params."):
            continue
        vals = {repr(v) for v in frame[col] if _present(v)}
        if len(vals) > 1:  # two values among the runs that have it (absent elsewhere is no difference)
            keys.append(col.removeprefix("params."))

    def numeric(k: str) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in frame[f"params.{k}"] if _present(v))

    def run_specific(k: str) -> bool:  # text unique to each run (output paths, run names): says nothing
        present = [repr(v) for v in frame[f"params.{k}"] if _present(v)]
        return not numeric(k) and len(present) > 2 and len(set(present)) == len(present)

    ranked = sorted((k for k in keys if not run_specific(k)), key=lambda k: (not numeric(k), k))
    return ranked[:limit], ranked[limit:]


def default_metrics(frame: pd.DataFrame, limit: int = 2) -> list[str]:
    """The validation metrics (``val_loss`` and its best, ``val_acc.max``...), else the training loss."""
    names = sorted({c.removeprefix("metrics.").rsplit(".", 1)[0] for c in frame.columns if c.endswith(".min")})
    names = [n for n in names if ":" not in n and any(_present(v) for v in frame[f"metrics.{n}"])]
    val = [n for n in names if _VALIDATION.search(n) and not _NOT_HEADLINE.search(n.split("_", 1)[-1])]
    # HF logs eval_loss and the standard validation event carries it as val_loss: show one of them
    val = [n for n in val if not (n.startswith("eval_") and "val_" + n.removeprefix("eval_") in val)]
    val.sort(key=lambda n: (lower_is_better(n) is None, "loss" not in n, n))
    chosen = val[:limit] or [n for n in ("loss", "train_loss") if n in names][:1]
    out = []
    for n in chosen:
        out.append(n)
        better = lower_is_better(n)
        if better is not None:
            out.append(f"{n}.{'min' if better else 'max'}")
    return out


def resolve_columns(
    hub: Telemetry, frame: pd.DataFrame, params: list[str], metrics: list[str], flag: str
) -> tuple[list[str], list[str]]:
    """Frame columns for ``--params`` and ``--metrics`` names; unknown ones are errors with suggestions."""
    ids = list(frame["id"])
    pcols = []
    for p in params:
        col = p if p.startswith("params.") else f"params.{p}"
        if col not in frame.columns:
            known = [c.removeprefix("params.") for c in frame.columns if c.startswith("params.")]
            import difflib

            close = difflib.get_close_matches(p.removeprefix("params."), known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            have = (
                "" if close else (f"; the runs have {', '.join(known[:12])}" if known else "; the runs have no params")
            )
            raise CommandError(f"--params: no run has a param {p!r}{hint}{have}")
        pcols.append(col)
    mcols = []
    for m in metrics:
        try:
            ref = resolve_metric(hub, m, ids, argument=flag)
        except InvalidArgumentError as exc:
            raise CommandError(str(exc)) from None
        mcols.append(ref.column)
    return pcols, mcols


def add_metric_columns(hub: Telemetry, frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Add ``metrics.<event>:<key>`` and ``.first``/``.count`` columns that the frame lacks."""
    from ..analysis.names import metric_summaries

    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return frame
    wanted: dict[str, list[tuple[str, str]]] = {}
    for col in missing:
        body = col.removeprefix("metrics.")
        stem, _, stat = body.rpartition(".")
        metric, stat = (stem, stat) if stem and stat in STATS and not stat.endswith(":") else (body, "last")
        wanted.setdefault(metric, []).append((col, stat))
    if isinstance(frame, Table):  # the same columns, from the summaries as Arrow (no pandas)
        from ..analysis.names import metric_summaries_table

        table = metric_summaries_table(hub, list(frame["id"]), list(wanted))
        runs, metrics = table.column("experiment_id").to_pylist(), table.column("metric").to_pylist()
        out = Table(frame)
        for metric, cols in wanted.items():
            for col, stat in cols:
                got = {r: v for r, m, v in zip(runs, metrics, table.column(stat).to_pylist()) if m == metric}
                out[col] = [float(got[i]) if got.get(i) is not None else math.nan for i in frame["id"]]
        return out
    summ = metric_summaries(hub, list(frame["id"]), list(wanted))
    frame = frame.copy()
    for metric, cols in wanted.items():
        rows = summ[summ["metric"] == metric].set_index("experiment_id")
        for col, stat in cols:
            frame[col] = frame["id"].map(rows[stat]).astype("float64")
    return frame


def sort_frame(hub: Telemetry, frame: pd.DataFrame, keys: list[str], descending: bool) -> pd.DataFrame:
    """Sort by ``--sort`` keys: a param (``lr``), a metric (``val_loss.min``) or a column (``name``)."""
    cols, asc = [], []
    for key in keys:
        desc = key.startswith("-")
        key = key.lstrip("-")
        if key in frame.columns and not key.startswith(("params.", "metrics.")):
            col = key
        elif f"params.{key}" in frame.columns or key.startswith("params."):
            col = key if key.startswith("params.") else f"params.{key}"
            if col not in frame.columns:
                raise CommandError(f"--sort: no run has a param {key.removeprefix('params.')!r}")
        else:
            try:
                col = resolve_metric(hub, key, list(frame["id"]), argument="--sort").column
            except InvalidArgumentError as exc:
                raise CommandError(str(exc)) from None
            frame = add_metric_columns(hub, frame, [col])
        cols.append(col)
        asc.append(not (desc ^ descending))
    from ..analysis.runs import sort_rows

    return sort_rows(frame, cols, asc)


def request_summary(hub: Telemetry, ids: list[str], summaries: str = "summaries") -> dict[str, dict[str, Any]]:
    """Per run with request events: requests, errors, mean latency (ms), cost, from the summaries view
    (or its snapshot ``summaries``)."""
    if not ids:
        return {}
    stops = [s for s, _ in REQUEST_EVENTS]
    errs = [e for _, e in REQUEST_EVENTS]
    sql = (
        f"SELECT experiment_id, source, name, count, sum FROM {summaries} "
        "WHERE experiment_id IN (SELECT unnest(?::VARCHAR[])) AND list_contains(?::VARCHAR[], source) "
        "AND name IN ('duration', 'cost_usd')"  # the runs as one list joined (not searched per row)
    )
    out: dict[str, dict[str, Any]] = {}
    for r in hub.store.arrow(sql, [list(ids), [*stops, *errs]]).to_pylist():
        d = out.setdefault(r["experiment_id"], {"requests": 0, "errors": 0, "duration": 0.0, "cost_usd": 0.0})
        if r["name"] == "duration":
            if r["source"] in stops:
                d["requests"] += r["count"]
                d["duration"] += r["sum"] or 0.0
            else:
                d["errors"] += r["count"]
        else:
            d["cost_usd"] += r["sum"] or 0.0
    for d in out.values():
        d["mean_ms"] = d.pop("duration") / d["requests"] / 1e6 if d["requests"] else None
    return {k: d for k, d in out.items() if d["requests"] + d["errors"]}


def request_cell(r: dict[str, Any] | None) -> str:
    """``60 req · mean 61.2 ms · 93.3% ok · $0.0067``."""
    if not r:
        return ""
    req, errs = int(r["requests"] or 0), int(r["errors"] or 0)
    parts = [f"{req + errs:,} req"]
    if r.get("mean_ms") is not None:
        parts.append(f"mean {r['mean_ms']:.1f} ms")
    parts.append(f"{req / (req + errs):.1%} ok")
    if r.get("cost_usd"):
        parts.append(f"${r['cost_usd']:.4f}")
    return " · ".join(parts)


def cell(col: str, v: Any) -> str:
    """A table cell: numbers short, durations readable, times to the minute."""
    if not _present(v):
        return ""
    if col == "duration_s":
        return fmt_duration(v)
    if col == "started_at":
        return v.strftime("%m-%d %H:%M") if hasattr(v, "strftime") else str(v)
    if col == "tags":
        return ", ".join(v)
    if isinstance(v, float):
        return f"{v:.6g}" if col.startswith("params.") else fmt_num(v)  # a param as it was given
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars
        return cell(col, v.item())
    return str(v) if not isinstance(v, bool) else ("true" if v else "false")


def header(col: str) -> str:
    """``params.lr`` -> ``lr``, ``metrics.val_loss.min`` -> ``val_loss.min``, ``duration_s`` -> ``duration``."""
    return {"started_at": "started", "duration_s": "duration"}.get(
        col, col.removeprefix("params.").removeprefix("metrics.")
    )
