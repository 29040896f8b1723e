"""Experiment statistics: ``compare_experiments``, ``compare_conditions`` and ``compare_by_param``.

Built on scipy: Welch's t-test, Mann-Whitney U, chi-square / Fisher's exact, Holm correction;
effect sizes Cohen's d (with a CI), Cliff's delta, Cohen's h and Spearman's rank correlation (with a CI).
A training metric is compared on one value per run (``val_loss.min``), never on the points of a curve.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, imported eagerly for type checkers only
    from .by_param import ParamComparison, ParamGroup, ParamPair, compare_by_param
    from .compare import Comparison, Group, Pair, compare_conditions, compare_experiments
    from .effects import Correlation, cohens_d_interval, format_p, p_cell, spearman
    from .per_run import RunMetric, RunValues, parse_run_metric, run_values
    from .series import METRICS, MetricSpec, Series, load_series, load_values, metric_spec
    from .stats import (
        Description,
        Interval,
        ProportionTest,
        SampleTest,
        cliffs_delta,
        cohens_d,
        compare_proportions,
        compare_samples,
        describe,
        describe_proportion,
        holm,
        newcombe_interval,
        wilson_interval,
    )


#: Where each public name lives; imported on first use, so that ``crucible runs`` and ``ct.runs``
#: never pay for scipy.
_HOMES = {
    "Comparison": "compare",
    "Correlation": "effects",
    "Description": "stats",
    "Group": "compare",
    "Interval": "stats",
    "METRICS": "series",
    "MetricSpec": "series",
    "Pair": "compare",
    "ParamComparison": "by_param",
    "ParamGroup": "by_param",
    "ParamPair": "by_param",
    "ProportionTest": "stats",
    "RunMetric": "per_run",
    "RunValues": "per_run",
    "SampleTest": "stats",
    "Series": "series",
    "cliffs_delta": "stats",
    "cohens_d": "stats",
    "cohens_d_interval": "effects",
    "compare_by_param": "by_param",
    "compare_conditions": "compare",
    "compare_experiments": "compare",
    "compare_proportions": "stats",
    "compare_samples": "stats",
    "describe": "stats",
    "describe_proportion": "stats",
    "format_p": "effects",
    "holm": "stats",
    "load_series": "series",
    "load_values": "series",
    "metric_spec": "series",
    "newcombe_interval": "stats",
    "p_cell": "effects",
    "parse_run_metric": "per_run",
    "run_values": "per_run",
    "spearman": "effects",
    "wilson_interval": "stats",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "METRICS",
    "Comparison",
    "Correlation",
    "Description",
    "Group",
    "Interval",
    "MetricSpec",
    "Pair",
    "ParamComparison",
    "ParamGroup",
    "ParamPair",
    "ProportionTest",
    "RunMetric",
    "RunValues",
    "SampleTest",
    "Series",
    "cliffs_delta",
    "cohens_d",
    "cohens_d_interval",
    "compare_by_param",
    "compare_conditions",
    "compare_experiments",
    "compare_proportions",
    "compare_samples",
    "describe",
    "describe_proportion",
    "format_p",
    "holm",
    "load_series",
    "load_values",
    "metric_spec",
    "newcombe_interval",
    "p_cell",
    "parse_run_metric",
    "run_values",
    "spearman",
    "wilson_interval",
]
