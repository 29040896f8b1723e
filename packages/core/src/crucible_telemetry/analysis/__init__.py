"""Experiment statistics: ``compare_experiments`` and ``compare_conditions`` with verdicts in words.

Built on scipy: Welch's t-test, Mann-Whitney U, chi-square / Fisher's exact, Holm correction;
effect sizes Cohen's d, Cliff's delta and Cohen's h.
"""

from __future__ import annotations

from .compare import Comparison, Group, Pair, compare_conditions, compare_experiments, format_p
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
    "Description",
    "Group",
    "Interval",
    "MetricSpec",
    "Pair",
    "ProportionTest",
    "SampleTest",
    "Series",
    "cliffs_delta",
    "cohens_d",
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
    "wilson_interval",
]
