"""A real Lightning run whose loss becomes NaN fires an alert that reaches a local webhook."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct
from crucible_telemetry import alerts

from .._requires import requires_plugin
from ._receiver import Receiver

pytestmark = pytest.mark.slow  # a real Trainer

INTERVAL = 0.2


@requires_plugin("lightning")
def test_a_nan_loss_fires_within_one_interval_and_reaches_the_webhook(hub: ct.Telemetry, tmp_path: Path) -> None:
    import torch

    from crucible_telemetry_lightning import CrucibleCallback

    from ..lightning import tiny

    base = tiny.module_class("lightning.pytorch")

    class Diverges(base):  # type: ignore[misc, valid-type]
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            return loss * math.nan if self.global_step >= 6 else loss

    with Receiver() as rx:
        hook = alerts.Webhook(rx.url, "alertmanager")
        eng = alerts.Engine([alerts.nonfinite("loss_nan", "loss")], hub=hub, interval=INTERVAL, notifiers=[hook])
        exp = hub.start_experiment("diverges", framework="lightning")  # the callback records into it
        trainer = tiny.trainer("lightning.pytorch", tmp_path, callbacks=[CrucibleCallback()], logger=False)
        train, val = tiny.loaders()
        trainer.fit(Diverges(), train, val)
        [body] = rx.wait(1)
        eng.stop()
    assert body[0]["labels"] == {"alertname": "loss_nan", "experiment_id": exp.id}
    assert body[0]["annotations"]["value"] == "nan"

    hub.flush()
    con = hub.connect()
    try:
        steps = con.execute(
            "SELECT ts, measurements['loss'] FROM events WHERE experiment_id = ? "
            "AND event = 'crucible_train.batch.stop' ORDER BY ts",
            [exp.id],
        ).fetchall()
        fired = con.execute(
            "SELECT metadata->>'$.at', metadata->>'$.state' FROM events "
            "WHERE experiment_id = ? AND event = 'crucible_alert.firing'",
            [exp.id],
        ).fetchall()
    finally:
        con.close()
    [(at, state)] = fired
    first_nan = next(ts for ts, loss in steps if loss is not None and math.isnan(loss))
    lag = datetime.fromisoformat(at).timestamp() - first_nan.timestamp()
    assert state == "firing" and 0 <= lag <= INTERVAL, lag  # the first evaluation after the NaN step fired it
    [t] = [t for t in eng.transitions if t.state == "firing"]
    assert t.experiment_id == exp.id and math.isnan(t.value)
