"""Names for runs in tables, legends and verdicts: by the params that differ (``lr=0.01``), not by id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..experiment import Experiment

__all__ = ["differing_params", "fmt_value", "replicates_hint", "run_labels"]


def _params(exp: Experiment) -> dict[str, Any]:
    return dict(getattr(exp, "params", None) or {})


def fmt_value(v: Any) -> str:
    """``0.01``, ``8``, ``adam``: a param value as short as it reads."""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def differing_params(exps: Sequence[Experiment], *, seeds: bool = False) -> list[str]:
    """Param keys whose values differ between the runs, in first-seen order (seed-like keys last,
    and only with ``seeds=True``; run paths such as ``output_dir`` never)."""
    from .by_param import is_seed_key

    params = [_params(e) for e in exps]
    keys: list[str] = []
    for p in params:
        keys += [k for k in p if k not in keys]
    differ = [k for k in keys if len({repr(p.get(k)) for p in params}) > 1]
    plain = [k for k in differ if not is_seed_key(k)]
    seedy = [k for k in differ if is_seed_key(k) and "seed" in k.rsplit(".", 1)[-1].lower()]
    return plain + (seedy if seeds else [])


def run_labels(exps: Sequence[Experiment], keys: Sequence[str] | None = None) -> list[str]:
    """One label per run: ``lr=0.01 seed=1`` from ``keys`` (default: the params that differ),
    else the names when they are unique, else ``name (id)``; always unique."""
    names = [e.name for e in exps]
    chosen = list(keys) if keys is not None else differing_params(exps, seeds=True)
    if chosen:
        labels = [" ".join(f"{k}={fmt_value(_params(e).get(k, '-'))}" for k in chosen) for e in exps]
        if len(set(labels)) == len(labels):
            return labels
        if len(set(names)) == len(names):
            return [f"{n} ({lab})" for n, lab in zip(names, labels)]
        return [f"{lab} ({e.id})" for lab, e in zip(labels, exps)]
    if len(set(names)) == len(names):
        return names
    return [e.id for e in exps]


def replicates_hint(exps: Sequence[Experiment]) -> list[str]:
    """Runs that differ in a seed and a param can be compared by that param, seeds as replicates."""
    keys = differing_params(exps)
    seeds = [k for k in differing_params(exps, seeds=True) if k not in keys]
    if not keys or not seeds or len(exps) < 3:
        return []
    return [
        f"these runs differ in {keys[0]} and {seeds[0]}: compare_by_param(by={keys[0]!r}) "
        f"(crucible compare --by {keys[0]}) treats the seeds as replicates and can test"
    ]
