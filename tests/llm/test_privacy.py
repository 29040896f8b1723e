"""Privacy: no content unless opted in (mask first); the API key never reaches the store, an export or a log."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import openai
import pyarrow.parquet as pq
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import instrument
from crucible_telemetry_llm.privacy import REDACTED, Scrubber
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import API_KEY, events

SECRET_PROMPT = "my account number is 4111-1111-1111-1111 please help"
CANARY = "canary-token-5d1e"


def _decoded(path: Path) -> str:
    """All text a file holds, decompressed: Parquet tables are read back, other files as bytes."""
    raw = path.read_bytes()
    text = raw.decode("utf-8", "replace")
    if path.suffix == ".parquet":
        text += str(pq.read_table(path).to_pylist())
    return text


def _leaks(root: Path, needle: str) -> list[str]:
    """Files under ``root`` whose raw bytes or decoded content contain ``needle``."""
    hits = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and (needle.encode() in p.read_bytes() or needle in _decoded(p)):
            hits.append(str(p))
    return hits


def _all_calls(client: Any) -> None:
    msgs = [{"role": "user", "content": SECRET_PROMPT}]
    client.chat.completions.create(model="gpt-4o", messages=msgs)
    list(client.chat.completions.create(model="gpt-4o", messages=msgs, stream=True))
    client.responses.create(model="gpt-4o", input=SECRET_PROMPT)
    client.embeddings.create(model="text-embedding-3-small", input=SECRET_PROMPT)
    client.chat.completions.create(model="gpt-4o", messages=msgs, extra_headers={"x-fake-fail": "429:1"})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=msgs, extra_headers={"x-fake-fail": "500:9"})
    with pytest.raises(openai.AuthenticationError):  # the server echoes "Bearer <key>" in its error message
        client.chat.completions.create(model="gpt-4o", messages=msgs, extra_headers={"x-fake-fail": "401:9"})


def test_key_never_in_store_exports_or_logs(
    server: FakeOpenAIServer,
    hub: ct.Telemetry,
    home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.echo_auth_on_401 = True
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    client = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY, max_retries=1))
    from_env = instrument(openai.OpenAI(base_url=server.url, max_retries=1))  # the key from the environment
    with caplog.at_level(logging.DEBUG, logger="crucible_telemetry"), ct.experiment("privacy") as exp:
        _all_calls(client)
        _all_calls(from_env)
        # Positive control: content captured on opt-in is found by the same search.
        instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), capture_content=True).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": CANARY}]
        )
    client.close()
    from_env.close()
    auth = events(exp.id, "request.exception")
    assert any(REDACTED in e["metadata"]["reason"] for e in auth), "the echoed key was scrubbed, not dropped"
    exports = tmp_path / "exports"
    for fmt in ("csv", "jsonl", "parquet"):
        ct.export(exp.id, fmt, exports / f"events.{fmt}")
    ct.flush()
    assert _leaks(home, CANARY) and _leaks(exports, CANARY), "the search finds what is there"
    for root in (home, exports):
        assert _leaks(root, API_KEY) == []
        assert _leaks(root, f"Bearer {API_KEY}") == []
        assert _leaks(root, SECRET_PROMPT) == [], "no content without capture_content"
    assert API_KEY not in caplog.text


def test_capture_content_runs_the_mask_first(client: Any, server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    seen: list[str] = []

    def mask(text: str) -> str:
        seen.append(text)
        return re.sub(r"\d{4}-\d{4}-\d{4}-\d{4}", "[CARD]", text).replace("loopback", "[HOST]")

    masked = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), capture_content=True, mask=mask)
    with ct.experiment("capture") as exp:
        masked.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": SECRET_PROMPT}])
        list(
            masked.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": SECRET_PROMPT}], stream=True
            )
        )
        masked.responses.create(model="gpt-4o", input=SECRET_PROMPT)
    masked.close()
    stops = events(exp.id, "request.stop")
    assert len(stops) == 3
    for s in stops:
        md = s["metadata"]
        assert "4111" not in str(md["prompt"]) and "[CARD]" in str(md["prompt"])
        assert "[HOST]" in md["completion"] and "loopback" not in md["completion"]
    assert stops[0]["metadata"]["prompt"] == [{"role": "user", "content": "my account number is [CARD] please help"}]
    assert SECRET_PROMPT in seen
    # the plain client records no content at all
    with ct.experiment("plain") as plain:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": SECRET_PROMPT}])
    md = events(plain.id, "request.stop")[0]["metadata"]
    assert "prompt" not in md and "completion" not in md


def test_a_failing_mask_records_no_content(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    def bad_mask(text: str) -> str:
        raise ValueError("mask bug")

    c = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), capture_content=True, mask=bad_mask)
    with ct.experiment("bad-mask") as exp:
        r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": SECRET_PROMPT}])
    c.close()
    assert r.choices[0].message.content
    md = events(exp.id, "request.stop")[0]["metadata"]
    assert SECRET_PROMPT not in str(md) and "[mask failed]" in str(md["prompt"])
    from crucible_telemetry_llm.privacy import FAILURES

    assert FAILURES and FAILURES[0][0] == "mask"
    FAILURES.clear()


def test_scrubber_removes_keys_and_bearer_tokens() -> None:
    s = Scrubber(lambda: ["my-rotating-secret-123"])
    assert s("key my-rotating-secret-123 here") == f"key {REDACTED} here"
    assert s("Authorization: Bearer abc.def") == f"Authorization: Bearer {REDACTED}"
    assert s("{'authorization': 'abc'}") == f"{{'authorization': '{REDACTED}'}}"
    assert s("header bearer xyz") == f"header bearer {REDACTED}"
    assert s("got sk-proj-AAAAAAAAAAAA!") == f"got {REDACTED}!"
    assert s("api_key='zzz'") == f"api_key='{REDACTED}'"
    assert s("nothing secret") == "nothing secret"
