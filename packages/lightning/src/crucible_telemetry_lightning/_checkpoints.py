"""Notices the files that Lightning's ``ModelCheckpoint`` callbacks wrote since the last look.

A callback's ``on_save_checkpoint`` runs before the file is written and without its path, so the
callback looks at the checkpoint callbacks' bookkeeping in its next hook instead (a few attribute
reads per step) and reports each new file once it exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["CheckpointWatch"]


def _marker(cb: Any) -> tuple[Any, Any]:
    return getattr(cb, "_last_global_step_saved", None), getattr(cb, "_last_checkpoint_saved", None)


class CheckpointWatch:
    """Paths of checkpoint files written since the previous call, each reported once per write."""

    def __init__(self, callbacks: Iterable[Any]) -> None:
        self._cbs = list(callbacks)
        #: False when there is no checkpoint callback to watch (nothing to look at per step).
        self.active = bool(self._cbs)
        self._markers = [_marker(cb) for cb in self._cbs]
        self._seen: dict[str, int] = {}
        for cb in self._cbs:  # files from before this fit (a resumed run) are not news
            for path in _paths(cb):
                self._seen[path] = _mtime(path)

    def changed(self) -> bool:
        """Whether any checkpoint callback saved since the last ``new_files`` (cheap: per step)."""
        return any(_marker(cb) != m for cb, m in zip(self._cbs, self._markers))

    def new_files(self) -> list[str]:
        """Existing checkpoint files that are new or rewritten since the last call."""
        out: list[tuple[int, str]] = []
        for i, cb in enumerate(self._cbs):
            self._markers[i] = _marker(cb)
            for path in _paths(cb):
                mt = _mtime(path)
                if mt and self._seen.get(path) != mt:
                    self._seen[path] = mt
                    out.append((mt, path))
        return [p for _, p in sorted(out)]


def _paths(cb: Any) -> list[str]:
    paths = [
        getattr(cb, "_last_checkpoint_saved", ""),
        getattr(cb, "last_model_path", ""),
        getattr(cb, "best_model_path", ""),
    ]
    paths.extend(getattr(cb, "best_k_models", {}) or {})
    return list(dict.fromkeys(str(p) for p in paths if p))


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
