"""Child process of the resume test: resume the tiny run from a checkpoint, print its log history."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import crucible_telemetry as ct
from crucible_telemetry_hf import CrucibleCallback

from ._tiny import tiny_trainer


def main(home: str, out: str, checkpoint: str) -> None:
    hub = ct.configure(home, flush_interval=0.2)
    cb = CrucibleCallback()
    trainer = tiny_trainer(Path(out), [cb], save_strategy="steps", save_steps=2)
    trainer.train(resume_from_checkpoint=checkpoint)
    hub.close()
    print("RESULT " + json.dumps({"errors": [repr(e) for e in cb.errors], "log_history": trainer.state.log_history}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
