"""Statistics checked against worked examples with published values, then through the real store."""

from __future__ import annotations

import math
import re
import statistics

import pytest

import crucible_telemetry as ct
from crucible_telemetry.analysis import (
    compare_conditions,
    compare_experiments,
    compare_proportions,
    compare_samples,
    describe,
    holm,
    metric_spec,
    newcombe_interval,
    wilson_interval,
)

# Wikipedia, "Welch's t-test", Example 1: t = -2.46, df = 25.0, p = 0.021 (A1 against A2).
WELCH_A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
WELCH_A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
# scipy.stats.mannwhitneyu docs (after Shier 2004): U1 = 17.0 for males, exact p = 0.1111.
MALES = [19, 22, 16, 29, 24]
FEMALES = [20, 11, 17, 12]


# ---------------------------------------------------------------- pure statistics


def test_welch_matches_the_published_example() -> None:
    r = compare_samples(WELCH_A1, WELCH_A2)  # b = A2 against a = A1: the sign flips against A1 - A2
    assert round(-r.welch_t, 2) == -2.46
    assert round(r.welch_df, 1) == 25.0
    assert round(r.welch_p, 3) == 0.021
    assert r.difference == pytest.approx(22.9866667 - 20.82)
    assert r.difference_ci.low < r.difference < r.difference_ci.high
    assert r.difference_ci.low > 0  # p < 0.05: the 95% CI excludes 0


def test_cohens_d_is_the_pooled_standardised_difference() -> None:
    # Worked by hand from the Welch example's sample variances (stdlib statistics, not scipy).
    n1, n2 = len(WELCH_A1), len(WELCH_A2)
    pooled = ((n1 - 1) * statistics.variance(WELCH_A1) + (n2 - 1) * statistics.variance(WELCH_A2)) / (n1 + n2 - 2)
    expected = (statistics.mean(WELCH_A2) - statistics.mean(WELCH_A1)) / math.sqrt(pooled)
    assert compare_samples(WELCH_A1, WELCH_A2).cohens_d == pytest.approx(expected)
    assert expected == pytest.approx(0.8966, abs=1e-4)


def test_mann_whitney_matches_the_scipy_docs_example() -> None:
    r = compare_samples(FEMALES, MALES)  # U of b = males
    assert r.mannwhitney_u == 17.0
    assert r.mannwhitney_p == pytest.approx(0.1111, abs=5e-5)
    # Cliff's delta = 2U / (n1 n2) - 1 = 2 * 17 / 20 - 1
    assert r.cliffs_delta == pytest.approx(0.7)


def test_cliffs_delta_counts_dominance_with_ties() -> None:
    # pairs (a, b): b > a in 6 of 9, b < a in 1, ties in 2 -> (6 - 1) / 9
    assert compare_samples([1, 2, 3], [2, 3, 4]).cliffs_delta == pytest.approx(5 / 9)
    assert compare_samples([1, 2, 3], [4, 5, 6]).cliffs_delta == 1.0


def test_fisher_exact_when_expected_counts_are_small() -> None:
    # scipy.stats.fisher_exact docs: whales/sharks [[8, 2], [1, 5]] -> p = 0.0349..., odds ratio 20.
    # Columns are the groups: Atlantic 8 whales of 9, Indian 2 of 7.
    r = compare_proportions(8, 9, 2, 7)
    assert r.test == "Fisher's exact"
    assert r.p == pytest.approx(0.034965034965034975)
    assert r.odds_ratio == pytest.approx(1 / 20)  # odds of b over a
    assert r.min_expected < 5
    # scipy >= 1.15 docs example: [[6, 2], [1, 4]] -> p = 0.10256410256410257
    assert compare_proportions(6, 7, 2, 6).p == pytest.approx(0.10256410256410257)


def test_chi_square_with_yates_for_large_counts() -> None:
    # scipy.stats.chi2_contingency docs, aspirin trial [[176, 230], [21035, 21018]]:
    # statistic 6.892569132546561, p 0.008655478161175739.
    r = compare_proportions(176, 176 + 21035, 230, 230 + 21018)
    assert r.test == "chi-square"
    assert r.statistic == pytest.approx(6.892569132546561)
    assert r.p == pytest.approx(0.008655478161175739)


def test_wilson_and_newcombe_intervals_match_newcombe_1998() -> None:
    # Newcombe (1998), Statistics in Medicine 17: Wilson 81/263 -> 0.2553 to 0.3662, 15/148 -> 0.0624 to 0.1605;
    # difference 56/70 - 48/80 = 0.2000, hybrid score interval 0.0524 to 0.3339.
    ci = wilson_interval(81, 263)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.2553, 0.3662)
    ci = wilson_interval(15, 148)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.0624, 0.1605)
    d = newcombe_interval(48, 80, 56, 70)
    assert (round(d.low, 4), round(d.high, 4)) == (0.0524, 0.3339)


def test_holm_matches_the_worked_example() -> None:
    # Wikipedia "Holm-Bonferroni method": p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05 rejects H1 and H4 only.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]
    assert holm([0.5, None]) == [0.5, None]


def test_describe_mean_interval_uses_the_t_table() -> None:
    # t(0.975, 4) = 2.776 (t table); mean 3, sd sqrt(2.5): 3 +- 2.776 * sqrt(2.5 / 5)
    d = describe([1, 2, 3, 4, 5])
    assert (d.n, d.mean, d.median) == (5, 3.0, 3.0)
    assert d.sd == pytest.approx(math.sqrt(2.5))
    assert d.mean_ci.low == pytest.approx(3 - 2.776 * math.sqrt(0.5), abs=1e-3)
    assert d.mean_ci.high == pytest.approx(3 + 2.776 * math.sqrt(0.5), abs=1e-3)
    assert d.p95 == pytest.approx(4.8)  # linear interpolation: 4 + 0.8 * (5 - 4)
    big = describe(list(range(1, 101)))
    assert big.median_ci.low <= 50.5 <= big.median_ci.high
    assert big.p95_ci.low <= big.p95 <= big.p95_ci.high
    assert describe([]).n == 0 and describe([]).mean is None


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ct.InvalidArgumentError, match="confidence"):
        describe([1, 2], confidence=95)
    with pytest.raises(ct.InvalidArgumentError, match="successes"):
        compare_proportions(5, 3, 1, 2)
    with pytest.raises(ct.InvalidArgumentError, match="metric"):
        metric_spec("no such metric")


def test_metric_names() -> None:
    assert metric_spec("latency").unit == "ms" and metric_spec("latency").scale == 1e-6
    spec = metric_spec("crucible_train.epoch.stop:val_loss")
    assert spec.events == ("crucible_train.epoch.stop",) and spec.measurement == "val_loss"
    spec = metric_spec("req_llm.request:success")
    assert spec.binary and spec.events == ("req_llm.request.stop",)
    assert spec.failure_events == ("req_llm.request.exception",)
    assert metric_spec("gradient_norm").events == ()


# ---------------------------------------------------------------- through the real store


def _requests(
    hub: ct.Telemetry, name: str, latencies_ms: list[float], failures: int = 0, condition: str | None = None
) -> str:
    exp = hub.start_experiment(name, condition=condition, hypothesis="caching lowers latency")
    for ms in latencies_ms:
        hub.emit("req_llm.request.start", {}, {"model": "m"})
        hub.emit("req_llm.request.stop", {"duration": ms * 1e6, "total_tokens": 10, "cost_usd": 1e-4}, {"model": "m"})
    for _ in range(failures):
        hub.emit("req_llm.request.exception", {"duration": 1e6}, {"kind": "timeout", "reason": "test"})
    hub.stop_experiment(exp.id)
    return exp.id


def test_compare_experiments_reproduces_the_welch_example(hub: ct.Telemetry) -> None:
    a = _requests(hub, "control", WELCH_A1)
    b = _requests(hub, "treatment", WELCH_A2)
    r = ct.analysis.compare_experiments([a, b], metric="latency")
    ga, gb = r.groups
    assert (ga.label, gb.label) == ("control", "treatment")
    assert ga.summary.n == 15 and ga.summary.mean == pytest.approx(20.82)
    pair = r.pairs[0]
    assert round(-pair.test.welch_t, 2) == -2.46 and round(pair.test.welch_df, 1) == 25.0
    assert round(pair.p_adjusted, 3) == 0.021 and pair.significant
    assert pair.verdict.startswith("treatment higher latency than control, p = 0.021, d = 0.90")
    assert "Welch t" in pair.verdict and "95% CI" in pair.verdict
    assert r.correction is None
    assert "treatment higher latency than control" in str(r)
    assert r.to_dict()["pairs"][0]["welch_p"] == pytest.approx(pair.test.welch_p)


def test_success_rates_use_fisher_on_small_counts(hub: ct.Telemetry) -> None:
    a = _requests(hub, "atlantic", [10.0] * 8, failures=1)
    b = _requests(hub, "indian", [10.0] * 2, failures=5)
    r = compare_experiments([a, b], metric="success")
    assert r.groups[0].summary.successes == 8 and r.groups[0].summary.n == 9
    pair = r.pairs[0]
    assert pair.test.test == "Fisher's exact"
    assert pair.test.p_value == pytest.approx(0.034965034965034975)
    assert re.match(
        r"indian lower success rate than atlantic, p = 0\.035, h = -\d\.\d\d \(28\.6% vs 88\.9%", pair.verdict
    ), pair.verdict


def test_three_experiments_are_holm_adjusted(hub: ct.Telemetry) -> None:
    ids = [_requests(hub, "x", MALES), _requests(hub, "y", FEMALES), _requests(hub, "z", [v + 1 for v in MALES])]
    r = compare_experiments(ids, metric="latency")
    assert [g.label for g in r.groups] == ["x", "y", "z"]
    assert r.correction == "holm" and len(r.pairs) == 3
    raw = [p.test.p_value for p in r.pairs]
    assert [p.p_adjusted for p in r.pairs] == pytest.approx(holm(raw))
    assert all("Holm-adjusted" in p.verdict for p in r.pairs)
    # pair (x, y) is the scipy docs' Mann-Whitney example, with x as baseline: U of y = 20 - 17
    xy = r.pairs[0]
    assert (xy.a, xy.b) == ("x", "y")
    assert xy.test.mannwhitney_u == 3.0 and xy.test.mannwhitney_p == pytest.approx(0.1111, abs=5e-5)


def test_conditions_over_seeds_use_seed_means(hub: ct.Telemetry) -> None:
    # Each seed's latencies average to one value of the Mann-Whitney example: males are "control" seeds.
    ids = [_requests(hub, f"c{i}", [m - 1, m, m + 1], condition="control") for i, m in enumerate(MALES)]
    ids += [_requests(hub, f"t{i}", [f - 2, f, f + 2], condition="treatment") for i, f in enumerate(FEMALES)]
    r = compare_conditions(["control", "treatment"], metric="latency")
    control, treatment = r.group("control"), r.group("treatment")
    assert control.unit == "seed" and control.summary.n == 5 and treatment.summary.n == 4
    # mean 22, sd sqrt(24.5), 95% CI 22 +- 2.776 * sqrt(24.5 / 5) (worked by hand)
    assert control.summary.mean == pytest.approx(22.0)
    assert control.summary.sd == pytest.approx(math.sqrt(24.5))
    assert control.summary.mean_ci.low == pytest.approx(22 - 2.776 * math.sqrt(24.5 / 5), abs=2e-3)
    pair = r.pairs[0]
    assert pair.test.mannwhitney_u == 3.0  # U of treatment = 20 - 17
    assert pair.test.mannwhitney_p == pytest.approx(0.1111, abs=5e-5)
    assert "over seed means" in pair.verdict
    same = compare_experiments(ids, metric="latency", by="condition")
    assert same.pairs[0].test.welch_p == pytest.approx(pair.test.welch_p)
    assert compare_conditions(["control", "treatment"], experiments=ids[:2] + ids[-2:]).groups[0].summary.n == 2
    assert not any("too few" in n for n in r.notes)  # 5 v 4 seeds: a rank test can reach p < 0.05


def test_two_runs_a_side_are_said_to_be_too_few_for_a_test(hub: ct.Telemetry) -> None:
    ids = [_requests(hub, f"c{i}", [10.0 + i, 11.0 + i], condition="control") for i in range(2)]
    ids += [_requests(hub, f"t{i}", [20.0 + i, 21.0 + i], condition="treatment") for i in range(2)]
    r = compare_conditions(["control", "treatment"], metric="latency")
    assert r.groups[0].summary.n == 2
    (note,) = [n for n in r.notes if "too few" in n]
    assert "p = 0.333 with 2 v 2" in note  # 2 / C(4, 2): the smallest two-sided exact rank-test p
    assert note in str(r) and note in r.to_dict()["notes"]


def test_repeated_names_are_labelled_by_id(hub: ct.Telemetry) -> None:
    ids = [_requests(hub, "same", [1.0, 2.0, 3.0]), _requests(hub, "same", [2.0, 3.0, 4.0])]
    r = compare_experiments(ids, metric="latency")
    assert [g.label for g in r.groups] == ids
    assert r.group(ids[1]).summary.mean == pytest.approx(3.0)


def test_training_metrics_compare_one_value_per_run(hub: ct.Telemetry) -> None:
    ids = []
    for name, losses in (("slow", [1.0, 0.9, 0.8, 0.7]), ("fast", [0.8, 0.6, 0.4, 0.3])):
        exp = hub.start_experiment(name)
        for step, loss in enumerate(losses, 1):
            hub.emit("crucible_train.batch.stop", {"loss": loss, "global_step": step, "duration": 5e6}, {})
        hub.emit("crucible_train.epoch.stop", {"epoch": 0, "val_loss": losses[-1] + 0.1}, {})
        hub.stop_experiment(exp.id)
        ids.append(exp.id)
    # a curve asked for as samples is converted to one value per run (its last), and says so
    r = compare_experiments(ids, metric="crucible_train.batch.stop:loss")
    assert [g.summary.n for g in r.groups] == [1, 1] and [g.unit for g in r.groups] == ["run", "run"]
    assert r.groups[0].summary.mean == pytest.approx(0.7) and r.groups[1].summary.mean == pytest.approx(0.3)
    assert "not independent samples" in r.notes[0] and ".min" in r.notes[0]
    assert r.verdict == "one run per group: no test possible, difference = -0.4 (fast minus slow)"
    assert r.pairs[0].p_adjusted is None and not r.pairs[0].significant and "p =" not in str(r)
    r = compare_experiments(ids, metric="crucible_train.batch.stop:loss.min")
    assert r.notes == [] and r.metric.name == "crucible_train.batch.stop:loss.min"
    assert r.groups[1].summary.mean == pytest.approx(0.3)
    r = compare_experiments(ids, metric="loss.last2")  # mean of the last two points
    assert r.groups[0].summary.mean == pytest.approx(0.75) and r.groups[1].summary.mean == pytest.approx(0.35)
    r = compare_experiments(ids, metric="val_loss.min")
    assert [g.summary.mean for g in r.groups] == pytest.approx([0.8, 0.4])
    r = compare_experiments(ids, metric="step_time")
    assert r.groups[0].summary.mean == pytest.approx(5.0) and r.groups[0].summary.n == 1


def test_training_conditions_test_run_values(hub: ct.Telemetry) -> None:
    # 3 + 3 runs; each run's last loss is one unit: Welch's t over [0.5, 0.6, 0.7] and [0.3, 0.35, 0.4]
    finals = {"control": [0.5, 0.6, 0.7], "treatment": [0.3, 0.35, 0.4]}
    for cond, values in finals.items():
        for v in values:
            exp = hub.start_experiment(f"{cond}-{v}", condition=cond)
            for step, loss in enumerate([1.0, 0.2, v], 1):  # the curve's min is not its last
                hub.emit("crucible_train.batch.stop", {"loss": loss, "global_step": step}, {})
            hub.stop_experiment(exp.id)
    r = compare_conditions(["control", "treatment"], metric="loss.last")
    assert [g.summary.n for g in r.groups] == [3, 3] and r.groups[0].unit == "run"
    expected = compare_samples(finals["control"], finals["treatment"])
    assert r.pairs[0].test.welch_p == pytest.approx(expected.welch_p)
    assert "over runs" in r.pairs[0].verdict
    assert [n for n in r.notes if "3 v 3" not in n] == []  # only: 3 runs a side are too few to trust the test


def test_compare_errors_name_the_argument(hub: ct.Telemetry) -> None:
    a = _requests(hub, "a", [1.0, 2.0])
    with pytest.raises(ct.InvalidArgumentError, match="experiment_ids"):
        compare_experiments([a])
    with pytest.raises(ct.InvalidArgumentError, match="experiment_ids"):
        compare_experiments(a)  # a bare string is not a list
    with pytest.raises(ct.UnknownExperimentError):
        compare_experiments([a, "exp-missing"])
    with pytest.raises(ct.InvalidArgumentError, match="by"):
        compare_experiments([a, _requests(hub, "b", [1.0])], by="seed")
    with pytest.raises(ct.InvalidArgumentError, match="conditions"):
        compare_conditions(["control", "nobody"])
