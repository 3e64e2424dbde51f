"""I/O behind the core's ports: Redis, Kubernetes, local files and runs, the timer."""
