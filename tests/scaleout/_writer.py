"""One writer process of a scale-out test: joins runs and records batches and epochs as one rank.

Usage: python _writer.py HOME EPOCHS BATCHES ID [ID ...]; rank and node come from the environment
(``RANK``, ``NODE_RANK``), as torchrun sets them. Each epoch is flushed as its own segment.
"""

from __future__ import annotations

import os
import sys
import time

import crucible_telemetry as ct


def main() -> None:
    home, epochs, batches, ids = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    hub = ct.Telemetry(home, flush_interval=3600)
    ct.set_default(hub)
    rank = int(os.environ.get("RANK", "0"))
    for k, exp_id in enumerate(ids):
        hub.join_experiment(exp_id)  # the run stays running: its segments stay unmerged
        for epoch in range(epochs):
            for b in range(batches):
                duration = float((b * 7919 + rank * 104729 + k * 31) % 1000) + 0.5
                meta = {"epoch": epoch, "batch": b}
                ct.emit("crucible_train.batch.stop", {"duration": duration, "loss": 1.0 / (1 + b)}, meta)
            loss = 1.0 / (1 + epoch) + rank / 100 + k / 10
            ct.emit("crucible_train.epoch.stop", {"loss": loss}, {"epoch": epoch})
            hub.record_metric(exp_id, "val_loss", loss, step=epoch)
            hub.flush()
            time.sleep(float(os.environ.get("CT_WRITER_PAUSE", "0")))  # readers and mergers run meanwhile
    if os.environ.get("CT_WRITER_CLOSE") == "1":
        hub.close()  # merges what it wrote
    else:
        os._exit(0)  # as a rank still running (or killed): its segments stay live, unmerged


if __name__ == "__main__":
    main()
