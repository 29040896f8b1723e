"""A 2-process DDP fit on CPU (gloo), run by test_ddp.py as ``python ddp_script.py HOME ROOT OUT``.

Lightning's subprocess launcher runs this same script again for rank 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import crucible_telemetry as ct
from crucible_telemetry_lightning import CrucibleCallback, CrucibleLogger
from tests.lightning import tiny


def main(home: str, root: str, out: str) -> None:
    ct.configure(home, flush_interval=0.2)
    cb = CrucibleCallback()
    loggers = [CrucibleLogger(), CrucibleLogger(run_id="ddp-all-ranks", all_ranks=True)]
    trainer = tiny.trainer("lightning.pytorch", root, strategy="ddp", devices=2, callbacks=[cb], logger=loggers)
    trainer.fit(tiny.module_class("lightning.pytorch")(), *tiny.loaders(n=128))  # 8 batches per rank
    report = {
        "rank": trainer.global_rank,
        "experiment_id": cb.experiment_id,
        "run_id": loggers[0].run_id,
        "errors": [repr(e) for e in cb.errors + loggers[0].errors + loggers[1].errors],
    }
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
    ct.default().close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
