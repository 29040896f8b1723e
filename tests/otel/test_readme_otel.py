"""The LLM section's OpenTelemetry lines run as written (against a real OTLP/HTTP endpoint on 127.0.0.1)."""

from __future__ import annotations

import re
import textwrap

import pytest

import crucible_telemetry as ct
from tests._readme import section

from .test_otel import _calls, _Receiver


def test_readme_otel_lines_run(hub: ct.Telemetry, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```py\n(.*?)```", textwrap.dedent(section("LLM calls").replace("\n  ", "\n")), flags=re.S)
    assert len(blocks) == 1
    receiver = _Receiver()
    try:
        exp_id = _calls(3)
        code = blocks[0].replace("http://127.0.0.1:4318", receiver.url)
        scope = {"ct": ct, "exp": hub.get_experiment(exp_id)}
        exec(compile(code, "README.md", "exec"), scope)
    finally:
        receiver.server.shutdown()
    assert capsys.readouterr().out.startswith("spans: 4 sent, 4 accepted, 0 refused, 0 failed (1 batches, 0 retries)")
    assert len(receiver.spans) == 4
    assert scope["provider"]._active_span_processor._span_processors  # the exporter is in the pipeline
