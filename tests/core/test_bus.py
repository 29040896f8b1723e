"""The event bus: emit, attach/detach/list_handlers, span (sync and async)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import crucible_telemetry as ct


def test_attached_handler_receives_tuple_name_measurements_and_metadata(hub: ct.Telemetry) -> None:
    seen = []
    ct.attach("h1", [("crucible_train", "epoch", "stop"), "req_llm.request.stop"], lambda *a: seen.append(a))
    ct.emit("crucible_train.epoch.stop", {"loss": 0.5}, {"epoch": 1})
    ct.emit(("req_llm", "request", "stop"), {"duration": 10})
    ct.emit("other.event", {"x": 1})
    assert seen == [
        (("crucible_train", "epoch", "stop"), {"loss": 0.5}, {"epoch": 1}),
        (("req_llm", "request", "stop"), {"duration": 10}, None),
    ]
    assert [h.id for h in ct.list_handlers("crucible_train")] == ["h1"]
    assert [h.id for h in ct.list_handlers(("req_llm",))] == ["h1"]
    assert ct.list_handlers("nothing") == []
    assert ct.detach("h1") is True
    assert ct.detach("h1") is False
    ct.emit("crucible_train.epoch.stop", {"loss": 0.4})
    assert len(seen) == 2


def test_raising_handler_is_detached_and_reported_once(hub: ct.Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def bad(name, m, md):  # type: ignore[no-untyped-def]
        calls.append(name)
        raise RuntimeError("boom")

    ct.attach("bad", "a.b", bad)
    ct.attach("good", "a.b", lambda *a: calls.append("good"))
    with caplog.at_level(logging.ERROR, logger="crucible_telemetry"):
        ct.emit("a.b", {"v": 1})
        ct.emit("a.b", {"v": 2})
    assert calls == [("a", "b"), "good", "good"]
    assert [h.id for h in ct.list_handlers()] == ["good"]
    assert sum("'bad'" in r.getMessage() for r in caplog.records) == 1


def test_attach_rejects_bad_arguments(hub: ct.Telemetry) -> None:
    with pytest.raises(ct.InvalidArgumentError, match="fn"):
        ct.attach("x", "a.b", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ct.InvalidArgumentError, match="name"):
        ct.attach("x", [("a", "")], print)
    ct.attach("dup", "a.b", print)
    with pytest.raises(ct.InvalidArgumentError, match="already attached"):
        ct.attach("dup", "a.b", print)


def test_emit_never_raises_on_a_malformed_name(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("names")
    ct.emit(42, {"x": 1})  # type: ignore[arg-type]
    ct.emit("", {"x": 1})
    ct.emit("ok.name", {"x": 1})
    assert [r["event"] for r in ct.store.get_all(exp.id)] == ["ok.name"]
    assert len(hub.write_errors) == 2


def test_span_emits_start_then_stop_with_duration(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("span")
    with ct.span(("my_app", "step"), {"stage": "a"}) as meta:
        meta["extra"] = 1
    rows = ct.store.get_all(exp.id)
    assert [r["event"] for r in rows] == ["my_app.step.start", "my_app.step.stop"]
    assert rows[1]["duration"] > 0
    assert rows[1]["duration"] == rows[1]["measurements"]["duration"]
    assert rows[1]["metadata"] == {"stage": "a", "extra": 1}
    assert rows[0]["category"] == "custom"


def test_span_emits_exception_and_reraises_unchanged(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("span-exc")
    err = ValueError("bad value")
    with pytest.raises(ValueError) as info, ct.span("my_app.step"):
        raise err
    assert info.value is err
    rows = ct.store.get_all(exp.id)
    assert [r["event"] for r in rows] == ["my_app.step.start", "my_app.step.exception"]
    assert rows[1]["metadata"]["kind"] == "ValueError"
    assert rows[1]["metadata"]["reason"] == "bad value"
    assert "stacktrace" in rows[1]["metadata"]
    assert rows[1]["duration"] >= 0


async def test_async_span(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("async-span")
    async with ct.span("svc.call"):
        await asyncio.sleep(0.01)
    with pytest.raises(KeyError):
        async with ct.span("svc.call"):
            raise KeyError("k")
    rows = ct.store.get_all(exp.id)
    assert [r["event"] for r in rows] == ["svc.call.start", "svc.call.stop", "svc.call.start", "svc.call.exception"]
    assert rows[1]["duration"] >= 10_000_000


def test_events_without_an_experiment_reach_handlers_only(hub: ct.Telemetry) -> None:
    seen = []
    ct.attach("h", "x.y", lambda *a: seen.append(a))
    ct.emit("x.y", {"v": 1})
    assert len(seen) == 1
    assert hub.flush() == 0


def test_emit_deferred_keeps_time_and_order_and_builds_off_the_callers_thread(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("deferred")
    built_in = []

    def build() -> tuple[dict[str, float], dict[str, str]]:
        built_in.append(threading.current_thread().name)
        return {"value": 2.0}, {"who": "later"}

    ct.emit("a.first", {"value": 1.0})
    hub.emit_deferred("a.deferred", build)
    ct.emit("a.third", {"value": 3.0})
    assert built_in == []  # nothing built on the caller's thread
    deadline = time.monotonic() + 10
    while not built_in and time.monotonic() < deadline:  # the writer thread builds it at its next flush
        time.sleep(0.05)
    assert built_in == ["crucible-writer"]
    rows = ct.store.get_all(exp.id)
    assert [r["event"] for r in rows] == ["a.first", "a.deferred", "a.third"]
    assert [r["measurements"]["value"] for r in rows] == [1.0, 2.0, 3.0]
    assert rows[1]["metadata"]["who"] == "later"
    assert rows[0]["seq"] < rows[1]["seq"] < rows[2]["seq"]
    assert rows[0]["mono_ns"] <= rows[1]["mono_ns"] <= rows[2]["mono_ns"]


def test_emit_deferred_builds_now_for_handlers_and_drops_only_a_failed_build(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("deferred-handlers")
    seen = []
    ct.attach("h", "a.seen", lambda *a: seen.append(a))
    hub.emit_deferred("a.seen", lambda: ({"value": 1.0}, None))
    assert seen == [(("a", "seen"), {"value": 1.0}, None)]  # built at the call, handlers as with emit

    def broken() -> tuple[dict[str, float], None]:
        raise ValueError("cannot build")

    errors = hub.error_count
    hub.emit_deferred("a.broken", broken)
    hub.emit_deferred("a.kept", lambda: ({"value": 2.0}, None))
    hub.emit_deferred("", lambda: ({"value": 3.0}, None))  # a malformed name: recorded, not raised
    rows = ct.store.get_all(exp.id)
    assert [r["event"] for r in rows] == ["a.seen", "a.kept"]
    assert hub.error_count == errors + 2
    assert any("cannot build" in str(e) for e in hub.write_errors)


def test_emit_deferred_goes_to_the_experiment_given_and_respects_pause(hub: ct.Telemetry) -> None:
    first = ct.start_experiment("first")
    second = ct.start_experiment("second")  # now the current one
    hub.emit_deferred("a.x", lambda: ({"value": 1.0}, None), first)
    hub.emit_deferred("a.y", lambda: ({"value": 2.0}, None))
    ct.pause_experiment(second.id)
    hub.emit_deferred("a.z", lambda: ({"value": 3.0}, None))
    assert [r["event"] for r in ct.store.get_all(first.id)] == ["a.x"]
    assert [r["event"] for r in ct.store.get_all(second.id)] == ["a.y"]
    assert hub.get_experiment(second.id).dropped_paused == 1
