"""Resolution and agreement metrics."""
