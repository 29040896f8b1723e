"""One exception family for every error raised at an API boundary."""

from __future__ import annotations

__all__ = [
    "CrucibleError",
    "ExportExistsError",
    "InvalidArgumentError",
    "InvalidWindowError",
    "UnknownExperimentError",
]


class CrucibleError(Exception):
    """Base of every error crucible-telemetry raises at its API boundary."""


class InvalidArgumentError(CrucibleError, ValueError):
    """An argument has the wrong type or value; the message names it."""

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {message}")


class UnknownExperimentError(CrucibleError, KeyError):
    """No experiment with this id exists in the store."""

    def __init__(self, experiment_id: object) -> None:
        self.experiment_id = experiment_id
        super().__init__(f"experiment_id: unknown experiment {experiment_id!r}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class InvalidWindowError(InvalidArgumentError):
    """A query window is malformed (negative, empty or of the wrong type)."""


class ExportExistsError(CrucibleError, FileExistsError):
    """The export path exists and ``overwrite=True`` was not given."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"path: {path} exists; pass overwrite=True to replace it")
