"""Experiment statistics: ``compare_experiments``, ``compare_conditions`` and ``compare_by_param``.

Built on scipy: Welch's t-test, Mann-Whitney U, chi-square / Fisher's exact, Holm correction;
effect sizes Cohen's d (with a CI), Cliff's delta, Cohen's h and Spearman's rank correlation (with a CI).
A training metric is compared on one value per run (``val_loss.min``), never on the points of a curve.
"""

from __future__ import annotations

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
