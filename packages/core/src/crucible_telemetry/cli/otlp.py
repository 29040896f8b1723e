"""``crucible export-otlp ID... --endpoint URL``: runs' LLM calls to an OTLP/HTTP receiver as GenAI spans."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from ._common import open_hub, resolve_ids

__all__ = ["register"]


def _headers(pairs: list[str]) -> dict[str, str]:
    from ..errors import InvalidArgumentError

    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise InvalidArgumentError("header", f"--header takes KEY=VALUE, got {p!r}")
        out[k.strip()] = v.strip()
    return out


def _export(args: argparse.Namespace) -> int:
    from ..otel.export import export_otlp

    hub = open_hub(args)
    stop = threading.Event()
    try:
        ids = resolve_ids(hub, args.ids)
        try:
            result = export_otlp(
                ids,
                args.endpoint,
                hub=hub,
                headers=_headers(args.header),
                metrics=args.metrics,
                follow=args.follow,
                poll=args.poll,
                stop=stop,
            )
        except KeyboardInterrupt:  # --follow ended by Ctrl-C: what was counted so far is lost only on screen
            stop.set()
            return 130
    finally:
        hub.close()
    print(result)
    for e in result.errors[:10]:
        sys.stderr.write(f"crucible export-otlp: {e}\n")
    return 1 if result.sent and not result.accepted else 0


def register(add: Any) -> None:
    """Add ``export-otlp``."""
    p = add(
        "export-otlp",
        _export,
        help="send runs' LLM calls to an OTLP/HTTP receiver as GenAI spans and client metrics",
        description=(
            "Send each req_llm.request.stop/.exception of the runs as an OTLP CLIENT span (ids derived from the\n"
            "event, so sending twice stores nothing twice) and the gen_ai.client.* histograms; prints what was\n"
            "sent, accepted and refused."
        ),
        epilog=(
            "examples:\n  crucible export-otlp ID --endpoint http://127.0.0.1:4318\n"
            "  crucible export-otlp ID --endpoint http://127.0.0.1:5000 --header x-mlflow-experiment-id=1 --follow"
        ),
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="runs to export")
    p.add_argument("--endpoint", required=True, metavar="URL", help="receiver's OTLP/HTTP base URL (/v1/traces added)")
    p.add_argument("--header", action="append", default=[], metavar="K=V", help="HTTP header (repeatable)")
    p.add_argument("--follow", action="store_true", help="keep exporting new calls until the runs end (or Ctrl-C)")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between looks with --follow")
    p.add_argument("--no-metrics", dest="metrics", action="store_false", help="spans only, no gen_ai.client.* metrics")
