"""Effect sizes with their intervals: Spearman's rank correlation and Cohen's d, each with a CI that says how.

Pure functions on arrays (scipy underneath), one value per run: never the points of a curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..errors import InvalidArgumentError
from .stats import Interval, cohens_d

__all__ = ["Correlation", "cohens_d_interval", "format_p", "p_cell", "spearman"]

_CI_METHODS = ("fisher", "bootstrap")


def format_p(p: float | None) -> str:
    """``p = 0.003`` / ``p < 0.001`` / ``p = n/a``: the one wording of a p-value in sentences."""
    if p is None:
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def p_cell(p: float | None) -> str:
    """``<0.001`` / ``0.021`` / empty: the one wording of a p-value in a table (CLI and report alike)."""
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation of a param with a metric over runs.

    Attributes:
        rho: Spearman's rho (ties get average ranks).
        ci: its confidence interval; ``ci_method`` says how it was made.
        n: runs (points), one value each.
        p_value: permutation test of rho = 0 (exact up to 8 runs, else 9999 random permutations).
    """

    rho: float | None
    ci: Interval
    ci_method: str
    n: int
    p_value: float | None
    p_method: str
    method: str = "Spearman"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def _ranks(a: np.ndarray) -> np.ndarray:
    return np.asarray(stats.rankdata(a, axis=-1), dtype=np.float64)


def _pearson_rows(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``rx`` with each row of ``ry`` (NaN where a row is constant)."""
    x = rx - rx.mean()
    y = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((x * x).sum() * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (y * x).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _fisher(rho: float, n: int, confidence: float) -> tuple[Interval, str]:
    name = "Fisher z with the Bonett-Wright standard error"
    if n < 4:
        return Interval(None, None, confidence), f"{name}: needs 4 or more runs"
    if abs(rho) >= 1:
        return Interval(None, None, confidence), f"{name}: undefined at |rho| = 1"
    z = math.atanh(rho)
    se = math.sqrt((1 + rho * rho / 2) / (n - 3))
    q = float(stats.norm.ppf(0.5 + confidence / 2))
    return Interval(math.tanh(z - q * se), math.tanh(z + q * se), confidence), name


def _bootstrap(x: np.ndarray, y: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[Interval, str]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    xs, ys = x[idx], y[idx]
    rx, ry = _ranks(xs), _ranks(ys)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    ok = den > 0
    r = (rx[ok] * ry[ok]).sum(axis=1) / den[ok]
    name = f"bootstrap over runs (percentile, {resamples} resamples, seed {seed})"
    if r.size < resamples // 2:
        return Interval(None, None, confidence), f"{name}: too many resamples without spread"
    alpha = 1 - confidence
    lo, hi = np.quantile(r, [alpha / 2, 1 - alpha / 2])
    return Interval(float(lo), float(hi), confidence), name


def spearman(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    *,
    ci: str = "fisher",
    resamples: int = 2000,
    seed: int = 0,
) -> Correlation:
    """Spearman's rho of ``y`` on ``x`` (one pair per run) with a CI and a permutation p-value.

    ``ci="fisher"``: Fisher's z with the Bonett-Wright (2000) standard error ``sqrt((1 + rho^2/2) / (n - 3))``
    (4 or more runs); ``ci="bootstrap"``: percentile bootstrap resampling runs. Fewer than 3 runs,
    or a constant ``x`` or ``y``, cannot give a rank correlation: that raises.

    Example:
        >>> r = spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])  # scipy.stats.spearmanr's example
        >>> round(r.rho, 4)
        0.8208
    """
    if not 0 < confidence < 1:
        raise InvalidArgumentError("confidence", f"expected a level between 0 and 1, got {confidence!r}")
    if ci not in _CI_METHODS:
        raise InvalidArgumentError("ci", f"expected 'fisher' or 'bootstrap', got {ci!r}")
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidArgumentError("y", f"expected two 1-d samples of one length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n < 3:
        raise InvalidArgumentError("x", f"a rank correlation needs 3 or more runs, got {n}")
    if np.unique(a).size < 2 or np.unique(b).size < 2:
        raise InvalidArgumentError("x", "a rank correlation needs values that vary in both the param and the metric")
    rx, ry = _ranks(a), _ranks(b)
    rho = float(_pearson_rows(rx, ry[None, :])[0])
    exact = n <= 8  # 8! = 40320 orderings
    res = stats.permutation_test(
        (ry,),
        lambda r, axis=-1: _pearson_rows(rx, r),
        permutation_type="pairings",
        vectorized=True,
        n_resamples=math.factorial(n) if exact else 9999,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    p = float(min(1.0, res.pvalue))
    p_method = "exact permutation test" if exact else "permutation test (9999 resamples)"
    interval, how = _fisher(rho, n, confidence) if ci == "fisher" else _bootstrap(a, b, confidence, resamples, seed)
    return Correlation(rho, interval, how, n, p, p_method)


def cohens_d_interval(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float | None, Interval]:
    """Cohen's d of ``b`` against ``a`` with its exact CI from the noncentral t (Steiger & Fouladi 1997).

    ``t = d sqrt(n_a n_b / (n_a + n_b))`` has a noncentral t distribution with ``n_a + n_b - 2``
    degrees of freedom; the interval's ends are the noncentralities that put ``t`` at the tails,
    scaled back to d. It excludes 0 exactly when Student's t-test rejects, at any sample size. Where
    the noncentral t cannot be evaluated (huge effects over a few runs) the large-sample interval
    ``d +- z sqrt((n_a + n_b) / (n_a n_b) + d^2 / (2 (n_a + n_b)))`` (Hedges & Olkin 1985) stands in.
    """
    from scipy.optimize import brentq

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    d = cohens_d(x, y)
    if d is None:
        return None, Interval(None, None, confidence)
    na, nb = x.size, y.size
    scale = math.sqrt(na * nb / (na + nb))
    t, df = d * scale, na + nb - 2
    alpha = 1 - confidence

    def ncp(target: float) -> float | None:
        """The noncentrality whose cdf at ``t`` is ``target`` (the cdf falls as it grows)."""

        def f(nc: float) -> float:
            return float(stats.nct.cdf(t, df, nc)) - target

        width = 10 + abs(t)
        for _ in range(12):  # widen the bracket: with few runs the interval is very wide
            lo, hi = t - width, t + width
            flo, fhi = f(lo), f(hi)
            if math.isfinite(flo) and math.isfinite(fhi) and flo > 0 > fhi:
                return float(brentq(f, lo, hi, xtol=1e-10 * max(1.0, abs(t))))
            width *= 4
        return None

    try:
        low, high = ncp(1 - alpha / 2), ncp(alpha / 2)
    except (ValueError, FloatingPointError):  # the noncentral t's cdf gives out far in its tails
        low = high = None
    if low is None or high is None:  # there, the large-sample interval (Hedges & Olkin 1985)
        se = math.sqrt((na + nb) / (na * nb) + d * d / (2 * (na + nb)))
        q = float(stats.norm.ppf(1 - alpha / 2))
        return d, Interval(d - q * se, d + q * se, confidence)
    return d, Interval(low / scale, high / scale, confidence)
