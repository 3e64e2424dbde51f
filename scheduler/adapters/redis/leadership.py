"""Leadership with a Redis lock and a fencing token (DESIGN §9), outside Kubernetes.

Two keys (default prefix ``cronwf``)::

    cronwf:leader         STRING  "<token>:<nonce>:<identity>"   TTL 15 s, renewed by the leader
    cronwf:leader:fence   STRING  the last token handed out (INCR; never reset, never expires)

The fence value is unique per acquisition, even after Redis lost its data: the counter then
starts again at 1, and a replica could win the very ``<token>:<identity>`` it held before the
loss and trust what it remembered from then. The random ``nonce`` (64 bits, new at each
acquisition) makes that impossible; the token keeps values ordered for people reading them.

* :meth:`RedisLeaderLock.try_acquire`: one script; when nobody holds the lock it takes the next
  token (``INCR``) and sets the lock (``SET NX PX``). Tokens are taken only by acquisitions,
  and strictly increase. Another identity takes over once the TTL lapsed.
* :meth:`RedisLeaderLock.renew`: extends the TTL only if the lock still holds our value (like
  redbeat's ``replace_ttl``); :meth:`RedisLeaderLock.release`: deletes it only if ours.

A lock alone cannot stop a leader that paused (GC, a frozen VM, a partition) past its TTL and
then carries on. The fence does: :class:`~scheduler.adapters.redis.history.RedisHistory` built with
``fence=lock`` writes, claims and forgets only inside scripts that first check that the lock
key still holds this lock's exact value. A deposed leader's claim returns False and its writes
raise :class:`~scheduler.adapters.redis.history.FencedOut`, in the same atomic step as the write, so
there is no window between the check and the write. The exact value (not only the token) is
compared so that a token handed out twice (a failover that lost the last ``INCR``) still
fences out the other acquisition, of another identity or of the same one.

Redis Cluster trade-off: the leader key and a CronWorkflow's keys live in different hash slots,
so a fenced script touches two slots and Redis Cluster refuses it (``CROSSSLOT``, reported as
``StoreUnavailable``). The supported targets for fenced leadership are a single Redis or a
Sentinel-managed primary. We chose this over copying the token into each CronWorkflow's slot
(a "highest token seen" field): that fence is weaker, since a deposed leader could still write
every CronWorkflow the new leader has not touched yet, and it adds a write to every claim.
Unfenced stores (embedded mode; Kubernetes mode, where a Lease elects the leader) touch one
slot per script and run on a Cluster. On Sentinel, replication is asynchronous: a failover can
lose the lock; the fence then refuses the old leader until the runtime re-acquires.

The class neither reads the clock nor sleeps: the TTL is Redis's, and the runtime calls
:meth:`try_acquire` or :meth:`renew` every few seconds (well within the TTL) and stops acting
as soon as :meth:`renew` returns False or raises.
"""

from __future__ import annotations

import random
from datetime import timedelta

from scheduler.adapters.redis.history import (
    DEFAULT_PREFIX,
    RedisClient,
    describe_client,
    redis_errors,
)

__all__ = ["DEFAULT_LOCK_TTL", "PublishedFence", "RedisLeaderLock"]

DEFAULT_LOCK_TTL = timedelta(seconds=15)

# KEYS: lock, fence counter; ARGV: "<nonce>:<identity>", TTL in ms. Returns the new token, or
# nil if held.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return token
"""

# KEYS: lock; ARGV: our value, TTL in ms. Returns 1 when renewed, 0 when not ours (any more).
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lock; ARGV: our value. Deletes the lock only if it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLeaderLock:
    """One replica's view of the leader lock; ``identity`` names the replica (pod name).

    Thread-compatible, not thread-safe: the runtime's leadership loop owns it; the stores
    only read :attr:`value` (an atomic attribute read).
    """

    def __init__(
        self,
        client: RedisClient,
        identity: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: timedelta = DEFAULT_LOCK_TTL,
    ) -> None:
        if not identity:
            raise ValueError("the lock identity must not be empty")
        ttl_ms = ttl // timedelta(milliseconds=1)
        if ttl_ms < 1:
            raise ValueError(f"the lock TTL must be at least 1 ms, got {ttl}")
        self._client = client
        self._identity = identity
        self._key = f"{prefix}:leader"
        self._fence_key = f"{prefix}:leader:fence"
        self._ttl_ms = ttl_ms
        self._where = describe_client(client)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._token: int | None = None
        self._nonce = ""

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def key(self) -> str:
        """The lock key; it holds ``<token>:<identity>`` of the leader."""
        return self._key

    @property
    def token(self) -> int | None:
        """Our fencing token while we believe we lead, else None.

        Belief only: the lock may have lapsed since the last renewal; fenced writes check it.
        """
        return self._token

    @property
    def value(self) -> str | None:
        """What the lock key holds while we lead (the fence the stores check), else None."""
        return None if self._token is None else f"{self._token}:{self._nonce}:{self._identity}"

    def try_acquire(self) -> int | None:
        """Become the leader if nobody is; returns our token, or None when another leads.

        When we already lead, this renews and keeps the token.
        """
        if self._token is not None and self.renew():
            return self._token
        nonce = _nonce()
        with redis_errors(f"acquisition of {self._key} by {self._identity}", self._where):
            token = self._acquire(
                keys=[self._key, self._fence_key],
                args=[f"{nonce}:{self._identity}", self._ttl_ms],
            )
        self._token, self._nonce = (None, "") if token is None else (int(token), nonce)
        return self._token

    def renew(self) -> bool:
        """Extend the TTL if we still lead; False (and no token) when we were deposed."""
        value = self.value
        if value is None:
            return False
        with redis_errors(f"renewal of {self._key} by {self._identity}", self._where):
            renewed = int(self._renew(keys=[self._key], args=[value, self._ttl_ms]))
        if not renewed:
            self._token = None
        return bool(renewed)

    def release(self) -> None:
        """Step down (on shutdown): delete the lock if it is still ours, so that another
        replica takes over at once instead of after the TTL."""
        value = self.value
        self._token = None
        if value is None:
            return
        with redis_errors(f"release of {self._key} by {self._identity}", self._where):
            self._release(keys=[self._key], args=[value])

    def holder(self) -> str | None:
        """The identity of the current leader (any replica), or None when nobody leads."""
        with redis_errors(f"read of {self._key}", self._where):
            raw = self._client.get(self._key)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        parts = text.split(":", 2)
        return parts[2] if len(parts) == 3 else text.partition(":")[2]


# KEYS: lock, fence counter; ARGV: "<nonce>:<identity>". Takes the next token and makes it the
# fence.
_PUBLISH = """
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1])
return token
"""


class PublishedFence:
    """The Redis fence of a leader elected elsewhere (a Kubernetes Lease).

    The Lease decides who leads; this makes the decision binding on Redis. On each election
    the new leader :meth:`publish`\\ es a fresh token (the same ``INCR`` counter as the lock's)
    into the lock key, without a TTL. :class:`~scheduler.adapters.redis.history.RedisHistory` built
    with
    ``fence=`` this object then accepts claims and writes only while the key still holds our
    value: once another replica has been elected and published, a deposed leader that has not
    noticed yet is refused in the same atomic step as its write.
    """

    def __init__(self, client: RedisClient, identity: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        if not identity:
            raise ValueError("the fence identity must not be empty")
        self._client = client
        self._identity = identity
        self._key = f"{prefix}:leader"
        self._counter_key = f"{prefix}:leader:fence"
        self._where = describe_client(client)
        self._publish = client.register_script(_PUBLISH)
        self._value: str | None = None

    @property
    def key(self) -> str:
        return self._key

    @property
    def value(self) -> str | None:
        """What the key holds while our election is the latest, else None."""
        return self._value

    def publish(self) -> int:
        """Make this replica's election binding; returns the new token."""
        nonce = _nonce()
        with redis_errors("publishing the leader fence", self._where):
            token = int(
                self._publish(
                    keys=[self._key, self._counter_key], args=[f"{nonce}:{self._identity}"]
                )
            )
        self._value = f"{token}:{nonce}:{self._identity}"
        return token

    def holds(self) -> bool:
        """Whether the key still holds our value (a Redis that came back empty lost it)."""
        if self._value is None:
            return False
        with redis_errors("reading the leader fence", self._where):
            current = self._client.get(self._key)
        if isinstance(current, bytes):
            current = current.decode()
        return current == self._value

    def withdraw(self) -> None:
        """Stop writing (the lead was lost); the key is left for the next leader to replace."""
        self._value = None


def _nonce() -> str:
    """A fresh 64-bit random value per acquisition (see the module docstring)."""
    return f"{random.SystemRandom().getrandbits(64):016x}"
