"""Tests of ``crucible_telemetry.importers``: runs written by the real libraries, then imported."""
