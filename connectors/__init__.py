"""Connectors: one module per sender, each turning a wire payload into events and rejects."""
