"""``compare_by_param``: how did a param (``lr``) affect a metric (``val_loss.min``)? A number and its uncertainty.

Runs are grouped by the param's value; runs that differ only in their seed are replicates. Each
run gives one value (see :mod:`.per_run`). Per group: the mean with a t-interval over its runs.
Between groups: Welch's t where both have two or more runs (Holm-adjusted), the difference with
its CI and Cohen's d with its CI; else the difference alone, said to be untested. For a numeric
param: Spearman's rank correlation of param and metric over runs, with a CI and a permutation p.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from .effects import Correlation, cohens_d_interval, format_p, spearman
from .per_run import RunMetric, run_values
from .stats import Description, Interval, SampleTest, compare_samples, describe, holm

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..hub import Telemetry

__all__ = ["ParamComparison", "ParamGroup", "ParamPair", "compare_by_param", "is_seed_key"]

_NOISE_KEYS = ("output_dir", "logging_dir", "run_name", "hub_model_id", "experiment_name")


def is_seed_key(key: str) -> bool:
    """Params that tell replicates apart, not conditions: ``seed``, ``data_seed``, ``trainer.seed``, run paths."""
    last = key.rsplit(".", 1)[-1].lower()
    return "seed" in last or last in _NOISE_KEYS or last.endswith(("_dir", "_path"))


@dataclass
class ParamGroup:
    """The runs with one value of the param: their values and the mean with a t-interval over them."""

    value: Any
    label: str
    experiment_ids: list[str]
    values: np.ndarray = field(repr=False)
    summary: Description

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "value": self.value,
            "label": self.label,
            "experiment_ids": self.experiment_ids,
            "run_values": [float(v) for v in self.values],
            **self.summary.to_dict(),
        }


@dataclass
class ParamPair:
    """Group ``b`` against group ``a``: the difference, and a test only where both have two or more runs."""

    a: str
    b: str
    difference: float | None
    test: SampleTest | None
    p_adjusted: float | None
    cohens_d: float | None
    cohens_d_ci: Interval
    significant: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "tested": self.test is not None,
            "difference_ci": None if self.test is None else asdict(self.test.difference_ci),
            "test": None if self.test is None else self.test.test,
            "p": None if self.test is None else self.test.p_value,
            "p_adjusted": self.p_adjusted,
            "cohens_d": self.cohens_d,
            "cohens_d_ci": asdict(self.cohens_d_ci),
            "significant": self.significant,
            "verdict": self.verdict,
        }


@dataclass
class ParamComparison:
    """The result of :func:`compare_by_param`; ``str()`` is a short report, ``to_dict()`` JSON-able."""

    by: str
    metric: RunMetric
    alpha: float
    confidence: float
    groups: list[ParamGroup]
    pairs: list[ParamPair]
    correlation: Correlation | None
    correlation_note: str | None
    notes: list[str]
    numeric: bool

    @property
    def best(self) -> ParamGroup | None:
        """The group with the best mean (lowest unless the metric reads higher-is-better)."""
        present = [g for g in self.groups if g.summary.mean is not None]
        if not present:
            return None
        higher = self.metric.spec.lower_is_better is False
        return (max if higher else min)(present, key=lambda g: g.summary.mean)  # type: ignore[arg-type, return-value]

    @property
    def verdict(self) -> str:
        """The answer in words: the correlation (numeric params), the best group, the pairwise tests."""
        lines = [self._correlation_words()] if self.numeric else []
        best = self.best
        if best is not None:
            word = "highest" if self.metric.spec.lower_is_better is False else "lowest"
            lines.append(f"{word} mean {self.metric.name}: {best.label}, {_mean_words(best)}")
        tested = [p for p in self.pairs if p.test is not None]
        if self.pairs and not tested:
            lines.append(_untested_words(self))
        else:
            lines += [p.verdict for p in self.pairs]
        return "\n".join(x for x in lines if x)

    def _correlation_words(self) -> str:
        c = self.correlation
        if c is None:
            return f"no rank correlation of {self.by} with {self.metric.name}: {self.correlation_note}"
        assert c.rho is not None
        conf = f"{self.confidence:.0%} CI"
        ci = (
            f"[{conf} {c.ci.low:+.2f}, {c.ci.high:+.2f}]"
            if c.ci.low is not None and c.ci.high is not None
            else f"[{conf} n/a]"
        )
        text = f"Spearman rho = {c.rho:+.2f} {ci}, n = {c.n} runs, {format_p(c.p_value)}"
        lo, hi = c.ci.low, c.ci.high
        clear = (lo > 0 or hi < 0) if lo is not None and hi is not None else (c.p_value or 1) < self.alpha
        if clear:
            return f"{self.metric.name} {'rises' if c.rho > 0 else 'falls'} as {self.by} rises: {text}"
        return f"no clear monotone relation between {self.by} and {self.metric.name}: {text}"

    @property
    def methods(self) -> str:
        """How each number was made, in one line."""
        parts = [f"one value per run: {self.metric.words}", "group means: t-interval over their runs"]
        if self.correlation is not None:
            c = self.correlation
            parts.append(f"rho: {c.ci_method}; p: {c.p_method}")
        if any(p.test is not None for p in self.pairs):
            parts.append("pairs: Welch t, Holm-adjusted; d: Cohen's d with its noncentral-t interval")
        return "; ".join(parts)

    def group(self, value: Any) -> ParamGroup:
        """The group of a param value (``0.01``) or label (``"lr=0.01"``)."""
        for g in self.groups:
            if g.value == value or g.label == value or str(g.value) == str(value):
                return g
        raise InvalidArgumentError("value", f"no group {value!r}; groups are {[g.label for g in self.groups]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "by": self.by,
            "metric": self.metric.name,
            "metric_words": self.metric.words,
            "alpha": self.alpha,
            "confidence": self.confidence,
            "interval": "t-interval over each group's runs",
            "groups": [g.to_dict() for g in self.groups],
            "pairs": [p.to_dict() for p in self.pairs],
            "correction": "holm" if sum(p.test is not None for p in self.pairs) > 1 else None,
            "correlation": None if self.correlation is None else self.correlation.to_dict(),
            "correlation_note": self.correlation_note,
            "notes": self.notes,
            "methods": self.methods,
            "verdict": self.verdict,
        }

    def __str__(self) -> str:
        lines = [f"{self.metric.name} by {self.by} ({self.metric.words})"]
        conf = f"{self.confidence:.0%}"
        for g in self.groups:
            lines.append(f"  {g.label}: n={g.summary.n} runs, mean={_n(g.summary.mean)} {conf} CI {g.summary.mean_ci}")
        lines += ["  " + v for v in self.verdict.splitlines()]
        lines += ["  note: " + n for n in self.notes]
        lines.append("  methods: " + self.methods)
        return "\n".join(lines)


def _n(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.3e}"


def _mean_words(g: ParamGroup) -> str:
    s = g.summary
    if s.n < 2:
        return f"{_n(s.mean)} (one run: no interval)"
    return f"mean {_n(s.mean)}, {s.mean_ci.confidence:.0%} CI [{_n(s.mean_ci.low)}, {_n(s.mean_ci.high)}] (t-interval over {s.n} runs)"


def _untested_words(r: ParamComparison) -> str:
    diffs = "; ".join(f"{p.difference:+.4g} ({p.b} minus {p.a})" for p in r.pairs if p.difference is not None)
    if all(g.summary.n < 2 for g in r.groups):
        return f"one run per group: no test possible; differences in {r.metric.name}: {diffs}"
    return f"no group pair has two or more runs on both sides: no test possible; differences: {diffs}"


def _label(by: str, value: Any) -> str:
    return f"{by}={value:g}" if isinstance(value, float) else f"{by}={value}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _params(exp: Experiment) -> dict[str, Any]:
    return dict(getattr(exp, "params", None) or {})


def _pair(a: ParamGroup, b: ParamGroup, confidence: float) -> tuple[ParamPair, float | None]:
    diff = None
    if a.summary.mean is not None and b.summary.mean is not None:
        diff = b.summary.mean - a.summary.mean
    if a.values.size < 2 or b.values.size < 2:
        few = a if a.values.size < 2 else b
        text = f"{b.label} vs {a.label}: one run in {few.label}, no test; difference = {_n(diff)}"
        return ParamPair(a.label, b.label, diff, None, None, None, Interval(None, None, confidence), False, text), None
    test = compare_samples(a.values, b.values, confidence)
    d, d_ci = cohens_d_interval(a.values, b.values, confidence)
    pair = ParamPair(a.label, b.label, diff, test, None, d, d_ci, False, "")
    return pair, test.p_value


def _finish(pair: ParamPair, p: float | None, adjusted: bool, alpha: float, metric: str) -> None:
    t = pair.test
    assert t is not None
    pair.p_adjusted = p
    pair.significant = p is not None and p < alpha
    ci = t.difference_ci
    diff = f"difference {_n(pair.difference)} [{ci.confidence:.0%} CI {_n(ci.low)}, {_n(ci.high)}]"
    d = "d = n/a"
    if pair.cohens_d is not None:
        d = f"d = {pair.cohens_d:.2f} [{_n(pair.cohens_d_ci.low)}, {_n(pair.cohens_d_ci.high)}]"
    ptext = format_p(p) + (" (Holm)" if adjusted else "")
    head = f"{pair.b} vs {pair.a}"
    if pair.significant and pair.difference:
        head += f": {metric} {'higher' if pair.difference > 0 else 'lower'}"
    else:
        head += ": no significant difference"
    pair.verdict = f"{head}, {diff}, {ptext}, {d}"


def compare_by_param(
    experiment_ids: Iterable[str] | None = None,
    *,
    by: str,
    metric: str,
    alpha: float = 0.05,
    confidence: float = 0.95,
    ci: str = "fisher",
    hub: Telemetry | None = None,
) -> ParamComparison:
    """Group runs by the param ``by`` and compare them on one value per run of ``metric``.

    Args:
        experiment_ids: the runs (ids or ``Experiment`` objects); None: every run that has the param.
        by: a param name (``"lr"``, ``"optimizer.lr"``; a leading ``params.`` is accepted).
        metric: ``"val_loss.min"``, ``"val_loss.last"``, ``"loss.last5"``; a bare name is its last value.
        alpha: significance level of the verdicts.
        confidence: level of every interval.
        ci: the correlation's interval: ``"fisher"`` (Fisher z, Bonett-Wright SE) or ``"bootstrap"`` (over runs).
        hub: the ``Telemetry`` to read; default ``ct.default()``.

    Example:
        >>> r = ct.analysis.compare_by_param(by="lr", metric="val_loss.min")  # doctest: +SKIP
        >>> r.correlation.rho, r.correlation.ci  # doctest: +SKIP
        (-0.93, Interval(low=-0.99, high=-0.64, confidence=0.95))
    """
    from .compare import _check_ids, _hub

    h = _hub(hub)
    if not 0 < alpha < 1:
        raise InvalidArgumentError("alpha", f"expected a significance level between 0 and 1, got {alpha!r}")
    if not isinstance(by, str) or not by.strip():
        raise InvalidArgumentError("by", f"expected a param name such as 'lr', got {by!r}")
    key = by.strip().removeprefix("params.")
    exps = (
        [h.get_experiment(i) for i in _check_ids(experiment_ids)]
        if experiment_ids is not None
        else h.list_experiments()
    )
    having = [e for e in exps if key in _params(e)]
    if not having:
        known = sorted({k for e in exps for k in _params(e)})
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = (
            f"did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else (f"the runs' params are {', '.join(known[:15])}" if known else "the runs have no params")
        )
        raise InvalidArgumentError("by", f"no run has a param {key!r}; {hint}")
    notes: list[str] = []
    if len(having) < len(exps):
        notes.append(f"{len(exps) - len(having)} run(s) without {key} left out")
    ids = [e.id for e in having]
    rv = run_values(h, ids, metric)
    if rv.note:
        notes.append(rv.note)
    missing = [i for i in ids if rv.values.get(i) is None]
    if missing:
        notes.append(f"{len(missing)} run(s) without {rv.metric.name} left out: {', '.join(missing[:3])}")
    runs = [e for e in having if rv.values.get(e.id) is not None]
    if not runs:
        raise InvalidArgumentError("metric", f"no run with {key} has a value of {rv.metric.text!r}")
    values = {e.id: float(rv.values[e.id]) for e in runs}  # type: ignore[arg-type]
    pv = {e.id: _params(e)[key] for e in runs}
    numeric = all(_is_number(v) for v in pv.values())
    order: dict[Any, list[Experiment]] = {}
    for e in sorted(runs, key=lambda e: pv[e.id] if numeric else str(pv[e.id])):
        order.setdefault(pv[e.id] if numeric else str(pv[e.id]), []).append(e)
    notes += _replicate_notes(key, order)
    groups = []
    for value, members in order.items():
        arr = np.array([values[e.id] for e in members], dtype=np.float64)
        groups.append(ParamGroup(value, _label(key, value), [e.id for e in members], arr, describe(arr, confidence)))
    pairs: list[ParamPair] = []
    raw: list[float | None] = []
    for a, b in itertools.combinations(groups, 2):
        pair, p = _pair(a, b, confidence)
        pairs.append(pair)
        raw.append(p)
    tested = [i for i, p in enumerate(pairs) if p.test is not None]
    adjusted = holm([raw[i] for i in tested]) if len(tested) > 1 else [raw[i] for i in tested]
    for i, p in zip(tested, adjusted):
        _finish(pairs[i], p, len(tested) > 1, alpha, rv.metric.name)
    corr, corr_note = None, None
    if numeric:
        xs = np.array([float(pv[e.id]) for e in runs])
        ys = np.array([values[e.id] for e in runs])
        if len(runs) < 3:
            corr_note = f"n = {len(runs)} runs: a rank correlation needs 3 or more"
        elif np.unique(xs).size < 2:
            corr_note = f"every run has the same {key}"
        elif np.unique(ys).size < 2:
            corr_note = f"every run has the same {rv.metric.name}"
        else:
            corr = spearman(xs, ys, confidence, ci=ci)
    else:
        corr_note = f"{key} is not numeric"
    return ParamComparison(key, rv.metric, alpha, confidence, groups, pairs, corr, corr_note, notes, numeric)


def _replicate_notes(key: str, order: dict[Any, list[Experiment]]) -> list[str]:
    """Say where runs of one group differ in more than their seed (they are then not replicates)."""
    out = []
    for value, members in order.items():
        if len(members) < 2:
            continue
        params = [_params(e) for e in members]
        keys = set().union(*params) - {key}
        differ = sorted(k for k in keys if not is_seed_key(k) and len({repr(p.get(k)) for p in params}) > 1)
        if differ:
            out.append(f"runs with {_label(key, value)} also differ in {', '.join(differ[:5])}: not pure replicates")
    return out
