"""``crucible watch``: evaluate alert rules over the store, once or every interval."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from ._common import emit_rows, jsonable, open_hub, out_console, write_text

__all__ = ["register"]

#: How long after an instant ``watch`` waits before evaluating it, so the writers have flushed it.
SETTLE_S = 2.0


def _rules(args: argparse.Namespace) -> tuple[list[Any], float]:
    from ..alerts import load_file, nonfinite

    rules, interval = load_file(args.rules) if args.rules else ([nonfinite("loss_nonfinite", "loss")], None)
    return rules, float(args.interval or interval or 10.0)


def _rows(transitions: list[Any]) -> list[dict[str, Any]]:
    from ..alerts.notify import payload

    rows: list[dict[str, Any]] = payload("json", transitions)["alerts"]
    return rows


def _active(watcher: Any) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    out = []
    for a in watcher.active():
        since = a["active_since"]
        out.append({**a, "active_since": None if since is None else datetime.fromtimestamp(since, UTC).isoformat()})
    return out


def _publish(hub: Any, transitions: list[Any], notifiers: list[Any], record: bool) -> None:
    for n in notifiers:
        n.send(transitions)
    if record and transitions:
        from ..alerts.engine import record_transitions

        for exp_id in {t.experiment_id for t in transitions}:  # so the events find their experiment here
            hub.join_experiment(exp_id, bind=False)
        record_transitions(hub, transitions, "watch")
        hub.flush()


def _print(transitions: list[Any], active: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        import json

        write_text(json.dumps(jsonable({"transitions": _rows(transitions), "active": active}), indent=2) + "\n", None)
        return
    cols = ["at", "state", "rule", "experiment_id", "labels", "value", "summary"]
    if transitions:
        emit_rows(cols, [[r[c] for c in cols] for r in _rows(transitions)], fmt, title="transitions")
    acols = ["state", "rule", "experiment_id", "labels", "value", "active_since"]
    if active:
        emit_rows(acols, [[a[c] for c in acols] for a in active], fmt, title="active alerts")
    elif fmt == "table":
        out_console().print("no alert pending or firing")


def _watch(args: argparse.Namespace) -> int:
    from ..alerts import StoreWatcher, Webhook, parse_duration
    from ..alerts.notify import line

    hub = open_hub(args)
    rules, interval = _rules(args)
    since = parse_duration("--since", args.since, allow_zero=False) if args.since else None
    watcher = StoreWatcher(hub, rules, interval=interval, experiments=args.experiment, since=since)
    notifiers = [Webhook(u, args.webhook_format) for u in args.webhook or ()]
    try:
        if args.once:
            transitions = watcher.advance()
            _publish(hub, transitions, notifiers, args.record)
            _print(transitions, _active(watcher), args.format)
            return 0
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        print(f"watching {hub.home} every {interval:g}s with {len(rules)} rule(s) (Ctrl-C to stop)", flush=True)
        while not stop.is_set():
            transitions = watcher.advance(time.time() - SETTLE_S)
            for t in transitions:
                sys.stdout.write(f"{_rows([t])[0]['at']} {line(t)}\n")
            sys.stdout.flush()
            _publish(hub, transitions, notifiers, args.record)
            stop.wait(interval)
        return 0
    finally:
        for n in notifiers:
            n.close(5.0)


def register(add: Any) -> None:
    """Add ``watch``."""
    p = add(
        "watch",
        _watch,
        help="evaluate alert rules over the store (once or continuously)",
        description="Evaluate alert rules (a TOML or JSON file; default: a NaN/inf loss) over the recorded "
        "events, replaying history on the same grid as the recording process, and report or post transitions.",
        epilog="examples:\n  crucible watch --rules alerts.toml --once\n"
        "  crucible watch --rules alerts.toml --interval 30 --webhook https://hooks.slack.com/... "
        "--webhook-format slack",
    )
    p.add_argument("--rules", metavar="FILE", help="rule file (.toml or .json); default: loss NaN/inf in batch.stop")
    p.add_argument("--interval", type=float, help="seconds between evaluations (default: the file's, else 10)")
    p.add_argument("--once", action="store_true", help="evaluate up to now, report and exit")
    p.add_argument("--experiment", action="append", metavar="ID", help="watch only this experiment (repeat)")
    p.add_argument("--since", metavar="DURATION", help="history replayed first, e.g. 24h (default: all)")
    p.add_argument("--webhook", action="append", metavar="URL", help="post firing/resolved alerts here (repeat)")
    p.add_argument("--webhook-format", default="json", choices=["alertmanager", "slack", "discord", "json"])
    p.add_argument("--record", action="store_true", help="record transitions as crucible_alert.* events")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output of --once")
