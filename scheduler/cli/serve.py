"""`cronwf serve`: the flags and ``CRONWF_`` variables of the service, and its wiring.

Every flag can also be set with the ``CRONWF_`` variable its help names, read only when
`serve` is parsed (:mod:`scheduler.cli._args`); `--manifests` falls back to the
colon-separated ``CRONWF_MANIFESTS``, read by the handler. Settings that contradict each other
(`--kubernetes` with `--manifests`, lease timings out of order, a renewal not shorter than the
lock) are usage errors, exit 2, before anything starts.

The modes: manifest files with the local executor (embedded; history in this process, or in a
shared Redis with a leader lock there), or `--kubernetes` (CronWorkflows and Workflows in the
cluster, a Lease electing the leader, fenced in Redis when there is one). The handler imports
the runtime, the adapters and the telemetry when it runs, never at the parser's build, and the
defaults only an adapter knows (spawn workers, local run limits) are asked of it when `serve`
is parsed or its help shown: `cronwf lint` loads none of them. A Redis that may evict keys is
a warning, one not reachable yet is retried by the service; a Kubernetes client that cannot be
configured or a port that cannot be bound is an error, exit 1.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from scheduler.cli._args import (
    boolean,
    from_env,
    port,
    positive_count,
    redis_url,
    seconds,
    waiting_count,
)

if TYPE_CHECKING:
    from scheduler.runtime.service import Cluster, Leadership

__all__ = ["add_command"]


def _default_spawn_workers() -> str:
    from scheduler.adapters.kube.client import DEFAULT_SPAWN_WORKERS  # noqa: PLC0415

    return str(DEFAULT_SPAWN_WORKERS)


def _default_max_local_runs() -> str:
    from scheduler.adapters.local.executor import DEFAULT_MAX_LOCAL_RUNS  # noqa: PLC0415

    return str(DEFAULT_MAX_LOCAL_RUNS)


def _default_max_waiting_local_runs() -> str:
    from scheduler.adapters.local.executor import DEFAULT_MAX_WAITING_LOCAL_RUNS  # noqa: PLC0415

    return str(DEFAULT_MAX_WAITING_LOCAL_RUNS)


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "serve",
        help="run the scheduler service",
        description="Run the scheduler: read CronWorkflows from manifest files (reloaded on "
        "change), fire them at their instants, run their Workflows with the local executor "
        "(a trial runner, not a workflow engine), and serve /metrics, /healthz and /readyz. "
        "Every flag can also be set with the CRONWF_ environment variable shown.",
    )
    command.add_argument(
        "--manifests",
        action="append",
        default=None,
        metavar="PATH",
        help="CronWorkflow manifest file or folder; repeatable (CRONWF_MANIFESTS, colon-separated)",
    )
    command.add_argument(
        "--redis-url",
        type=redis_url,
        default=from_env("REDIS_URL"),
        metavar="URL",
        help="Redis for run history and leadership, e.g. redis://localhost:6379/0; several "
        "replicas may share it, one acts (CRONWF_REDIS_URL; default: an in-process store)",
    )
    command.add_argument(
        "--state-dir",
        type=Path,
        default=from_env("STATE_DIR", ".cronwf"),
        metavar="DIR",
        help="where the local executor writes run logs (CRONWF_STATE_DIR; default: .cronwf)",
    )
    command.add_argument(
        "--host",
        default=from_env("HOST", "0.0.0.0"),
        help="address of the HTTP endpoints (CRONWF_HOST; default: 0.0.0.0)",
    )
    command.add_argument(
        "--port",
        type=port,
        default=from_env("PORT", "9090"),
        help="port of /metrics, /healthz and /readyz (CRONWF_PORT; default: 9090)",
    )
    command.add_argument(
        "--identity",
        default=from_env("IDENTITY", _default_identity),
        help="this replica's name in the leader lock (CRONWF_IDENTITY; default: POD_NAME, "
        "else host name and process id)",
    )
    for flag, name, default, text in (
        ("--lock-ttl", "LOCK_TTL", "15s", "how long the leader lock lives unrenewed"),
        ("--renew-interval", "RENEW_INTERVAL", "5s", "how often the leader renews its lock"),
        ("--reload-interval", "RELOAD_INTERVAL", "2s", "how often manifest files are checked"),
        ("--run-timeout", "RUN_TIMEOUT", "10m", "default time limit of a local run"),
        (
            "--late-after",
            "LATE_AFTER",
            "5s",
            "a timer firing later than this is handled as a catch-up",
        ),
        (
            "--lost-after",
            "LOST_AFTER",
            "15m",
            "an active run nobody can observe (its replica died) is lost this long after it "
            "started; a local run never before its own time limit",
        ),
    ):
        command.add_argument(
            flag,
            type=seconds,
            default=from_env(name, default),
            metavar="D",
            help=f"{text} (CRONWF_{name}; default: {default})",
        )
    command.add_argument(
        "--kubernetes",
        action="store_true",
        default=from_env("KUBERNETES", "false", parse=boolean),
        help="read CronWorkflows from the cluster and create Workflows there, electing a "
        "leader with a Lease (CRONWF_KUBERNETES)",
    )
    command.add_argument(
        "--namespace",
        default=from_env("NAMESPACE", "") or "",
        help="Kubernetes mode: the namespace to watch (CRONWF_NAMESPACE; default: all)",
    )
    command.add_argument(
        "--instance-id",
        default=from_env("INSTANCE_ID", "") or "",
        help="Kubernetes mode: handle only CronWorkflows labelled "
        "workflows.argoproj.io/controller-instanceid=ID; without it, only those without "
        "that label, like Argo's controller (CRONWF_INSTANCE_ID)",
    )
    command.add_argument(
        "--workflow-instance-id",
        default=from_env("WORKFLOW_INSTANCE_ID", "") or "",
        help="Kubernetes mode: the instance id of the Argo workflow controller that runs the "
        "spawned Workflows, written as their controller-instanceid label (CRONWF_WORKFLOW_"
        "INSTANCE_ID; default: none, for an Argo controller without an instance id)",
    )
    command.add_argument(
        "--kubeconfig",
        default=from_env("KUBECONFIG"),
        help="Kubernetes mode: kubeconfig file (CRONWF_KUBECONFIG; default: in-cluster "
        "configuration, else ~/.kube/config)",
    )
    command.add_argument(
        "--lease-namespace",
        default=from_env("LEASE_NAMESPACE", lambda: os.environ.get("POD_NAMESPACE") or "default"),
        help="Kubernetes mode: namespace of the leader Lease (CRONWF_LEASE_NAMESPACE; "
        "default: POD_NAMESPACE, else default)",
    )
    command.add_argument(
        "--lease-name",
        default=from_env("LEASE_NAME", "") or "",
        help="Kubernetes mode: name of the leader Lease (CRONWF_LEASE_NAME; default: cronwf, "
        "or cronwf-<instance-id>)",
    )
    for flag, name, default, text in (
        ("--lease-duration", "LEASE_DURATION", "15s", "how long a Lease lives unrenewed"),
        (
            "--renew-deadline",
            "RENEW_DEADLINE",
            "10s",
            "the leader gives up after failing to renew for this long",
        ),
        ("--retry-period", "RETRY_PERIOD", "2s", "how often the Lease is renewed or tried"),
    ):
        command.add_argument(
            flag,
            type=seconds,
            default=from_env(name, default),
            metavar="D",
            help=f"Kubernetes mode: {text} (CRONWF_{name}; default: {default})",
        )
    command.add_argument(
        "--workers",
        type=positive_count,
        default=from_env("WORKERS", "1") or "1",
        help="threads deciding due instants, each a batch at a time; more only help when "
        "Redis answers slowly (CRONWF_WORKERS; default: 1)",
    )
    command.add_argument(
        "--spawn-workers",
        type=positive_count,
        default=from_env("SPAWN_WORKERS", _default_spawn_workers),
        help="Kubernetes mode: Workflows created at a time when several are due together "
        "(CRONWF_SPAWN_WORKERS; default: %(default)s)",
    )
    command.add_argument(
        "--max-local-runs",
        type=positive_count,
        default=from_env("MAX_LOCAL_RUNS", _default_max_local_runs),
        metavar="N",
        help="embedded mode: local runs executing at once; more wait for a slot "
        "(CRONWF_MAX_LOCAL_RUNS; default: %(default)s)",
    )
    command.add_argument(
        "--max-waiting-local-runs",
        type=waiting_count,
        default=from_env("MAX_WAITING_LOCAL_RUNS", _default_max_waiting_local_runs),
        metavar="N",
        help="embedded mode: spawned runs that may wait for a slot; a run spawned beyond ends "
        "Error at once (CRONWF_MAX_WAITING_LOCAL_RUNS; default: %(default)s)",
    )
    command.add_argument(
        "--metrics-without-name",
        action="store_true",
        default=from_env("METRICS_WITHOUT_NAME", "false", parse=boolean),
        help="drop the name label from per-CronWorkflow metrics, for fleets of tens of "
        "thousands (CRONWF_METRICS_WITHOUT_NAME)",
    )
    command.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=from_env("LOG_FORMAT", "text"),
        help="log lines as text or JSON (CRONWF_LOG_FORMAT; default: text)",
    )
    command.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=from_env("LOG_LEVEL", "info", parse=str.lower),
        help="(CRONWF_LOG_LEVEL; default: info)",
    )
    command.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # The service and what it is wired from, imported only when it is to run.
    from scheduler.adapters.kube.client import api_client  # noqa: PLC0415
    from scheduler.adapters.kube.lease import KubeLease  # noqa: PLC0415
    from scheduler.adapters.kube.runs import WorkflowWatcher  # noqa: PLC0415
    from scheduler.adapters.kube.sink import KubeSink  # noqa: PLC0415
    from scheduler.adapters.kube.source import KubeSource  # noqa: PLC0415
    from scheduler.adapters.kube.status import KubeStatus  # noqa: PLC0415
    from scheduler.adapters.redis.history import (  # noqa: PLC0415
        RedisHistory,
        RedisRunReports,
        check_eviction_policy,
        connect,
    )
    from scheduler.adapters.redis.leadership import PublishedFence, RedisLeaderLock  # noqa: PLC0415
    from scheduler.core.engine import StoreUnavailable  # noqa: PLC0415
    from scheduler.runtime.service import (  # noqa: PLC0415
        Cluster,
        FencedLease,
        Service,
        ServiceConfig,
        SoleLeader,
        utc_now,
    )
    from scheduler.telemetry.logs import configure_logging  # noqa: PLC0415

    configure_logging(args.log_format, args.log_level)
    manifests = args.manifests or [
        p for p in os.environ.get("CRONWF_MANIFESTS", "").split(":") if p
    ]
    if args.kubernetes and manifests:
        err.write(
            "cronwf serve: error: --kubernetes reads CronWorkflows from the cluster: "
            "drop --manifests\n"
        )
        return 2
    if not args.kubernetes and not manifests:
        err.write(
            "cronwf serve: error: give --manifests DIR (or CRONWF_MANIFESTS), or --kubernetes\n"
        )
        return 2
    missing: list[str] = []
    for path in manifests:
        try:
            os.stat(path)
        except FileNotFoundError:
            missing.append(path)
        except OSError as error:
            err.write(
                f"cronwf serve: error: cannot read {path}: {error.strerror}: the service needs "
                "read and search (x) permission on it and on every folder above it\n"
            )
            return 2
    if missing:
        err.write(f"cronwf serve: error: no such file or folder: {', '.join(missing)}\n")
        return 2
    problem = _timing_problem(args)
    if problem:
        err.write(f"cronwf serve: error: {problem}\n")
        return 2
    config = ServiceConfig(
        manifests=tuple(Path(p) for p in manifests),
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        reload_interval=args.reload_interval,
        renew_interval=args.retry_period if args.kubernetes else args.renew_interval,
        run_timeout=args.run_timeout,
        late_after=args.late_after,
        lost_after=args.lost_after,
        workers=args.workers,
        metrics_with_name=not args.metrics_without_name,
        max_local_runs=args.max_local_runs,
        max_waiting_local_runs=args.max_waiting_local_runs,
    )
    logger = logging.getLogger("cronwf")
    client = None
    if args.redis_url:
        client = connect(args.redis_url)
        try:
            warning = check_eviction_policy(client)
        except StoreUnavailable as error:
            warning = None
            logger.warning("Redis is not reachable yet: %s", error)
        if warning:
            logger.warning("%s", warning)
    elif args.kubernetes:
        logger.warning(
            "no --redis-url: history is kept in this process only; run a single replica "
            "(history is re-seeded from CronWorkflow status after a restart)"
        )
    leadership: Leadership
    cluster: Cluster | None = None
    if args.kubernetes:
        try:
            api = api_client(args.kubeconfig, args.spawn_workers)
        except Exception as error:
            err.write(f"cronwf serve: error: cannot configure the Kubernetes client: {error}\n")
            return 1
        fence = PublishedFence(client, args.identity) if client is not None else None
        store = (
            RedisHistory(client, fence=fence) if client is not None else RedisHistory.in_process()
        )
        lease_name = args.lease_name or (
            f"cronwf-{args.instance_id}" if args.instance_id else "cronwf"
        )
        lease = KubeLease(
            api,
            args.lease_namespace,
            lease_name,
            args.identity,
            lease_duration=datetime.timedelta(seconds=args.lease_duration),
            renew_deadline=datetime.timedelta(seconds=args.renew_deadline),
            retry_period=datetime.timedelta(seconds=args.retry_period),
        )
        leadership = FencedLease(lease, fence)
        cluster = Cluster(
            source=KubeSource(api, args.namespace, args.instance_id),
            sink=KubeSink(api, args.workflow_instance_id, args.spawn_workers),
            status=KubeStatus(api, utc_now),
            watcher=lambda finished, deleted, running: WorkflowWatcher(
                api, args.namespace, args.workflow_instance_id, finished, deleted, running, utc_now
            ),
        )
    elif client is not None:
        lock = RedisLeaderLock(client, args.identity, ttl=datetime.timedelta(seconds=args.lock_ttl))
        store = RedisHistory(client, fence=lock)
        leadership = lock
    else:
        store = RedisHistory.in_process()
        leadership = SoleLeader()
    try:
        # Kubernetes mode learns every run's end from the Workflows themselves; file mode with
        # a shared Redis needs replicas to hand over what only they saw.
        reports = RedisRunReports(client) if client is not None and cluster is None else None
        service = Service(config, store, leadership, cluster=cluster, reports=reports)
        service.start()
    except OSError as error:
        err.write(f"cronwf serve: error: cannot serve on {args.host}:{args.port}: {error}\n")
        return 1
    service.run_until_signalled()
    return 0


def _timing_problem(args: argparse.Namespace) -> str | None:
    if args.kubernetes:
        if not args.lease_duration > args.renew_deadline > args.retry_period:
            return (
                "lease timings must satisfy --lease-duration > --renew-deadline > "
                f"--retry-period, got {args.lease_duration:g}s, {args.renew_deadline:g}s, "
                f"{args.retry_period:g}s"
            )
        return None
    if args.renew_interval >= args.lock_ttl:
        return (
            "--renew-interval must be shorter than --lock-ttl, or the lock lapses between renewals"
        )
    return None
