"""Webhooks against a real HTTP receiver on 127.0.0.1, and against a port nothing listens on."""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

import crucible_telemetry as ct
from crucible_telemetry import alerts
from crucible_telemetry.alerts import Transition, Webhook

from ._receiver import Receiver, dead_port

EXP = "exp-20260101T000000-00000000"
NOW = 1_767_225_600.0


def _firing(value: float = math.nan) -> Transition:
    return Transition("loss_nan", "firing", "inactive", NOW, EXP, {"severity": "page"}, value, NOW - 30, "loss is NaN")


def test_alertmanager_slack_discord_and_json_shapes() -> None:
    resolved = Transition("loss_nan", "resolved", "firing", NOW + 60, EXP, {"severity": "page"}, 0.5, NOW - 30, "")
    pending = Transition("slow", "pending", "inactive", NOW, EXP, {}, 3.0, NOW, "")
    with Receiver() as rx:
        hooks = [Webhook(rx.url, fmt) for fmt in ("alertmanager", "slack", "discord", "json")]
        for h in hooks:
            h.send([_firing(), pending, resolved])  # pending is not among the states sent by default
            assert h.flush(20)
        am, slack, discord, js = rx.wait(4)
    by_state = {a["annotations"]["state"]: a for a in am}
    assert set(by_state) == {"firing", "resolved"}
    fire = by_state["firing"]
    assert fire["labels"] == {"alertname": "loss_nan", "experiment_id": EXP, "severity": "page"}
    assert fire["startsAt"] == "2025-12-31T23:59:30Z" and "endsAt" not in fire
    assert fire["annotations"]["value"] == "nan"  # JSON has no NaN: values travel as text
    assert by_state["resolved"]["endsAt"] == "2026-01-01T00:01:00Z"
    assert "FIRING loss_nan" in slack["text"] and "RESOLVED loss_nan" in slack["text"] and "slow" not in slack["text"]
    assert "FIRING loss_nan" in discord["content"] and discord["username"] == "crucible"
    assert [a["state"] for a in js["alerts"]] == ["firing", "resolved"]
    assert all(h.sent == 1 and h.failed == 0 for h in hooks)


def test_a_dead_port_is_counted_and_never_raises() -> None:
    hook = Webhook(f"http://127.0.0.1:{dead_port()}/hook", "slack", retries=2, backoff=0.01, timeout=1)
    hook.send([_firing()])  # returns at once: the post happens on the webhook's thread
    assert hook.flush(20)
    assert (hook.sent, hook.failed, hook.attempts) == (0, 1, 3)
    assert isinstance(hook.errors[-1], OSError)


def test_a_server_error_is_retried_with_backoff_then_delivered() -> None:
    with Receiver(statuses=(500, 503)) as rx:
        hook = Webhook(rx.url, "json", retries=3, backoff=0.01)
        hook.send([_firing(2.0)])
        assert hook.flush(20)
        assert rx.requests == 3 and hook.sent == 1 and hook.failed == 0 and hook.attempts == 3
        assert rx.wait(1)[0]["alerts"][0]["value"] == "2"


def test_a_receiver_that_never_answers_times_out() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # accepts connections, never answers
    try:
        hook = Webhook(f"http://127.0.0.1:{srv.getsockname()[1]}/", timeout=0.2, retries=1, backoff=0.01)
        hook.send([_firing()])
        assert hook.flush(20)
        assert hook.failed == 1 and hook.attempts == 2
        assert "timed out" in repr(hook.errors[-1]).lower()
    finally:
        srv.close()


def test_a_full_queue_drops_and_counts() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        hook = Webhook(f"http://127.0.0.1:{srv.getsockname()[1]}/", timeout=0.5, retries=0, queue_limit=1)
        for _ in range(5):
            hook.send([_firing()])
        assert hook.dropped >= 3
        hook.close(5)
    finally:
        srv.close()


def test_bad_webhook_arguments_name_the_argument(hub: ct.Telemetry) -> None:
    with pytest.raises(ct.InvalidArgumentError, match="url:"):
        Webhook("ftp://x")
    with pytest.raises(ct.InvalidArgumentError, match="format:"):
        Webhook("http://127.0.0.1:1/", "teams")
    with pytest.raises(ct.InvalidArgumentError, match="retries:"):
        Webhook("http://127.0.0.1:1/", retries=-1)
    with pytest.raises(ct.InvalidArgumentError, match="notifier:"):
        alerts.Engine(hub=hub, notifiers=["http://127.0.0.1:1/"], start=False)  # a URL is not a notifier: Webhook(url)


def test_the_engine_posts_off_its_callers_thread(hub: ct.Telemetry) -> None:
    """A slow receiver does not hold the evaluation: run_pending returns before the post lands."""
    with Receiver(delay=0.5) as rx:
        clock = [(math.floor(time.time()) + 1.0)]
        hook = Webhook(rx.url, "alertmanager")
        eng = alerts.Engine([alerts.nonfinite("loss_nan")], hub=hub, interval=1, clock=lambda: clock[0],
                            start=False, notifiers=[hook], log=False)  # fmt: skip
        hub.start_experiment("posts")
        hub.emit("crucible_train.batch.stop", {"loss": math.nan})
        clock[0] += 1
        assert [t.state for t in eng.run_pending()] == ["firing"]
        assert rx.bodies == [] and threading.active_count() >= 2
        [body] = rx.wait(1)
        assert body[0]["labels"]["alertname"] == "loss_nan"
        eng.stop()


EXITS = """
import math, sys, time
import crucible_telemetry as ct
from crucible_telemetry import alerts

ct.configure(sys.argv[1])
hook = alerts.Webhook(sys.argv[2], "slack", backoff=1.0)
ct.alerts.start([alerts.nonfinite("loss_nan")], interval=0.2, webhooks=[hook])
ct.start_experiment("exits")
ct.emit("crucible_train.batch.stop", {"loss": math.nan})
while not ct.alerts.engine().transitions:
    time.sleep(0.01)
# the script ends here while the post waits for its retry: the engine's atexit lets it through
"""


def test_an_alert_fired_just_before_exit_is_still_delivered(tmp_path) -> None:
    import subprocess
    import sys

    script = tmp_path / "exits.py"
    script.write_text(EXITS)
    with Receiver(statuses=(503,)) as rx:  # the first attempt fails; the retry comes a second later
        r = subprocess.run([sys.executable, str(script), str(tmp_path / "s"), rx.url], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert rx.requests == 2 and len(rx.bodies) == 1 and "FIRING loss_nan" in rx.bodies[0]["text"]
