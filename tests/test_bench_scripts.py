"""The benchmark scripts (``nox -s bench``) still import against today's code.

No test times anything (these machines are noisy); this only catches a bench left behind by a
rename, as ``bench_core.py`` was once by the restructure.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ._requires import requires_plugin

BENCH = Path(__file__).resolve().parents[1] / "bench"
CORE_ONLY = {"bench_core.py", "bench_metrics.py"}


def _params() -> list[object]:
    out: list[object] = []
    for path in sorted(BENCH.glob("bench_*.py")):
        marks = [] if path.name in CORE_ONLY else [requires_plugin("the plugins and their frameworks")]
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


@pytest.mark.parametrize("path", _params())
def test_a_bench_script_imports(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # as `python bench/<script>.py` has it: their shared _bench.py
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # module level only: main() runs under __main__
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
