"""One instrumented LLM call: ``start`` at the call, then ``stop`` or ``exception`` exactly once.

Every step is guarded: a telemetry failure is logged once and the user's result (or the user's own
exception) goes through unchanged. ``stop`` is timed at the call's end and, unless content is
captured, built off the caller's thread at the hub's next flush (``Telemetry.emit_deferred``).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crucible_telemetry.events import LLM_EXCEPTION, LLM_STOP

from . import extract
from .extract import get
from .plugin import RETRY
from .privacy import capture_completion, warn_once
from .streams import wrap_stream

if TYPE_CHECKING:
    from .instrumentation import Instrumentation
    from .prices import PriceTable

__all__ = ["Call"]

_Fields = tuple[dict[str, Any], dict[str, Any]]

_now = time.monotonic_ns


def _reasoning(usage: Any) -> Any:
    """Reasoning tokens of a usage (chat: completion details; responses: output details), if any."""
    u = extract.fields(usage)
    out = u.get("completion_tokens_details") or u.get("output_tokens_details")
    return extract.fields(out).get("reasoning_tokens") if out is not None else None


class Call:
    """State of one call: timing, attempts, HTTP status and, for streams, what the chunks said."""

    # Class-level defaults: a call sets only what it sees (cheaper than assigning every field).
    attempts = 0
    status: int | None = None
    response: Any = None
    done = False
    hide_usage = False
    stream_options_before: Any = None  # the call's stream_options before hide_usage added include_usage
    exp: Any = None
    prompt: Any = None
    usage: Any = None
    response_model: str | None = None
    response_id: str | None = None
    reasons: list[str] | None = None
    chunks = 0
    first_ns = 0
    last_ns = 0
    tokens = 0
    gap_max = 0
    chars_out = 0
    parts: list[str] | None = None
    seen: list[tuple[int, Any]] | None = None  # a stream's chunks not read yet (streams.py fills it)

    def __init__(
        self, inst: Instrumentation, hub: Any, op: str, kwargs: dict[str, Any], meta: dict[str, Any], stream: bool
    ) -> None:
        self.inst = inst
        self.hub = hub
        self.op = op
        self.kwargs = kwargs
        self.meta = meta
        self.stream = stream
        self.t0 = _now()

    # ------------------------------------------------------------ http hooks

    def on_attempt(self) -> None:
        """An HTTP attempt leaves (hook); from the second on it is a retry."""
        try:
            self.attempts += 1
            if self.attempts > 1:
                m: dict[str, Any] = {"attempt": self.attempts, "retries": self.attempts - 1}
                if self.status is not None:
                    m["http_status"] = self.status
                md = {
                    "model": self.meta.get("model"),
                    "operation": self.op,
                    "provider": self.meta.get("provider"),
                    "server_address": self.meta.get("server_address"),
                }
                self.hub.emit(RETRY, m, md)
        except Exception as exc:
            warn_once("retry", "could not record a retry", exc)

    def on_response(self, response: Any) -> None:
        """An HTTP answer arrives (hook): its status; the response is kept for its request id on failure."""
        try:
            self.status = response.status_code
            self.response = response
        except Exception as exc:
            warn_once("response-hook", "could not read an HTTP response", exc)

    def _request_id(self) -> str | None:
        """The provider's ``x-request-id`` of the last answer (read on failures only: headers cost)."""
        try:
            rid = self.response.headers.get("x-request-id") if self.response is not None else None
            return rid if isinstance(rid, str) else None
        except Exception:
            return None

    # --------------------------------------------------------------- results

    def finish(self, result: Any) -> Any:
        """The call returned: a stream is wrapped (stop comes when it ends), anything else stops now."""
        try:
            if self.stream:
                wrapped = wrap_stream(result, self)
                if wrapped is not None:
                    return wrapped
                self.stream = False  # a raw response: the user reads the bytes, there are no chunks to time
            self.done = True
            end = _now()  # before reading the answer: that work is ours, not the call's
            table = self.inst.prices()
            self._emit_stop(lambda: self._result_fields(result, end, table))
        except Exception as exc:
            warn_once("finish", "could not record a finished LLM call", exc)
        return result

    def _result_fields(self, result: Any, end: int, table: PriceTable) -> _Fields:
        """The ``stop`` fields of a returned (not streamed) call: usage, model, finish reasons of ``result``."""
        op = self.op
        f = extract.fields(result)
        self.usage = f.get("usage")
        self.response_model = f.get("model")
        self.response_id = f.get("id")
        if op != "embeddings":
            self.reasons = extract.finish_reasons(op, f)
        recognised = (
            self.usage is not None
            or f.get("choices") is not None
            or f.get("output") is not None
            or f.get("data") is not None
        )
        if not recognised:
            status = getattr(result, "status_code", None)  # a raw response (with_raw_response)
            if type(status) is int:
                self.status = status
        text = (
            extract.output_text(op, result)
            if recognised and (self.usage is None or self.inst.capture_content)
            else None
        )
        return self._fields(end, text, recognised, table)

    def fail(self, exc: BaseException) -> None:
        """The call (or its stream) raised: emit ``exception`` with what is known; never raises."""
        if self.done:
            return
        self.done = True
        try:
            end = _now()
            if self.seen:
                self.read_chunks()
            m = self._timing(end)
            if self.attempts:
                m["retries"] = self.attempts - 1
            status = getattr(exc, "status_code", None)
            if type(status) is int:
                self.status = status
            if self.status is not None:
                m["http_status"] = self.status
            md = self.meta
            scrub = self.inst.scrub
            md["kind"] = type(exc).__name__
            md["reason"] = scrub(str(exc))[:4000]
            md["error.type"] = type(exc).__qualname__
            md["stacktrace"] = scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=20)))
            code = get(getattr(exc, "body", None), "code") if isinstance(getattr(exc, "body", None), dict) else None
            if isinstance(code, str):
                md["error_code"] = code
            rid = self._request_id()
            if rid is not None:
                md["request_id"] = rid
            if self.prompt is not None:
                md["prompt"] = self.prompt
            self._bind(md)
            self.hub.emit(LLM_EXCEPTION, m, md)
        except Exception as e:
            warn_once("fail", "could not record a failed LLM call", e)

    # --------------------------------------------------------------- streams

    def read_chunks(self) -> None:
        """Read the chunks the stream kept as ``(arrival ns, chunk)``: ids, usage, token times, finish reasons.

        Runs once at the end (and every ``streams.BATCH`` chunks), not per chunk: the user's loop
        only pays for a timestamp. One straight loop over plain locals, since it reads every chunk.
        A chunk that cannot be read is skipped (warned once); the others still count.
        """
        seen = self.seen
        if not seen:
            return
        self.chunks += len(seen)
        if self.op == "responses":
            for now, event in seen:
                try:
                    self._observe_event(event, now)
                except Exception as exc:
                    warn_once("observe", "could not read a streamed chunk", exc)
            seen.clear()
            return
        chat = self.op == "chat"
        first, last, gap_max, tokens, chars = self.first_ns, self.last_ns, self.gap_max, self.tokens, self.chars_out
        parts, reasons, model = self.parts, self.reasons, self.response_model
        for now, chunk in seen:
            try:
                if type(chunk) is dict:  # OpenAI-compatible clients without models
                    if model is None:
                        model = self.response_model = chunk.get("model")
                        self.response_id = chunk.get("id")
                    usage = chunk.get("usage")
                    choices = chunk.get("choices")
                else:
                    if model is None:
                        model = self.response_model = getattr(chunk, "model", None)
                        self.response_id = getattr(chunk, "id", None)
                    usage = getattr(chunk, "usage", None)
                    choices = getattr(chunk, "choices", None)
                if usage is not None:
                    self.usage = usage
                if not choices:
                    continue
                for c in choices:
                    if type(c) is dict:
                        delta = c.get("delta")
                        text = get(delta, "content") if chat else c.get("text")
                    else:
                        delta = getattr(c, "delta", None)
                        text = getattr(delta, "content", None) if chat else getattr(c, "text", None)
                    if chat and not text and delta is not None:
                        text = self._other_delta(delta)
                    if text:
                        if first == 0:
                            first = now
                        elif now - last > gap_max:
                            gap_max = now - last
                        last = now
                        tokens += 1
                        chars += len(text)
                        if parts is not None:
                            parts.append(text)
                    fr = c.get("finish_reason") if type(c) is dict else getattr(c, "finish_reason", None)
                    if fr is not None:
                        if reasons is None:
                            reasons = self.reasons = []
                        reasons.append(fr)
            except Exception as exc:
                warn_once("observe", "could not read a streamed chunk", exc)
        self.first_ns, self.last_ns, self.gap_max, self.tokens, self.chars_out = first, last, gap_max, tokens, chars
        seen.clear()

    @staticmethod
    def _other_delta(delta: Any) -> str:
        """Refusal text or tool-call arguments: tokens too."""
        text = get(delta, "refusal")
        if text:
            return str(text)
        calls = get(delta, "tool_calls")
        if not calls:
            return ""
        return "".join(a for tc in calls if isinstance(a := get(get(tc, "function"), "arguments"), str))

    def _observe_event(self, event: Any, now: int) -> None:
        kind = get(event, "type")
        if not isinstance(kind, str):
            return
        if kind.endswith(".delta"):
            delta = get(event, "delta")
            if isinstance(delta, str) and delta:
                self._token(now, delta)
        elif kind in ("response.completed", "response.incomplete", "response.failed", "response.created"):
            resp = get(event, "response")
            self.response_model = get(resp, "model") or self.response_model
            self.response_id = get(resp, "id") or self.response_id
            if kind != "response.created":
                self.usage = get(resp, "usage")
                self.reasons = extract.finish_reasons("responses", extract.fields(resp))

    def _token(self, now: int, text: str) -> None:
        if self.first_ns == 0:
            self.first_ns = now
        else:
            gap = now - self.last_ns
            if gap > self.gap_max:
                self.gap_max = gap
        self.last_ns = now
        self.tokens += 1
        self.chars_out += len(text)
        if self.parts is not None:
            self.parts.append(text)

    def end_stream(self, state: str = "completed") -> None:
        """The stream was exhausted (``completed``), ``closed`` early, or dropped unfinished (``abandoned``):
        ``stop`` once, with that ``stream_state``.

        The event takes its time and place now; reading the chunks and filling its fields runs at the
        hub's next flush, off the caller's thread (``Telemetry.emit_deferred``). With content capture
        on, everything runs here, so the user's ``mask`` runs in the caller's thread.
        """
        if self.done:
            return
        self.done = True
        try:
            now = _now()  # before reading the chunks: that work is ours, not the stream's
            table = self.inst.prices()
            self._emit_stop(lambda: self._stream_fields(state, now, table))
        except Exception as exc:
            warn_once("stream-end", "could not record the end of a stream", exc)

    def _stream_fields(self, state: str, now: int, table: PriceTable) -> _Fields:
        """The ``stop`` fields of an ended stream: its chunks read, then what ``_fields`` adds."""
        self.read_chunks()
        end = (self.last_ns or now) if state == "abandoned" else now
        self.meta["stream_state"] = state
        text = "".join(self.parts) if self.parts is not None else None
        return self._fields(end, text, True, table)

    # -------------------------------------------------------------- emitting

    def _timing(self, end: int) -> dict[str, Any]:
        m: dict[str, Any] = {"duration": end - self.t0}
        if self.stream:
            m["chunks"] = self.chunks
            if self.first_ns:
                m["ttft_ns"] = self.first_ns - self.t0
            if self.tokens > 1:
                m["inter_chunk_mean_ns"] = (self.last_ns - self.first_ns) / (self.tokens - 1)
                m["inter_chunk_max_ns"] = self.gap_max
        return m

    def _bind(self, md: dict[str, Any]) -> None:
        """A stream may end in another context: keep its events in the experiment it started in."""
        if self.stream and self.exp is not None and self.hub.current_experiment() is not self.exp:
            md["experiment_id"] = self.exp.id

    def _emit_stop(self, build: Callable[[], _Fields]) -> None:
        """``stop``: its time and place taken now, ``build`` run at the hub's next flush, off the caller's
        thread (``Telemetry.emit_deferred``); with content capture on, built here, where the user's mask runs."""
        if self.inst.capture_content:
            m, md = build()
            self._bind(md)
            self.hub.emit(LLM_STOP, m, md)
        else:
            self.hub.emit_deferred(LLM_STOP, lambda: self._built(build), self.exp)

    @staticmethod
    def _built(build: Callable[[], _Fields]) -> _Fields:
        """Run a deferred ``build``; a failure is warned about as in the caller's thread (the hub drops the event)."""
        try:
            return build()
        except Exception as exc:
            warn_once("stop", "could not record the end of an LLM call", exc)
            raise

    def _fields(self, end: int, text: str | None, recognised: bool, table: PriceTable) -> _Fields:
        """Measurements and metadata of ``stop``: one straight pass (it runs for every call)."""
        inst = self.inst
        m: dict[str, Any] = {"duration": end - self.t0} if not self.stream else self._timing(end)
        md = self.meta  # this call's own dict (the start event got another): filled in place, emitted once
        if self.attempts:
            m["retries"] = self.attempts - 1
        if self.status is not None:
            m["http_status"] = self.status
        rmodel = self.response_model
        model: Any
        if type(rmodel) is str:
            md["response_model"] = md["gen_ai.response.model"] = rmodel
            model = rmodel
        else:
            model = md.get("model")
        if type(self.response_id) is str:
            md["gen_ai.response.id"] = self.response_id
        reasons = self.reasons
        if reasons:
            md["finish_reason"] = reasons[0]
            md["gen_ai.response.finish_reasons"] = reasons
        usage = self.usage
        prompt = completion = total = cached = None
        if usage is not None:
            u = usage if type(usage) is dict else extract.fields(usage)
            prompt = u.get("prompt_tokens")
            if prompt is not None:
                completion = u.get("completion_tokens")
                details = u.get("prompt_tokens_details")
            else:  # the responses API says input/output
                prompt = u.get("input_tokens")
                completion = u.get("output_tokens")
                details = u.get("input_tokens_details")
            total = u.get("total_tokens")
            if details is not None:
                cached = extract.fields(details).get("cached_tokens")
            if type(prompt) is not int or type(completion) not in (int, type(None)):
                prompt, completion, total, cached, _ = extract.usage_numbers(usage)
        if prompt is not None:
            if completion is None and self.op == "embeddings":
                completion = 0
            md["tokens_source"] = "provider"
            found = table.lookup(model)
            if found is None and model != md.get("model"):
                found = table.lookup(md.get("model"))
            if found is not None:
                m["cost_usd"] = found[0].cost(prompt, completion or 0, cached or 0)
                md["cost_source"] = found[1]
            else:
                md["cost_source"] = "unknown"
        elif recognised:
            # No usage from the provider: tokens estimated from the text, never priced.
            out_chars = self.chars_out if self.stream else len(text or "")
            prompt = extract.estimate_tokens(extract.prompt_length(self.op, self.kwargs))
            completion = extract.estimate_tokens(out_chars) if self.op != "embeddings" else 0
            md["tokens_source"] = "estimated"
            md["cost_source"] = "no_usage"
        else:
            md["cost_source"] = "no_usage"
        md["price_table_version"] = table.version
        if prompt is not None:
            m["prompt_tokens"] = md["gen_ai.usage.input_tokens"] = prompt
        if completion is not None:
            m["completion_tokens"] = md["gen_ai.usage.output_tokens"] = completion
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        if total is not None:
            m["total_tokens"] = total
        if cached is not None:
            m["cached_tokens"] = cached
        if usage is not None and self.op != "embeddings":
            reasoning = _reasoning(usage)
            if reasoning:
                m["reasoning_tokens"] = reasoning
        if inst.capture_content:
            if self.prompt is not None:
                md["prompt"] = self.prompt
            if text is not None and self.op != "embeddings":
                md["completion"] = capture_completion(text, inst.mask, inst.scrub)
        return m, md
