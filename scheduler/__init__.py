"""cronwf's service layer: models, manifest loading, the command line and the adapters.

Everything that touches the outside world (files, Kubernetes, Redis, the clock) lives here;
the decisions themselves live in the pure `policies` package.
"""
