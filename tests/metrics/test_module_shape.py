"""The metrics package reads other objects through their public accessors, in modules of at most 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import crucible_telemetry.metrics

PACKAGE = Path(crucible_telemetry.metrics.__file__).parent
MAX_LINES = 400

# (module, private name) -> why that module may reach it on another object
ALLOWED = {
    ("__init__.py", "_default"): "_hubs' default hub, checked on every module-level point, where a call would cost",
    ("registry.py", "_crucible_metrics"): "the registry's own slot on its hub, so it lives and dies with the hub",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reaches(source: str) -> list[tuple[str, str]]:
    """``(name, expression)`` for each ``_private`` attribute of something other than ``self``/``cls`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.attr, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.append((node.args[1].value, ast.unparse(node)))
    return found


def test_the_checker_finds_private_reaches() -> None:
    src = "m._names[x]\nself._ok\ncls._ok\nx.__class__\ngetattr(hub, '_closed')\nsetattr(h, 'public', 1)\n"
    assert sorted(private_reaches(src)) == [("_closed", "getattr(hub, '_closed')"), ("_names", "m._names")]


def test_no_module_reaches_into_another_objects_private_state() -> None:
    seen = set()
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, expr in private_reaches(path.read_text(encoding="utf-8")):
            key = (path.name, name)
            if key in ALLOWED:
                seen.add(key)
            else:
                offending.append(f"{path.name}: {expr}")
    assert offending == []
    assert seen == set(ALLOWED), f"stale allowances: {set(ALLOWED) - seen}"


def test_no_module_is_over_400_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
    assert "registry.py" in sizes
