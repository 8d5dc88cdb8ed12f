"""Telemetry exporters: names (semconv), traces (otel), metrics (prometheus), logs (logging)."""
