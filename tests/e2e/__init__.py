"""End-to-end tests against the real Prometheus and Alertmanager (marker `e2e`)."""
