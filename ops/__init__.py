"""Operational web endpoints: /api/health (and /api/health/live) and /metrics."""
