"""The end-to-end demo: `python3 -m nox -s demo` runs this file.

Records a simulated training loop and simulated LLM calls, then real Lightning and Hugging Face
runs, real `openai` client calls against a local server, metrics and Prometheus text, and ends with
the `crucible` command: runs, a comparison of two conditions, a plot and an HTML report.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import crucible_telemetry as ct


def _section(module: str, *args: Any) -> Any:
    """Run one plugin's demo section if that plugin's demo exists; a failure is reported, not hidden."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    print(f"\n######## {module.removeprefix('demo_')}")
    return mod.run(*args)


def main() -> int:
    out = Path("demo-output").absolute()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    hub = ct.configure(out / ".crucible", flush_interval=0.5)
    print(f"store: {hub.home}")
    failures = []
    core = _section("demo_core", hub, out)
    results: dict[str, Any] = {"core": core}
    for name, args in (
        ("demo_lightning", (hub,)),
        ("demo_sweep", (hub,)),
        ("demo_hf", (hub,)),
        ("demo_llm", (hub,)),
        ("demo_metrics", (hub, [core["training"], *core["control"], *core["treatment"]])),
        ("demo_sql", (hub, results)),
        ("demo_cli", (hub, core["control"], core["treatment"], out)),
    ):
        try:
            results[name] = _section(name, *args)
        except Exception:
            traceback.print_exc()
            failures.append(name)
    hub.close()
    print(
        f'\nEverything above is in {hub.home} (Parquet + JSON); query it with `crucible sql --home {hub.home} "SELECT ..."`.'
    )
    if failures:
        print(f"demo sections that failed: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
