"""``ct.runs()``, ``ct.history()`` and the metric name space, on real Lightning and Hugging Face sweeps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import crucible_telemetry as ct
from crucible_telemetry.analysis.names import metric_series, metric_summaries, resolve_metric

from .._requires import requires_plugin
from ._sweeps import HF_LRS, LIGHTNING_LRS, hf_sweep, lightning_sweep, logged_values

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ct.Telemetry, dict[float, str]]]:
    """Three Lightning runs (lr 0.002, 0.05, 0.2), 3 epochs each, validated every epoch."""
    root = tmp_path_factory.mktemp("pl-sweep")
    hub = ct.Telemetry(root / "crucible")
    try:
        yield hub, lightning_sweep(hub, root)
    finally:
        hub.close()


@requires_plugin("lightning")
def test_which_lr_gave_the_lowest_val_loss_is_one_call(sweep: Any) -> None:
    hub, ids = sweep
    df = ct.runs(order_by="metrics.val_loss.min", hub=hub)
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    truth = {lr: min(logged_values(hub, i, "val_loss")) for lr, i in ids.items()}
    best_lr = min(truth, key=lambda lr: truth[lr])
    assert df.loc[0, "params.lr"] == best_lr and df.loc[0, "id"] == ids[best_lr]
    assert df["metrics.val_loss.min"].tolist() == sorted(truth.values())
    for col in ("id", "name", "status", "condition", "tags", "started_at", "duration_s", "framework", "notes"):
        assert col in df.columns
    assert set(df["status"]) == {"stopped"} and all(t == ["sweep"] for t in df["tags"])
    assert (df["duration_s"] > 0).all()
    # descending, by a short name, and a list of keys
    assert ct.runs(order_by="-val_loss.min", hub=hub).loc[0, "metrics.val_loss.min"] == max(truth.values())
    assert ct.runs(order_by=["-lr"], hub=hub)["params.lr"].tolist() == sorted(LIGHTNING_LRS, reverse=True)


@requires_plugin("lightning")
def test_a_validation_value_counts_once_per_validation(sweep: Any) -> None:
    hub, ids = sweep
    s = metric_summaries(hub, list(ids.values()))
    val = s[s["metric"] == "val_loss"]
    assert len(val) == 3 and set(val["count"]) == {3}  # 3 epochs, 3 validations, not 6
    assert set(val["source"]) == {"metric"}  # what the user logged keeps its name
    curve = ct.history(ids[LIGHTNING_LRS[0]], "val_loss", x="epoch", hub=hub)
    assert curve["x"].tolist() == [0.0, 1.0, 2.0]
    assert curve["value"].tolist() == logged_values(hub, ids[LIGHTNING_LRS[0]], "val_loss")
    assert set(s["metric"]) >= {"train_loss_step", "train_loss_epoch", "loss", "gradient_norm"}
    assert not {"epoch", "global_step", "batch", "duration"} & set(s["metric"])  # axes are not metrics


@requires_plugin("lightning")
def test_without_the_logger_validation_comes_once_from_the_standard_event(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "crucible")
    try:
        ids = lightning_sweep(hub, tmp_path, lrs=(0.05,), logger=False)
        (exp_id,) = ids.values()
        s = metric_summaries(hub, [exp_id]).set_index("metric")
        assert s.loc["val_loss", "source"] == "crucible_train.validation.stop"
        assert s.loc["val_loss", "count"] == 3
        assert len(metric_series(hub, [exp_id], "val_loss")) == 3
        explicit = metric_summaries(hub, [exp_id], ["crucible_train.epoch.stop:val_loss"])
        assert explicit["count"].tolist() == [3] and explicit["metric"].tolist() == [
            "crucible_train.epoch.stop:val_loss"
        ]
        df = ct.runs(hub=hub)
        assert df.loc[0, "metrics.val_loss"] == s.loc["val_loss", "last"]
    finally:
        hub.close()


@requires_plugin("lightning")
def test_history_is_long_form_over_step_epoch_and_time(sweep: Any) -> None:
    hub, ids = sweep
    frame = ct.runs(hub=hub)
    h = ct.history(frame, ["val_loss", "train_loss_step"], hub=hub)
    assert list(h.columns) == ["experiment_id", "metric", "x", "value", "step", "epoch", "ts"]
    assert h.groupby(["experiment_id", "metric"]).size().to_dict() == {
        **{(i, "val_loss"): 3 for i in ids.values()},
        **{(i, "train_loss_step"): 15 for i in ids.values()},
    }
    assert (h["x"] == h["step"]).all()
    t = ct.history(list(ids.values()), "val_loss", x="time", hub=hub)
    assert (t["x"] > 0).all() and t.groupby("experiment_id")["x"].is_monotonic_increasing.all()
    with pytest.raises(ct.InvalidArgumentError, match="x: expected 'step', 'epoch' or 'time'"):
        ct.history(list(ids.values()), "val_loss", x="wall", hub=hub)


@requires_plugin("lightning")
def test_misspelt_names_get_suggestions(sweep: Any) -> None:
    hub, ids = sweep
    with pytest.raises(ct.InvalidArgumentError, match=r"did you mean 'val_loss'\?"):
        ct.history(list(ids.values()), "val_los", hub=hub)
    with pytest.raises(ct.InvalidArgumentError, match=r"order_by: .*did you mean 'metrics.val_loss.min'"):
        ct.runs(order_by="val_los.min", hub=hub)
    with pytest.raises(ct.InvalidArgumentError, match=r"did you mean 'val_loss.min'"):
        resolve_metric(hub, "val_loss.mni", argument="--metrics")
    assert resolve_metric(hub, "metrics.val_loss.max").column == "metrics.val_loss.max"
    ref = resolve_metric(hub, "crucible_train.batch.stop:loss.count")
    assert (ref.event, ref.key, ref.stat) == ("crucible_train.batch.stop", "loss", "count")


@requires_plugin("lightning")
def test_filters(sweep: Any) -> None:
    hub, ids = sweep
    assert ct.runs({"params.lr": 0.05}, hub=hub)["id"].tolist() == [ids[0.05]]
    assert ct.runs({"lr": [0.002, 0.2]}, order_by="lr", hub=hub)["id"].tolist() == [ids[0.002], ids[0.2]]
    assert len(ct.runs({"tags": "sweep", "status": "stopped"}, hub=hub)) == 3
    assert ct.runs({"lr": lambda v: v > 0.01}, hub=hub)["params.lr"].tolist() == [0.05, 0.2]
    assert len(ct.runs("`params.lr` < 0.01", hub=hub)) == 1
    counted = ct.runs({"status": "stopped"}, order_by="metrics.val_loss.count", hub=hub)
    assert counted["metrics.val_loss.count"].tolist() == [3, 3, 3]
    with pytest.raises(ct.InvalidArgumentError, match="filter: no column 'lrr'"):
        ct.runs({"lrr": 1}, hub=hub)


@requires_plugin("lightning")
def test_renamed_noted_tagged_runs_show_in_the_frame(tmp_path: Path, sweep: Any) -> None:
    hub, ids = sweep
    target = ids[0.2]
    hub.update_experiment(target, name="lr-0.2", notes="too hot", add_tags=["hot"])
    try:
        row = ct.runs({"id": target}, hub=hub).iloc[0]
        assert (row["name"], row["notes"], row["tags"]) == ("lr-0.2", "too hot", ["sweep", "hot"])
    finally:
        hub.update_experiment(target, name="sweep", notes="", remove_tags=["hot"])


def test_runs_of_an_empty_store_and_a_store_without_metrics(hub: ct.Telemetry) -> None:
    assert ct.runs().empty
    with hub.experiment("plain", params={"a": 1, "b": "x", "nested": {"c": 2}}):
        ct.emit("my_app.step", {"latency_ms": 3.0})
    df = ct.runs()
    assert df.loc[0, "params.a"] == 1 and df.loc[0, "params.nested.c"] == 2 and df.loc[0, "params.b"] == "x"
    assert not [c for c in df.columns if c.startswith("metrics.")]  # a custom event is not a standard one
    assert ct.history(df, "my_app.step:latency_ms")["value"].tolist() == [3.0]
    with pytest.raises(ct.InvalidArgumentError, match="ids: no run with id or name 'nope'"):
        ct.history("nope", "loss")
    for value in ("adam", 0.5, None, -3):  # a param that is a number in some runs and text in others
        with hub.experiment("mixed", params={} if value is None else {"a": value}):
            pass
    assert ct.runs({"name": "mixed"}, order_by="a")["params.a"].tolist()[:3] == [-3, 0.5, "adam"]
    assert ct.runs({"name": "mixed"}, order_by="-a")["params.a"].tolist()[:3] == ["adam", 0.5, -3]


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ct.Telemetry, dict[float, str]]]:
    """Three Hugging Face runs of the tiny GPT-2 (lr 1e-5, 3e-3, 3e-2), evaluated every epoch."""
    root = tmp_path_factory.mktemp("hf-sweep")
    hub = ct.Telemetry(root / "crucible")
    try:
        yield hub, hf_sweep(hub, root)
    finally:
        hub.close()


@requires_plugin("transformers")
def test_hf_sweep_answers_the_same_question_with_the_same_names(hf: Any) -> None:
    hub, ids = hf
    df = ct.runs(order_by="val_loss.min", hub=hub)
    truth = {lr: min(logged_values(hub, i, "eval_loss")) for lr, i in ids.items()}
    best_lr = min(truth, key=lambda lr: truth[lr])
    assert df.loc[0, "params.learning_rate"] == best_lr
    # HF's eval_loss is logged (kept under its name); the validation event makes it val_loss as well
    assert df["metrics.val_loss.min"].tolist() == pytest.approx(sorted(truth.values()))
    assert df["metrics.eval_loss.min"].tolist() == pytest.approx(df["metrics.val_loss.min"].tolist())
    s = metric_summaries(hub, list(ids.values())).set_index(["experiment_id", "metric"])
    for i in ids.values():
        assert s.loc[(i, "eval_loss"), "count"] == 3 and s.loc[(i, "val_loss"), "count"] == 3
        assert s.loc[(i, "loss"), "source"] == "metric"  # HF's logged per-step loss keeps its name
    assert sorted(HF_LRS) == sorted(df["params.learning_rate"])
    # the same answer from the shell, in one command
    from ..cli.test_runs_table import run

    r = run(
        hub.home,
        "runs",
        "--params",
        "learning_rate",
        "--metrics",
        "val_loss.min",
        "--sort",
        "val_loss.min",
        "--format",
        "json",
    )
    assert r.rc == 0, r.err
    assert json.loads(r.out)[0]["params.learning_rate"] == best_lr


@requires_plugin("lightning")
def test_summaries_read_through_a_plain_connection_too(sweep: Any) -> None:
    hub, ids = sweep
    con = hub.connect()
    try:
        assert metric_summaries(con).equals(metric_summaries(hub))
        assert resolve_metric(con, "val_loss.min", list(ids.values())).stat == "min"
    finally:
        con.close()
