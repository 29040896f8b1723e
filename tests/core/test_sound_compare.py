"""Sound comparisons on a real Lightning lr sweep: one value per run, seeds as replicates, effects with CIs."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats

import crucible_telemetry as ct
from crucible_telemetry.analysis import (
    cohens_d_interval,
    compare_by_param,
    compare_experiments,
    holm,
    run_values,
    spearman,
)

from .._requires import requires_plugin
from ._sweep import LRS, lightning_sweep

# ---------------------------------------------------------------- pure statistics


def test_spearman_matches_scipy_and_an_exact_permutation_count() -> None:
    x, y = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]  # scipy.stats.spearmanr's docs example: rho = 0.8207826816681233
    r = spearman(x, y)
    assert r.rho == pytest.approx(0.8207826816681233) and r.n == 5
    # p by brute force: orderings of y whose |rho| reaches the observed one, of all 5! orderings
    ranks = stats.rankdata(y)
    hits = sum(
        abs(np.corrcoef(stats.rankdata(x), perm)[0, 1]) >= abs(r.rho) - 1e-12 for perm in itertools.permutations(ranks)
    )
    assert r.p_value == pytest.approx(hits / math.factorial(5)) and r.p_method == "exact permutation test"
    # Fisher z with the Bonett-Wright standard error, by hand
    se = math.sqrt((1 + r.rho**2 / 2) / (5 - 3))
    z = math.atanh(r.rho)
    assert r.ci.low == pytest.approx(math.tanh(z - 1.959964 * se), abs=1e-6)
    assert r.ci.high == pytest.approx(math.tanh(z + 1.959964 * se), abs=1e-6)
    assert "Bonett-Wright" in r.ci_method


def test_spearman_refuses_too_few_runs_and_gives_a_bootstrap_interval() -> None:
    with pytest.raises(ct.InvalidArgumentError, match="3 or more runs"):
        spearman([1, 2], [2, 1])
    with pytest.raises(ct.InvalidArgumentError, match="vary"):
        spearman([1, 1, 1], [1, 2, 3])
    rng = np.random.default_rng(3)
    x = np.arange(20.0)
    y = -x + rng.normal(0, 4, 20)
    b = spearman(x, y, ci="bootstrap")
    assert -1 <= b.ci.low < b.rho < b.ci.high < 0 and "bootstrap over runs" in b.ci_method
    assert b.p_method.startswith("permutation test (9999")
    assert spearman([1, 2, 3], [1, 3, 2]).ci.low is None  # Fisher needs 4 runs: no interval, said so


def test_cohens_d_interval_inverts_the_noncentral_t() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]
    d, ci = cohens_d_interval(a, b)
    assert d == pytest.approx(2 / math.sqrt(5 / 3))  # pooled sd sqrt(5/3), difference 2
    scale, t = math.sqrt(4 * 4 / 8), d * math.sqrt(4 * 4 / 8)
    assert stats.nct.cdf(t, 6, ci.low * scale) == pytest.approx(0.975) and stats.nct.cdf(
        t, 6, ci.high * scale
    ) == pytest.approx(0.025)
    # it excludes 0 exactly when Student's t rejects: p = 0.071 here, so it holds 0
    assert stats.ttest_ind(b, a).pvalue > 0.05 and ci.low < 0 < ci.high
    d2, ci2 = cohens_d_interval(a, [5.0, 6.0, 7.0, 8.0])
    assert stats.ttest_ind([5.0, 6.0, 7.0, 8.0], a).pvalue < 0.05 and 0 < ci2.low < d2 < ci2.high
    # with 50 a side it agrees with the large-sample normal interval (Hedges & Olkin 1985)
    x = np.arange(50) * 0.1
    d3, ci3 = cohens_d_interval(x, x + 1)
    se = math.sqrt(100 / 2500 + d3**2 / 200)
    assert (ci3.low, ci3.high) == pytest.approx((d3 - 1.959964 * se, d3 + 1.959964 * se), abs=0.01)


# ---------------------------------------------------------------- a real Lightning sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ct.Telemetry, list[str], list[str]]]:
    """3 lrs x 2 seeds, and 2 lrs with one seed each (tag ``single``), real Trainers on CPU."""
    root = tmp_path_factory.mktemp("sweep")
    hub = ct.Telemetry(root / "crucible", flush_interval=0.2)
    try:
        seeded = lightning_sweep(hub, root)
        single = lightning_sweep(hub, root, lrs=(0.01, 0.05), seeds=(0,), tag="single")
        yield hub, seeded, single
    finally:
        hub.close()


def _val_loss_min(hub: ct.Telemetry, exp_id: str) -> float:
    row = hub.store.execute(
        "SELECT min FROM summaries WHERE experiment_id = ? AND source = 'crucible_train.validation.stop' "
        "AND name = 'val_loss'",
        [exp_id],
    ).fetchone()
    assert row is not None
    return float(row[0])


@pytest.mark.slow
@requires_plugin("lightning", "torch")
def test_by_lr_gives_group_means_and_a_rank_correlation_with_a_ci(sweep: tuple[ct.Telemetry, list, list]) -> None:
    hub, ids, _ = sweep
    r = compare_by_param(ids, by="lr", metric="val_loss.min", hub=hub)
    assert [g.label for g in r.groups] == [f"lr={lr:g}" for lr in LRS] and [g.summary.n for g in r.groups] == [2, 2, 2]
    for g in r.groups:  # one value per run, read from the summaries view; a t-interval over the two seeds
        vals = [_val_loss_min(hub, i) for i in g.experiment_ids]
        assert g.values.tolist() == pytest.approx(vals)
        half = stats.t.ppf(0.975, 1) * np.std(vals, ddof=1) / math.sqrt(2)
        assert (g.summary.mean_ci.low, g.summary.mean_ci.high) == pytest.approx(
            (np.mean(vals) - half, np.mean(vals) + half)
        )
    c = r.correlation
    assert c is not None and c.n == 6
    xs = [hub.get_experiment(i).params["lr"] for i in ids]
    ys = [_val_loss_min(hub, i) for i in ids]
    assert c.rho == pytest.approx(stats.spearmanr(xs, ys).statistic)
    assert c.rho < 0 and -1 <= c.ci.low < c.rho < c.ci.high <= 1  # a larger lr learns faster in 3 epochs
    assert len(r.pairs) == 3 and all(p.test is not None for p in r.pairs)
    assert [p.p_adjusted for p in r.pairs] == pytest.approx(holm([p.test.p_value for p in r.pairs]))
    assert all(p.cohens_d_ci.low < p.cohens_d < p.cohens_d_ci.high for p in r.pairs)
    assert "as lr rises: Spearman rho = " in r.verdict and "95% CI" in r.verdict
    assert r.best is not None and r.best.label == f"lr={LRS[-1]:g}"
    assert r.notes == [] and "t-interval" in r.methods and "Bonett-Wright" in r.methods
    assert r.to_dict()["correlation"]["n"] == 6
    flat = compare_experiments(ids, metric="val_loss.min", hub=hub)  # six single runs: no test, and a pointer
    assert (
        flat.verdict.startswith("one run per group: no test possible") and "crucible compare --by lr" in flat.notes[-1]
    )
    boot = compare_by_param(ids, by="params.lr", metric="val_loss.min", ci="bootstrap", hub=hub)
    assert boot.correlation is not None and "bootstrap" in boot.correlation.ci_method


@pytest.mark.slow
@requires_plugin("lightning", "torch")
def test_one_run_per_group_says_no_test(sweep: tuple[ct.Telemetry, list, list]) -> None:
    hub, _, single = sweep
    r = compare_by_param(single, by="lr", metric="val_loss.min", hub=hub)
    assert [g.summary.n for g in r.groups] == [1, 1] and r.pairs[0].test is None and r.pairs[0].p_adjusted is None
    assert "one run per group: no test possible" in r.verdict and "p =" not in r.verdict
    assert r.correlation is None and "3 or more" in (r.correlation_note or "")
    c = compare_experiments(single, metric="val_loss.min", hub=hub)
    diff = _val_loss_min(hub, single[1]) - _val_loss_min(hub, single[0])
    assert c.verdict == f"one run per group: no test possible, difference = {diff:+.4g} (lr=0.05 minus lr=0.01)"
    assert all(p.p_adjusted is None and not p.significant for p in c.pairs)


@pytest.mark.slow
@requires_plugin("lightning", "torch")
def test_a_curve_asked_for_as_samples_is_converted_to_one_value_per_run(
    sweep: tuple[ct.Telemetry, list, list],
) -> None:
    hub, ids, _ = sweep
    a, b = ids[0], ids[-1]
    r = compare_experiments([a, b], metric="crucible_train.epoch.stop:val_loss", hub=hub)
    assert [g.summary.n for g in r.groups] == [1, 1]  # not 3 epochs each
    assert "not independent samples" in r.notes[0] and r.metric.name == "crucible_train.epoch.stop:val_loss.last"
    assert r.verdict.startswith("one run per group: no test possible") and r.pairs[0].p_adjusted is None
    last = run_values(hub, [a, b], "val_loss.last").values
    assert [g.summary.mean for g in r.groups] == pytest.approx([last[a], last[b]])
    # six runs by seed-free condition: each run's value is one unit, and Welch's t runs over them
    k = run_values(hub, ids, "val_loss.last3")  # mean of the last three validations
    assert all(v is not None for v in k.values.values()) and k.note is None


@pytest.mark.slow
@requires_plugin("lightning", "torch")
def test_runs_differing_in_more_than_the_seed_are_flagged(sweep: tuple[ct.Telemetry, list, list]) -> None:
    hub, ids, single = sweep
    hub.update_experiment(single[0], params={"hidden": 16})
    try:
        r = compare_by_param([*ids[:2], single[0]], by="seed", metric="val_loss.min", hub=hub)
        assert any("also differ in" in n for n in r.notes), r.notes
    finally:
        hub.update_experiment(single[0], params={"hidden": 8})
    with pytest.raises(ct.InvalidArgumentError, match=r"^by: no run has a param 'lrr'; did you mean 'lr'\?"):
        compare_by_param(ids, by="lrr", metric="val_loss.min", hub=hub)
    with pytest.raises(ct.InvalidArgumentError, match=r"did you mean 'val_loss.min'"):
        compare_by_param(ids, by="lr", metric="val_los.min", hub=hub)


@pytest.fixture(scope="module")
def hf_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ct.Telemetry, list[str]]]:
    """2 learning rates x 2 seeds of the tiny GPT-2, each run started by the callback from its TrainingArguments."""
    from ._sweep import hf_sweep

    root = tmp_path_factory.mktemp("hfsweep")
    hub = ct.Telemetry(root / "crucible", flush_interval=0.2)
    try:
        yield hub, hf_sweep(hub, root)
    finally:
        hub.close()


@pytest.mark.slow
@requires_plugin("crucible-telemetry-hf", "torch")
def test_an_hf_sweep_compares_by_learning_rate_with_seeds_as_replicates(hf_runs: tuple[ct.Telemetry, list]) -> None:
    hub, ids = hf_runs
    assert len(ids) == 4 and all("output_dir" in hub.get_experiment(i).params for i in ids)
    r = compare_by_param(ids, by="learning_rate", metric="eval_loss.min", hub=hub)
    assert [g.label for g in r.groups] == ["learning_rate=0.0001", "learning_rate=0.003"]
    assert [g.summary.n for g in r.groups] == [2, 2] and r.notes == []  # seed and output_dir differ: replicates
    c = r.correlation
    assert c is not None and c.n == 4 and c.ci.low is not None and c.ci.low < c.rho < c.ci.high
    pair = r.pairs[0]
    assert pair.test is not None and pair.cohens_d_ci.low < pair.cohens_d < pair.cohens_d_ci.high
    # the d interval and Student's t agree on whether 0 is plausible
    a, b = r.groups[0].values, r.groups[1].values
    rejects = stats.ttest_ind(b, a).pvalue < 0.05
    assert rejects == (pair.cohens_d_ci.low > 0 or pair.cohens_d_ci.high < 0)
    # the report: TrainingArguments folded in every card, output_dir named as a per-run path, not a condition
    from crucible_telemetry.analysis.report import render_report

    html = render_report(hub, ids)
    assert len(re.findall(r"<details><summary>\d+ keys</summary>", html)) == 4
    assert "differ as paths and names of each run do: output_dir" in html
    assert "eval_loss.min by learning_rate" in html and "Spearman rho" in html


def test_a_categorical_param_gets_group_tests_and_no_correlation(hub: ct.Telemetry) -> None:
    finals = {"adam": [0.30, 0.32, 0.31], "sgd": [0.50, 0.55, 0.52]}
    ids = []
    for opt, values in finals.items():
        for seed, v in enumerate(values):
            exp = hub.start_experiment("opt-sweep", params={"optimizer": opt, "seed": seed})
            for epoch, val in enumerate((0.9, 0.6, v)):
                hub.emit("crucible_train.validation.stop", {"val_loss": val, "epoch": epoch}, {})
            hub.stop_experiment(exp.id)
            ids.append(exp.id)
    r = compare_by_param(ids, by="optimizer", metric="val_loss.last", hub=hub)
    assert [g.label for g in r.groups] == ["optimizer=adam", "optimizer=sgd"]
    assert r.correlation is None and r.correlation_note == "optimizer is not numeric"
    (pair,) = r.pairs
    expected = stats.ttest_ind(finals["sgd"], finals["adam"], equal_var=False)
    assert pair.test is not None and pair.test.p_value == pytest.approx(expected.pvalue)
    assert pair.p_adjusted == pytest.approx(expected.pvalue)  # one pair: nothing to adjust
    assert pair.significant and "val_loss.last higher" in pair.verdict
    assert r.verdict.splitlines()[0].startswith("lowest mean val_loss.last: optimizer=adam, mean 0.31")
