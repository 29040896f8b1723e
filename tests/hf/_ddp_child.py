"""One rank of the torchrun test: the tiny Trainer under DDP (gloo, CPU) with CrucibleCallback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

import crucible_telemetry as ct
from crucible_telemetry_hf import CrucibleCallback

from ._tiny import tiny_trainer


def main(home: str, out: str, pin: str = "") -> None:
    if pin:  # each rank sees its own id: only rank 0's may win
        os.environ["CRUCIBLE_EXPERIMENT_ID"] = f"{pin}-rank{os.environ['RANK']}"
    hub = ct.configure(home, flush_interval=0.2)
    cb = CrucibleCallback()
    trainer = tiny_trainer(Path(out), [cb], eval_strategy="epoch", ddp_backend="gloo")
    trainer.train()
    rank = dist.get_rank() if dist.is_initialized() else -1
    hub.close()
    # one file per rank: two ranks printing to one pipe can interleave their lines
    report = {"rank": rank, "errors": [repr(e) for e in cb.errors], "steps": trainer.state.global_step}
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, f"result-rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
