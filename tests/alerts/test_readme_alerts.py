"""The README's Alerts example runs as written and prints the alert it documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._readme import run_example, section

pytestmark = pytest.mark.slow  # real subprocesses


def test_the_alerts_example_records_the_firing_alert(tmp_path: Path) -> None:
    lines = run_example("Alerts", tmp_path)
    assert lines[-1] == "[('crucible_alert.firing', 'loss_nan')]", lines


def test_the_readme_rule_file_loads(tmp_path: Path) -> None:
    import re

    from crucible_telemetry import alerts

    [toml] = re.findall(r"```toml\n(.*?)```", section("Alerts"), flags=re.S)
    path = tmp_path / "alerts.toml"
    path.write_text(toml)
    rules, interval = alerts.load_file(path)
    assert interval == 10 and [(r.name, r.agg, r.window, r.for_) for r in rules] == [("llm_p95_slow", "p95", 300, 60)]
