"""``build_report``: one self-contained HTML file about experiments and their comparison.

Inline CSS, images as base64 data URIs, no script and no network: the file opens anywhere.
"""

from __future__ import annotations

import base64
import html
import os
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._format import fmt_num
from ..errors import CrucibleError, InvalidArgumentError
from .summary import REQUEST_EVENTS

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..hub import Telemetry
    from . import Comparison, ParamComparison

__all__ = ["build_report", "render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#1d2330;background:#fff;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #dde1e8;
padding-bottom:.3rem}h3{font-size:1.05rem;margin:.2rem 0 .6rem}
.meta{color:#5b6475;font-size:.9rem}.verdict{padding:.6rem .9rem;border-left:4px solid #8a94a6;background:#f5f7fa;
margin:.5rem 0}.verdict.sig{border-color:#2ca02c;background:#eef8ee}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem}th,td{border:1px solid #dde1e8;
padding:.25rem .55rem;text-align:left;vertical-align:top}th{background:#f0f2f6}td.num{text-align:right;
font-variant-numeric:tabular-nums}.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));
gap:1rem}.card{border:1px solid #dde1e8;border-radius:6px;padding:.8rem 1rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eef0f4}
figcaption{color:#5b6475;font-size:.85rem}code{font-size:.85em;background:#f0f2f6;padding:0 .2em}
.card table{table-layout:fixed;width:100%}.card td{overflow-wrap:anywhere}.card td:first-child{width:34%}details summary{cursor:pointer;color:#3a4a6b}
pre{white-space:pre-wrap;overflow-wrap:anywhere;max-height:24rem;overflow:auto;font-size:.8rem;margin:.3rem 0}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    from .report_parts import table

    return table(header, rows)


def _ci(lo: float | None, hi: float | None) -> str:
    return "" if lo is None and hi is None else f"[{fmt_num(lo)}, {fmt_num(hi)}]"


def _headline(m: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    lat, rel, cost, tok, tr = (m.get(k) or {} for k in ("latency", "reliability", "cost", "tokens", "training"))
    ttft = m.get("time_to_first_token") or {}
    if lat.get("count"):
        rows += [
            ("requests", rel.get("total")),
            ("latency p50 (ms)", lat.get("p50")),
            ("latency p95 (ms)", lat.get("p95")),
            ("latency p99 (ms)", lat.get("p99")),
        ]
    if ttft.get("count"):
        rows.append(("ttft p50 (ms)", ttft.get("p50")))
    if rel.get("total"):
        rows += [("success rate", f"{rel['success_rate']:.1%}"), ("errors", rel.get("error_count"))]
    if cost.get("total") is not None:
        rows += [("cost total (USD)", cost.get("total")), ("cost per request (USD)", cost.get("mean_per_request"))]
    if tok.get("total") is not None:
        rows.append(("tokens total", tok.get("total")))
    if tr.get("batches") or tr.get("epochs"):
        rows += [
            ("epochs", tr.get("epochs")),
            ("global steps", tr.get("global_steps")),
            ("final loss", tr.get("final_loss")),
            ("best loss", tr.get("best_loss")),
            ("mean step (ms)", tr.get("mean_step_ms")),
        ]
    return [(k, v) for k, v in rows if v is not None]


def _data_kinds(hub: Telemetry, ids: list[str]) -> tuple[bool, bool]:
    reqs = [e for pair in REQUEST_EVENTS for e in pair]
    sql = (
        f"SELECT count(*) FILTER (WHERE event IN ({', '.join('?' * len(reqs))})), "
        "count(*) FILTER (WHERE event LIKE 'crucible_train.%' AND event <> 'crucible_train.training.start') "
        f"FROM events WHERE experiment_id IN ({', '.join('?' * len(ids))})"
    )
    row = hub.store.execute(sql, reqs + ids).fetchone() or (0, 0)
    return bool(row[0]), bool(row[1])


def _comparison_html(result: Comparison) -> str:
    from . import SampleTest, p_cell

    spec = result.metric
    parts = [f"<h3>{_e(spec.label)}{_e(' (' + spec.unit + ')' if spec.unit else '')} by {_e(result.by)}</h3>"]
    notes = "".join(f'<p class="meta">note: {_e(n)}</p>' for n in result.notes)
    if result.groups and all(g.unit == "run" and g.summary.n < 2 for g in result.groups):
        parts.append(f'<p class="verdict">{_e(result.verdict)}</p>')
        parts.append(_table(["run", spec.name], [[g.label, g.summary.mean] for g in result.groups]))
        return "".join(parts) + notes
    for p in result.pairs:
        parts.append(f'<p class="verdict{" sig" if p.significant else ""}">{_e(p.verdict)}</p>')
    conf = f"{result.confidence:.0%} CI"
    rows = []
    for g in result.groups:
        s = g.summary
        if spec.binary and g.unit == "event":
            rows.append(
                [
                    g.label,
                    s.n,
                    f"{s.mean:.1%}" if s.mean is not None else "",
                    _ci(s.mean_ci.low, s.mean_ci.high),
                    "",
                    "",
                    "",
                ]
            )
        else:
            rows.append([g.label, s.n, s.mean, _ci(s.mean_ci.low, s.mean_ci.high), s.sd, s.median, s.p95])
    parts.append(_table(["group", f"n ({result.groups[0].unit}s)", "mean", conf, "sd", "median", "p95"], rows))
    prow = []
    for p in result.pairs:
        t = p.test
        eff_name, eff = t.effect
        row = [
            f"{p.b} vs {p.a}",
            t.difference,
            _ci(t.difference_ci.low, t.difference_ci.high),
            t.test,
            p_cell(t.p_value),
        ]
        row += [p_cell(p.p_adjusted)] if result.correction else []
        row += [f"{eff_name} = {fmt_num(eff)}"]
        if isinstance(t, SampleTest):
            row += [fmt_num(t.cliffs_delta), p_cell(t.mannwhitney_p)]
        else:
            row += [fmt_num(t.odds_ratio), ""]
        prow.append(row)
    binary = any(not isinstance(p.test, SampleTest) for p in result.pairs)
    header = ["pair", "difference", conf, "test", "p", *(["p (Holm)"] if result.correction else []), "effect"]
    header += ["odds ratio" if binary else "Cliff's δ", "" if binary else "Mann-Whitney p"]
    parts.append(_table(header, prow))
    return "".join(parts) + notes


def _param_comparison_html(result: ParamComparison) -> str:
    from . import p_cell

    conf = f"{result.confidence:.0%} CI"
    parts = [f"<h3>{_e(result.metric.name)} by {_e(result.by)}</h3>"]
    for line in result.verdict.splitlines():
        sig = any(p.significant and p.verdict == line for p in result.pairs)
        lead = line == result.verdict.splitlines()[0]
        parts.append(
            f'<p class="verdict{" sig" if sig or (lead and result.correlation is not None and "rises:" in line) else ""}">{_e(line)}</p>'
        )
    rows = [
        [g.label, g.summary.n, g.summary.mean, _ci(g.summary.mean_ci.low, g.summary.mean_ci.high), g.summary.sd]
        for g in result.groups
    ]
    parts.append(_table([result.by, "runs", f"mean {result.metric.name}", f"{conf} (t, over runs)", "sd"], rows))
    tested = [p for p in result.pairs if p.test is not None]
    if tested:
        prow = [
            [
                f"{p.b} vs {p.a}",
                p.difference,
                _ci(p.test.difference_ci.low, p.test.difference_ci.high),  # type: ignore[union-attr]
                p_cell(p.p_adjusted),
                f"{fmt_num(p.cohens_d, 3)} {_ci(p.cohens_d_ci.low, p.cohens_d_ci.high)}",
            ]
            for p in tested
        ]
        parts.append(
            _table(["pair", "difference", conf, "p (Holm)" if len(tested) > 1 else "p", "Cohen's d [CI]"], prow)
        )
    parts += [f'<p class="meta">note: {_e(n)}</p>' for n in result.notes]
    parts.append(f'<p class="meta">methods: {_e(result.methods)}</p>')
    return "".join(parts)


def _figure_html(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _comparisons(
    hub: Telemetry, ids: list[str], exps: list[Experiment], chosen: list[str], by: str
) -> tuple[list[str], str | None]:
    """The comparison section's parts; a training metric by the param that differs (if one does)."""
    from . import compare_by_param, compare_experiments
    from .labels import differing_params
    from .per_run import parse_run_metric

    keys = differing_params(exps)
    parts: list[str] = []
    grouped = None
    for m in chosen:
        try:
            per_request = parse_run_metric(m)[1] is None and _is_request(m)
            if keys and not per_request and by == "experiment" and len(ids) >= 3:
                result = compare_by_param(ids, by=keys[0], metric=m, hub=hub)
                if any(g.summary.n >= 2 for g in result.groups):
                    grouped = keys[0]
                parts.append(_param_comparison_html(result))
            else:
                parts.append(_comparison_html(compare_experiments(ids, m, by=by, hub=hub)))
        except CrucibleError as exc:
            parts.append(f"<p>{_e(m)}: not compared ({_e(exc)})</p>")
    return parts, grouped


def _when(ts: Any) -> str | None:
    """``2026-12-02 06:54:58 UTC`` from an ISO timestamp."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(str(ts)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(ts)


def _is_request(metric: str) -> bool:
    from .per_run import _request_spec

    return _request_spec(metric) is not None


def _plots(hub: Telemetry, ids: list[str], specs: list[str], by: str, group_by: str | None) -> list[str]:
    from .plots import figure_png, plot_metric

    parts = []
    for m in specs:
        request = _is_request(m)
        x = "step" if request else ("epoch" if m.rpartition(":")[2].startswith(("val", "eval")) else "step")
        try:
            fig = plot_metric(
                ids,
                m,
                hub=hub,
                x=x,
                smooth=None if request or x == "epoch" else 0.6,
                by=by,
                group_by=group_by if not request else None,
            )
        except CrucibleError as exc:
            parts.append(f"<p>{_e(m)}: no plot ({_e(exc)})</p>")
            continue
        assert not isinstance(fig, Path)
        if request:
            from .series import metric_spec

            caption = f"{metric_spec(m).axis_label()} distribution"
        else:
            caption = f"{m} by {x}" + (f", mean +/- sd over the runs of each {group_by}" if group_by else "")
            caption += "" if x == "epoch" else " (EMA 0.6 over the faded raw curve where it has 20 points or more)"
        parts.append(_figure_html(figure_png(fig), caption))
    return parts


def render_report(
    hub: Telemetry,
    experiment_ids: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    by: str = "auto",
    title: str | None = None,
) -> str:
    """The report as an HTML string (see :func:`build_report`)."""
    from .. import __version__
    from .labels import run_labels
    from .report_parts import config_cell, environment_html, params_html, results_html
    from .summary import calculate_metrics

    ids = [getattr(i, "id", i) for i in experiment_ids]
    if not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidArgumentError("experiment_ids", f"expected experiment ids, got {experiment_ids!r}")
    if by not in ("auto", "experiment", "condition"):
        raise InvalidArgumentError("by", f"expected 'auto', 'experiment' or 'condition', got {by!r}")
    exps = [hub.get_experiment(i) for i in ids]
    labels = run_labels(exps)
    has_requests, has_training = _data_kinds(hub, ids)
    conditions = [e.condition for e in exps]
    if by == "auto":
        distinct = {c for c in conditions if c is not None}
        by = "condition" if None not in conditions and len(distinct) >= 2 and len(distinct) < len(ids) else "experiment"
    names = list(dict.fromkeys(e.name for e in exps))
    title = title or ("Report: " + ", ".join(names[:4]) + (" ..." if len(names) > 4 else "") + f" ({len(exps)} runs)")
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{len(exps)} experiment(s) · generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by '
        f"crucible-telemetry {_e(__version__)} · store <code>{_e(hub.home)}</code></p>",
    ]
    hyps = sorted({e.hypothesis for e in exps if e.hypothesis})
    if hyps:
        body.append("<h2>Hypothesis</h2>" + "".join(f"<p>{_e(h)}</p>" for h in hyps))
    results, vals = results_html(hub, exps, labels) if has_training else ("", [])
    body.append(results)
    if metrics:
        chosen = list(metrics)
    else:
        chosen = ["latency", "success"] if has_requests else []
        if has_training:
            chosen.append(
                f"{vals[0]}.min" if vals and "loss" in vals[0] else (f"{vals[0]}.last" if vals else "loss.last")
            )
    grouped = None
    if len(ids) >= 2 and chosen:
        parts, grouped = _comparisons(hub, ids, exps, chosen, by)
        body += ["<h2>Comparison</h2>", *parts]
    from .per_run import parse_run_metric

    curves = list(dict.fromkeys(parse_run_metric(m)[0] for m in chosen if parse_run_metric(m)[0] != "success"))
    if has_training and not metrics and "loss" not in curves:
        curves.append("loss")
    if curves:
        body += ["<h2>Plots</h2>", *_plots(hub, ids, curves, by, grouped)]
    body.append(params_html(exps))
    body.append(environment_html(exps, labels))
    body.append('<h2>Experiments</h2><div class="cards">')
    for exp, label in zip(exps, labels):
        rec = exp.to_json()
        info: list[tuple[str, Any]] = [
            ("id", exp.id),
            ("name", exp.name if exp.name != label else None),
            ("condition", exp.condition),
            ("hypothesis", exp.hypothesis),
            ("tags", ", ".join(exp.tags)),
            ("status", rec["status"]),
            ("framework", rec.get("framework")),
            ("notes", rec.get("notes")),
            ("started", _when(rec["started_at"])),
            ("stopped", _when(rec["stopped_at"])),
        ]
        if exp.metadata:
            info.append(("metadata", config_cell(exp.metadata)))
        if exp.params:
            info.append(("params", config_cell(exp.params)))
        card = [f'<div class="card"><h3>{_e(label)}</h3>', _table(["field", "value"], [r for r in info if r[1]])]
        head = _headline(calculate_metrics(hub, exp.id))
        if head:
            card.append("<h4>Headline metrics</h4>" + _table(["metric", "value"], head))
        card.append("</div>")
        body.append("".join(card))
    body.append("</div>")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def build_report(
    experiment_ids: Sequence[str] | str,
    out: str | os.PathLike[str] = "report.html",
    *,
    metrics: Sequence[str] | None = None,
    by: str = "auto",
    hub: Telemetry | None = None,
    title: str | None = None,
) -> Path:
    """Write one self-contained HTML report (hypothesis, conditions, environment, metrics, plots, verdicts).

    Args:
        experiment_ids: the experiments to report on; the first is the comparison's baseline.
        out: the HTML file to write.
        metrics: metrics to compare and plot; default latency + success for LLM runs, loss for training.
        by: ``"experiment"``, ``"condition"`` (seeds grouped), or ``"auto"`` (condition when the
            experiments form several conditions with repeats).
        hub: the ``Telemetry`` to read; default ``ct.default()``.
        title: the report's title.

    Example:
        >>> from crucible_telemetry.report import build_report
        >>> build_report([control.id, treatment.id], "report.html")  # doctest: +SKIP
        PosixPath('report.html')
    """
    if hub is None:
        from .._hubs import default

        hub = default()
    ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    text = render_report(hub, ids, metrics=metrics, by=by, title=title)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
