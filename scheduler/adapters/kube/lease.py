"""Leadership with a ``coordination.k8s.io/v1`` Lease (DESIGN.md §10), client-go's algorithm.

:class:`KubeLease` takes a free or expired Lease with optimistic concurrency on
``resourceVersion`` (a conflict means someone else wrote first), and returns a fencing token:
the Lease's transition count, which only grows. Expiry is judged by the local clock from when
a change of the record was last *observed*, never from the holder's clock (client-go's rule,
immune to clock skew). Renewal fails once none has succeeded for ``renew_deadline``; release
hands the Lease over at once on shutdown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scheduler.adapters.kube.client import error_message

__all__ = ["KubeLease"]

log = logging.getLogger(__name__)


class KubeLease:
    """Leader election with a ``coordination.k8s.io/v1`` Lease (client-go's algorithm).

    ``try_acquire`` takes a free or expired lease and returns a fencing token (the lease's
    transition count, which only grows); ``renew`` keeps it, and fails once no renewal has
    succeeded for ``renew_deadline``; ``release`` hands it over at once on shutdown. Expiry
    is judged from when *we* last saw the record change, never from the holder's clock.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: timedelta = timedelta(seconds=15),
        renew_deadline: timedelta = timedelta(seconds=10),
        retry_period: timedelta = timedelta(seconds=2),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_token: Callable[[int], None] | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > timedelta(0):
            raise ValueError(
                "lease timings must satisfy lease duration > renew deadline > retry period > 0, "
                f"got {lease_duration.total_seconds():g}s > {renew_deadline.total_seconds():g}s "
                f"> {retry_period.total_seconds():g}s"
            )
        self._api = client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._on_token = on_token
        self._observed: tuple[str, str] | None = None
        self._observed_at = datetime.min.replace(tzinfo=UTC)
        self._last_renewed: datetime | None = None
        self.token: int | None = None

    def _read(self) -> Any:
        try:
            return self._api.read_namespaced_lease(self._name, self._namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _spec(self, transitions: int, acquired: datetime | None) -> dict[str, Any]:
        now = self._clock()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration.total_seconds())),
            "acquireTime": _micro(acquired or now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    def _observe(self, lease: Any) -> None:
        spec = lease.spec
        record = (str(spec.holder_identity or ""), str(spec.renew_time or ""))
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()

    def try_acquire(self) -> int | None:
        try:
            return self._try_acquire()
        except ApiException as error:
            if error.status == 409:
                return None  # someone else wrote first
            log.warning("lease %s: %s", self._name, error_message(error))
            return None
        except Exception as error:
            log.warning("lease %s unreachable: %s", self._name, error)
            return None

    def _try_acquire(self) -> int | None:
        lease = self._read()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "spec": self._spec(0, None),
            }
            self._api.create_namespaced_lease(self._namespace, client.V1Lease.model_validate(body))
            return self._won(0)
        self._observe(lease)
        holder = lease.spec.holder_identity or ""
        transitions = int(lease.spec.lease_transitions or 0)
        if holder == self.identity:
            self._replace(lease, transitions, lease.spec.acquire_time)
            return self._won(transitions)
        expired = self._clock() >= self._observed_at + _duration(lease, self.lease_duration)
        if holder and not expired:
            return None
        self._replace(lease, transitions + 1, None)
        return self._won(transitions + 1)

    def _replace(self, lease: Any, transitions: int, acquired: datetime | None) -> None:
        self._write(lease, self._spec(transitions, acquired))

    def _write(self, lease: Any, spec: dict[str, Any]) -> None:
        """Replace ``lease`` (as read, so a concurrent change makes this fail) with ``spec``."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": spec,
        }
        self._api.replace_namespaced_lease(
            self._name, self._namespace, client.V1Lease.model_validate(body)
        )

    def _won(self, token: int) -> int:
        self.token = token
        self._last_renewed = self._clock()
        if self._on_token is not None:
            self._on_token(token)
        return token

    def renew(self) -> bool:
        if self.token is None:
            return False
        try:
            lease = self._read()
            if lease is None or (lease.spec.holder_identity or "") != self.identity:
                self.token = None
                return False
            self._replace(lease, int(lease.spec.lease_transitions or 0), lease.spec.acquire_time)
            self._last_renewed = self._clock()
            return True
        except ApiException as error:
            if error.status == 409:
                return self._within_deadline()
            log.warning("renewing lease %s: %s", self._name, error_message(error))
            return self._within_deadline()
        except Exception as error:
            log.warning("renewing lease %s: %s", self._name, error)
            return self._within_deadline()

    def _within_deadline(self) -> bool:
        if self._last_renewed is None or self._clock() - self._last_renewed > self.renew_deadline:
            self.token = None
            return False
        return True

    def release(self) -> None:
        if self.token is None:
            return
        try:
            lease = self._read()
            if lease is not None and (lease.spec.holder_identity or "") == self.identity:
                spec = {
                    "holderIdentity": "",
                    "leaseDurationSeconds": 1,
                    "leaseTransitions": int(lease.spec.lease_transitions or 0),
                    "renewTime": _micro(self._clock()),
                }
                self._write(lease, spec)
        except Exception as error:
            log.warning("releasing lease %s: %s", self._name, error)
        self.token = None


def _micro(moment: datetime | Any) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(moment)


def _duration(lease: Any, default: timedelta) -> timedelta:
    seconds = lease.spec.lease_duration_seconds
    return timedelta(seconds=int(seconds)) if seconds else default
