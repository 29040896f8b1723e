"""Installed plugins that are broken: one that cannot be imported, one whose hook raises.

Real distributions on ``sys.path`` (a ``.dist-info`` with entry points) in a child process, as a
user's environment would have them: the core, the good hooks and the CLI go on; strict mode raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_HALF = """
from crucible_telemetry.plugins import hookimpl

@hookimpl
def register_events(register):
    raise RuntimeError("half plugin bug")

@hookimpl
def register_exporters(register):
    register("half", lambda con, sql, params, path: path.write_text("ok"))
"""

_PROBE = """
import json, crucible_telemetry as ct
from crucible_telemetry import plugins
print(json.dumps({"category": ct.event_info("req_llm.request.start").category,
                  "half_export": "half" in plugins.EXPORTERS,
                  "failures": sorted({(name, hook) for name, hook, _ in plugins.FAILURES})}))
"""


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    dist = site / "broken_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[crucible_telemetry]\nmissing = no_such_module_xyz\nhalf = half_plug\n")
    (site / "half_plug.py").write_text(_HALF)
    return site


def _env(site: Path, strict: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "CRUCIBLE_STRICT": strict,
        "CRUCIBLE_HOME": str(home),
    }


def test_broken_plugins_are_reported_and_the_rest_goes_on(broken_site: Path, tmp_path: Path) -> None:
    env = _env(broken_site, "0", tmp_path / "home")
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["category"] == "llm"  # the built-in events still registered
    assert got["half_export"] is True  # the half plugin's good hook still ran
    assert ["half", "register_events"] in got["failures"] and ["missing", "load"] in got["failures"]
    assert "missing" in out.stderr and "half" in out.stderr  # each named in one warning
    cli = [sys.executable, "-c", "import sys; from crucible_telemetry.cli import main; sys.exit(main(sys.argv[1:]))"]
    subprocess.run(
        [sys.executable, "-c", "import crucible_telemetry as ct; ct.start_experiment('x').stop()"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    runs = subprocess.run([*cli, "runs", "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert runs.returncode == 0, runs.stderr
    assert [r["name"] for r in json.loads(runs.stdout)] == ["x"]


def test_strict_mode_raises_the_broken_plugins_error(broken_site: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=_env(broken_site, "1", tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "no_such_module_xyz" in out.stderr or "half plugin bug" in out.stderr
