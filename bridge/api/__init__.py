"""HTTP API: webhooks in, incidents and status out."""
