"""The series table of a registry: metric names, their tag sets, and series (a tag set in one run).

A series id indexes the hot-path buffers and the ``sid`` column of every drained point; the
accessors here turn it back into a name, kind, tags and run id for readers, the store and subscribers.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from . import kinds
from .kinds import COUNTER, HISTOGRAM, OVERFLOW
from .series import MetricInfo, TagSet
from .state import Appenders, State

__all__ = ["SeriesTable"]

log = logging.getLogger("crucible_telemetry")


class SeriesTable(State):
    """Part of :class:`~crucible_telemetry.metrics.Metrics`: which metrics, tag sets and series exist."""

    def define(self, name: str, kind: str, *, help: str | None = None, buckets: Any = None) -> None:
        """Declare a metric's kind ahead of use, with its HELP text and histogram buckets."""
        kinds.check_name(name)
        if kind not in kinds.KINDS:
            raise InvalidArgumentError("kind", f"unknown kind {kind!r}; valid: {', '.join(kinds.KINDS)}")
        bs = kinds.check_buckets(buckets) if buckets is not None else None
        with self._lock:
            info = self._names.get(name)
            if info is None:
                self._names[name] = MetricInfo(name, kind, bs or self.default_buckets, help)
                return
            if info.kind != kind:
                raise InvalidArgumentError("kind", f"metric {name!r} is already a {info.kind}")
            if help is not None:
                info.help = help
            if bs is not None:
                if info.tagsets and kind == HISTOGRAM and tuple(info.buckets) != bs:
                    raise InvalidArgumentError("buckets", f"histogram {name!r} already has observations")
                info.buckets = np.asarray(bs, dtype=np.float64)

    def kind_of(self, name: str) -> str | None:
        """The kind of a known metric, else None."""
        info = self._names.get(name)
        return info.kind if info is not None else None

    def names(self) -> list[str]:
        """Known metric names, in order of first use."""
        return list(self._names)

    # ------------------------------------------------------------ by series id

    def series_info(self, sid: int) -> tuple[str, str, dict[str, str], str]:
        """``(name, kind, tags, run_id)`` of a series."""
        ts = self._tagsets[self._s_tagset[sid]]
        return ts.name, self._names[ts.name].kind, ts.tags, self._s_run[sid]

    def series_tags(self, sid: int) -> dict[str, str]:
        """The tags of a series."""
        return self._tagsets[self._s_tagset[sid]].tags

    def series_run(self, sid: int) -> str:
        """The run id (experiment id or ``"global"``) of a series."""
        return self._s_run[sid]

    def series_names(self, sids: Any) -> list[str]:
        """The metric name of each series id in ``sids`` (one per point of a drained column)."""
        s_name = self._s_name
        return [s_name[int(s)] for s in sids]

    def series_runs(self, sids: np.ndarray) -> np.ndarray:
        """The run id of each series id in ``sids``, as an object array."""
        runs: np.ndarray = np.asarray(self._s_run, dtype=object)[sids]
        return runs

    def series_group(self, info: MetricInfo, group_by: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Group id per series id (a lookup array) and each group's tag values, for ``group_by``."""
        keys: dict[tuple[str, ...], int] = {}
        sids = list(info.sids)
        lookup = np.zeros(max(sids) + 1 if sids else 0, dtype=np.int64)
        for sid in sids:
            tags = self._tagsets[self._s_tagset[sid]].tags
            run = self._s_run[sid]
            key = tuple(run if g == "run_id" and g not in tags else tags.get(g, "") for g in group_by)
            lookup[sid] = keys.setdefault(key, len(keys))
        return lookup, list(keys)

    def _matching(self, info: MetricInfo, tags: dict[str, Any]) -> np.ndarray:
        """A mask over series ids: the series of ``info`` whose tags (and ``run_id``) match ``tags``."""
        want = kinds.normalize_tags(tags)
        run = want.pop("run_id", None)
        ok = np.zeros(len(self._s_tagset), dtype=bool)
        for sid in info.sids:
            stags = self._tagsets[self._s_tagset[sid]].tags
            if (run is None or self._s_run[sid] == run or stags.get("run_id") == run) and all(
                stags.get(k) == v for k, v in want.items()
            ):
                ok[sid] = True
        return ok

    # ------------------------------------------------------------ new series

    def _series(
        self, kind: str, name: str, tags: dict[str, Any] | None, run_id: str | None, value: Any, argument: str
    ) -> tuple[int, bool]:
        """The series of (name, tags, run), created on first use; ``folded``: it is the overflow series."""
        kinds.check_name(name)
        kinds.check_value(name, value, argument)
        if kind == COUNTER and value < 0:
            raise InvalidArgumentError(argument, f"counter {name!r} only goes up, got {value!r}; use gauge()")
        if run_id is None:
            exp = self._current()
            run_id = exp.id if exp is not None else "global"
        norm = kinds.normalize_tags(tags)
        key = kinds.tags_key(norm)
        with self._lock:
            info = self._names.get(name)
            if info is None:
                info = self._names[name] = MetricInfo(name, kind, self.default_buckets, None)
            elif info.kind != kind:
                raise InvalidArgumentError("name", f"metric {name!r} is a {info.kind}, not a {kind}")
            ts = info.tagsets.get(key)
            folded = False
            if ts is None:
                if info.regular >= self.max_tag_sets:
                    folded = True
                    # one overflow series per metric, labelled with the keys of the first folded tag set
                    ts = info.overflow
                    if ts is None:
                        norm = {k: OVERFLOW for k in norm} or {"tags": OVERFLOW}
                        key = kinds.tags_key(norm)
                        ts = info.tagsets.get(key)
                    if not info.overflow_warned:
                        info.overflow_warned = True
                        log.warning(
                            "crucible_telemetry: metric %r reached max_tag_sets=%d distinct tag sets; new tag sets "
                            "are folded into the %r series (raise it with metrics.configure(max_tag_sets=...))",
                            name,
                            self.max_tag_sets,
                            OVERFLOW,
                        )
                if ts is None:
                    ts = TagSet(len(self._tagsets), name, norm, key, len(info.buckets) if kind == HISTOGRAM else 0)
                    self._tagsets.append(ts)
                    info.tagsets[key] = ts
                    if folded:
                        info.overflow = ts
                    else:
                        info.regular += 1
            skey = (ts.id, run_id)
            sid = self._series_by.get(skey)
            if sid is None:
                sid = len(self._s_tagset)
                self._s_tagset.append(ts.id)
                self._s_run.append(run_id)
                self._s_name.append(name)
                self._s_buf.append(([], []))
                self._series_by[skey] = sid
                info.sids.append(sid)
        self._ensure_thread()
        return sid, folded

    def _new_series(
        self, kind: str, name: str, tags: dict[str, Any] | None, value: Any, argument: str = "value"
    ) -> Appenders:
        """The appenders of a series' value and time lists, cached for the next call when possible."""
        exp = self._current()
        run_id = exp.id if exp is not None else "global"
        sid, folded = self._series(kind, name, tags, run_id, value, argument)
        vals, times = self._s_buf[sid]
        appenders = (vals.append, times.append)
        if folded:
            self.overflowed += 1
            return appenders
        try:
            self._ids[kind][name, tuple(tags.items()) if tags else None, exp] = appenders
        except (TypeError, AttributeError):
            pass  # unhashable tag values: this tag set takes the slow path each time
        return appenders
