"""Sections of the HTML report: results first (validation metrics and the params that differ),
the environment once (what differs per run), long config folded in ``<details>``."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._format import fmt_num
from .labels import differing_params, fmt_value

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..hub import Telemetry

__all__ = ["LONG", "details", "environment_html", "params_html", "results_html", "table", "validation_metrics"]

#: Config longer than this many characters (or keys) is folded in a ``<details>``.
LONG = 300
_NOT_QUALITY = ("runtime", "_per_second", "samples_per_second", "steps_per_second", "duration", "epoch")


def e(x: Any) -> str:
    """HTML-escaped text; None as empty."""
    return html.escape("" if x is None else str(x))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    """A table; numbers right-aligned, formatted as the CLI formats them."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{e(fmt_num(v))}</td>'
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{v.html if isinstance(v, Raw) else e(fmt_num(v))}</td>"
            for v in r
        )
        body.append(f"<tr>{cells}</tr>")
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw:
    """A table cell that is already HTML."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def details(summary: str, body_html: str, open_: bool = False) -> str:
    """A folded block: ``<details><summary>...``."""
    return f"<details{' open' if open_ else ''}><summary>{e(summary)}</summary>{body_html}</details>"


def config_cell(value: Any) -> Raw | Any:
    """A config value; long JSON folded (``<details>``) so it cannot overflow its card."""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, indent=1, sort_keys=True)
        if len(text) > LONG or (isinstance(value, dict) and len(value) > 8):
            n = f"{len(value)} keys" if isinstance(value, dict) else f"{len(value)} items"
            return Raw(details(n, f"<pre>{e(text)}</pre>"))
        return json.dumps(value, default=str)
    return value


def validation_metrics(names: Iterable[str]) -> list[str]:
    """The names of validation metrics (``val_loss``, ``eval_accuracy``, ``valid/acc``), losses first."""
    out = []
    for n in names:
        low = n.lower().rpartition(":")[2]
        if not low.startswith(("val", "eval", "valid", "test")) and "/val" not in low:
            continue
        if any(w in low for w in _NOT_QUALITY):
            continue
        out.append(n)
    return sorted(out, key=lambda n: (0 if "loss" in n else 1, n))


def _params(exp: Experiment) -> dict[str, Any]:
    return dict(exp.params or {})


def results_html(hub: Telemetry, exps: Sequence[Experiment], labels: Sequence[str]) -> tuple[str, list[str]]:
    """One row per run: the params that differ, then each validation metric's last and min (max for
    higher-is-better). Returns the HTML and the validation metrics found."""
    from .names import metric_summaries
    from .per_run import _lower_is_better

    ids = [x.id for x in exps]
    df = metric_summaries(hub, ids)
    vals = validation_metrics(sorted(set(df["metric"]))) if len(df) else []
    keys = differing_params(exps, seeds=True)
    if not vals and not keys:
        return "", []
    cells: dict[tuple[str, str], Any] = {}
    for exp_id, metric, last, lo, hi in zip(df["experiment_id"], df["metric"], df["last"], df["min"], df["max"]):
        cells[(str(exp_id), str(metric))] = (last, lo, hi)
    header = ["run", *keys]
    for v in vals:
        best = "max" if _lower_is_better(v) is False else "min"
        header += [f"{v} (last)", f"{v} ({best})"]
    rows = []
    for x, label in zip(exps, labels):
        row: list[Any] = [label, *(fmt_value(_params(x).get(k, "")) for k in keys)]
        for v in vals:
            last, lo, hi = cells.get((x.id, v), (None, None, None))
            row += [last, hi if _lower_is_better(v) is False else lo]
        rows.append(row)
    caption = '<p class="meta">validation metrics of each run (last value, and best over the run)'
    caption += f"; params that differ: {', '.join(keys)}</p>" if keys else "</p>"
    return "<h2>Results</h2>" + caption + table(header, rows), vals


def params_html(exps: Sequence[Experiment]) -> str:
    """What every run shares, folded when long; what differs is in the results table."""
    params = [_params(x) for x in exps]
    if not any(params):
        return ""
    differ = set(differing_params(exps, seeds=True))
    keys: list[str] = []
    for p in params:
        keys += [k for k in p if k not in keys]
    everywhere = [k for k in keys if all(k in p for p in params)]
    varies = {k for k in everywhere if len({repr(p.get(k)) for p in params}) > 1}
    same = [(k, config_cell(params[0].get(k))) for k in everywhere if k not in varies and k not in differ]
    paths = [k for k in everywhere if k in varies and k not in differ]  # output_dir, run_name: per run by nature
    partial = [k for k in keys if k not in differ and k not in everywhere]
    parts = ["<h2>Params</h2>"]
    if differ:
        parts.append(f"<p>differ between runs: <b>{e(', '.join(k for k in keys if k in differ))}</b> (see Results)</p>")
    if paths:
        parts.append(f'<p class="meta">differ as paths and names of each run do: {e(", ".join(paths))}</p>')
    if same:
        body = table(["param", "value (every run)"], same)
        word = "param" if len(same) == 1 else "params"
        parts.append(details(f"the same in every run: {len(same)} {word}", body, open_=len(same) <= 12))
    if partial:
        parts.append(f'<p class="meta">set in some runs only: {e(", ".join(partial))}</p>')
    return "".join(parts)


def _env_rows(exp: Experiment) -> dict[str, Any]:
    env = exp.environment or {}
    git = env.get("git") or {}
    rows: dict[str, Any] = {
        "python": env.get("python"),
        "platform": env.get("platform"),
        "hostname": env.get("hostname") or exp.host,
        "git commit": (git.get("commit", "")[:12] + (" (dirty)" if git.get("dirty") else "")) if git else None,
    }
    rows.update({k: v for k, v in (env.get("packages") or {}).items()})
    return {k: v for k, v in rows.items() if v}


def environment_html(exps: Sequence[Experiment], labels: Sequence[str]) -> str:
    """The environment once: what every run shares (folded), and a table of only what differs."""
    envs = [_env_rows(x) for x in exps]
    keys: list[str] = []
    for env in envs:
        keys += [k for k in env if k not in keys]
    if not keys:
        return ""
    differ = [k for k in keys if len({repr(env.get(k)) for env in envs}) > 1]
    same = [(k, envs[0].get(k)) for k in keys if k not in differ]
    parts = ["<h2>Environment</h2>"]
    if differ:
        parts.append("<p>differs between runs:</p>")
        parts.append(
            table(["run", *differ], [[lab, *(env.get(k, "") for k in differ)] for lab, env in zip(labels, envs)])
        )
    else:
        parts.append(f"<p>the same for all {len(exps)} run(s).</p>")
    if same:
        parts.append(details(f"shared by every run: {len(same)} entries", table(["", ""], same)))
    return "".join(parts)
