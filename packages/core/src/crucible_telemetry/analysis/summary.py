"""``calculate_metrics``: latency, cost, reliability, tokens and training summaries in SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["REQUEST_EVENTS", "calculate_metrics"]

#: Events that count as one request: (stop event, exception event).
REQUEST_EVENTS = (
    ("req_llm.request.stop", "req_llm.request.exception"),
    ("crucible_deployment.inference.stop", "crucible_deployment.inference.exception"),
)
_STOPS = [s for s, _ in REQUEST_EVENTS]
_ERRS = [e for _, e in REQUEST_EVENTS]
_ALL = _STOPS + _ERRS


def _one(hub: Telemetry, sql: str, params: list[Any]) -> dict[str, Any]:
    cur = hub.store.execute(sql, params)
    cols = [d[0] for d in cur.description]
    row = cur.fetchone()
    return dict(zip(cols, row)) if row else {c: None for c in cols}


def _ns_to_ms(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v / 1e6 if isinstance(v, (int, float)) and k != "count" else v) for k, v in d.items()}


def calculate_metrics(hub: Telemetry, exp_id: str) -> dict[str, Any]:
    """Summaries of one experiment; latencies in milliseconds, costs in USD."""
    hub.get_experiment(exp_id)
    reqs = "experiment_id = ? AND event IN (?, ?, ?, ?)"
    p = [exp_id, *_ALL]
    latency = _ns_to_ms(
        _one(
            hub,
            f"""
        SELECT count(duration) AS count, avg(duration) AS mean, quantile_cont(duration, 0.5) AS p50,
               quantile_cont(duration, 0.95) AS p95, quantile_cont(duration, 0.99) AS p99,
               min(duration) AS min, max(duration) AS max
        FROM events WHERE {reqs} AND event NOT LIKE '%.exception' AND isfinite(duration)""",
            p,
        )
    )
    ttft = _ns_to_ms(
        _one(
            hub,
            f"""
        WITH t AS (SELECT measurements['ttft_ns'] AS v FROM events WHERE {reqs})
        SELECT count(v) AS count, avg(v) AS mean, quantile_cont(v, 0.5) AS p50, quantile_cont(v, 0.95) AS p95,
               quantile_cont(v, 0.99) AS p99, min(v) AS min, max(v) AS max FROM t WHERE v IS NOT NULL""",
            p,
        )
    )
    cost = _one(
        hub,
        f"""
        WITH c AS (SELECT measurements['cost_usd'] AS v FROM events WHERE {reqs} AND event NOT LIKE '%.start')
        SELECT sum(v) AS total, count(*) AS requests, count(v) AS priced_requests FROM c""",
        p,
    )
    n = cost.pop("requests") or 0
    total = cost["total"]
    cost["mean_per_request"] = (total / cost["priced_requests"]) if cost["priced_requests"] else None
    cost["cost_per_1m_requests"] = (
        cost["mean_per_request"] * 1_000_000 if cost["mean_per_request"] is not None else None
    )
    cost["unpriced_requests"] = n - cost["priced_requests"]
    rel = _one(
        hub,
        f"""
        SELECT count(*) FILTER (WHERE event IN (?, ?)) AS success_count,
               count(*) FILTER (WHERE event IN (?, ?)) AS error_count
        FROM events WHERE {reqs}""",
        [*_STOPS, *_ERRS, *p],
    )
    total_req = (rel["success_count"] or 0) + (rel["error_count"] or 0)
    rel["total"] = total_req
    rel["success_rate"] = rel["success_count"] / total_req if total_req else None
    rel["error_rate"] = rel["error_count"] / total_req if total_req else None
    rel["sla_99"] = (rel["success_rate"] >= 0.99) if total_req else None
    kinds = hub.store.execute(
        f"""
        SELECT coalesce(json_extract_string(metadata, '$.kind'), 'unknown') AS kind, count(*)
        FROM events WHERE {reqs} AND event LIKE '%.exception' GROUP BY 1 ORDER BY 2 DESC""",
        p,
    ).fetchall()
    rel["errors_by_kind"] = {k: int(c) for k, c in kinds}
    tokens = _one(
        hub,
        f"""
        WITH t AS (SELECT measurements['prompt_tokens'] AS pr, measurements['completion_tokens'] AS co,
                          coalesce(measurements['total_tokens'], measurements['prompt_tokens'] + measurements['completion_tokens']) AS tot,
                          measurements['cached_tokens'] AS ca
                   FROM events WHERE {reqs} AND event NOT LIKE '%.start')
        SELECT sum(pr) AS total_prompt, sum(co) AS total_completion, sum(tot) AS total, sum(ca) AS total_cached,
               avg(pr) AS mean_prompt, avg(co) AS mean_completion, avg(tot) AS mean_total FROM t""",
        p,
    )
    training = _training(hub, exp_id)
    return {
        "experiment_id": exp_id,
        "latency": latency,
        "time_to_first_token": ttft,
        "cost": cost,
        "reliability": rel,
        "tokens": tokens,
        "training": training,
    }


def _training(hub: Telemetry, exp_id: str) -> dict[str, Any]:
    per_epoch = hub.store.execute(
        """
        SELECT epoch, avg(measurements['loss']) AS loss FROM events
        WHERE experiment_id = ? AND event = 'crucible_train.epoch.stop' AND epoch IS NOT NULL
        GROUP BY epoch ORDER BY epoch""",
        [exp_id],
    ).fetchall()
    steps = _one(
        hub,
        """
        SELECT count(*) AS batches, max(global_step) AS global_steps,
               arg_max(measurements['loss'], seq) FILTER (WHERE measurements['loss'] IS NOT NULL) AS last_batch_loss,
               min(measurements['loss']) AS best_batch_loss,
               avg(duration) / 1e6 AS mean_step_ms,
               avg(measurements['samples_per_second']) AS mean_samples_per_second,
               avg(measurements['tokens_per_second']) AS mean_tokens_per_second
        FROM events WHERE experiment_id = ? AND event = 'crucible_train.batch.stop'""",
        [exp_id],
    )
    ckpt = hub.store.execute(
        """SELECT count(*) FROM events WHERE experiment_id = ?
        AND event = 'crucible_train.checkpoint.saved'""",
        [exp_id],
    ).fetchone()
    losses = [loss for _, loss in per_epoch if loss is not None]
    return {
        "epochs": len(per_epoch),
        "final_loss": losses[-1] if losses else steps["last_batch_loss"],
        "best_loss": min(losses) if losses else steps["best_batch_loss"],
        "loss_by_epoch": {int(e): loss for e, loss in per_epoch},
        "batches": steps["batches"],
        "global_steps": steps["global_steps"],
        "mean_step_ms": steps["mean_step_ms"],
        "mean_samples_per_second": steps["mean_samples_per_second"],
        "mean_tokens_per_second": steps["mean_tokens_per_second"],
        "checkpoints": int(ckpt[0]) if ckpt else 0,
    }
