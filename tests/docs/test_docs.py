"""The docs keep up with the code (after datasette's tests/test_docs.py).

Every hook and every name of the integration kit is documented in docs/plugins.md; the page's list
of public modules imports; docs/architecture.md names every module and sub-package of the core
on disk, and every path it names exists.
"""

from __future__ import annotations

import importlib
import re

import pytest

from crucible_telemetry import integration
from crucible_telemetry.plugins import hookspecs

from ._pages import CORE, mentioned, page, public_modules, section

HOOKS = sorted(name for name, fn in vars(hookspecs).items() if hasattr(fn, "crucible_telemetry_spec"))


def test_the_hookspecs_are_found() -> None:
    assert {"register_events", "register_commands"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_its_own_section(hook: str) -> None:
    body = section(page("plugins.md"), hook)
    assert "@hookimpl" in body and f"def {hook}(register" in body, f"{hook}: no example in its section"


def test_the_historic_hooks_are_the_ones_documented_as_historic() -> None:
    text = page("plugins.md")
    m = re.search(r"^Historic hooks \(pluggy `historic=True`\):(.*?)\.\s", text, re.M | re.S)
    assert m is not None, "docs/plugins.md does not say which hooks are historic"
    documented = set(re.findall(r"`(\w+)`", m.group(1)))
    historic = {h for h in HOOKS if getattr(hookspecs, h).crucible_telemetry_spec["historic"]}
    assert documented == historic


@pytest.mark.parametrize("name", sorted(integration.__all__))
def test_every_kit_name_is_documented(name: str) -> None:
    assert mentioned(section(page("plugins.md"), "The integration kit: `crucible_telemetry.integration`"), name)


def test_the_env_var_constants_are_documented_with_their_values() -> None:
    text = page("plugins.md")
    for const in ("ENV_EXPERIMENT_ID", "ENV_HOME", "ENV_STRICT"):
        assert f"`{const}` (`{getattr(integration, const)}`)" in text


def test_the_documented_precedence_is_the_kits() -> None:
    body = section(page("plugins.md"), "Choosing the experiment")
    steps = re.findall(r"^\d\. .*?\(`(?:source == )?\"(\w+)\"`\)", body, re.M)
    assert steps == ["explicit", "environment", "checkpoint", "live", "new"]


def test_the_public_modules_import_and_have_an_all() -> None:
    mods = public_modules()
    assert {"crucible_telemetry", "crucible_telemetry.integration", "crucible_telemetry.plugins"} <= set(mods)
    for name in mods:
        assert isinstance(importlib.import_module(name).__all__, (list, tuple)), name


def _core_tree() -> list[str]:
    """Top-level modules (``hub.py``) and sub-packages (``storage/``) of the core, as on disk."""
    out = [p.name for p in CORE.glob("*.py") if p.name != "__init__.py"]
    out += [f"{p.name}/" for p in CORE.iterdir() if (p / "__init__.py").is_file()]
    return sorted(out)


@pytest.mark.parametrize("entry", _core_tree())
def test_architecture_names_every_module_and_subpackage_of_the_core(entry: str) -> None:
    assert f"`{entry}`" in page("architecture.md") or re.search(
        rf"^\s*{re.escape(entry)}\s", page("architecture.md"), re.M
    )


def test_every_path_the_architecture_page_names_exists() -> None:
    text = page("architecture.md")
    paths = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", text))
    assert "storage/schema.py" in paths
    missing = sorted(p for p in paths if not (CORE / p).is_file() and not (CORE.parents[3] / p).is_file())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
