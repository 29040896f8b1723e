"""The dashboard's downsampling keeps every min and max, is stable under appends, and reports NaN/inf apart."""

from __future__ import annotations

import numpy as np
import pytest

from crucible_telemetry.errors import InvalidArgumentError
from crucible_telemetry.ui.downsample import bucket_width, downsample, ema, group_band, split_nonfinite


def _bucket_extremes(x: np.ndarray, y: np.ndarray, width: float) -> dict[int, tuple[float, float]]:
    k = np.floor(x / width).astype(int)
    return {int(b): (float(y[k == b].min()), float(y[k == b].max())) for b in np.unique(k)}


def test_every_bucket_keeps_its_min_max_first_and_last() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(100_000, dtype=float)
    y = rng.normal(size=len(x))
    y[777] = 50.0  # a spike
    y[91_234] = -40.0
    dx, dy, width = downsample(x, y, 1000)
    assert width is not None and len(dx) <= 1000 + 8
    assert 50.0 in dy and -40.0 in dy
    assert _bucket_extremes(dx, dy, width) == _bucket_extremes(x, y, width)
    assert dx[0] == 0 and dx[-1] == x[-1]
    assert np.all(np.isin(dx, x))  # real points only, never invented


def test_appending_never_moves_earlier_points() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(50_000, dtype=float)
    y = rng.normal(size=len(x)).cumsum()
    a_x, a_y, wa = downsample(x[:30_000], y[:30_000], 500)
    b_x, b_y, wb = downsample(x[:30_500], y[:30_500], 500)
    assert wa == wb
    full = np.floor(a_x / wa) < np.floor(30_000 / wa) - 0  # buckets complete before the append
    last_complete = np.floor(29_999 / wa)
    keep = np.floor(a_x / wa) < last_complete
    assert np.array_equal(a_x[keep], b_x[: keep.sum()]) and np.array_equal(a_y[keep], b_y[: keep.sum()])
    assert full.any()
    _, _, wc = downsample(x, y, 500)  # longer: the width doubles, boundaries nest
    assert wc is not None and (wc / wa) in (1, 2, 4)


def test_short_series_pass_through_and_bad_max_points() -> None:
    x, y = np.arange(10.0), np.arange(10.0)
    dx, _, width = downsample(x, y, 100)
    assert width is None and np.array_equal(dx, x)
    with pytest.raises(InvalidArgumentError, match="max_points"):
        downsample(x, y, 2)
    assert bucket_width(0, 1000, 10) == 128


def test_nonfinite_are_reported_not_folded_in() -> None:
    x = np.arange(6.0)
    y = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, 3.0])
    _, fy, marks = split_nonfinite(x, y)
    assert fy.tolist() == [1.0, 2.0, 3.0]
    assert marks == [[1.0, "NaN"], [3.0, "Infinity"], [4.0, "-Infinity"]]


def test_ema_matches_tensorboard_on_even_steps_and_weights_gaps() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    w = 0.6
    last, out = 0.0, []
    for n, v in enumerate(y, start=1):  # TensorBoard's debiased EMA
        last = last * w + (1 - w) * v
        out.append(last / (1 - w**n))
    assert np.allclose(ema(np.arange(4.0), y, w), out)
    uneven = ema(np.array([0.0, 1.0, 2.0, 100.0]), np.array([0.0, 0.0, 0.0, 10.0]), w)
    assert uneven[-1] > 9.99  # after a long gap the old points weigh nothing
    with pytest.raises(InvalidArgumentError, match="weight"):
        ema(np.arange(3.0), np.arange(3.0), 1.0)


def test_group_band_is_mean_and_std_across_runs() -> None:
    x = np.arange(5.0)
    band = group_band([(x, np.full(5, 1.0)), (x, np.full(5, 3.0))], 100)
    assert band["x"] == x.tolist() and band["mean"] == [2.0] * 5 and band["n"] == [2] * 5
    assert np.allclose(band["std"], np.sqrt(2.0))
