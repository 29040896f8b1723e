"""``crucible compare``, ``plot``, ``report``: decide between runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ._common import CommandError, emit_rows, fmt_num, jsonable, open_hub, out_console, resolve_ids, write_text

if TYPE_CHECKING:
    from ..analysis import Comparison, Interval, ParamComparison
    from ..hub import Telemetry

__all__ = ["print_comparison", "print_param_comparison", "register"]

#: The user's words for the arguments of the analysis functions (others: ``--`` + the name, ``_`` as ``-``).
_FLAGS = {"size": "--width/--height/--dpi", "experiment_ids": "ids"}


def _in_user_words(exc: InvalidArgumentError) -> CommandError:
    """``metric: unknown ...`` becomes ``--metric: unknown ...``."""
    text = str(exc)
    flag = _FLAGS.get(exc.argument, "--" + exc.argument.replace("_", "-"))
    if text.startswith(exc.argument + ":"):
        text = flag + text[len(exc.argument) :]
    return CommandError(text)


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


def print_comparison(result: Comparison) -> None:
    """Summary table, pairwise table and the verdicts (bold; green when significant)."""
    from ..analysis import p_cell

    spec = result.metric
    con = out_console()
    if result.groups and all(g.unit == "run" and g.summary.n < 2 for g in result.groups):
        emit_rows(["run", spec.name], [[g.label, g.summary.mean] for g in result.groups], title=f"{spec.name} per run")
        con.print("[bold]" + _escape(result.verdict) + "[/]")
        for note in result.notes:
            con.print("[dim]note: " + _escape(note) + "[/]")
        return
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
        row = [f"{p.b} vs {p.a}", diff, t.test, p_cell(t.p_value)]
        if result.correction:
            row.append(p_cell(p.p_adjusted))
        row.append(f"{eff_name} = {fmt_num(eff, 3)}")
        if wide:
            row += (
                [fmt_num(getattr(t, "cliffs_delta", None), 3), p_cell(getattr(t, "mannwhitney_p", None))]
                if not pct
                else [fmt_num(getattr(t, "odds_ratio", None), 3)]
            )
        prow.append(row)
    if prow:
        emit_rows(pcols, prow, title="pairwise (b vs baseline a)")
    for p in result.pairs:
        con.print(("[bold green]" if p.significant else "[bold]") + _escape(p.verdict) + "[/]")
    for note in result.notes:
        con.print("[dim]note: " + _escape(note) + "[/]")


def print_param_comparison(result: ParamComparison) -> None:
    """Groups with their means and CIs, the correlation, the tested pairs and the verdict."""
    from ..analysis import p_cell

    con = out_console()
    conf = f"{result.confidence:.0%} CI"
    rows = [
        [
            g.label,
            g.summary.n,
            _with_ci(g.summary.mean, g.summary.mean_ci),
            fmt_num(g.summary.sd),
            g.summary.min,
            g.summary.max,
        ]
        for g in result.groups
    ]
    emit_rows(
        [result.by, "runs", f"mean [{conf}]", "sd", "min", "max"],
        rows,
        title=f"{result.metric.name} by {result.by}",
    )
    tested = [p for p in result.pairs if p.test is not None]
    if tested:
        holm = len(tested) > 1
        cols = ["pair", f"difference [{conf}]", "p (Holm)" if holm else "p", "d [CI]"]
        prow = [
            [
                f"{p.b} vs {p.a}",
                _with_ci(p.difference, p.test.difference_ci),  # type: ignore[union-attr]
                p_cell(p.p_adjusted),
                _with_ci(p.cohens_d, p.cohens_d_ci),
            ]
            for p in tested
        ]
        emit_rows(cols, prow, title="pairwise (b vs a)")
    for line in result.verdict.splitlines():
        sig = any(p.significant and p.verdict == line for p in result.pairs)
        con.print(("[bold green]" if sig else "[bold]") + _escape(line) + "[/]")
    for note in result.notes:
        con.print("[dim]note: " + _escape(note) + "[/]")
    con.print("[dim]methods: " + _escape(result.methods) + "[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _spread(s: Any) -> list[Any]:
    return [s.sd, s.min, s.max]


def _pool(hub: Telemetry, args: argparse.Namespace) -> list[str] | None:
    """The runs named on the command line (ids, prefixes, names), narrowed by ``--tag``; None: all."""
    ids = resolve_ids(hub, args.ids) if args.ids else None
    if args.tag:
        pool = [hub.get_experiment(i) for i in ids] if ids is not None else hub.list_experiments()
        ids = [e.id for e in pool if all(t in e.tags for t in args.tag)]
        if not ids:
            raise CommandError(f"--tag: no run has tag(s) {', '.join(args.tag)}")
    return ids


def _compare(args: argparse.Namespace) -> int:
    from ..analysis import compare_by_param, compare_conditions, compare_experiments

    hub = open_hub(args)
    try:
        ids = _pool(hub, args)
        if args.by not in ("experiment", "condition"):
            if not args.metric:
                raise CommandError("--metric: say which value of each run to compare, e.g. --metric val_loss.min")
            result: Any = compare_by_param(
                ids, by=args.by, metric=args.metric, alpha=args.alpha, confidence=args.confidence, ci=args.ci, hub=hub
            )
        elif args.conditions:
            result = compare_conditions(
                args.conditions,
                args.metric or "latency",
                experiments=ids,
                alpha=args.alpha,
                confidence=args.confidence,
                hub=hub,
            )
        else:
            if ids is None and args.all:
                ids = [e.id for e in hub.list_experiments()]
            if ids is None or len(ids) < 2:
                raise CommandError(
                    "compare needs two or more experiment ids (or --tag, --all, --conditions A B, or --by PARAM)"
                )
            result = compare_experiments(
                ids, args.metric or "latency", by=args.by, alpha=args.alpha, confidence=args.confidence, hub=hub
            )
    except InvalidArgumentError as exc:
        raise _in_user_words(exc) from None
    if args.format == "json":
        write_text(json.dumps(jsonable(result.to_dict()), indent=2, default=str) + "\n", args.output)
    elif args.format == "csv":
        cols = [
            "group",
            "runs" if hasattr(result, "correlation") else "n",
            "mean",
            "ci_low",
            "ci_high",
            "sd",
            "min",
            "max",
        ]
        rows = [
            [g.label, g.summary.n, g.summary.mean, g.summary.mean_ci.low, g.summary.mean_ci.high, *_spread(g.summary)]
            for g in result.groups
        ]
        emit_rows(cols, rows, fmt="csv", output=args.output)
    elif hasattr(result, "correlation"):
        print_param_comparison(result)
    else:
        print_comparison(result)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ..analysis.plots import plot_metric

    if not args.ids and not args.tag:  # a usage error, as argparse words it
        sys.stderr.write("crucible plot: error: give experiment ids or --tag (see 'crucible plot --help')\n")
        return 2
    hub = open_hub(args)
    out = Path(args.output or f"{args.metric.replace(':', '_').replace('/', '_')}.png")
    try:
        ids = _pool(hub, args)
        if not ids:
            raise CommandError("plot needs experiment ids or --tag")
        path = plot_metric(
            ids,
            args.metric,
            x=args.x,
            smooth=args.smooth,
            kind=args.kind,
            by=args.by,
            label=args.label,
            group_by=args.group_by,
            logy=args.logy,
            markers=args.markers,
            out=out,
            hub=hub,
            title=args.title,
            width=args.width / args.dpi,
            height=args.height / args.dpi,
            dpi=args.dpi,
        )
    except InvalidArgumentError as exc:
        raise _in_user_words(exc) from None
    out_console().print(f"wrote {path} ({args.width}x{args.height} px)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..analysis.report import build_report

    if not args.ids and not args.tag:
        sys.stderr.write("crucible report: error: give experiment ids or --tag (see 'crucible report --help')\n")
        return 2
    hub = open_hub(args)
    try:
        ids = _pool(hub, args)
        assert ids is not None
        path = build_report(ids, args.output, metrics=args.metric or None, by=args.by, hub=hub, title=args.title)
    except InvalidArgumentError as exc:
        raise _in_user_words(exc) from None
    out_console().print(f"wrote {path}")
    return 0


def register(add: Any) -> None:
    """Add ``compare``, ``plot`` and ``report``."""
    p = add(
        "compare",
        _compare,
        help="compare runs, conditions or the values of a param on a metric, with a verdict",
        description="Compare runs on a metric.\n\n"
        "Per-request metrics (latency, ttft, cost, tokens, success) compare requests: n, mean, sd,\n"
        "median, p95 with CIs; the difference with its CI, Welch's t, Mann-Whitney U, Cohen's d,\n"
        "Cliff's delta (success: chi-square or Fisher's exact); Holm-adjusted for more than two.\n\n"
        "A training metric compares one value per run (val_loss.min, val_loss.last, loss.last5), never\n"
        "the points of a curve; one run per group gives a difference and no test.\n\n"
        "--by PARAM groups runs by a param (runs differing only in seed are replicates): each group's\n"
        "mean with a t-interval over its runs, Welch's t between groups of two or more runs with\n"
        "Cohen's d and its CI, and for a numeric param Spearman's rank correlation with a CI.\n"
        "The first id (or condition) is the baseline.",
        epilog="examples:\n  crucible compare ID_A ID_B --metric latency\n"
        "  crucible compare ID_A ID_B ID_C --metric success\n"
        "  crucible compare --conditions control treatment --metric latency\n"
        "  crucible compare --by lr --metric val_loss.min --tag sweep\n"
        "  crucible compare RUN_A RUN_B --metric val_loss.min\n"
        "  crucible compare ID1 ID2 ID3 ID4 --by condition --metric loss.last --format json",
    )
    p.add_argument(
        "ids", nargs="*", help="runs: ids, unique id prefixes or names (with --conditions or --by PARAM: the pool)"
    )
    p.add_argument(
        "--metric",
        help="latency, ttft, cost, tokens, success (per request; default latency) or one value per run of a "
        "training metric: val_loss.min, val_loss.last, loss.last5",
    )
    p.add_argument(
        "--by",
        default="experiment",
        metavar="experiment|condition|PARAM",
        help="experiment (default); condition: group by condition, each run one unit; "
        "a param such as lr: group by it, runs differing only in seed are replicates",
    )
    p.add_argument("--conditions", nargs="+", metavar="CONDITION", help="compare these conditions over seeds")
    p.add_argument("--tag", action="append", help="only runs with this tag (repeat for several)")
    p.add_argument("--all", action="store_true", help="every run in the store")
    p.add_argument(
        "--ci",
        choices=["fisher", "bootstrap"],
        default="fisher",
        help="interval of the rank correlation (--by PARAM): Fisher z (default) or bootstrap over runs",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of intervals (default 0.95)")
    p.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="csv: one row per group; json: everything"
    )
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = add(
        "plot",
        _plot,
        help="plot a metric of several runs overlaid (PNG)",
        description="Curves of a metric for several runs overlaid, by step, epoch or wall time, labelled\n"
        "by the params that differ. --group-by PARAM draws each value's mean over its runs with a\n"
        "+/- 1 sd band. Series under 20 points get markers. Per-request metrics (latency, ttft, cost,\n"
        "tokens) draw histograms.",
        epilog="examples:\n  crucible plot RUN_A RUN_B --metric val_loss --x epoch -o val_loss.png\n"
        "  crucible plot --tag sweep --metric val_loss --x epoch --group-by lr --logy\n"
        "  crucible plot RUN_A RUN_B --metric train_loss_step --smooth 0.6 --label lr,seed\n"
        "  crucible plot EXP_A EXP_B --metric latency -o latency.png",
    )
    p.add_argument("ids", nargs="*", help="runs: ids, unique id prefixes or names")
    p.add_argument("--tag", action="append", help="runs with this tag (repeat for several)")
    p.add_argument("--metric", default="loss", help="metric name, e.g. val_loss, train_loss_step (default loss)")
    p.add_argument("--x", choices=["step", "epoch", "time"], default="step", help="x axis (default step)")
    p.add_argument("--smooth", type=float, help="EMA factor in [0, 1), e.g. 0.6")
    p.add_argument("--kind", choices=["auto", "line", "hist"], default="auto")
    p.add_argument(
        "--label", metavar="PARAMS", help="params naming the curves, e.g. lr or lr,seed (default: what differs)"
    )
    p.add_argument(
        "--group-by", metavar="PARAM", help="one curve per value of PARAM: mean over its runs, +/- 1 sd band"
    )
    p.add_argument("--logy", action="store_true", help="log y axis")
    p.add_argument(
        "--markers", action=argparse.BooleanOptionalAction, default=None, help="dots on points (default: sparse series)"
    )
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
        description="Write one self-contained HTML file (inline CSS, images as data URIs): the validation\n"
        "metrics of each run and the params that differ first, then the comparison (a training metric\n"
        "on one value per run, by the param that differs), plots, the params and environment shown\n"
        "once (what differs), and a card per run.",
        epilog="examples:\n  crucible report RUN_A RUN_B -o report.html\n"
        "  crucible report --tag sweep --metric val_loss.min -o sweep.html\n"
        "  crucible report C1 C2 T1 T2 --by condition --metric latency -o ab.html",
    )
    p.add_argument("ids", nargs="*", help="runs: ids, unique id prefixes or names")
    p.add_argument("--tag", action="append", help="runs with this tag (repeat for several)")
    p.add_argument("-o", "--output", default="report.html", help="HTML path (default report.html)")
    p.add_argument(
        "--metric",
        action="append",
        help="metric to compare and plot, e.g. val_loss.min or latency (repeat; default: by the data)",
    )
    p.add_argument("--by", choices=["auto", "experiment", "condition"], default="auto")
    p.add_argument("--title")
