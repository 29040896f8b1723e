"""``crucible compare``, ``plot``, ``report``: decide between runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import CommandError, emit_rows, fmt_num, jsonable, open_hub, out_console, write_text

if TYPE_CHECKING:
    from ..analysis import Comparison, Interval

__all__ = ["print_comparison", "register"]


def _ci(ci: Interval, pct: bool = False) -> str:
    if ci.low is None and ci.high is None:
        return ""
    if pct:
        return f"[{(ci.low or 0) * 100:.1f}, {(ci.high or 0) * 100:.1f}]"
    return f"[{fmt_num(ci.low) or '-'}, {fmt_num(ci.high) or '-'}]"


def _with_ci(value: float | None, ci: Interval, pct: bool = False) -> str:
    if value is None:
        return ""
    text = f"{value * 100:.1f}%" if pct else fmt_num(value)
    interval = _ci(ci, pct)
    return f"{text} {interval}" if interval else text


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def print_comparison(result: Comparison) -> None:
    """Summary table, pairwise table and the verdicts (bold; green when significant)."""
    spec = result.metric
    con = out_console()
    wide = con.width >= 120
    unit = f" ({spec.unit})" if spec.unit else ""
    conf = f"{result.confidence:.0%} CI"
    pct = spec.binary and result.groups[0].unit == "event"
    cols = ["group", f"n ({result.groups[0].unit}s)", f"{'rate' if pct else 'mean'} [{conf}]"]
    if not pct:
        cols += ["sd", f"median [{conf}]" if wide else "median", f"p95 [{conf}]" if wide else "p95"]
    rows = []
    for g in result.groups:
        s = g.summary
        row = [g.label, s.n, _with_ci(s.mean, s.mean_ci, pct)]
        if not pct:
            row += [
                fmt_num(s.sd),
                _with_ci(s.median, s.median_ci) if wide else fmt_num(s.median),
                _with_ci(s.p95, s.p95_ci) if wide else fmt_num(s.p95),
            ]
        rows.append(row)
    emit_rows(cols, rows, title=f"{spec.label}{unit} by {result.by}")
    pcols = ["pair", f"difference [{conf}]", "test", "p"]
    if result.correction:
        pcols.append("p (Holm)")
    pcols.append("effect")
    if wide:
        pcols += ["Cliff's δ", "Mann-Whitney p"] if not pct else ["odds ratio"]
    prow = []
    for p in result.pairs:
        t = p.test
        eff_name, eff = t.effect
        diff = _with_ci(t.difference, t.difference_ci, pct)
        if pct and t.difference is not None:
            diff = diff.replace("%", " pts", 1)
        row = [f"{p.b} vs {p.a}", diff, t.test, _p(t.p_value)]
        if result.correction:
            row.append(_p(p.p_adjusted))
        row.append(f"{eff_name} = {fmt_num(eff, 3)}")
        if wide:
            row += (
                [fmt_num(getattr(t, "cliffs_delta", None), 3), _p(getattr(t, "mannwhitney_p", None))]
                if not pct
                else [fmt_num(getattr(t, "odds_ratio", None), 3)]
            )
        prow.append(row)
    if prow:
        emit_rows(pcols, prow, title="pairwise (b vs baseline a)")
    for p in result.pairs:
        con.print(("[bold green]" if p.significant else "[bold]") + _escape(p.verdict) + "[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _compare(args: argparse.Namespace) -> int:
    from ..analysis import compare_conditions, compare_experiments

    hub = open_hub(args)
    if args.conditions:
        result = compare_conditions(
            args.conditions,
            args.metric,
            experiments=args.ids or None,
            alpha=args.alpha,
            confidence=args.confidence,
            hub=hub,
        )
    else:
        if len(args.ids) < 2:
            raise CommandError("compare needs two or more experiment ids (or --conditions A B)")
        result = compare_experiments(
            args.ids, args.metric, by=args.by, alpha=args.alpha, confidence=args.confidence, hub=hub
        )
    if args.format == "json":
        write_text(json.dumps(jsonable(result.to_dict()), indent=2, default=str) + "\n", args.output)
    else:
        print_comparison(result)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ..analysis.plots import plot_metric

    hub = open_hub(args)
    out = Path(args.output or f"{args.metric.replace(':', '_').replace('/', '_')}.png")
    path = plot_metric(
        args.ids,
        args.metric,
        x=args.x,
        smooth=args.smooth,
        kind=args.kind,
        by=args.by,
        out=out,
        hub=hub,
        title=args.title,
        width=args.width / args.dpi,
        height=args.height / args.dpi,
        dpi=args.dpi,
    )
    out_console().print(f"wrote {path} ({args.width}x{args.height} px)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..analysis.report import build_report

    hub = open_hub(args)
    path = build_report(args.ids, args.output, metrics=args.metric or None, by=args.by, hub=hub, title=args.title)
    out_console().print(f"wrote {path}")
    return 0


def register(add: Any) -> None:
    """Add ``compare``, ``plot`` and ``report``."""
    p = add(
        "compare",
        _compare,
        help="compare experiments or conditions on a metric, with a verdict",
        description="Compare experiments on a per-event metric: n, mean, sd, median, p95 with CIs; "
        "difference with its CI, Welch's t, Mann-Whitney U, Cohen's d, Cliff's delta "
        "(success: chi-square or Fisher's exact); Holm-adjusted for more than two. "
        "The first id (or condition) is the baseline. Metrics: latency, ttft, cost, "
        "tokens, loss, step_time, success, <event>:<measurement>.",
        epilog="examples:\n  crucible compare ID_A ID_B --metric latency\n"
        "  crucible compare ID_A ID_B ID_C --metric success\n"
        "  crucible compare --conditions control treatment --metric latency\n"
        "  crucible compare ID1 ID2 ID3 ID4 --by condition --metric loss --format json",
    )
    p.add_argument("ids", nargs="*", help="experiment ids (with --conditions: the pool to draw from; default all)")
    p.add_argument("--metric", default="latency", help="metric name (default latency)")
    p.add_argument(
        "--by",
        choices=["experiment", "condition"],
        default="experiment",
        help="condition: group the ids by condition, each experiment's mean is one seed",
    )
    p.add_argument("--conditions", nargs="+", metavar="CONDITION", help="compare these conditions over seeds")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of intervals (default 0.95)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = add(
        "plot",
        _plot,
        help="plot a metric of several runs overlaid (PNG)",
        description="Curves of a metric for several runs overlaid, by step or wall time, with "
        "optional EMA smoothing; latency-like metrics draw histograms.",
        epilog="examples:\n  crucible plot RUN_A RUN_B --metric loss --smooth 0.6 -o loss.png\n"
        "  crucible plot RUN_A --metric loss --x time -o loss_time.png\n"
        "  crucible plot EXP_A EXP_B --metric latency -o latency.png",
    )
    p.add_argument("ids", nargs="+", help="experiment ids")
    p.add_argument("--metric", default="loss", help="metric name (default loss)")
    p.add_argument("--x", choices=["step", "time"], default="step", help="x axis: global step or wall seconds")
    p.add_argument("--smooth", type=float, help="EMA factor in [0, 1), e.g. 0.6")
    p.add_argument("--kind", choices=["auto", "line", "hist"], default="auto")
    p.add_argument(
        "--by",
        choices=["experiment", "condition"],
        default="experiment",
        help="condition: one color per condition (seeds share it; histograms pooled)",
    )
    p.add_argument("--title")
    p.add_argument("--width", type=int, default=800, help="pixels (default 800)")
    p.add_argument("--height", type=int, default=450, help="pixels (default 450)")
    p.add_argument("--dpi", type=int, default=100)
    p.add_argument("-o", "--output", help="image path (default <metric>.png); .svg/.pdf by suffix")

    p = add(
        "report",
        _report,
        help="one self-contained HTML report of runs and their comparison",
        description="Write one self-contained HTML file (inline CSS, images as data URIs) with "
        "each run's hypothesis, condition, environment, headline metrics, plots and "
        "the comparison verdict.",
        epilog="examples:\n  crucible report RUN_A RUN_B -o report.html\n"
        "  crucible report C1 C2 T1 T2 --by condition --metric latency -o ab.html",
    )
    p.add_argument("ids", nargs="+", help="experiment ids")
    p.add_argument("-o", "--output", default="report.html", help="HTML path (default report.html)")
    p.add_argument("--metric", action="append", help="metric to compare and plot (repeat; default: by the data)")
    p.add_argument("--by", choices=["auto", "experiment", "condition"], default="auto")
    p.add_argument("--title")
