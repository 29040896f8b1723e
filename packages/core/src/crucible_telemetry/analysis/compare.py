"""``compare_experiments`` / ``compare_conditions``: summaries, tests and a verdict in words."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from .effects import format_p
from .per_run import RunValues, request_or_run_values
from .series import MetricSpec, load_values
from .stats import (
    Description,
    ProportionTest,
    SampleTest,
    compare_proportions,
    compare_samples,
    describe,
    describe_proportion,
    holm,
)

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..hub import Telemetry

__all__ = ["Comparison", "Group", "Pair", "compare_conditions", "compare_experiments", "format_p"]


@dataclass
class Group:
    """One side of a comparison: an experiment, or a condition's experiments (seeds)."""

    label: str
    experiment_ids: list[str]
    unit: str  # "event" (one value per event), "seed" (one mean per experiment) or "run" (one summary each)
    summary: Description
    values: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {"label": self.label, "experiment_ids": self.experiment_ids, "unit": self.unit, **self.summary.to_dict()}


@dataclass
class Pair:
    """Two groups compared (``b`` against the baseline ``a``), with its verdict."""

    a: str
    b: str
    test: SampleTest | ProportionTest
    p_adjusted: float | None
    significant: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "a": self.a,
            "b": self.b,
            "p_adjusted": self.p_adjusted,
            "significant": self.significant,
            "verdict": self.verdict,
            **self.test.to_dict(),
        }


@dataclass
class Comparison:
    """The result of :func:`compare_experiments`: groups, pairwise tests and verdicts.

    ``str(comparison)`` is a short plain-text report; ``to_dict()`` is JSON-able.
    """

    metric: MetricSpec
    by: str
    alpha: float
    confidence: float
    groups: list[Group]
    pairs: list[Pair]
    correction: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """Every pair's verdict, one line each (one line when no pair could be tested)."""
        if self.pairs and all(g.unit == "run" and g.summary.n < 2 for g in self.groups):
            diffs = "; ".join(
                f"{p.test.difference:+.4g} ({p.b} minus {p.a})" for p in self.pairs if p.test.difference is not None
            )
            return (
                f"one run per group: no test possible, difference = {diffs}"
                if len(self.pairs) == 1
                else (f"one run per group: no test possible; differences: {diffs}")
            )
        return "\n".join(p.verdict for p in self.pairs) or "nothing to compare: need two groups"

    def group(self, label: str) -> Group:
        """The group with this label (an experiment's label, or a condition)."""
        for g in self.groups:
            if g.label == label or (label in g.experiment_ids and len(g.experiment_ids) == 1):
                return g
        raise InvalidArgumentError("label", f"no group {label!r}; groups are {[g.label for g in self.groups]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (metric, groups, pairs, verdict)."""
        m = self.metric
        return {
            "metric": {"name": m.name, "label": m.label, "unit": m.unit, "kind": m.kind},
            "by": self.by,
            "alpha": self.alpha,
            "confidence": self.confidence,
            "correction": self.correction,
            "groups": [g.to_dict() for g in self.groups],
            "pairs": [p.to_dict() for p in self.pairs],
            "verdict": self.verdict,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        m = self.metric
        lines = [f"{m.label} by {self.by}" + (f" ({m.unit})" if m.unit else "")]
        for g in self.groups:
            s = g.summary
            if g.unit == "run" and s.n == 1:
                lines.append(f"  {g.label}: {_num(s.mean)} (one run)")
                continue
            lines.append(
                f"  {g.label}: n={s.n} ({g.unit}s) mean={_num(s.mean)} {s.mean_ci} sd={_num(s.sd)} "
                f"median={_num(s.median)} p95={_num(s.p95)}"
            )
        lines += ["  " + v for v in self.verdict.splitlines()]
        lines += ["  note: " + n for n in self.notes]
        return "\n".join(lines)


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if unit == "USD":
        return f"${x:.4g}"
    text = f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"
    return f"{text} {unit}".rstrip() if unit else text


def _verdict(
    spec: MetricSpec,
    a: Group,
    b: Group,
    test: SampleTest | ProportionTest,
    p: float | None,
    adjusted: bool,
    alpha: float,
) -> tuple[str, bool]:
    label = spec.label
    if a.unit == "run" and (test.n_a < 2 or test.n_b < 2):
        few = a if test.n_a < 2 else b
        diff = "n/a" if test.difference is None else f"{test.difference:+.4g}"
        return (
            f"{b.label} vs {a.label}: one run in {few.label}, no test possible, difference = {diff} "
            f"({label}: one value per run)"
        ), False
    if test.n_a < 2 or test.n_b < 2 or p is None:
        return (
            f"not enough data to compare {label} between {a.label} and {b.label} "
            f"(n = {test.n_a} and {test.n_b} {a.unit}s)"
        ), False
    ptext = format_p(p) + (" (Holm-adjusted)" if adjusted else "")
    eff_name, eff = test.effect
    etext = f"{eff_name} = {eff:.2f}" if eff is not None else f"{eff_name} = n/a"
    ci = test.difference_ci
    conf = round(ci.confidence * 100)
    # success rates (counted, or per seed compared as numbers) read in percent and points
    va, vb = (test.rate_a, test.rate_b) if isinstance(test, ProportionTest) else (test.mean_a, test.mean_b)
    assert va is not None and vb is not None and test.difference is not None
    if spec.binary:
        values = f"{vb:.1%} vs {va:.1%}"
        diff = f"difference {test.difference * 100:+.1f} pts"
        if ci.low is not None and ci.high is not None:
            diff += f", {conf}% CI {ci.low * 100:+.1f} to {ci.high * 100:+.1f}"
    else:
        values = f"{_num(vb, spec.unit)} vs {_num(va, spec.unit)}"
        diff = f"difference {test.difference:+.4g}{' ' + spec.unit if spec.unit else ''}"
        if ci.low is not None and ci.high is not None:
            diff += f", {conf}% CI {ci.low:+.4g} to {ci.high:+.4g}"
    tests = test.test
    if isinstance(test, SampleTest) and test.mannwhitney_p is not None:
        tests += f"; Mann-Whitney {format_p(test.mannwhitney_p)}"
    over = {"seed": " over seed means", "run": " over runs"}.get(a.unit, "")
    detail = f"({values}{over}; {diff}; {tests})"
    significant = p < alpha
    if significant and test.difference != 0:
        direction = "higher" if (test.difference or 0) > 0 else "lower"
        return f"{b.label} {direction} {label} than {a.label}, {ptext}, {etext} {detail}", True
    return f"no significant difference in {label} between {b.label} and {a.label}, {ptext}, {etext} {detail}", False


def _group_values(spec: MetricSpec, per_exp: dict[str, np.ndarray], ids: list[str], unit: str) -> np.ndarray:
    if unit == "seed":
        means = [float(per_exp[i].mean()) for i in ids if per_exp[i].size]
        return np.asarray(means, dtype=np.float64)
    arrays = [per_exp[i] for i in ids]
    return np.concatenate(arrays) if arrays else np.empty(0)


def _compare(
    hub: Telemetry,
    grouping: list[tuple[str, list[str]]],
    spec: MetricSpec,
    by: str,
    alpha: float,
    confidence: float,
    unit: str,
    per_run: RunValues | None = None,
) -> Comparison:
    if not 0 < alpha < 1:
        raise InvalidArgumentError("alpha", f"expected a significance level between 0 and 1, got {alpha!r}")
    all_ids = [i for _, ids in grouping for i in ids]
    if per_run is not None:  # one value per run: a summary, never the points of a curve
        per_exp = {i: np.asarray([] if v is None else [v], dtype=np.float64) for i, v in per_run.values.items()}
    else:
        per_exp = load_values(hub, all_ids, spec)
    binary_counts = spec.binary and unit == "event"
    groups: list[Group] = []
    for label, ids in grouping:
        vals = _group_values(spec, per_exp, ids, unit)
        if binary_counts:
            summary = describe_proportion(int(vals.sum()), int(vals.size), confidence)
        else:
            summary = describe(vals, confidence)
        groups.append(Group(label, ids, unit, summary, vals))
    tests: list[tuple[Group, Group, SampleTest | ProportionTest]] = []
    for a, b in itertools.combinations(groups, 2):
        test: SampleTest | ProportionTest
        if binary_counts:
            test = compare_proportions(
                int(a.values.sum()), int(a.values.size), int(b.values.sum()), int(b.values.size), confidence
            )
        else:
            test = compare_samples(a.values, b.values, confidence)
        tests.append((a, b, test))
    raw = [t.p_value for _, _, t in tests]
    multiple = sum(p is not None for p in raw) > 1 if per_run is not None else len(tests) > 1
    adjusted = holm(raw) if multiple else raw
    pairs = []
    for (a, b, test), p in zip(tests, adjusted):
        text, sig = _verdict(spec, a, b, test, p, multiple, alpha)
        pairs.append(Pair(a.label, b.label, test, p, sig, text))
    notes = [per_run.note] if per_run is not None and per_run.note else []
    notes += _few_runs_note(groups, binary_counts)
    return Comparison(spec, by, alpha, confidence, groups, pairs, "holm" if multiple else None, notes)


def _few_runs_note(groups: list[Group], binary: bool) -> list[str]:
    """Say when too few runs per group can support a test: 2 or 3 runs cannot show normality, and an
    exact rank test cannot reach p < 0.05 below 4 v 4 (its smallest two-sided p is 2 / C(n1 + n2, n1))."""
    sizes = sorted(g.summary.n for g in groups if g.unit in ("run", "seed"))
    if binary or len(sizes) < 2 or sizes[0] < 2 or sizes[0] >= 4:
        return []
    n1, n2 = sizes[0], sizes[1]
    floor = 2 / math.comb(n1 + n2, n1)
    return [
        f"{n1} runs in the smallest group: too few to check the t-test's normality, and a rank test cannot go "
        f"below p = {floor:.3g} with {n1} v {n2}; read the verdict as a hint and add seeds"
    ]


def _labels(exps: Sequence[Experiment]) -> list[str]:
    """Unique names; else the params that differ (``lr=0.01``); else ids."""
    from .labels import differing_params, run_labels

    names = [e.name for e in exps]
    if len(set(names)) == len(names):
        return names
    if differing_params(exps, seeds=True):
        labels = run_labels(exps)
        if len(set(labels)) == len(labels):
            return labels
    return [e.id for e in exps]


def _hub(hub: Telemetry | None) -> Telemetry:
    if hub is not None:
        return hub
    from .._hubs import default

    return default()


def _check_ids(experiment_ids: Any) -> list[str]:
    if isinstance(experiment_ids, str) or not isinstance(experiment_ids, Iterable):
        raise InvalidArgumentError("experiment_ids", f"expected a list of experiment ids, got {experiment_ids!r}")
    ids: list[str] = []
    for item in experiment_ids:
        i = getattr(item, "id", item)
        if not isinstance(i, str):
            raise InvalidArgumentError("experiment_ids", f"expected experiment id strings, got {i!r}")
        ids.append(i)
    if len(set(ids)) != len(ids):
        raise InvalidArgumentError("experiment_ids", "an experiment is listed twice")
    return ids


def compare_experiments(
    experiment_ids: Iterable[str],
    metric: str | MetricSpec = "latency",
    *,
    by: str = "experiment",
    alpha: float = 0.05,
    confidence: float = 0.95,
    hub: Telemetry | None = None,
) -> Comparison:
    """Compare experiments on a metric; the first one is the baseline.

    A per-request metric (latency, ttft, cost, tokens, success) compares requests: each one is a
    unit. A training metric compares one value per run, its summary (``"val_loss.min"``,
    ``"val_loss.last"``, ``"loss.last5"``; a bare name is converted to its last value, said in
    ``notes``): the points of one training curve are autocorrelated, never independent samples.
    So two single runs on a training metric give a difference and no test.

    Per group: n, mean, sd, median and p95 with confidence intervals. Per pair: the difference
    of means with its Welch CI, Welch's t-test, Mann-Whitney U, Cohen's d and Cliff's delta
    (success rates: chi-square, or Fisher's exact when an expected count is < 5, with Cohen's h).
    With more than two groups every pair is tested and p-values are Holm-adjusted.

    Args:
        experiment_ids: two or more experiment ids (or ``Experiment`` objects).
        metric: ``"latency"``, ``"ttft"``, ``"cost"``, ``"tokens"``, ``"success"`` (per request), or a
            training metric with its summary: ``"val_loss.min"``, ``"crucible_train.epoch.stop:val_loss.last"``.
        by: ``"experiment"`` or ``"condition"``: experiments grouped by their ``condition``, each
            experiment one unit (its mean of a request metric, its summary of a training metric).
            To group by a param (``lr``) use :func:`~crucible_telemetry.analysis.compare_by_param`.
        alpha: significance level of the verdicts.
        confidence: level of every confidence interval.
        hub: the ``Telemetry`` to read; default ``ct.default()``.

    Example:
        >>> import crucible_telemetry as ct
        >>> result = ct.analysis.compare_experiments([control.id, treatment.id], metric="latency")  # doctest: +SKIP
        >>> print(result.verdict)  # doctest: +SKIP
        treatment lower latency than control, p = 0.003, d = -0.80 (41.2 ms vs 52.9 ms; ...)
    """
    h = _hub(hub)
    ids = _check_ids(experiment_ids)
    if len(ids) < 2:
        raise InvalidArgumentError("experiment_ids", f"need at least two experiments to compare, got {len(ids)}")
    if by not in ("experiment", "condition"):
        raise InvalidArgumentError("by", f"expected 'experiment' or 'condition' (or use compare_by_param), got {by!r}")
    exps = [h.get_experiment(i) for i in ids]
    spec, per_run = request_or_run_values(h, metric, ids)
    if by == "experiment":
        grouping = [(label, [e.id]) for label, e in zip(_labels(exps), exps)]
        result = _compare(h, grouping, spec, by, alpha, confidence, "event" if per_run is None else "run", per_run)
        if per_run is not None:
            from .labels import replicates_hint

            result.notes += replicates_hint(exps)
        return result
    conditions: dict[str, list[str]] = {}
    for e in exps:
        conditions.setdefault(e.condition if e.condition is not None else "(no condition)", []).append(e.id)
    if len(conditions) < 2:
        raise InvalidArgumentError("by", f"all experiments share one condition {next(iter(conditions))!r}")
    return _compare(
        h, list(conditions.items()), spec, by, alpha, confidence, "seed" if per_run is None else "run", per_run
    )


def compare_conditions(
    conditions: Iterable[str],
    metric: str | MetricSpec = "latency",
    *,
    experiments: Iterable[str] | None = None,
    alpha: float = 0.05,
    confidence: float = 0.95,
    hub: Telemetry | None = None,
) -> Comparison:
    """Compare conditions over seeds: each experiment's mean is one unit; the first condition is the baseline.

    Args:
        conditions: condition names, e.g. ``["control", "treatment"]``.
        metric: as in :func:`compare_experiments`.
        experiments: the experiment ids to draw from (default: every experiment in the store).
        alpha: significance level of the verdicts.
        confidence: level of every confidence interval.
        hub: the ``Telemetry`` to read; default ``ct.default()``.

    Example:
        >>> r = ct.analysis.compare_conditions(["control", "treatment"], metric="latency")  # doctest: +SKIP
        >>> r.group("treatment").summary.mean_ci  # doctest: +SKIP
    """
    h = _hub(hub)
    if isinstance(conditions, str) or not isinstance(conditions, Iterable):
        raise InvalidArgumentError("conditions", f"expected a list of condition names, got {conditions!r}")
    wanted = list(conditions)
    if len(wanted) < 2 or len(set(wanted)) != len(wanted):
        raise InvalidArgumentError("conditions", f"need two or more distinct conditions, got {wanted!r}")
    pool = [h.get_experiment(i) for i in _check_ids(experiments)] if experiments is not None else h.list_experiments()
    grouping: list[tuple[str, list[str]]] = []
    for cond in wanted:
        ids = [e.id for e in pool if e.condition == cond]
        if not ids:
            raise InvalidArgumentError("conditions", f"no experiment has condition {cond!r}")
        grouping.append((cond, ids))
    all_ids = [i for _, ids in grouping for i in ids]
    spec, per_run = request_or_run_values(h, metric, all_ids)
    unit = "seed" if per_run is None else "run"
    return _compare(h, grouping, spec, "condition", alpha, confidence, unit, per_run)
