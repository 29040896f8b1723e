"""Shared fixtures: a fresh hub per test, in a temporary project folder, made the default."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CRUCIBLE_STRICT", "1")

import crucible_telemetry as ct


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A project folder for the store."""
    return tmp_path / "crucible"


@pytest.fixture
def hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ct.Telemetry]:
    """A ``Telemetry`` on a temporary home, installed as the default hub for ``ct.*`` calls."""
    monkeypatch.setenv("CRUCIBLE_HOME", str(home))
    h = ct.Telemetry(home, flush_interval=0.2)
    prev = ct.set_default(h)
    try:
        yield h
    finally:
        h.close()
        ct.set_default(prev)


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A one-commit git repository made the working directory; returns its HEAD commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "f").write_text("x")
    subprocess.run([*git, "add", "f"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
