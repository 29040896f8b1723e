"""FakeOpenAIServer on the wire: raw HTTP (httpx) sees the OpenAI format, SSE, errors and cut streams."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from crucible_telemetry_llm.testing import DEFAULT_REPLY, FakeOpenAIServer

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}


def _sse(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_chat_plain_and_streamed_with_usage_only_when_asked() -> None:
    with FakeOpenAIServer(cached_tokens=2) as server, httpx.Client(base_url=server.url) as http:
        r = http.post("/chat/completions", json=BODY)
        assert r.status_code == 200 and r.headers["x-request-id"].startswith("req_")
        body = r.json()
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == DEFAULT_REPLY
        assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
        assert body["usage"]["completion_tokens"] == len(DEFAULT_REPLY.split())
        plain = _sse(http.post("/chat/completions", json={**BODY, "stream": True}).text)
        assert plain[-1] == "[DONE]" and all("usage" not in json.loads(d) for d in plain[:-1])
        asked = _sse(
            http.post(
                "/chat/completions", json={**BODY, "stream": True, "stream_options": {"include_usage": True}}
            ).text
        )
        last = json.loads(asked[-2])
        assert last["choices"] == [] and last["usage"]["total_tokens"] == 3 + len(DEFAULT_REPLY.split())
        assert "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in asked[:-2]) == DEFAULT_REPLY
    assert server.request_count("/chat/completions") == 3


def test_delays_are_injected() -> None:
    with FakeOpenAIServer(delay=0.1, first_token_delay=0.2) as server, httpx.Client(base_url=server.url) as http:
        t0 = time.perf_counter()
        with http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as r:
            headers_at = time.perf_counter() - t0
            lines = r.iter_lines()
            first_token = None
            for line in lines:
                if line.startswith("data: ") and '"content": "Hello' in line:
                    first_token = time.perf_counter() - t0
                    break
            for _ in lines:
                pass
    assert 0.1 <= headers_at < 0.1 + 0.5
    assert first_token is not None and 0.3 <= first_token < 0.3 + 0.5


def test_errors_retry_after_and_fail_next() -> None:
    with FakeOpenAIServer(retry_after_ms=3) as server, httpx.Client(base_url=server.url) as http:
        server.fail_next(429, times=2)
        statuses = [http.post("/embeddings", json={"model": "m", "input": "x"}).status_code for _ in range(3)]
        assert statuses == [429, 429, 200]
        r = http.post("/chat/completions", json=BODY, headers={"x-fake-fail": "500:1", "x-stainless-retry-count": "0"})
        assert r.status_code == 500 and r.headers["retry-after-ms"] == "3"
        assert r.json()["error"]["type"] == "server_error"
        again = http.post(
            "/chat/completions", json=BODY, headers={"x-fake-fail": "500:1", "x-stainless-retry-count": "1"}
        )
        assert again.status_code == 200  # the retry of the same request succeeds
        keyed = [
            http.post("/completions", json=BODY, headers={"x-fake-fail": "429:1", "x-fake-key": "k"}).status_code
            for _ in range(2)
        ]
        assert keyed == [429, 200]  # no retry-count header: attempts counted per key
        assert http.post("/nowhere", json={}).status_code == 404
        assert http.post("/chat/completions", content=b"{not json").status_code == 400
        assert http.get("/models").json()["data"][0]["id"] == "fake-model"


def test_cut_stream_ends_without_the_chunked_terminator() -> None:
    with FakeOpenAIServer(cut_after=2) as server, httpx.Client(base_url=server.url) as http:
        lines = []
        with (
            pytest.raises(httpx.RemoteProtocolError),
            http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as r,
        ):
            lines.extend(r.iter_lines())
    assert not any("[DONE]" in line for line in lines)


def test_responses_completions_and_embeddings_wire_format() -> None:
    with FakeOpenAIServer(model_suffix="-x") as server, httpx.Client(base_url=server.url) as http:
        resp = http.post("/responses", json={"model": "gpt-4o", "input": "a b"}).json()
        assert resp["object"] == "response" and resp["model"] == "gpt-4o-x" and resp["usage"]["input_tokens"] == 2
        events = [
            json.loads(d)
            for d in _sse(http.post("/responses", json={"model": "gpt-4o", "input": "a", "stream": True}).text)
        ]
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        comp = http.post("/completions", json={"model": "m", "prompt": "a b c"}).json()
        assert comp["object"] == "text_completion" and comp["usage"]["prompt_tokens"] == 3
        emb = http.post("/embeddings", json={"model": "m", "input": ["a", "b c"], "dimensions": 3}).json()
        assert [len(d["embedding"]) for d in emb["data"]] == [3, 3] and emb["usage"]["prompt_tokens"] == 3
        b64 = http.post("/embeddings", json={"model": "m", "input": "a", "encoding_format": "base64"}).json()
        assert isinstance(b64["data"][0]["embedding"], str)
        no_usage = http.post("/chat/completions", json=BODY, headers={"x-fake-usage": "0"}).json()
        assert "usage" not in no_usage


def test_command_line_server_prints_its_url() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "crucible_telemetry_llm.testing"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert httpx.post(url + "/chat/completions", json=BODY, timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
