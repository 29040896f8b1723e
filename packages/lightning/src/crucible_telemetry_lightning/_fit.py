"""The experiment of one Lightning fit: chosen in ``setup``, opened in ``on_fit_start``, closed in ``teardown``.

The choice follows the kit's order (``crucible_telemetry.integration``): explicit id >
``$CRUCIBLE_EXPERIMENT_ID`` > the resumed checkpoint's id > the live experiment > a new one.
``setup`` runs before Lightning restores a checkpoint, so rank 0 chooses there without it and
broadcasts; when the checkpoint then names an experiment it is applied on every rank alone
(every rank loads the same checkpoint: no second broadcast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import crucible_telemetry as ct
from crucible_telemetry.integration import Choice, Run, choose_experiment, default_run_name, open_run

__all__ = ["FitExperiment"]


def _as_live(hub: ct.Telemetry, choice: Choice) -> Choice:
    """The chosen experiment is the one live in the caller's context: use it, never stop it."""
    if choice.live:
        return choice
    live = hub.current_experiment()
    if live is not None and not live.stopped and live.id == choice.experiment_id:
        return Choice(live.id, "live", live.name)
    return choice


class FitExperiment:
    """Which experiment one fit records into, and the ``Run`` that holds it while the fit lasts."""

    def __init__(
        self, hub: ct.Telemetry, explicit_id: str | None, rank: int, world: int, *, new_id: str | None = None
    ) -> None:
        self.hub = hub
        self.explicit_id = explicit_id
        self.new_id = new_id
        self._unique: tuple[str, str] | None = None  # (base, unique name) for a new experiment
        self.rank = rank
        self.world = world
        self.choice: Choice | None = None
        self.run: Run | None = None
        #: The fit resumed from a checkpoint that named an experiment.
        self.resumed = False
        self.closed = False

    @property
    def experiment_id(self) -> str | None:
        """The id of the open (or chosen) experiment."""
        if self.run is not None:
            return self.run.id
        return self.choice.experiment_id if self.choice is not None else None

    def name(self, default: str, *, unique: bool = False) -> str:
        """The live experiment's name when the fit records into one, else ``default``.

        ``unique``: ``default`` is a default name: a new experiment gets the kit's unique form of
        it (``default``, ``default-2`` ...), chosen once per fit so folders named after it stay put.
        """
        c = self.choice
        if c is not None and c.live and c.name:
            return c.name
        if not unique or c is None or c.source != "new" or self.rank != 0:
            return default
        if self._unique is None or self._unique[0] != default:
            self._unique = (default, default_run_name(self.hub, default))
        return self._unique[1]

    def choose(self, broadcast: Callable[[Any], Any] | None) -> Choice:
        """Rank 0's choice for every rank (``broadcast`` is the strategy's, None for one process)."""
        choice = choose_experiment(
            self.hub, explicit_id=self.explicit_id, broadcast=broadcast, rank=self.rank, new_id=self.new_id
        )
        self.choice = _as_live(self.hub, choice)
        return self.choice

    def resume(self, resumed_id: str) -> bool:
        """A checkpoint names ``resumed_id``: choose again with it; True when an open run must move over."""
        self.resumed = True
        self.choice = _as_live(
            self.hub, choose_experiment(self.hub, explicit_id=self.explicit_id, resumed_id=resumed_id)
        )
        return self.run is not None and self.run.id != self.choice.experiment_id

    def open(
        self,
        name: str,
        hypothesis: str | None,
        condition: str | None,
        tags: tuple[str, ...],
        metadata: dict[str, Any],
        *,
        params: dict[str, Any] | None = None,
        system_metrics: bool | float = False,
    ) -> Run:
        """Start, join or reuse the chosen experiment (rank 0 may create it, and adds the params) and bind it."""
        assert self.choice is not None
        self.run = open_run(
            self.hub,
            self.choice,
            name=name,
            hypothesis=hypothesis,
            condition=condition,
            tags=tags,
            metadata=metadata,
            leader=self.rank == 0,
            params=params,
            framework="lightning",
            system_metrics=system_metrics,
        )
        return self.run

    def close(self, status: str = "stopped") -> None:
        """Unbind; stop this process's share (with ``status``) when the fit owns it (a live one keeps running)."""
        self.closed = True
        run = self.run
        if run is not None:
            run.close(status)
