"""``FakeOpenAIServer``: a real OpenAI-compatible HTTP server on 127.0.0.1 for tests, demos and benches.

It speaks the OpenAI wire format (chat completions plain and SSE-streamed, ``/v1/responses``,
``/v1/embeddings``, ``/v1/completions``), so the real ``openai`` client talks to it unchanged;
delays, 429/500 answers and streams cut mid-way are injectable, server-wide or per request
through ``x-fake-*`` headers (``extra_headers=...`` in the client call).
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer"]

DEFAULT_REPLY = "Hello from the fake server on loopback, no network and no key involved."

_ids = itertools.count(1)


def _pause(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def count_tokens(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word (at least one)."""
    return max(1, len(text.split()))


def _texts(value: Any) -> list[str]:
    """Every string inside a prompt: messages, content parts, responses input items."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        out: list[str] = []
        for key in ("content", "text", "input"):
            if key in value:
                out.extend(_texts(value[key]))
        return out
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, fake: FakeOpenAIServer, addr: tuple[str, int]) -> None:
        self.fake = fake
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal here; anything else is printed as usual."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Cut(Exception):
    """The stream is cut: the connection is dropped without ending the chunked body."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test server logs nothing."""

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    # ----------------------------------------------------------------- plumbing

    def _opt(self, header: str, default: float) -> float:
        v = self.headers.get(header)
        try:
            return float(v) if v is not None else default
        except ValueError:
            return default

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"x-request-id: req_{next(_ids)}",
        ]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def _start_sse(self) -> None:
        head = [
            "HTTP/1.1 200 OK",
            "Content-Type: text/event-stream",
            "Transfer-Encoding: chunked",
            "Cache-Control: no-cache",
            f"x-request-id: req_{next(_ids)}",
        ]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode())

    def _sse(self, data: Any, event: str | None = None) -> None:
        text = (
            (f"event: {event}\n" if event else "")
            + "data: "
            + (data if isinstance(data, str) else json.dumps(data))
            + "\n\n"
        )
        raw = text.encode()
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")

    def _end_sse(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Cut

    # ------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(
                200,
                {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]},
            )
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        fake._count(path, body)
        if fake.reject_stream_options and "stream_options" in body:
            # a strict OpenAI-compatible server (or an older Azure api-version) refuses what it does not know
            self._send_json(
                400,
                {
                    "error": {
                        "message": "Unrecognized request argument supplied: stream_options",
                        "type": "invalid_request_error",
                        "param": "stream_options",
                        "code": None,
                    }
                },
            )
            return
        status = fake._failure(
            self.headers.get("x-fake-fail"),
            self.headers.get("x-stainless-retry-count"),
            self.headers.get("Idempotency-Key") or self.headers.get("x-fake-key"),
        )
        _pause(self._opt("x-fake-delay", fake.delay))
        if status:
            self._error(status)
            return
        try:
            if path.endswith("/chat/completions"):
                self._chat(body)
            elif path.endswith("/completions"):
                self._completions(body)
            elif path.endswith("/responses"):
                self._responses(body)
            elif path.endswith("/embeddings"):
                self._embeddings(body)
            else:
                self._send_json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
        except _Cut:
            return

    def _error(self, status: int) -> None:
        fake = self.server.fake
        message = {429: "Rate limit reached (fake).", 500: "The server had an error (fake)."}.get(
            status, f"Error {status} (fake)."
        )
        if status == 401 and fake.echo_auth_on_401:
            # A careless provider that echoes the credential back: the instrumentation must scrub it.
            message = f"Incorrect API key provided: {self.headers.get('Authorization', '')}"
        kind = {429: "rate_limit_error", 401: "invalid_request_error"}.get(status, "server_error")
        self._send_json(
            status,
            {"error": {"message": message, "type": kind, "code": None}},
            {"retry-after-ms": str(int(fake.retry_after_ms))},
        )

    # ---------------------------------------------------------------- behaviour

    def _reply_words(self) -> list[str]:
        text = self.headers.get("x-fake-reply") or self.server.fake.reply
        words = text.split()
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]

    def _usage_on(self) -> bool:
        v = self.headers.get("x-fake-usage")
        return self.server.fake.usage if v is None else v not in ("0", "false")

    def _model(self, body: dict[str, Any]) -> str:
        return str(body.get("model") or "fake-model") + self.server.fake.model_suffix

    def _chat_usage(self, prompt: int, completion: int) -> dict[str, Any]:
        cached = min(prompt, int(self._opt("x-fake-cached-tokens", self.server.fake.cached_tokens)))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _stream_pacing(self) -> tuple[float, float, int]:
        fake = self.server.fake
        cut = int(self._opt("x-fake-cut-after", -1 if fake.cut_after is None else fake.cut_after))
        return (
            self._opt("x-fake-first-token-delay", fake.first_token_delay),
            self._opt("x-fake-chunk-delay", fake.chunk_delay),
            cut,
        )

    def _chat(self, body: dict[str, Any]) -> None:
        words = self._reply_words()
        prompt = count_tokens(" ".join(_texts(body.get("messages", []))))
        model, cid, created = self._model(body), f"chatcmpl-{next(_ids)}", int(time.time())
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
            words, finish = words[:max_tokens], "length"
        usage = self._chat_usage(prompt, len(words))
        if not body.get("stream"):
            msg = {"role": "assistant", "content": "".join(words), "refusal": None}
            payload = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
                "system_fingerprint": "fp_fake",
            }
            if self._usage_on():
                payload["usage"] = usage
            self._send_json(200, payload)
            return
        first, gap, cut = self._stream_pacing()
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and self._usage_on()
        self._start_sse()
        self._sse(
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                ],
            }
        )
        for i, w in enumerate(words):
            if i == cut:
                self._cut()
            _pause(first if i == 0 else gap)
            self._sse(
                {**base, "choices": [{"index": 0, "delta": {"content": w}, "logprobs": None, "finish_reason": None}]}
            )
        self._sse({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]})
        if include_usage:
            self._sse({**base, "choices": [], "usage": usage})
        self._sse("[DONE]")
        self._end_sse()

    def _completions(self, body: dict[str, Any]) -> None:
        words = self._reply_words()
        prompt = count_tokens(" ".join(_texts(body.get("prompt", ""))))
        model, cid, created = self._model(body), f"cmpl-{next(_ids)}", int(time.time())
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
        base = {"id": cid, "object": "text_completion", "created": created, "model": model}
        if not body.get("stream"):
            payload = {
                **base,
                "choices": [{"text": "".join(words), "index": 0, "logprobs": None, "finish_reason": "stop"}],
            }
            if self._usage_on():
                payload["usage"] = usage
            self._send_json(200, payload)
            return
        first, gap, cut = self._stream_pacing()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and self._usage_on()
        self._start_sse()
        for i, w in enumerate(words):
            if i == cut:
                self._cut()
            _pause(first if i == 0 else gap)
            last = i == len(words) - 1
            self._sse(
                {
                    **base,
                    "choices": [{"text": w, "index": 0, "logprobs": None, "finish_reason": "stop" if last else None}],
                }
            )
        if include_usage:
            self._sse({**base, "choices": [], "usage": usage})
        self._sse("[DONE]")
        self._end_sse()

    def _response_obj(
        self, body: dict[str, Any], rid: str, text: str, status: str, usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        output = (
            []
            if status != "completed"
            else [
                {
                    "type": "message",
                    "id": f"msg_{rid}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                }
            ]
        )
        return {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": self._model(body),
            "output": output,
            "usage": usage,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "parallel_tool_calls": True,
            "temperature": body.get("temperature", 1.0),
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
        }

    def _responses(self, body: dict[str, Any]) -> None:
        words = self._reply_words()
        prompt = count_tokens(" ".join(_texts(body.get("input", "")) + _texts(body.get("instructions") or "")))
        cached = min(prompt, int(self._opt("x-fake-cached-tokens", self.server.fake.cached_tokens)))
        usage = (
            {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": len(words),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + len(words),
            }
            if self._usage_on()
            else None
        )
        rid = f"resp_{next(_ids)}"
        if not body.get("stream"):
            self._send_json(200, self._response_obj(body, rid, "".join(words), "completed", usage))
            return
        first, gap, cut = self._stream_pacing()
        seq = itertools.count()
        self._start_sse()
        self._sse(
            {
                "type": "response.created",
                "sequence_number": next(seq),
                "response": self._response_obj(body, rid, "", "in_progress", None),
            },
            "response.created",
        )
        # The item and its text part are announced before any delta, as the real API does
        # (``client.responses.stream()`` builds its snapshot from them).
        item = {"type": "message", "id": f"msg_{rid}", "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": f"msg_{rid}", "output_index": 0, "content_index": 0}
        self._event("response.output_item.added", next(seq), output_index=0, item=item)
        self._event("response.content_part.added", next(seq), **where, part=part)
        for i, w in enumerate(words):
            if i == cut:
                self._cut()
            _pause(first if i == 0 else gap)
            self._event("response.output_text.delta", next(seq), **where, delta=w, logprobs=[])
        text = "".join(words)
        self._event("response.output_text.done", next(seq), **where, text=text, logprobs=[])
        self._event("response.content_part.done", next(seq), **where, part={**part, "text": text})
        done = {**item, "status": "completed", "content": [{**part, "text": text}]}
        self._event("response.output_item.done", next(seq), output_index=0, item=done)
        self._sse(
            {
                "type": "response.completed",
                "sequence_number": next(seq),
                "response": self._response_obj(body, rid, "".join(words), "completed", usage),
            },
            "response.completed",
        )
        self._end_sse()

    def _event(self, kind: str, seq: int, **fields: Any) -> None:
        """One Responses stream event: ``{"type": kind, "sequence_number": seq, **fields}``."""
        self._sse({"type": kind, "sequence_number": seq, **fields}, kind)

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input", "")
        items = (
            [inputs]
            if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int))
            else list(inputs)
        )
        dims = int(body.get("dimensions") or 8)
        data, prompt = [], 0
        for i, item in enumerate(items):
            prompt += len(item) if isinstance(item, list) else count_tokens(item)
            vec = [((i + 1) * (j + 1)) % 7 / 7.0 for j in range(dims)]
            emb: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
                if body.get("encoding_format") == "base64"
                else vec
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        payload: dict[str, Any] = {"object": "list", "data": data, "model": self._model(body)}
        if self._usage_on():
            payload["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
        self._send_json(200, payload)


class FakeOpenAIServer:
    """An OpenAI-compatible server on ``127.0.0.1`` (a free port), served from a background thread.

    Per-request ``x-fake-*`` headers override the server-wide settings: ``x-fake-delay``,
    ``x-fake-first-token-delay``, ``x-fake-chunk-delay`` (seconds), ``x-fake-cut-after`` (chunks),
    ``x-fake-fail`` (``"429"`` or ``"500:2"``: fail the first N attempts of this request, retries
    included, by the openai client's ``x-stainless-retry-count``), ``x-fake-reply``, ``x-fake-usage: 0``,
    ``x-fake-cached-tokens``.

    Args:
        delay: seconds before any answer (headers included).
        first_token_delay: seconds between the stream's headers (and role chunk) and its first token.
        chunk_delay: seconds between later chunks.
        reply: the text answered; its words are the completion tokens (one chunk per word).
        usage: whether answers carry ``usage`` (off: a provider that reports no tokens).
        cached_tokens: prompt tokens reported as cached.
        model_suffix: appended to the requested model in answers (e.g. ``"-2024-07-18"``).
        cut_after: cut every stream after this many content chunks (None: never).
        retry_after_ms: ``retry-after-ms`` header on 429/500 answers (small, so retries are fast).
        echo_auth_on_401: a 401 answer echoes the ``Authorization`` header (to test scrubbing).
        reject_stream_options: answer 400 ("Unrecognized request argument supplied: stream_options")
            to any request whose body has ``stream_options``, as strict compatible servers do.

    ``bodies`` holds the JSON bodies received (the last 1,000), to check what a client sent.

    Example:
        >>> with FakeOpenAIServer() as server:          # doctest: +SKIP
        ...     client = OpenAI(base_url=server.url, api_key="sk-test")
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        first_token_delay: float = 0.0,
        chunk_delay: float = 0.0,
        reply: str = DEFAULT_REPLY,
        usage: bool = True,
        cached_tokens: int = 0,
        model_suffix: str = "",
        cut_after: int | None = None,
        retry_after_ms: float = 1.0,
        echo_auth_on_401: bool = False,
        reject_stream_options: bool = False,
    ) -> None:
        self.delay = delay
        self.first_token_delay = first_token_delay
        self.chunk_delay = chunk_delay
        self.reply = reply
        self.usage = usage
        self.cached_tokens = cached_tokens
        self.model_suffix = model_suffix
        self.cut_after = cut_after
        self.retry_after_ms = retry_after_ms
        self.echo_auth_on_401 = echo_auth_on_401
        self.reject_stream_options = reject_stream_options
        self.bodies: list[Any] = []
        self._lock = threading.Lock()
        self._fail_queue: list[int] = []
        self._attempts: dict[str, int] = {}
        self._conns: set[socket.socket] = set()
        self.requests: dict[str, int] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- control

    def start(self) -> FakeOpenAIServer:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._httpd is None:
            self._httpd = _Server(self, ("127.0.0.1", 0))
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The ``base_url`` for an OpenAI client: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, status: int = 429, times: int = 1) -> None:
        """Answer the next ``times`` requests (whatever they are) with ``status``."""
        with self._lock:
            self._fail_queue.extend([int(status)] * int(times))

    def request_count(self, path_suffix: str = "") -> int:
        """Requests received whose path ends with ``path_suffix`` (all when empty)."""
        with self._lock:
            return sum(n for p, n in self.requests.items() if p.endswith(path_suffix))

    # ---------------------------------------------------------------- internals

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _count(self, path: str, body: Any = None) -> None:
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.bodies.append(body)
            if len(self.bodies) > 1000:
                del self.bodies[:-1000]

    def _failure(self, header: str | None, retry_count: str | None, key: str | None) -> int:
        """Status to fail this attempt with (0: answer normally).

        ``x-fake-fail: STATUS[:N]`` fails the first N attempts of one request: the attempt number is
        the openai client's ``x-stainless-retry-count`` header (stateless, safe under concurrency),
        else attempts are counted per ``Idempotency-Key`` / ``x-fake-key``.
        """
        with self._lock:
            if self._fail_queue:
                return self._fail_queue.pop(0)
            if not header:
                return 0
            status, _, times = header.partition(":")
            n = int(times or 1)
            if retry_count is not None and retry_count.isdigit():
                return int(status) if int(retry_count) < n else 0
            k = key or "-"
            seen = self._attempts.get(k, 0)
            self._attempts[k] = seen + 1
            return int(status) if seen < n else 0


def main(argv: list[str] | None = None) -> None:
    """``python -m crucible_telemetry_llm.testing``: serve until interrupted; prints the base URL."""
    import argparse

    ap = argparse.ArgumentParser(description="An OpenAI-compatible fake server on 127.0.0.1.")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    ap.add_argument("--first-token-delay", type=float, default=0.0, help="seconds before a stream's first token")
    args = ap.parse_args(argv)
    server = FakeOpenAIServer(delay=args.delay, first_token_delay=args.first_token_delay).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
