"""The README's "Importing runs from other tools" example runs as written and prints what its comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._readme import run_example

from .._requires import requires_plugin


@pytest.mark.slow
@requires_plugin("torch", "tensorboard")
def test_the_readme_import_example_runs_and_a_second_import_adds_nothing(tmp_path: Path) -> None:
    lines = run_example("Importing runs from other tools", tmp_path, timeout=180)
    assert lines[0] == "tensorboard: imported 1 run(s), 100 point(s)"
    assert lines[1] == "tensorboard: imported 0 run(s), 0 point(s); 1 already in the store"
    assert lines[2] == "[('baseline', 100, 0.009999999776482582)]"  # a float32 of TensorBoard
