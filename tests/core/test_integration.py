"""The kit for framework plugins, without a framework: choice order, owning, resume, guard, scalars."""

from __future__ import annotations

import logging
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crucible_telemetry as ct
from crucible_telemetry import integration as kit
from crucible_telemetry import plugins


def test_the_choice_order_is_explicit_env_checkpoint_live_new(
    hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(kit.ENV_EXPERIMENT_ID, raising=False)
    assert kit.choose_experiment(hub).source == "new"
    with hub.experiment("around") as live:
        choice = kit.choose_experiment(hub)
        assert (choice.source, choice.experiment_id, choice.name) == ("live", live.id, "around")
        assert kit.choose_experiment(hub, resumed_id="exp-ckpt").source == "checkpoint"
        monkeypatch.setenv(kit.ENV_EXPERIMENT_ID, "exp-env")
        assert kit.choose_experiment(hub, resumed_id="exp-ckpt") == kit.Choice("exp-env", "environment")
        assert kit.choose_experiment(hub, explicit_id="exp-mine", resumed_id="exp-ckpt") == kit.Choice(
            "exp-mine", "explicit"
        )


def test_a_bad_id_is_refused_naming_where_it_came_from(hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ct.InvalidArgumentError, match="experiment_id"):
        kit.choose_experiment(hub, explicit_id="../up")
    monkeypatch.setenv(kit.ENV_EXPERIMENT_ID, "has space")
    with pytest.raises(ct.InvalidArgumentError, match=kit.ENV_EXPERIMENT_ID):
        kit.choose_experiment(hub)


def test_broadcast_makes_rank_zero_choose_for_all(hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kit.ENV_EXPERIMENT_ID, raising=False)
    sent: list[Any] = []

    def rank0(obj: Any) -> Any:
        sent.append(obj)
        return obj

    mine = kit.choose_experiment(hub, broadcast=rank0, rank=0)
    assert sent == [(mine.experiment_id, "new", None)]
    # rank 1 takes rank 0's choice whatever its own environment says
    monkeypatch.setenv(kit.ENV_EXPERIMENT_ID, "exp-only-here")
    other = kit.choose_experiment(hub, broadcast=lambda _obj: sent[0], rank=1)
    assert other.experiment_id == mine.experiment_id
    # a "live" choice that is not live on this rank is joined instead
    assert kit.choose_experiment(hub, broadcast=lambda _o: ("exp-x", "live", "n"), rank=1).source == "explicit"
    with pytest.raises(ct.InvalidArgumentError, match="rank 0"):
        kit.choose_experiment(hub, broadcast=lambda _o: None, rank=1)


def test_rank_zero_still_broadcasts_when_its_choice_fails(hub: ct.Telemetry) -> None:
    calls: list[Any] = []
    with pytest.raises(ct.InvalidArgumentError):
        kit.choose_experiment(hub, explicit_id="bad id", broadcast=lambda o: calls.append(o), rank=0)
    assert calls == [None]  # the other ranks are released, and see that rank 0 failed


def test_a_new_run_is_owned_and_stopped_a_live_one_is_left_running(
    hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(kit.ENV_EXPERIMENT_ID, raising=False)
    run = kit.open_run(hub, kit.choose_experiment(hub), name="fit", tags=["a"], metadata={"lr": 0.1})
    assert run.owned and hub.current_experiment() is run.experiment
    ct.emit("x.y", {"v": 1.0})
    run.close()
    run.close()  # twice is fine
    assert run.experiment.stopped and hub.get_experiment(run.id).metadata == {"lr": 0.1}
    assert [r["event"] for r in hub.store.get_all(run.id)] == ["x.y"]
    with hub.experiment("mine") as live:
        for choice in (kit.choose_experiment(hub), kit.Choice(live.id, "explicit")):
            inner = kit.open_run(hub, choice, name="ignored")
            assert not inner.owned and inner.experiment is live
            inner.close()
            assert not live.stopped


def test_a_resumed_run_reopens_its_experiment(hub: ct.Telemetry) -> None:
    first = kit.open_run(hub, kit.Choice(ct.integration.new_experiment_id(), "new"), name="fit")
    state = first.checkpoint_state()
    first.close()
    again = kit.open_run(hub, kit.choose_experiment(hub, resumed_id=kit.resumed_id(state)), name="fit")
    assert again.id == first.id and not again.experiment.stopped and again.owned
    again.close()
    assert hub.get_experiment(first.id).status == "stopped"
    assert kit.resumed_id({"experiment_id": 3}) is None and kit.resumed_id(None) is None


def test_a_follower_only_joins(hub: ct.Telemetry) -> None:
    with pytest.raises(ct.UnknownExperimentError):
        kit.open_run(hub, kit.Choice("exp-nobody-started", "explicit"), name="n", leader=False)


def test_checkpoint_markers_round_trip(tmp_path: Path) -> None:
    assert kit.write_checkpoint_marker(tmp_path, "exp-1") is True
    assert kit.read_checkpoint_marker(tmp_path) == "exp-1"
    assert kit.write_checkpoint_marker(tmp_path / "missing", "exp-1") is False
    (tmp_path / kit.CHECKPOINT_MARKER).write_text("{not json")
    assert kit.read_checkpoint_marker(tmp_path) is None
    assert kit.read_checkpoint_marker(None) is None


class _Owner:
    pass


def test_the_guard_records_once_and_honours_strict(caplog: pytest.LogCaptureFixture) -> None:
    owner = _Owner()
    plugins.set_strict(False)
    try:
        with caplog.at_level(logging.WARNING, logger="crucible_telemetry.integration"):
            for _ in range(3):
                assert kit.run_guarded(owner, "on_step", lambda: 1 / 0) is None
        assert len(owner.errors) == 3  # type: ignore[attr-defined]
        assert sum("on_step" in r.getMessage() for r in caplog.records) == 1
        plugins.set_strict(True)
        with pytest.raises(ZeroDivisionError):
            kit.run_guarded(owner, "on_step", lambda: 1 / 0)
    finally:
        plugins.set_strict(True)


class _Hooks:
    @kit.guarded
    def on_end(self, x: int) -> int:
        return 10 // x


def test_guarded_methods_return_none_on_failure() -> None:
    plugins.set_strict(False)
    try:
        h = _Hooks()
        assert h.on_end(2) == 5
        assert h.on_end(0) is None and isinstance(h.errors[0], ZeroDivisionError)  # type: ignore[attr-defined]
    finally:
        plugins.set_strict(True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.5, 2.5),
        (3, 3.0),
        (True, 1.0),
        (np.float32(6.0), 6.0),
        (np.int64(4), 4.0),
        (np.bool_(True), 1.0),
        (np.array(2.5), 2.5),
        (np.array([7]), 7.0),
        (Fraction(1, 4), 0.25),
        (Decimal("1.5"), None),
        ("1.5", None),
        (b"1", None),
        (None, None),
        (1 + 2j, None),
        (np.complex64(1), None),
        (np.array([1.0, 2.0]), None),
        (np.array([]), None),
        ([1.0], None),
        ({"a": 1}, None),
    ],
)
def test_to_scalar_has_one_behaviour(value: Any, expected: float | None) -> None:
    assert kit.to_scalar(value) == expected


def test_to_scalar_keeps_nan_and_infinity() -> None:
    assert np.isnan(kit.to_scalar(float("nan")))  # type: ignore[arg-type]
    assert kit.to_scalar(np.float64("inf")) == float("inf")
    assert kit.existing_hub() is ct.default(create=False)


class _DeviceTensor:
    """Stands for a one-element tensor on an accelerator (no GPU here): reading it would sync."""

    class device:
        type = "cuda"

    reads = 0

    def numel(self) -> int:
        return 1

    def item(self) -> float:
        _DeviceTensor.reads += 1
        return 2.0


class _Lost:
    def numel(self) -> int:
        raise RuntimeError("device lost")


def test_the_writer_threads_rule_never_reads_a_device_nor_raises() -> None:
    from crucible_telemetry.values import to_scalar

    assert to_scalar(_DeviceTensor()) == 2.0 and _DeviceTensor.reads == 1  # a plugin may choose to read it
    assert to_scalar(_DeviceTensor(), host_only=True) is None and _DeviceTensor.reads == 1
    assert to_scalar(_Lost(), host_only=True) is None
    with pytest.raises(RuntimeError, match="device lost"):  # for a plugin, its failure guard decides
        kit.to_scalar(_Lost())
    assert kit.to_scalar is to_scalar
