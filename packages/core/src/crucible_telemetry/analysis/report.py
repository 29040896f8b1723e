"""``build_report``: one self-contained HTML file about experiments and their comparison.

Inline CSS, images as base64 data URIs, no script and no network: the file opens anywhere.
"""

from __future__ import annotations

import base64
import html
import json
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
    from . import Comparison

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
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{_e(fmt_num(v))}</td>'
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{_e(fmt_num(v))}</td>"
            for v in r
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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


def _environment(exp: Experiment) -> list[tuple[str, Any]]:
    env = exp.environment or {}
    git = env.get("git") or {}
    rows: list[tuple[str, Any]] = [
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("hostname", env.get("hostname") or exp.host),
        ("git commit", (git.get("commit", "")[:12] + (" (dirty)" if git.get("dirty") else "")) if git else None),
    ]
    rows += [(k, v) for k, v in (env.get("packages") or {}).items()]
    return [(k, v) for k, v in rows if v]


def _data_kinds(hub: Telemetry, ids: list[str]) -> tuple[bool, bool]:
    reqs = [e for pair in REQUEST_EVENTS for e in pair]
    sql = (
        f"SELECT count(*) FILTER (WHERE event IN ({', '.join('?' * len(reqs))})), "
        "count(*) FILTER (WHERE event = 'crucible_train.batch.stop' AND measurements['loss'] IS NOT NULL) "
        f"FROM events WHERE experiment_id IN ({', '.join('?' * len(ids))})"
    )
    row = hub.store.execute(sql, reqs + ids).fetchone() or (0, 0)
    return bool(row[0]), bool(row[1])


def _comparison_html(result: Comparison) -> str:
    from . import SampleTest

    spec = result.metric
    parts = [f"<h3>{_e(spec.label)}{_e(' (' + spec.unit + ')' if spec.unit else '')} by {_e(result.by)}</h3>"]
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
        row = [f"{p.b} vs {p.a}", t.difference, _ci(t.difference_ci.low, t.difference_ci.high), t.test, t.p_value]
        row += [p.p_adjusted] if result.correction else []
        row += [f"{eff_name} = {fmt_num(eff)}"]
        if isinstance(t, SampleTest):
            row += [fmt_num(t.cliffs_delta), fmt_num(t.mannwhitney_p)]
        else:
            row += [fmt_num(t.odds_ratio), ""]
        prow.append(row)
    binary = any(not isinstance(p.test, SampleTest) for p in result.pairs)
    parts.append(
        _table(
            [
                "pair",
                "difference",
                conf,
                "test",
                "p",
                *(["p (Holm)"] if result.correction else []),
                "effect",
                "odds ratio" if binary else "Cliff's δ",
                "" if binary else "Mann-Whitney p",
            ],
            prow,
        )
    )
    return "".join(parts)


def _figure_html(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


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
    from . import compare_experiments, metric_spec
    from .plots import figure_png, plot_metric
    from .summary import calculate_metrics

    ids = [getattr(i, "id", i) for i in experiment_ids]
    if not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidArgumentError("experiment_ids", f"expected experiment ids, got {experiment_ids!r}")
    if by not in ("auto", "experiment", "condition"):
        raise InvalidArgumentError("by", f"expected 'auto', 'experiment' or 'condition', got {by!r}")
    exps = [hub.get_experiment(i) for i in ids]
    has_requests, has_training = _data_kinds(hub, ids)
    chosen = (
        list(metrics)
        if metrics
        else (["latency", "success"] if has_requests else []) + (["loss"] if has_training else [])
    )
    specs = [metric_spec(m) for m in chosen]
    conditions = [e.condition for e in exps]
    if by == "auto":
        distinct = {c for c in conditions if c is not None}
        by = "condition" if None not in conditions and len(distinct) >= 2 and len(distinct) < len(ids) else "experiment"
    title = title or ("Report: " + ", ".join(e.name for e in exps[:4]) + (" ..." if len(exps) > 4 else ""))
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{len(exps)} experiment(s) · generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by '
        f"crucible-telemetry {_e(__version__)} · store <code>{_e(hub.home)}</code></p>",
    ]
    hyps = sorted({e.hypothesis for e in exps if e.hypothesis})
    if hyps:
        body.append("<h2>Hypothesis</h2>" + "".join(f"<p>{_e(h)}</p>" for h in hyps))
    if len(ids) >= 2 and specs:
        body.append("<h2>Comparison</h2>")
        for spec in specs:
            try:
                body.append(_comparison_html(compare_experiments(ids, spec, by=by, hub=hub)))
            except CrucibleError as exc:
                body.append(f"<p>{_e(spec.label)}: not compared ({_e(exc)})</p>")
    plots = [s for s in specs if not s.binary]
    if plots:
        body.append("<h2>Plots</h2>")
        for spec in plots:
            try:
                fig = plot_metric(ids, spec, hub=hub, smooth=0.6 if not spec.histogram else None, by=by)
            except CrucibleError as exc:
                body.append(f"<p>{_e(spec.label)}: no plot ({_e(exc)})</p>")
                continue
            assert not isinstance(fig, Path)
            kind = "distribution" if spec.histogram else "by global step (EMA 0.6 over the faded raw curve)"
            body.append(_figure_html(figure_png(fig), f"{spec.axis_label()} {kind}"))
    body.append('<h2>Experiments</h2><div class="cards">')
    for exp in exps:
        rec = exp.to_json()
        info = [
            ("id", exp.id),
            ("condition", exp.condition),
            ("hypothesis", exp.hypothesis),
            ("tags", ", ".join(exp.tags)),
            ("status", rec["status"]),
            ("started", rec["started_at"]),
            ("stopped", rec["stopped_at"]),
        ]
        if exp.metadata:
            info.append(("metadata", json.dumps(exp.metadata, default=str)))
        card = [f'<div class="card"><h3>{_e(exp.name)}</h3>', _table(["field", "value"], [r for r in info if r[1]])]
        head = _headline(calculate_metrics(hub, exp.id))
        if head:
            card.append("<h4>Headline metrics</h4>" + _table(["metric", "value"], head))
        env = _environment(exp)
        if env:
            card.append("<h4>Environment</h4>" + _table(["", ""], env))
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
