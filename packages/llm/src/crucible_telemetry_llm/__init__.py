"""crucible-telemetry llm plugin."""

__all__: list[str] = []
