"""The plugins reach the core through its public modules only (those listed in docs/plugins.md).

Every module under packages/<plugin>/src (every distribution but the core) is parsed, never
imported. A plugin fails when it imports a ``crucible_telemetry`` module that is not listed, a name
that starts with ``_``, a name outside a public module's ``__all__``, or reaches either through an
attribute (``import crucible_telemetry as ct`` then ``ct._hubs``, ``ct.storage``).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from ._pages import CORE, ROOT, public_modules

#: Every distribution under packages/ but the core is a plugin: its folder -> its package's ``__init__.py``.
PLUGINS = {
    d.name: init
    for d in sorted((ROOT / "packages").iterdir())
    if d.name != "core"
    for init in sorted((d / "src").glob("*/__init__.py"))[:1]
}


def _is_core(module: str) -> bool:
    return module == "crucible_telemetry" or module.startswith("crucible_telemetry.")


def _is_module(dotted: str) -> bool:
    """``dotted`` names a module or package of the core on disk."""
    rel = Path(*dotted.split(".")[1:])
    return (
        dotted == "crucible_telemetry"
        or (CORE / rel).with_suffix(".py").is_file()
        or (CORE / rel / "__init__.py").is_file()
    )


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Checker(ast.NodeVisitor):
    """Collects every violation of one module's source, as ``line: message``."""

    def __init__(self, public: set[str]) -> None:
        self.public = public
        self.bound: dict[str, str] = {}  # local name -> the core module it is
        self.problems: list[str] = []

    def _module(self, line: int, dotted: str) -> None:
        private = [p for p in dotted.split(".") if _private(p)]
        if private:
            self.problems.append(f"{line}: {dotted} is private ({private[0]})")
        elif dotted not in self.public:
            self.problems.append(f"{line}: {dotted} is not a public module of docs/plugins.md")

    def _name(self, line: int, module: str, name: str) -> None:
        dotted = f"{module}.{name}"
        if _private(name):
            self.problems.append(f"{line}: {dotted} is private")
        elif _is_module(dotted):
            self._module(line, dotted)
        elif module in self.public:
            exported = getattr(importlib.import_module(module), "__all__", None)
            if exported is not None and name not in exported and name != "*":
                self.problems.append(f"{line}: {name} is not in {module}.__all__")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _is_core(alias.name):
                self._module(node.lineno, alias.name)
                if alias.asname:
                    self.bound[alias.asname] = alias.name
                else:
                    self.bound["crucible_telemetry"] = "crucible_telemetry"

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module or not _is_core(node.module):
            return
        self._module(node.lineno, node.module)
        for alias in node.names:
            self._name(node.lineno, node.module, alias.name)
            if _is_module(f"{node.module}.{alias.name}"):
                self.bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain: list[str] = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.bound:
            module = self.bound[value.id]
            for attr in reversed(chain):
                before = len(self.problems)
                self._name(node.lineno, module, attr)
                if len(self.problems) > before or not _is_module(f"{module}.{attr}"):
                    break  # one problem per chain
                module = f"{module}.{attr}"
            return  # the chain is checked whole: not its inner attributes again
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _is_core(arg.value):
                self._module(node.lineno, arg.value)
        self.generic_visit(node)


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every way ``source`` reaches past the core's public modules."""
    checker = _Checker(set(public_modules()))
    checker.visit(ast.parse(source, filename))
    return checker.problems


def test_every_plugin_is_checked() -> None:
    assert {"lightning", "hf", "llm"} <= set(PLUGINS)


def test_the_checker_catches_each_kind_of_violation() -> None:
    bad = (
        "import crucible_telemetry as ct\n"
        "from crucible_telemetry._hubs import default\n"  # a private module
        "from crucible_telemetry.experiment import RUNNING\n"  # a module not listed
        "from crucible_telemetry import _hubs\n"  # a private name
        "from crucible_telemetry.integration import _live\n"  # a private name of a public module
        "from crucible_telemetry.events import BASE_FIELDS\n"  # not in __all__
        "import crucible_telemetry.storage.segments\n"  # a module not listed
        "x = ct._hubs._default\n"  # private through an attribute
        "y = ct.hub.Telemetry\n"  # a non-public module through an attribute
        "import importlib\nz = importlib.import_module('crucible_telemetry.cli.app')\n"
    )
    found = violations(bad)
    assert [p.split(":")[0] for p in found] == ["2", "3", "4", "5", "6", "7", "8", "9", "11"], found
    good = (
        "import crucible_telemetry as ct\n"
        "from crucible_telemetry import InvalidArgumentError, Telemetry, events\n"
        "from crucible_telemetry.integration import choose_experiment, open_run\n"
        "from crucible_telemetry.plugins import hookimpl\n"
        "hub = ct.default(); e = events.LLM_STOP; v = ct.__version__\n"
        "from crucible_telemetry_llm import instrument\n"
    )
    assert violations(good) == []


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_plugin_imports_only_public_core_names(plugin: str) -> None:
    src = PLUGINS[plugin].parent
    files = sorted(src.rglob("*.py"))
    assert files, f"no sources under {src}"
    problems = [f"{f.relative_to(ROOT)}:{p}" for f in files for p in violations(f.read_text(encoding="utf-8"), str(f))]
    assert not problems, "reaches past the public modules of docs/plugins.md:\n" + "\n".join(problems)
