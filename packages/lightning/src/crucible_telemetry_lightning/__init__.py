"""crucible-telemetry lightning plugin."""

__all__: list[str] = []
