"""The HTTP server: metrics, health, and the /v1 API."""
