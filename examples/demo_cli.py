"""The end of the demo: `crucible runs`, a comparison of two conditions with its verdict, a plot, an HTML report.

Run on its own (``python examples/demo_cli.py [OUT_DIR]``) it first simulates 3 + 3 seeds of LLM
requests (control vs a faster treatment); ``examples/demo.py`` calls ``run`` with its own runs.
Every step goes through the installed ``crucible`` command, as a user types it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import crucible_telemetry as ct


def _crucible() -> list[str]:
    exe = shutil.which("crucible", path=str(Path(sys.executable).parent)) or shutil.which("crucible")
    return [exe] if exe else [sys.executable, "-m", "crucible_telemetry.cli"]


def _cli(hub: ct.Telemetry, *args: str) -> str:
    """Run one ``crucible`` command on the hub's store, echo it and its output; raise if it fails."""
    cmd = [*_crucible(), *args, "--home", str(hub.home)]
    print("$ crucible " + " ".join(args))
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    print(proc.stdout, end="")
    if proc.returncode != 0:
        raise RuntimeError(f"crucible {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def _metric(hub: ct.Telemetry, ids: list[str]) -> str:
    """``latency`` when the runs made requests, else ``loss``."""
    marks = ", ".join("?" * len(ids))
    row = hub.store.execute(
        f"SELECT count(*) FROM events WHERE event = 'req_llm.request.stop' AND experiment_id IN ({marks})", ids
    ).fetchone()
    return "latency" if row and row[0] else "loss"


def run(hub: ct.Telemetry, control_ids: list[str], treatment_ids: list[str], out_dir: str | Path) -> dict[str, Any]:
    """List the runs, compare control and treatment, plot them and write the report; returns what was made."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hub.flush()
    ids = [*control_ids, *treatment_ids]
    metric = _metric(hub, ids)
    _cli(hub, "runs")

    conds = (
        {hub.get_experiment(i).condition for i in control_ids},
        {hub.get_experiment(i).condition for i in treatment_ids},
    )
    by_condition = all(len(c) == 1 and None not in c for c in conds) and conds[0] != conds[1]
    if by_condition:
        control, treatment = next(iter(conds[0])), next(iter(conds[1]))
        _cli(hub, "compare", "--conditions", str(control), str(treatment), "--metric", metric, *ids)
        result = ct.analysis.compare_conditions([str(control), str(treatment)], metric, experiments=ids, hub=hub)
    else:
        _cli(hub, "compare", control_ids[0], treatment_ids[0], "--metric", metric)
        result = ct.analysis.compare_experiments([control_ids[0], treatment_ids[0]], metric, hub=hub)

    plot = out / f"{metric}.png"
    _cli(
        hub,
        "plot",
        *ids,
        "--metric",
        metric,
        "--by",
        "condition" if by_condition else "experiment",
        *(["--smooth", "0.6"] if metric == "loss" else []),
        "-o",
        str(plot),
    )
    report = out / "report.html"
    _cli(hub, "report", *ids, "--metric", metric, "-o", str(report))

    print(f"\nverdict: {result.verdict}")
    print(f"plot:    {plot.resolve()}")
    print(f"report:  {report.resolve()}  (self-contained: open it in any browser)")
    return {
        "metric": metric,
        "verdict": result.verdict,
        "significant": result.pairs[0].significant,
        "plot": plot,
        "report": report,
        "comparison": result.to_dict(),
    }


def _simulate(hub: ct.Telemetry, condition: str, mean_ms: float, seed: int) -> str:
    rng = random.Random(f"{condition}-{seed}")
    with hub.experiment(
        f"chat-{condition}-s{seed}", hypothesis="prompt caching lowers latency", condition=condition, tags=("demo",)
    ) as exp:
        for _ in range(50):
            hub.emit("req_llm.request.start", {}, {"model": "demo-model"})
            if rng.random() < 0.04:
                hub.emit("req_llm.request.exception", {"duration": 2e6}, {"kind": "timeout", "reason": "demo"})
                continue
            ms = max(1.0, rng.gauss(mean_ms, mean_ms * 0.15))
            hub.emit(
                "req_llm.request.stop",
                {
                    "duration": ms * 1e6,
                    "ttft_ns": ms * 3e5,
                    "prompt_tokens": 120,
                    "completion_tokens": 40,
                    "total_tokens": 160,
                    "cost_usd": 1.2e-4,
                },
                {"model": "demo-model"},
            )
    return exp.id


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Simulate a small A/B of LLM requests in a temporary store, then ``run``."""
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="crucible-demo-"))
    with ct.Telemetry(out_dir / "store", flush_interval=0.2) as hub:
        control = [_simulate(hub, "control", 60.0, s) for s in range(3)]
        treatment = [_simulate(hub, "treatment", 45.0, s) for s in range(3)]
        return run(hub, control, treatment, out_dir)


if __name__ == "__main__":
    main()
