"""crucible-telemetry hf plugin."""

__all__: list[str] = []
