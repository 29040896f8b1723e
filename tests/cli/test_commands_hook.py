"""A plugin adds a ``crucible`` command through ``register_commands``; a broken one never breaks the CLI."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import pytest

from crucible_telemetry import CrucibleError, plugins
from crucible_telemetry.cli import main
from crucible_telemetry.plugins import hookimpl


class _Hello:
    @hookimpl
    def register_commands(self, register: Callable[..., Any]) -> None:
        def run(args: argparse.Namespace) -> int:
            if args.name == "nobody":
                raise CrucibleError("no one to greet")
            print(f"hello {args.name} from {args.home}")
            return 3

        p = register("hello", run, help="greet someone")
        p.add_argument("--name", required=True)


class _Broken:
    @hookimpl
    def register_commands(self, register: Callable[..., Any]) -> None:
        register("runs", lambda args: 0, help="a second 'runs'")  # taken: refused


def test_a_plugin_command_runs_with_the_common_options(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    plugins.register_plugin(_Hello(), name="hello-plugin")
    try:
        assert main(["hello", "--name", "ada", "--home", str(tmp_path)]) == 3
        assert capsys.readouterr().out == f"hello ada from {tmp_path}\n"
        assert main(["hello", "--name", "nobody"]) == 1
        assert capsys.readouterr().err == "crucible: error: no one to greet\n"
        with pytest.raises(SystemExit):
            main(["--help"])
        assert "greet someone" in capsys.readouterr().out
    finally:
        plugins.get_plugin_manager().unregister(name="hello-plugin")


def test_a_broken_command_plugin_is_logged_and_the_others_work(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, hub: Any
) -> None:
    plugins.register_plugin(_Broken(), name="broken-commands")
    plugins.set_strict(False)
    try:
        with caplog.at_level(logging.WARNING, logger="crucible_telemetry"):
            assert main(["runs", "--home", str(hub.home), "--format", "json"]) == 0
        assert any("broken-commands" in r.getMessage() for r in caplog.records)
        plugins.set_strict(True)
        with pytest.raises(ValueError, match="registered twice"):
            main(["runs", "--home", str(hub.home)])
    finally:
        plugins.set_strict(True)
        plugins.get_plugin_manager().unregister(name="broken-commands")
