"""The ``crucible`` argument parser and entry point: errors are one line on stderr and exit 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["USER_WORDS", "build_parser", "main"]

_EPILOG = """examples:
  crucible runs
  crucible runs --params lr --metrics val_loss.min --sort val_loss.min
  crucible show ID
  crucible rename ID lr-0.01
  crucible tag ID +baseline -draft
  crucible metrics ID
  crucible compare ID_A ID_B --metric latency
  crucible compare --conditions control treatment --metric latency
  crucible sql "SELECT event, count(*) FROM events GROUP BY event"
  crucible export ID --format parquet -o run.parquet
  crucible plot RUN_A RUN_B --metric loss --smooth 0.6 -o loss.png
  crucible report RUN_A RUN_B -o report.html

A run (ID) is its id, a unique prefix of it or of the short id `crucible runs` shows, or its unique name.
The store is --home, else $CRUCIBLE_HOME, else ./.crucible."""

#: Python argument names in error messages, as the command line spells them.
USER_WORDS = {
    "fmt": "--format",
    "experiment_id": "ID",
    "exp_id": "ID",
    "experiment_ids": "ID",
    "ids": "ID",
    "path": "--output",
    "overwrite": "--overwrite",
    "metric": "--metric",
    "x": "--x",
}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (with where to look), exit code 2."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {line} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand."""
    from .. import __version__

    common = _Parser(add_help=False)
    common.add_argument(
        "--home", default=argparse.SUPPRESS, metavar="DIR", help="store folder (default $CRUCIBLE_HOME or ./.crucible)"
    )
    parser = _Parser(
        prog="crucible",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
        description="Look at, compare and report on crucible-telemetry experiments.",
    )
    parser.add_argument(
        "--home", default=None, metavar="DIR", help="store folder (default $CRUCIBLE_HOME or ./.crucible)"
    )
    parser.add_argument("--version", action="version", version=f"crucible-telemetry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, run: Any, **kwargs: Any) -> argparse.ArgumentParser:
        """The ``register`` of the ``register_commands`` hook: a subcommand with ``--home``."""
        if not isinstance(name, str) or not name or name in sub.choices:
            raise ValueError(f"command {name!r} is empty or registered twice")
        if not callable(run):
            raise TypeError(f"command {name!r}: run must be callable")
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        p: argparse.ArgumentParser = sub.add_parser(name, parents=[common], **kwargs)
        p.set_defaults(func=run)
        return p

    from ..plugins import call_each

    call_each("register_commands", add)  # the built-in commands come through the same hook
    return parser


def _fail(message: str, code: int = 1) -> int:
    line = " ".join(str(message).split()) or "failed"
    sys.stderr.write(f"crucible: error: {line}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``crucible`` command; returns the exit code (0 ok, 1 error, 2 usage)."""
    import duckdb

    from ..errors import CrucibleError, InvalidArgumentError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InvalidArgumentError as exc:
        message, word = str(exc), USER_WORDS.get(exc.argument)
        if word and message.startswith(exc.argument + ":"):
            message = word + message[len(exc.argument) :]
        return _fail(message)
    except CrucibleError as exc:
        return _fail(str(exc))
    except duckdb.Error as exc:
        return _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as exc:
        return _fail(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
