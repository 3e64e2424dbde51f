"""Kubernetes mode: the only package that talks to the API server (DESIGN.md §7, §9, §10).

Built like a client-go controller, with the official client; each module one role:

    client   the API client, the error rule (transient or the user's) and the informer (list,
             watch from the last resourceVersion, relist on 410 Gone, backoff), shared by all
    source   KubeSource: the CronWorkflows of the cluster as snapshots, like the file source
    sink     KubeSink: creating the Workflow of an instant, terminating runs
    runs     WorkflowWatcher: finished, running and deleted runs; the history limits
    status   KubeStatus: the CronWorkflow's status and state annotations, and Events
    lease    KubeLease: leadership with a Lease, and its fencing token

Import from the module itself; this package re-exports nothing.
"""
