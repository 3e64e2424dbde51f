"""cronwf's service layer: everything that touches the outside world; the decisions themselves
live in the pure `policies` package.

Where things are (each folder a layer; a folder imports only those below it, which
`make lint` checks):

    cli/         the command line: `cronwf lint|next|simulate|serve|history`
    runtime/     the service that conducts the rest: `service` (catalog, timer, leadership,
                 recovery, the loop)
    adapters/    I/O behind the core's ports: `redis/` (history, leadership), `kube/`
                 (informers, sink, status, Lease), `local/` (manifest files, the local
                 executor, its command lines and its run supervisor), `timer` (APScheduler)
    telemetry/   `metrics` (Prometheus), `logs`, `http` (`/metrics`, `/healthz`, `/readyz`)
    manifests/   reading CronWorkflows: `models` (pydantic), `loading` (files, folders,
                 documents), `yaml_loader` (the YAML node builder and its limits), `naming`
                 (Kubernetes' rules), `workflow_types` (Argo's Workflow types, as data),
                 `workflow_schema` (checking a `workflowSpec` against them), `suggest` ("did
                 you mean")
    core/        `engine` (decisions applied through ports), `events` (values every adapter
                 shares), `memory` (the reference history store), `simulate`
"""
