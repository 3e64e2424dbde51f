"""What the service tells operators: metrics, logs, HTTP."""
