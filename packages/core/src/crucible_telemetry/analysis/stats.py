"""Pure statistics on arrays and counts (scipy underneath): summaries, two-sample tests, Holm.

Sign convention: every two-sample quantity is "b relative to a" (``a`` is the baseline):
``difference = mean(b) - mean(a)``, Welch's t and Cohen's d are positive when ``b`` is
larger, Mann-Whitney's U is the U of ``b`` and Cliff's delta is ``P(b > a) - P(b < a)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..errors import InvalidArgumentError

__all__ = [
    "Description",
    "Interval",
    "ProportionTest",
    "SampleTest",
    "cliffs_delta",
    "cohens_d",
    "compare_proportions",
    "compare_samples",
    "describe",
    "describe_proportion",
    "holm",
    "newcombe_interval",
    "wilson_interval",
]


def _f(x: Any) -> float | None:
    """A finite Python float, or None for nan/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval; ``None`` ends when the data cannot give one."""

    low: float | None
    high: float | None
    confidence: float = 0.95

    def __str__(self) -> str:
        if self.low is None and self.high is None:
            return "n/a"
        lo = "-" if self.low is None else f"{self.low:.4g}"
        hi = "-" if self.high is None else f"{self.high:.4g}"
        return f"[{lo}, {hi}]"


_NO_CI = Interval(None, None)


@dataclass(frozen=True)
class Description:
    """n, mean, sd, median and p95 of one sample, each location with its confidence interval.

    For a success rate (``binary``), ``mean`` is the rate, ``mean_ci`` its Wilson interval
    and ``successes`` the count; median and p95 are None.
    """

    n: int
    mean: float | None
    sd: float | None
    median: float | None
    p95: float | None
    mean_ci: Interval
    median_ci: Interval
    p95_ci: Interval
    min: float | None = None
    max: float | None = None
    successes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def _quantile_ci(x: np.ndarray, q: float, confidence: float) -> Interval:
    """Distribution-free CI of a quantile from order statistics (``scipy.stats.quantile_test``)."""
    if x.size < 2:
        return Interval(None, None, confidence)
    try:
        res = stats.quantile_test(x, q=float(np.quantile(x, q)), p=q)
        ci = res.confidence_interval(confidence_level=confidence)
        return Interval(_f(ci.low), _f(ci.high), confidence)
    except (ValueError, FloatingPointError):
        return Interval(None, None, confidence)


def describe(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Description:
    """Summary of one sample: t-interval for the mean, order-statistic intervals for median and p95.

    Example:
        >>> d = describe([1, 2, 3, 4, 5])
        >>> round(d.mean_ci.low, 4), round(d.mean_ci.high, 4)
        (1.0368, 4.9632)
    """
    _check_confidence(confidence)
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Description(0, None, None, None, None, _NO_CI, _NO_CI, _NO_CI)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else None
    if n > 1 and sd is not None and sd > 0:
        lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
        mean_ci = Interval(_f(lo), _f(hi), confidence)
    elif n > 1:
        mean_ci = Interval(mean, mean, confidence)
    else:
        mean_ci = Interval(None, None, confidence)
    return Description(
        n=n,
        mean=mean,
        sd=sd,
        median=float(np.median(x)),
        p95=float(np.quantile(x, 0.95)),
        mean_ci=mean_ci,
        median_ci=_quantile_ci(x, 0.5, confidence),
        p95_ci=_quantile_ci(x, 0.95, confidence),
        min=float(x.min()),
        max=float(x.max()),
    )


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval of a proportion (``scipy.stats.binomtest(...).proportion_ci``)."""
    if n <= 0:
        return Interval(None, None, confidence)
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(_f(ci.low), _f(ci.high), confidence)


def describe_proportion(successes: int, n: int, confidence: float = 0.95) -> Description:
    """Summary of a success rate: rate, Bernoulli sd and Wilson interval."""
    _check_confidence(confidence)
    if n < 0 or successes < 0 or successes > n:
        raise InvalidArgumentError("successes", f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Description(0, None, None, None, None, _NO_CI, _NO_CI, _NO_CI, successes=0)
    p = successes / n
    return Description(
        n=int(n),
        mean=p,
        sd=math.sqrt(p * (1 - p)),
        median=None,
        p95=None,
        mean_ci=wilson_interval(successes, n, confidence),
        median_ci=_NO_CI,
        p95_ci=_NO_CI,
        min=None,
        max=None,
        successes=int(successes),
    )


def cohens_d(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """``(mean(b) - mean(a)) / pooled sd`` (pooled with n - 1 weights); None when undefined."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    na, nb = x.size, y.size
    if na < 2 or nb < 2:
        return None
    pooled = ((na - 1) * x.var(ddof=1) + (nb - 1) * y.var(ddof=1)) / (na + nb - 2)
    if pooled <= 0:
        return None
    return float((y.mean() - x.mean()) / math.sqrt(pooled))


def cliffs_delta(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """``P(b > a) - P(b < a)`` over all pairs, in [-1, 1]: ``2 U_b / (n_a n_b) - 1``."""
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return None
    greater = np.searchsorted(x, y, side="left").sum()  # pairs with a < b
    less = (x.size - np.searchsorted(x, y, side="right")).sum()  # pairs with a > b
    return float((greater - less) / (x.size * y.size))


@dataclass(frozen=True)
class SampleTest:
    """Two samples compared: difference of means with its Welch CI, Welch t, Mann-Whitney U, effect sizes."""

    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    difference: float | None
    difference_ci: Interval
    welch_t: float | None
    welch_df: float | None
    welch_p: float | None
    mannwhitney_u: float | None
    mannwhitney_p: float | None
    cohens_d: float | None
    cliffs_delta: float | None
    test: str = "Welch t"

    @property
    def p_value(self) -> float | None:
        """The primary p-value (Welch's t-test)."""
        return self.welch_p

    @property
    def effect(self) -> tuple[str, float | None]:
        """The headline effect size: ``("d", Cohen's d)``."""
        return "d", self.cohens_d

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def compare_samples(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> SampleTest:
    """Welch's t-test (difference CI), Mann-Whitney U, Cohen's d and Cliff's delta of ``b`` against ``a``.

    Example:
        >>> r = compare_samples([20, 11, 17, 12], [19, 22, 16, 29, 24])  # scipy's mannwhitneyu example
        >>> r.mannwhitney_u, round(r.mannwhitney_p, 4)
        (17.0, 0.1111)
    """
    _check_confidence(confidence)
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    x = x[np.isfinite(x)]
    y = y[np.isfinite(y)]
    mean_a = float(x.mean()) if x.size else None
    mean_b = float(y.mean()) if y.size else None
    diff = mean_b - mean_a if mean_a is not None and mean_b is not None else None
    t = df = p = None
    ci = Interval(None, None, confidence)
    u = pu = None
    with warnings.catch_warnings():
        # scipy warns of precision loss when a sample is (nearly) constant: the result stands.
        warnings.simplefilter("ignore", RuntimeWarning)
        if x.size >= 2 and y.size >= 2 and (x.var(ddof=1) > 0 or y.var(ddof=1) > 0):
            res = stats.ttest_ind(y, x, equal_var=False)
            t, p, df = _f(res.statistic), _f(res.pvalue), _f(res.df)
            lo, hi = res.confidence_interval(confidence_level=confidence)
            ci = Interval(_f(lo), _f(hi), confidence)
        if x.size >= 1 and y.size >= 1 and not (x.size == 1 and y.size == 1):
            mw = stats.mannwhitneyu(y, x, alternative="two-sided", method="auto")
            u, pu = _f(mw.statistic), _f(mw.pvalue)
    return SampleTest(
        n_a=int(x.size),
        n_b=int(y.size),
        mean_a=mean_a,
        mean_b=mean_b,
        difference=diff,
        difference_ci=ci,
        welch_t=t,
        welch_df=df,
        welch_p=p,
        mannwhitney_u=u,
        mannwhitney_p=pu,
        cohens_d=cohens_d(x, y),
        cliffs_delta=cliffs_delta(x, y),
    )


def newcombe_interval(s_a: int, n_a: int, s_b: int, n_b: int, confidence: float = 0.95) -> Interval:
    """Newcombe's hybrid score interval (method 10) for ``p_b - p_a``, from the two Wilson intervals."""
    if n_a <= 0 or n_b <= 0:
        return Interval(None, None, confidence)
    pa, pb = s_a / n_a, s_b / n_b
    wa, wb = wilson_interval(s_a, n_a, confidence), wilson_interval(s_b, n_b, confidence)
    assert wa.low is not None and wa.high is not None and wb.low is not None and wb.high is not None
    d = pb - pa
    lo = d - math.sqrt((pb - wb.low) ** 2 + (wa.high - pa) ** 2)
    hi = d + math.sqrt((wb.high - pb) ** 2 + (pa - wa.low) ** 2)
    return Interval(lo, hi, confidence)


@dataclass(frozen=True)
class ProportionTest:
    """Two success rates compared: chi-square (Yates) or Fisher's exact when an expected count is < 5."""

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    rate_a: float | None
    rate_b: float | None
    difference: float | None
    difference_ci: Interval
    test: str
    statistic: float | None
    p: float | None
    odds_ratio: float | None
    cohens_h: float | None
    min_expected: float | None

    @property
    def p_value(self) -> float | None:
        """The p-value of the chosen test."""
        return self.p

    @property
    def effect(self) -> tuple[str, float | None]:
        """The headline effect size: ``("h", Cohen's h)``."""
        return "h", self.cohens_h

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def compare_proportions(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95
) -> ProportionTest:
    """Compare two success rates: ``b`` against ``a``.

    The 2x2 table is ``[[successes_a, failures_a], [successes_b, failures_b]]``. Fisher's exact
    test is used when any expected count is below 5, else Pearson's chi-square with Yates'
    continuity correction (``scipy.stats.chi2_contingency``'s default for 2x2 tables).

    Example:
        >>> r = compare_proportions(8, 9, 2, 7)  # scipy's fisher_exact whales/sharks example
        >>> r.test, round(r.p, 6)
        ("Fisher's exact", 0.034965)
    """
    _check_confidence(confidence)
    for arg, s, n in (("successes_a", successes_a, n_a), ("successes_b", successes_b, n_b)):
        if n < 0 or s < 0 or s > n:
            raise InvalidArgumentError(arg, f"need 0 <= successes <= n, got {s} of {n}")
    table = np.array([[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]], dtype=np.int64)
    ra = successes_a / n_a if n_a else None
    rb = successes_b / n_b if n_b else None
    diff = rb - ra if ra is not None and rb is not None else None
    h = 2 * math.asin(math.sqrt(rb)) - 2 * math.asin(math.sqrt(ra)) if ra is not None and rb is not None else None
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    if n_a == 0 or n_b == 0 or (cols == 0).any():
        return ProportionTest(
            successes_a,
            n_a,
            successes_b,
            n_b,
            ra,
            rb,
            diff,
            newcombe_interval(successes_a, n_a, successes_b, n_b, confidence),
            "none (a margin is empty)",
            None,
            None if diff is None else 1.0,
            None,
            h,
            None,
        )
    expected = np.outer(rows, cols) / table.sum()
    min_expected = float(expected.min())
    odds = _f(stats.fisher_exact(table[::-1]).statistic)  # odds of success in b over a
    if min_expected < 5:
        res = stats.fisher_exact(table, alternative="two-sided")
        test, statistic, p = "Fisher's exact", _f(res.statistic), _f(res.pvalue)
    else:
        chi = stats.chi2_contingency(table, correction=True)
        test, statistic, p = "chi-square", _f(chi.statistic), _f(chi.pvalue)
    return ProportionTest(
        successes_a=int(successes_a),
        n_a=int(n_a),
        successes_b=int(successes_b),
        n_b=int(n_b),
        rate_a=ra,
        rate_b=rb,
        difference=diff,
        difference_ci=newcombe_interval(successes_a, n_a, successes_b, n_b, confidence),
        test=test,
        statistic=statistic,
        p=p,
        odds_ratio=odds,
        cohens_h=h,
        min_expected=min_expected,
    )


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); None stays None.

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005])
        [0.03, 0.06, 0.06, 0.02]
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):  # type: ignore[arg-type, return-value]
        p = pvalues[i]
        assert p is not None
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = round(running, 15)
    return out


def _check_confidence(confidence: float) -> None:
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise InvalidArgumentError("confidence", f"expected a level between 0 and 1, e.g. 0.95, got {confidence!r}")
