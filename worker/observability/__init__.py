"""Metrics, health state, structured logging and the HTTP server for /metrics, /healthz, /readyz."""
