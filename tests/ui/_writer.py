"""A writer process for the dashboard tests: ``python _writer.py HOME``; stdin lines ``emit STEP VALUE`` | ``stop``."""

from __future__ import annotations

import sys

import crucible_telemetry as ct


def main() -> None:
    """Start one run, emit 50 batch losses, then obey stdin."""
    hub = ct.Telemetry(sys.argv[1])
    exp = hub.start_experiment("live", condition="live", params={"lr": 0.5, "seed": 9})
    for step in range(50):
        hub.emit("crucible_train.batch.stop", {"loss": 10.0 / (step + 1), "global_step": step}, {})
    hub.flush()
    print("ready", exp.id, flush=True)
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "emit":
            hub.emit("crucible_train.batch.stop", {"loss": float(words[2]), "global_step": int(words[1])}, {})
            print("emitted", flush=True)
        elif words and words[0] == "flush":
            hub.flush()
            print("flushed", flush=True)
        elif words and words[0] == "stop":
            hub.stop_experiment(exp.id)
            hub.flush()
            break
    print("bye", flush=True)


if __name__ == "__main__":
    main()
