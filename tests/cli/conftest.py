"""A store made by real runs (simulated training loop, simulated LLM requests) and the real ``crucible`` script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ._data import build


def crucible_exe() -> str:
    """The installed console script next to this interpreter."""
    exe = shutil.which("crucible", path=str(Path(sys.executable).parent)) or shutil.which("crucible")
    assert exe is not None, "the crucible console script is not installed (pip install -e packages/core)"
    return exe


@dataclass
class Store:
    """The store's folder and its experiment ids by role."""

    home: Path
    ids: dict[str, Any]

    @property
    def llm(self) -> list[str]:
        return [*self.ids["llm_control"], *self.ids["llm_treatment"]]


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Two training runs (control, treatment) and 3 + 3 seeds of LLM requests, written and closed."""
    home = tmp_path_factory.mktemp("cli") / "crucible"
    yield Store(home, build(home))


@dataclass
class Run:
    """The outcome of one ``crucible`` invocation."""

    rc: int
    out: str
    err: str


@pytest.fixture(scope="session")
def crucible(store: Store) -> Any:
    """``crucible(*args)`` runs the console script against the test store, as a user does."""
    exe = crucible_exe()

    def run(*args: str, home: Path | None = None, cwd: Path | None = None, timeout: float = 120) -> Run:
        env = {**os.environ, "COLUMNS": "160", "CRUCIBLE_HOME": str(home or store.home)}
        proc = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or store.home.parent
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run
