"""Sessions: tests, demo, lint, typecheck, bench. Every install is pinned by constraints.txt."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")
PACKAGES = [
    "-e", "packages/core",
    "-e", "packages/lightning[lightning,pytorch-lightning]",
    "-e", "packages/hf",
    "-e", "packages/llm[openai]",
]
TEST_DEPS = ["pytest", "pytest-asyncio", "prometheus_client", "psutil", "tensorboard", "accelerate", "pandas", "httpx"]
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "CRUCIBLE_STRICT": "1",
    "PYTHONHASHSEED": "0",
}
DEBIAN = {"promtool": "prometheus", "prometheus": "prometheus", "chromium": "chromium", "chromedriver": "chromium-driver"}


def _install(session: nox.Session, *extra: str) -> None:
    """Torch from the local CPU wheel first, then the four distributions, all pinned."""
    session.install("-c", CONSTRAINTS, "torch==2.13.0")
    session.install("-c", CONSTRAINTS, *PACKAGES, *extra)


def _debian(session: nox.Session, *commands: str) -> None:
    """Install the Debian packages that provide ``commands`` when missing (needs root)."""
    missing = sorted({DEBIAN[c] for c in commands if shutil.which(c) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        session.warn(f"cannot apt-get install {missing} without root; tests needing them will fail")
        return
    session.run("apt-get", "update", "-qq", external=True)
    session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, external=True,
                env={"DEBIAN_FRONTEND": "noninteractive"})


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (real Trainers, real DuckDB, real openai client, real Prometheus)."""
    _debian(session, "promtool", "prometheus", "chromium", "chromedriver")
    _install(session, *TEST_DEPS)
    session.run("pytest", *(session.posargs or ["-q"]), env=ENV)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the end-to-end demo: training runs, LLM calls, queries, metrics, exports and reports."""
    _install(session, "accelerate")  # the Hugging Face Trainer needs it
    session.run("python", "examples/demo.py", *session.posargs, env={**ENV, "CRUCIBLE_STRICT": "0"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff over packages, tests, examples, bench and this file."""
    session.install("-c", CONSTRAINTS, "ruff")
    session.run("ruff", "check", "packages", "tests", "examples", "bench", "noxfile.py", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy: strict on packages/core and the noxfile, default strictness on the three plugins."""
    _install(session, "mypy", "nox", "pytest")
    session.run("mypy", "packages/core/src/crucible_telemetry", "noxfile.py", *session.posargs)
    session.run("mypy", "packages/lightning/src", "packages/hf/src", "packages/llm/src")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print each figure beside its target and ratios against peers run alongside."""
    _install(session, "tensorboard", "psutil", "accelerate")
    scripts = sorted(str(p) for p in (ROOT / "bench").glob("bench_*.py"))
    for script in session.posargs or scripts:
        session.run("python", script, env={**ENV, "CRUCIBLE_STRICT": "0"})
