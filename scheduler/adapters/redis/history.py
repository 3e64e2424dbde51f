"""Run history in Redis: the :class:`~scheduler.core.engine.HistoryStore` that replicas share.

:class:`~scheduler.core.memory.MemoryHistory` is the reference; this store behaves exactly like it
(one contract test-suite runs against both) and adds what sharing needs: every change is one
atomic step, concurrent writers never lose an update, and a deposed leader cannot write.

The Redis model, for CronWorkflow ``default/backup`` and the default prefix ``cronwf``::

    cronwf:{default/backup}:state       HASH    version               9f2c61d0b3a84e17
                                                cursor                1767225600
                                                signature             CRON_TZ=Europe/Paris 0 2 * * *
                                                lastScheduledTime     1767225600
                                                lastSucceededTime     1767225731
                                                succeeded             41
                                                failed                2
                                                consecutiveSucceeded  3
                                                consecutiveFailed     0
                                                phase                 Active
                                                active                ["backup-1767225600"]
                                                conditions            {"SubmissionError": "..."}
                                                intents               {"backup-1767225600":
                                                                        ["1767225600",
                                                                         "1767225600.004100",
                                                                         "1767222000"]}
                                                lost                  0
    cronwf:{default/backup}:runs        HASH    1767225600 -> {"decision":"Spawned",
                                                               "decidedAt":"1767225600.412000",
                                                               "workflow":"backup-1767225600",
                                                               "phase":"Succeeded",
                                                               "finishedAt":"1767225731"}
    cronwf:{default/backup}:runs:order  ZSET    1767225600 (score 1767225600), ...
    cronwf:leader                       STRING  "<token>:<nonce>:<identity>", TTL  (redis_lock)
    cronwf:leader:fence                 STRING  the last token handed out (INCR)  (redis_lock)

Why this shape:

* One hash per CronWorkflow, read with one ``HGETALL``: a tick needs the whole state, never a
  part. Times are Unix seconds, an integer for every scheduled instant and six decimals when a
  time carries microseconds (a cursor reset to ``now``), so a ``History`` of aware UTC
  datetimes round-trips exactly and the hash stays readable in ``redis-cli``. Empty means None.
  ``active`` and ``conditions`` are JSON, in their order.
* ``version`` is a random token written with every change of the state. Random rather than a
  counter because a counter restarts when the keys are deleted (``forget``, a Redis that came
  back empty) and could then match a stale snapshot (the ABA problem); and because a writer
  that lost a reply can recognise its own write by it (below).
* The recent runs are a hash keyed by instant (an upsert is one ``HSET``) plus a sorted set of
  the same instants, so bounding them to the newest N is one ``ZRANGE`` away. The bound keeps
  the newest *instants*; the reference store keeps the newest *insertions*, which only differs
  when a record for an instant older than every kept one arrives (a very late completion): we
  drop it, as it is not recent.
* All keys of one CronWorkflow share the hash tag ``{namespace/name}``, so they live in one
  Redis Cluster slot and every script touches one slot (DESIGN §9). Keys therefore may not
  contain braces. The leader keys are the exception: see :mod:`scheduler.adapters.redis.leadership`
  for the
  fencing design and its Cluster trade-off.

Writes: :meth:`RedisHistory.apply` computes the pure transition in Python and writes with one
Lua script that (1) checks the fence, when one is configured, (2) compares ``version`` with the
snapshot the transition started from (optimistic concurrency: on a mismatch the script returns
the current state in the same reply and the transition is recomputed on it, bounded), (3)
writes only the fields that changed, and (4) upserts the run records, merging non-empty fields
like :func:`scheduler.core.memory.merge_run`, and trims them to the bound. A replayed event
therefore writes nothing at all: the transitions are idempotent and an unchanged field or run
record is not rewritten. The snapshot of the last state read or written is kept per
CronWorkflow, and a leader (whose fence guarantees nobody else writes) serves ``load`` from it,
so a tick costs two round trips: the claim and the record (one ``EVALSHA`` each, scripts sent
once with ``register_script``). The claim is a write (:func:`~policies.decision.record_claim`:
the cursor, the active run and its intent), fenced and optimistic like any other, done by a
script of its own so that a burst sends four short values per claim rather than the encoded
fields: because it is fenced and durable, no other leader spawns that instant again, whatever
happens before the record. Ticks due together go through :meth:`RedisHistory.claim_many` and
:meth:`RedisHistory.apply_many`, which pipeline the scripts: two round trips for a whole batch,
each script still atomic on its own (no ``MULTI``: the batch need not be).

A timed-out ``EVALSHA`` (or pipeline) may be retried by redis-py after it ran; that is safe:
the retry sees its own ``version`` and reports success; run merges are idempotent.

Errors: every Redis failure becomes a :class:`~scheduler.core.engine.StoreUnavailable` naming the
server and the operation; no redis exception reaches the engine::

    StoreUnavailable (scheduler.core.engine)   nothing was changed, or the change is unknown
     ├── FencedOut                        our fencing token is no longer current: stop acting
     └── WriteConflict                    other writers kept changing this history

Configuration errors (a key with braces, a naive datetime) are ``ValueError``.
"""

from __future__ import annotations

import functools
import json
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias, cast

import fakeredis
import redis
import redis.connection
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import Script
from redis.retry import Retry

from policies.decision import (
    History,
    Intent,
    Phase,
    WorkflowPhase,
    claimable,
    record_claim,
)
from scheduler.core.engine import (
    Change,
    Claim,
    RunRecord,
    RunReport,
    StoreUnavailable,
    Transition,
)
from scheduler.core.memory import DEFAULT_RECENT_RUNS

__all__ = [
    "DEFAULT_PREFIX",
    "Fence",
    "FencedOut",
    "RedisClient",
    "RedisHistory",
    "RedisRunReports",
    "RedisURLError",
    "WriteConflict",
    "check_eviction_policy",
    "connect",
    "decode_time",
    "describe_client",
    "encode_time",
    "redact_url",
    "redis_errors",
    "valid_redis_url",
]

DEFAULT_PREFIX = "cronwf"
_READ_CHUNK = 1_000  # histories read in one pipelined round trip

RedisClient: TypeAlias = "redis.Redis"
"""A synchronous redis-py client (``fakeredis.FakeRedis`` is one); responses may be bytes or
str (``decode_responses``): both are handled."""


# --------------------------------------------------------------------------------------------
# Exceptions


class FencedOut(StoreUnavailable):
    """This replica's fencing token is no longer the leader's: it was deposed (or never led).

    A ``StoreUnavailable`` so that the engine treats it like any outage (the instant stays
    undecided, nothing was written); the runtime catches it to step down at once.
    """


class WriteConflict(StoreUnavailable):
    """The history kept changing under this writer beyond the retry bound; nothing written.

    Only concurrent writers of one CronWorkflow cause it, which leadership normally prevents.
    """


# --------------------------------------------------------------------------------------------
# The redis boundary, shared with scheduler.adapters.redis.leadership so that redis is imported in
# one place.


def describe_client(client: RedisClient) -> str:
    """Where ``client`` points, for messages: scheme, user, host, port and database, with
    ``***`` for a password (``rediss://app:***@redis:6380/0``, ``unix:///run/redis.sock?db=0``)."""
    pool = client.connection_pool
    service = getattr(pool, "service_name", None)
    if service:
        return f"the primary of Sentinel service {service}"
    kwargs: Mapping[str, Any] = pool.connection_kwargs
    if "server" in kwargs:
        return "the in-process store (fakeredis)"
    user = kwargs.get("username") or ""
    credentials = f"{user}:***@" if kwargs.get("password") else f"{user}@" if user else ""
    if "path" in kwargs:
        return f"unix://{credentials}{kwargs['path']}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    if ":" in str(host):
        host = f"[{host}]"  # an IPv6 address
    return f"{scheme}://{credentials}{host}:{port}/{kwargs.get('db', 0)}"


class RedisURLError(ValueError):
    """A Redis URL that cannot be used; the message shows it with its password redacted."""


_SCHEMES = ("redis", "rediss", "unix")
_URL_FORMS = (
    "write redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... for TLS, or "
    "unix://[[USER]:PASSWORD@]/PATH[?db=DB]"
)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, everything else as given.

    Whatever precedes the last ``@`` is taken as the credentials, so a password holding an
    unescaped ``/``, ``?``, ``#`` or ``@`` is hidden too (over-hiding, never showing).
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}{separator}{user}{':***' if colon else ''}@{rest[at + 1 :]}"


def valid_redis_url(url: str) -> str:
    """``url`` when it is a Redis URL a client can be built from; else :class:`RedisURLError`
    saying what is wrong and what to write, the URL shown redacted."""
    shown = repr(redact_url(url))
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in _SCHEMES:
        raise RedisURLError(f"{shown} is not a Redis URL: {_URL_FORMS}")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in rest and "@" not in authority:
        raise RedisURLError(
            f"{shown}: the password holds a '/', '?' or '#': percent-encode it "
            "(%2F, %3F, %23; '@' is %40)"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise RedisURLError(
            f"{shown}: the port must be a number from 1 to 65535, e.g. redis://redis:6379/0"
        ) from None
    if scheme == "unix":
        if not parts.path:
            raise RedisURLError(f"{shown}: give the socket's path, e.g. unix:///run/redis.sock")
    else:
        if port == 0:
            raise RedisURLError(f"{shown}: the port must be a number from 1 to 65535")
        if parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
            raise RedisURLError(
                f"{shown}: the database must be a number (redis://HOST:PORT/DB), "
                f"got {parts.path[1:]!r}"
            )
    try:
        redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as error:  # options in the query string; redis-py names, never shows
        raise RedisURLError(f"{shown}: {error}") from None
    return url


@contextmanager
def redis_errors(what: str, where: str) -> Iterator[None]:
    """Turn any redis error inside the block into :class:`StoreUnavailable`.

    ``what`` names the operation, ``where`` the server (:func:`describe_client`).
    """
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        # BusyLoadingError (a restarting server loading its data) is a ConnectionError.
        raise StoreUnavailable(
            f"Redis at {where} is unreachable: {what} failed: {error}"
        ) from error
    except redis.exceptions.RedisError as error:
        # READONLY after a failover, OOM, CROSSSLOT on a Cluster...: the world's, not a bug here.
        raise StoreUnavailable(
            f"Redis at {where} refused {what}: {type(error).__name__}: {error}"
        ) from error


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _several(keys: Sequence[str], shown: int = 3) -> str:
    """``a, b, c and 9,997 more``: the CronWorkflows of a batch, for messages."""
    if len(keys) <= shown:
        return ", ".join(keys)
    return f"{', '.join(keys[:shown])} and {len(keys) - shown:,} more"


def _pairs(flat: Sequence[bytes | str]) -> dict[str, str]:
    """A flat ``[field, value, ...]`` reply (HGETALL inside Lua) as a dict."""
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


# --------------------------------------------------------------------------------------------
# Encoding

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TIME = re.compile(r"(-?)(\d+)(?:\.(\d{1,6}))?")


@functools.lru_cache(maxsize=4096)
def encode_time(moment: datetime) -> str:
    """Unix seconds: ``1767225600``, or ``1767225600.412000`` when there are microseconds.

    Cached: the CronWorkflows of a burst share their instant, encoded in every claim, record
    and run record of the burst."""
    if moment.utcoffset() is None:
        raise ValueError(f"times must be timezone-aware, got {moment!r}")
    micros = (moment - _EPOCH) // _MICROSECOND
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{seconds}" if fraction == 0 else f"{sign}{seconds}.{fraction:06d}"


def decode_time(text: str) -> datetime:
    """The aware UTC datetime of :func:`encode_time`'s text."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not a Unix time in seconds: {text!r}")
    sign, seconds, fraction = match.groups()
    micros = int(seconds) * 1_000_000 + int((fraction or "").ljust(6, "0"))
    return _EPOCH + (-micros if sign else micros) * _MICROSECOND


def _optional_time(moment: datetime | None) -> str:
    return "" if moment is None else encode_time(moment)


def _encode_active(active: tuple[str, ...]) -> str:
    return json.dumps(list(active))


def _encode_conditions(conditions: Mapping[str, str]) -> str:
    return json.dumps({str(k): v for k, v in conditions.items()})


def _encode_intents(intents: Mapping[str, Intent]) -> str:
    if not intents:
        return "{}"
    return _COMPACT.encode(
        {
            workflow: [
                encode_time(intent.scheduled_at),
                encode_time(intent.claimed_at),
                _optional_time(intent.previous_cursor),
            ]
            for workflow, intent in intents.items()
        }
    )


def _decode_intents(text: str) -> dict[str, Intent]:
    return {
        str(workflow): Intent(
            decode_time(scheduled_at),
            decode_time(claimed_at),
            decode_time(previous) if previous else None,
        )
        for workflow, (scheduled_at, claimed_at, previous) in json.loads(text or "{}").items()
    }


def _encode_phase(phase: Phase) -> str:
    return phase.value


_HISTORY_FIELDS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    # (History attribute, hash field, encoder)
    ("cursor", "cursor", _optional_time),
    ("signature", "signature", str),
    ("last_scheduled_time", "lastScheduledTime", _optional_time),
    ("last_succeeded_time", "lastSucceededTime", _optional_time),
    ("succeeded", "succeeded", str),
    ("failed", "failed", str),
    ("consecutive_succeeded", "consecutiveSucceeded", str),
    ("consecutive_failed", "consecutiveFailed", str),
    ("phase", "phase", _encode_phase),
    ("active", "active", _encode_active),
    ("conditions", "conditions", _encode_conditions),
    ("intents", "intents", _encode_intents),
    ("lost", "lost", str),
)


def _encode_history(history: History) -> dict[str, str]:
    return {name: encode(getattr(history, attr)) for attr, name, encode in _HISTORY_FIELDS}


def _encode_changes(before: History, after: History) -> dict[str, str]:
    """The fields of ``after`` whose values differ from ``before``'s, encoded: a tick changes
    three or four of them, and encoding is most of a write's cost."""
    old, new = before.__dict__, after.__dict__
    # Transitions copy what they do not change (policies.decision._evolve): most fields are
    # the very same object, and the identity test spares their comparison.
    return {
        name: encode(value)
        for attr, name, encode in _HISTORY_FIELDS
        if (value := new[attr]) is not (previous := old[attr]) and value != previous
    }


def _decode_history(fields: Mapping[str, str]) -> History:
    def time_or_none(name: str) -> datetime | None:
        text = fields.get(name, "")
        return decode_time(text) if text else None

    return History(
        cursor=time_or_none("cursor"),
        signature=fields.get("signature", ""),
        last_scheduled_time=time_or_none("lastScheduledTime"),
        last_succeeded_time=time_or_none("lastSucceededTime"),
        succeeded=int(fields.get("succeeded") or 0),
        failed=int(fields.get("failed") or 0),
        consecutive_succeeded=int(fields.get("consecutiveSucceeded") or 0),
        consecutive_failed=int(fields.get("consecutiveFailed") or 0),
        phase=Phase(fields.get("phase", "")),
        active=tuple(json.loads(fields.get("active") or "[]")),
        conditions=dict(json.loads(fields.get("conditions") or "{}")),
        intents=_decode_intents(fields.get("intents", "")),
        lost=int(fields.get("lost") or 0),
    )


def _encode_run(run: RunRecord) -> str:
    record = {
        "decision": run.decision,
        "decidedAt": encode_time(run.decided_at),
        "workflow": run.workflow,
        "reason": run.reason,
        "phase": run.phase,
        "finishedAt": _optional_time(run.finished_at),
    }
    # Empty fields are left out: "empty" is what the merge in the script does not copy.
    return _COMPACT.encode({k: v for k, v in record.items() if v})


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every run record: ``json.dumps`` with separators builds one per call."""


def _decode_run(instant: str, text: str) -> RunRecord:
    record: dict[str, str] = json.loads(text)
    finished_at = record.get("finishedAt", "")
    return RunRecord(
        scheduled_at=decode_time(instant),
        decision=record.get("decision", ""),
        decided_at=decode_time(record["decidedAt"]),
        workflow=record.get("workflow", ""),
        reason=record.get("reason", ""),
        phase=record.get("phase", ""),
        finished_at=decode_time(finished_at) if finished_at else None,
    )


# --------------------------------------------------------------------------------------------
# Scripts. Each is one atomic step; a fence value of "" means "not fenced" (and then the leader
# key is not among KEYS, so an unfenced script touches a single Cluster slot).

# KEYS: state, runs, order [, leader]
# ARGV: expected version ("" = absent), new version, fence value, bound, n,
#       n changed (field, value) pairs of the state, then (instant, run record JSON) pairs
# Returns {"ok"} | {"fenced"} | {"conflict", HGETALL of the state}
_APPLY = """
local state, runs, order = KEYS[1], KEYS[2], KEYS[3]
if ARGV[3] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[3] then
  return {'fenced'}
end
if (redis.call('HGET', state, 'version') or '') ~= ARGV[1] then
  return {'conflict', redis.call('HGETALL', state)}
end
local n = tonumber(ARGV[5])
if n > 0 then
  redis.call('HSET', state, 'version', ARGV[2], unpack(ARGV, 6, 5 + 2 * n))
end
local merged = {'decision', 'workflow', 'reason', 'phase', 'finishedAt'}
local recorded = false
local i = 6 + 2 * n
while i < #ARGV do
  local instant, record = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', runs, instant)
  if old then
    local kept, new, changed = cjson.decode(old), cjson.decode(record), false
    for _, name in ipairs(merged) do
      local value = new[name]
      if value and value ~= '' and value ~= kept[name] then
        kept[name] = value
        changed = true
      end
    end
    record = changed and cjson.encode(kept) or nil
  end
  if record then
    redis.call('HSET', runs, instant, record)
    redis.call('ZADD', order, instant, instant)
    recorded = true
  end
  i = i + 2
end
if recorded then
  local excess = redis.call('ZCARD', order) - tonumber(ARGV[4])
  if excess > 0 then
    for _, instant in ipairs(redis.call('ZRANGE', order, 0, excess - 1)) do
      redis.call('HDEL', runs, instant)
    end
    redis.call('ZREMRANGEBYRANK', order, 0, excess - 1)
  end
end
return {'ok'}
"""

# KEYS: state [, leader]
# ARGV: expected version, new version, fence value, instant, workflow, claimed at
# Returns {"ok"} | {"fenced"} | {"conflict", HGETALL of the state}
# record_claim of policies.decision, done by the server: the client sends four short values
# instead of the encoded cursor, active runs and intents (a burst claims ten thousand).
_CLAIM = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return {'fenced'}
end
local state = KEYS[1]
if redis.call('HGET', state, 'version') ~= ARGV[1] then
  return {'conflict', redis.call('HGETALL', state)}
end
local stored = redis.call('HMGET', state, 'cursor', 'active', 'intents')
local cursor, workflow = stored[1] or '', ARGV[5]
local active = cjson.decode((stored[2] and stored[2] ~= '') and stored[2] or '[]')
local listed = false
for _, name in ipairs(active) do
  if name == workflow then listed = true end
end
if not listed then active[#active + 1] = workflow end
local intents = cjson.decode((stored[3] and stored[3] ~= '') and stored[3] or '{}')
intents[workflow] = {ARGV[4], ARGV[6], cursor}
redis.call('HSET', state, 'version', ARGV[2], 'cursor', ARGV[4],
           'active', cjson.encode(active), 'intents', cjson.encode(intents))
return {'ok'}
"""

# KEYS: state, runs, order [, leader]; ARGV: fence value. Returns 1, or 0 when fenced out.
_FORGET = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
"""


# --------------------------------------------------------------------------------------------
# The store


class Fence(Protocol):
    """Who may write: the leader lock of :mod:`scheduler.adapters.redis.leadership` is one.

    The scripts check that ``key`` holds exactly ``value`` (``<token>:<nonce>:<identity>``),
    not only the token: after a failover that lost recent writes, or a Redis that came back
    empty, the counter could hand out a token again, but the random nonce never repeats.
    """

    @property
    def key(self) -> str:
        """The Redis key that holds the current leader's fence value."""
        ...

    @property
    def value(self) -> str | None:
        """What ``key`` holds while we lead; None when we do not lead."""
        ...


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The state as last read or written: its version and its history."""

    version: str
    history: History | None
    fence: str | None = None
    """The fence this replica held when it read or wrote this state (None: unfenced)."""

    @classmethod
    def parse(cls, fields: Mapping[str, str]) -> _Snapshot:
        version = fields.get("version", "")
        return cls(version, _decode_history(fields) if fields else None)


_ABSENT = _Snapshot("", None)


@dataclass(frozen=True)
class _Write:
    """One call of the apply script, and what it means once it succeeded."""

    before: History
    after: History
    changed: bool
    state: _Snapshot
    """The state once written."""
    keys: list[str]
    args: list[str | int]


class RedisHistory:
    """Histories of CronWorkflows in Redis; see the module docstring for the model.

    ``client`` is shared, thread-safe and owned by the caller. ``fence``, when given, makes
    every write and claim conditional on this replica still leading. ``recent_runs`` bounds
    the run records per CronWorkflow; ``max_conflicts`` bounds the optimistic retries.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        recent_runs: int = DEFAULT_RECENT_RUNS,
        fence: Fence | None = None,
        max_conflicts: int = 64,
        where: str | None = None,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"the key prefix must be non-empty and without braces: {prefix!r}")
        if recent_runs < 1:
            raise ValueError(f"recent_runs must be at least 1, got {recent_runs}")
        self._client = client
        self._prefix = prefix
        self._recent_runs = recent_runs
        self._fence = fence
        self._max_conflicts = max_conflicts
        self._where = where or describe_client(client)
        self._apply_script = client.register_script(_APPLY)
        self._claim_script = client.register_script(_CLAIM)
        self._forget_script = client.register_script(_FORGET)
        self._snapshots: dict[str, _Snapshot] = {}
        self._snapshots_guard = threading.Lock()
        self._mark_key = f"{prefix}:store"

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisHistory:
        """A store on the Redis at ``url``, through a client of :func:`connect`.

        ``options`` go to :class:`RedisHistory` when it takes them (``prefix``,
        ``recent_runs``, ``fence``, ``max_conflicts``), to :func:`connect` otherwise.
        """
        store_options = {
            name: options.pop(name)
            for name in ("prefix", "recent_runs", "fence", "max_conflicts")
            if name in options
        }
        return cls(connect(url, **options), **store_options)

    @classmethod
    def in_process(cls, **options: Any) -> RedisHistory:
        """A store on a private in-process fakeredis (embedded mode: nothing to run).

        It runs the same scripts as a real server, so the embedded mode exercises the very
        code that production runs.
        """
        client = fakeredis.FakeRedis(
            server=fakeredis.FakeServer(version=(7,)), decode_responses=True
        )
        return cls(client, where="the in-process store (fakeredis)", **options)

    # -- keys -------------------------------------------------------------------------------

    def keys(self, key: str) -> tuple[str, str, str]:
        """The Redis keys of CronWorkflow ``key`` (``namespace/name``): state, runs, order."""
        if "{" in key or "}" in key:
            raise ValueError(f"a CronWorkflow key cannot contain braces: {key!r}")
        base = f"{self._prefix}:{{{key}}}"
        return f"{base}:state", f"{base}:runs", f"{base}:runs:order"

    def _fence_keys_and_value(self) -> tuple[list[str], str | None]:
        """The extra KEYS of a fenced script and the fence value ("" when unfenced).

        A value of None means fenced and not leading: the caller refuses without asking Redis.
        """
        if self._fence is None:
            return [], ""
        return [self._fence.key], self._fence.value

    # -- HistoryStore -----------------------------------------------------------------------

    def load(self, key: str) -> History | None:
        """The stored history. A leader serves it from what it last read or wrote: while its
        fence holds, no one else can write (every write is fenced), so that copy is current,
        and a tick costs one round trip less. Unfenced stores always read."""
        fence = self._fence.value if self._fence is not None else None
        if fence is not None:
            with self._snapshots_guard:
                cached = self._snapshots.get(key)
            if cached is not None and cached.fence == fence:
                return cached.history
        snapshot = self._read(key, f"load of {key}")
        return snapshot.history

    def load_many(self, keys: Sequence[str]) -> list[History | None]:
        """:meth:`load` of each key: what a leader has cached, the rest read in pipelined
        round trips of at most 1,000 (and then cached)."""
        fence = self._fence.value if self._fence is not None else None
        found: dict[str, History | None] = {}
        if fence is not None:
            with self._snapshots_guard:
                for key in keys:
                    cached = self._snapshots.get(key)
                    if cached is not None and cached.fence == fence:
                        found[key] = cached.history
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        for start in range(0, len(missing), _READ_CHUNK):
            chunk = missing[start : start + _READ_CHUNK]
            pipeline = self._client.pipeline(transaction=False)
            for key in chunk:
                pipeline.hgetall(self.keys(key)[0])
            with redis_errors(f"load of {_several(chunk)}", self._where):
                replies = cast(list[Mapping[bytes | str, bytes | str]], pipeline.execute())
            for key, raw in zip(chunk, replies, strict=True):
                fields = {_text(k): _text(v) for k, v in raw.items()}
                snapshot = _Snapshot.parse(fields) if fields else _ABSENT
                self._remember(key, snapshot)
                found[key] = snapshot.history
        return [found[key] for key in keys]

    def apply(
        self,
        key: str,
        seed: History,
        transition: Transition,
        runs: Sequence[RunRecord] = (),
    ) -> tuple[History, History]:
        what = f"apply to {key}"
        fence = self._fence_value_to_write(what)
        with self._snapshots_guard:
            snapshot = self._snapshots.get(key)
        if snapshot is None:
            snapshot = self._read(key, what)
        for conflicts in range(self._max_conflicts + 1):
            if conflicts > 1:
                # The first conflict came with the fresh state: retry at once. Later ones mean
                # several writers race: spread them out (jittered, exponential, at most 50 ms).
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**conflicts)))
            write = self._write(Change(key, seed, transition, runs), snapshot, fence)
            with redis_errors(what, self._where):
                reply = self._apply_script(keys=write.keys, args=write.args)
            settled = self._settle(key, write, reply, what)
            if isinstance(settled, _Snapshot):
                snapshot = settled
                continue
            return settled
        self._forget_snapshot(key)
        raise WriteConflict(
            f"{what} gave up after {self._max_conflicts} conflicting concurrent writes"
        )

    def apply_many(self, changes: Sequence[Change]) -> list[tuple[History, History]]:
        """Every change's script in one pipelined round trip (plus one to read the states
        not cached). A change that meets a concurrent write is retried alone, as
        :meth:`apply` does; when the fence is lost, the others are still settled before
        :class:`FencedOut` is raised."""
        if len(changes) <= 1:
            return [self.apply(*change) for change in changes]
        what = f"apply to {_several([change.key for change in changes])}"
        fence = self._fence_value_to_write(what)
        snapshots = self._snapshots_of([change.key for change in changes], what)
        writes = [
            self._write(change, snapshot, fence)
            for change, snapshot in zip(changes, snapshots, strict=True)
        ]
        with redis_errors(what, self._where):
            replies = self._pipelined(
                self._apply_script, [(write.keys, write.args) for write in writes]
            )
        results: list[tuple[History, History]] = []
        fenced: FencedOut | None = None
        for change, write, reply in zip(changes, writes, replies, strict=True):
            try:
                settled = self._settle(change.key, write, reply, what)
            except FencedOut as error:
                fenced = error
                continue
            results.append(settled if isinstance(settled, tuple) else self.apply(*change))
        if fenced is not None:
            raise fenced
        return results

    def claim_many(self, claims: Sequence[Claim]) -> list[bool]:
        """Each claim with the claim script, in one pipelined round trip: the server records
        the intent on the state this replica last saw (optimistic, as :meth:`apply`). A claim
        on a state not cached, not claimable in the copy, or met by a concurrent write, goes
        the way of any change (:meth:`apply` of :meth:`Claim.change`)."""
        if not claims:
            return []
        what = f"claim of {_several([claim.key for claim in claims])}"
        fence = self._fence_value_to_write(what)
        fence_keys, _ = self._fence_keys_and_value()
        snapshots = self._snapshots_of([claim.key for claim in claims], what)
        granted = [False] * len(claims)
        calls: list[tuple[Sequence[str], Sequence[str | int]]] = []
        sent: list[tuple[int, _Snapshot]] = []
        others: list[int] = []
        for index, (claim, snapshot) in enumerate(zip(claims, snapshots, strict=True)):
            history = snapshot.history
            if history is None or not claimable(history, claim.scheduled_at):
                others.append(index)
                continue
            version = f"{random.getrandbits(64):016x}"
            after = record_claim(history, claim.scheduled_at, claim.workflow, claim.claimed_at)
            args: list[str | int] = [snapshot.version, version, fence]
            args += [encode_time(claim.scheduled_at), claim.workflow]
            args.append(encode_time(claim.claimed_at))
            calls.append(([self.keys(claim.key)[0], *fence_keys], args))
            sent.append((index, _Snapshot(version, after)))
        with redis_errors(what, self._where):
            replies = self._pipelined(self._claim_script, calls) if calls else []
        fenced: FencedOut | None = None
        for (index, state), reply in zip(sent, replies, strict=True):
            key = claims[index].key
            status = _text(reply[0])
            if status == "ok":
                self._remember(key, state)
                granted[index] = True
            elif status == "fenced":
                self._forget_snapshot(key)
                fenced = FencedOut(f"{what} refused: this replica's fencing token is not current")
            else:
                current = _Snapshot.parse(_pairs(reply[1]))
                if current.version == state.version:  # our own, retried after a lost reply
                    self._remember(key, state)
                    granted[index] = True
                else:
                    self._remember(key, current)
                    others.append(index)
        if fenced is not None:
            raise fenced
        for index in others:
            claim = claims[index]
            before, _ = self.apply(*claim.change())
            granted[index] = claimable(before, claim.scheduled_at)
        return granted

    def _fence_value_to_write(self, what: str) -> str:
        _, fence = self._fence_keys_and_value()
        if fence is None:
            raise FencedOut(f"{what} refused: this replica does not lead (no fencing token)")
        return fence

    def _write(self, change: Change, snapshot: _Snapshot, fence: str) -> _Write:
        """The script call that turns ``snapshot`` into the transition's result."""
        before = snapshot.history if snapshot.history is not None else change.seed
        after = change.transition(before)
        if snapshot.history is None:  # nothing stored: every field is written
            fields = _encode_history(after)
        else:
            fields = _encode_changes(snapshot.history, after)
        changes = list(fields.items())
        # Random bits from the process's generator, not uuid4: os.urandom releases the
        # interpreter lock, which a busy tick worker then waits to take back.
        version = f"{random.getrandbits(64):016x}" if changes else snapshot.version
        args: list[str | int] = [snapshot.version, version, fence, self._recent_runs]
        args.append(len(changes))
        args += [arg for field in changes for arg in field]
        args += [
            arg for run in change.runs for arg in (encode_time(run.scheduled_at), _encode_run(run))
        ]
        keys = [*self.keys(change.key), *self._fence_keys_and_value()[0]]
        state = _Snapshot(version, after)
        return _Write(before, after, bool(changes), state, keys, args)

    def _settle(
        self, key: str, write: _Write, reply: Sequence[Any], what: str
    ) -> tuple[History, History] | _Snapshot:
        """(before, after) when ``write`` is done; the current state when another writer
        came first (to retry on)."""
        status = _text(reply[0])
        if status == "ok":
            self._remember(key, write.state)
            return write.before, write.after
        if status == "fenced":
            self._forget_snapshot(key)
            raise FencedOut(f"{what} refused: this replica's fencing token is not current")
        current = _Snapshot.parse(_pairs(reply[1]))
        self._remember(key, current)
        if write.changed and current.version == write.state.version:
            # Our own write: redis-py retried the script after a lost reply.
            return write.before, write.after
        return current

    def _pipelined(
        self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[str | int]]]
    ) -> list[Any]:
        """``EVALSHA`` of ``script`` with each call's (keys, args), in one pipelined round trip.

        redis-py's own pipelining of a script asks ``SCRIPT EXISTS`` first, a round trip more
        per batch. A server that lost its scripts (restarted) answers ``NOSCRIPT``: the script
        is loaded and the pipeline sent once more. That is safe even if some calls ran the
        first time: a write that finds its own version recognises itself (see
        :meth:`_settle`)."""

        def send() -> list[Any]:
            pipeline = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipeline.evalsha(script.sha, len(keys), *keys, *args)
            return pipeline.execute()

        try:
            return send()
        except redis.exceptions.NoScriptError:
            self._client.script_load(script.script)
            return send()

    def forget(self, key: str) -> None:
        what = f"forget of {key}"
        fence_keys, fence = self._fence_keys_and_value()
        if fence is None:
            raise FencedOut(f"{what} refused: this replica does not lead (no fencing token)")
        self._forget_snapshot(key)
        with redis_errors(what, self._where):
            done = self._forget_script(keys=[*self.keys(key), *fence_keys], args=[fence])
        if not int(done):
            raise FencedOut(f"{what} refused: this replica's fencing token is not current")

    def drop_cache(self) -> None:
        """Forget every snapshot: the next read of each history goes to Redis."""
        with self._snapshots_guard:
            self._snapshots.clear()

    def mark(self) -> bool:
        """``<prefix>:store``: a random value set once (``SET NX``) and never expiring. Its
        absence means the keys are new or were lost (a Redis restarted without its data, a
        ``FLUSHALL``): the runtime then re-seeds every history from what is known."""
        with redis_errors(f"check of {self._mark_key}", self._where):
            created = self._client.set(self._mark_key, f"{random.getrandbits(64):016x}", nx=True)
        return bool(created)

    def recent_runs(self, key: str) -> list[RunRecord]:
        """The recent runs of ``key``, newest first."""
        _, runs, _ = self.keys(key)
        with redis_errors(f"read of the recent runs of {key}", self._where):
            records = cast(Mapping[bytes | str, bytes | str], self._client.hgetall(runs))
        decoded = [_decode_run(_text(k), _text(v)) for k, v in records.items()]
        return sorted(decoded, key=lambda run: run.scheduled_at, reverse=True)

    # -- snapshots --------------------------------------------------------------------------

    def _read(self, key: str, what: str) -> _Snapshot:
        state, _, _ = self.keys(key)
        with redis_errors(what, self._where):
            raw = cast(Mapping[bytes | str, bytes | str], self._client.hgetall(state))
        snapshot = _Snapshot.parse({_text(k): _text(v) for k, v in raw.items()}) if raw else _ABSENT
        self._remember(key, snapshot)
        return snapshot

    def _snapshots_of(self, keys: Sequence[str], what: str) -> list[_Snapshot]:
        """The cached state of each key; those not cached are read in one round trip."""
        with self._snapshots_guard:
            found = [self._snapshots.get(key) for key in keys]
        missing = [key for key, snapshot in zip(keys, found, strict=True) if snapshot is None]
        if missing:
            pipeline = self._client.pipeline(transaction=False)
            for key in missing:
                pipeline.hgetall(self.keys(key)[0])
            with redis_errors(what, self._where):
                replies = cast(list[Mapping[bytes | str, bytes | str]], pipeline.execute())
            for key, raw in zip(missing, replies, strict=True):
                fields = {_text(k): _text(v) for k, v in raw.items()}
                self._remember(key, _Snapshot.parse(fields) if fields else _ABSENT)
            with self._snapshots_guard:
                found = [self._snapshots.get(key) for key in keys]
        return [snapshot or _ABSENT for snapshot in found]

    def _remember(self, key: str, snapshot: _Snapshot) -> None:
        fence = self._fence.value if self._fence is not None else None
        with self._snapshots_guard:
            # Built directly: dataclasses.replace costs more than the rest of a small write.
            self._snapshots[key] = _Snapshot(snapshot.version, snapshot.history, fence)

    def _forget_snapshot(self, key: str) -> None:
        with self._snapshots_guard:
            self._snapshots.pop(key, None)


# --------------------------------------------------------------------------------------------
# Run reports


class RedisRunReports:
    r"""The :class:`~scheduler.core.engine.RunReports` queue: one list, ``<prefix>:reports``.

    A replica that learns a run's end but does not lead (a paused leader that resumed
    deposed, a restarted replica whose supervised runs finished meanwhile) ``RPUSH``\ es it;
    the leader reads the oldest with ``LRANGE``, records them (fenced, idempotent) and only
    then drops them with ``LTRIM``, so a leader that dies in between leaves them for the
    next. The list keeps at most ``bound`` reports (the oldest are dropped past it: a fleet
    without a leader for that long has bigger problems, and the bound keeps Redis safe).
    """

    def __init__(
        self, client: RedisClient, *, prefix: str = DEFAULT_PREFIX, bound: int = 100_000
    ) -> None:
        self._client = client
        self._key = f"{prefix}:reports"
        self._bound = bound
        self._where = describe_client(client)

    def report(self, run: RunReport) -> None:
        entry = _COMPACT.encode(
            {
                "key": run.key,
                "workflow": run.workflow,
                "scheduledAt": encode_time(run.scheduled_at),
                "phase": run.phase.value,
                "finishedAt": encode_time(run.finished_at),
            }
        )
        pipeline = self._client.pipeline(transaction=True)
        pipeline.rpush(self._key, entry)
        pipeline.ltrim(self._key, -self._bound, -1)
        with redis_errors(f"report of {run.workflow} of {run.key}", self._where):
            pipeline.execute()

    def take(self, limit: int) -> tuple[int, list[RunReport]]:
        with redis_errors(f"read of {self._key}", self._where):
            entries = cast(list[bytes | str], self._client.lrange(self._key, 0, limit - 1))
        reports: list[RunReport] = []
        for entry in entries:
            try:
                record = json.loads(_text(entry))
                reports.append(
                    RunReport(
                        key=str(record["key"]),
                        workflow=str(record["workflow"]),
                        scheduled_at=decode_time(record["scheduledAt"]),
                        phase=WorkflowPhase(record["phase"]),
                        finished_at=decode_time(record["finishedAt"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue  # not ours to read (written by hand?): dropped with the others
        return len(entries), reports

    def done(self, count: int) -> None:
        if count <= 0:
            return
        with redis_errors(f"trim of {self._key}", self._where):
            self._client.ltrim(self._key, count, -1)


# --------------------------------------------------------------------------------------------
# Connecting


def connect(url: str, **options: Any) -> RedisClient:
    """A client of the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``) for a
    history store and a leader lock to share.

    The defaults make every call to a Redis that stops answering (a partition: the sockets
    stay open, nothing comes back) fail within about 2 s, 3 s at worst, well inside the lock
    TTL, so that the service reports the store unreachable before another replica may take
    the lead. (The former 2 s timeout with 3 retries took 8.4 s a call, 15.7 s when the
    network dropped new connections too.)

    * ``socket_timeout`` 1 s bounds each wait for the next bytes of a reply, not a whole
      reply: a pipeline of 10,000 scripts keeps receiving replies while the server works
      through it, so a healthy server never keeps it waiting that long.
    * One retry, after a jittered backoff of at most 0.25 s, on a new connection: it rides
      over a connection the server or the network closed (a restart, a failover, an idle
      timeout) and gives up on a silent server after 2 x 1 s. redis-py retries the whole
      call, connection handshake included, so every retry costs a timeout.
    * ``socket_connect_timeout`` 1 s: where even the TCP handshake goes unanswered (dropped
      SYNs), redis-py also retries the connect inside the call's retry: 1 + 2 x 1 s.
    * No ``health_check_interval``: redis-py would PING a connection idle for longer than
      the interval before using it, with retries of its own nested inside the call's
      (around each handshake too), which against a silent server multiplies the time to
      fail (15 to 34 s with the former defaults). What the check would catch is caught
      anyway: the pool discards a connection the server closed before handing it out, and
      the call's retry replaces one that died silently.

    A restarted server is picked up by the same client on the next call. ``options`` go to
    ``redis.Redis.from_url`` and override these. A malformed ``url`` is a
    :class:`RedisURLError` (its message shows the URL without its password).
    """
    defaults: dict[str, Any] = {
        "socket_connect_timeout": 1.0,
        "socket_timeout": 1.0,
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.05), retries=1),
        "health_check_interval": 0,
        "decode_responses": True,
        "client_name": "cronwf",
    }
    return redis.Redis.from_url(valid_redis_url(url), **{**defaults, **options})


# --------------------------------------------------------------------------------------------
# Start-up check


def check_eviction_policy(client: RedisClient) -> str | None:
    """A warning when Redis may evict our keys under memory pressure; None when it will not.

    ``allkeys-*`` policies may evict any key: a history (cursor, counters) would vanish and
    be re-seeded, re-running or missing instants. ``noeviction`` makes writes fail instead,
    which we report as an outage and retry: safe. ``volatile-*`` policies evict only keys
    with a TTL; no history key has one, and the only one that does, the leader lock, is
    fenced: evicting it deposes the leader early, whose writes are then refused. Safe too.
    Returns None when the server does not let us read its configuration (managed services
    often rename or forbid ``CONFIG``): we cannot tell, and refusing to start would be worse.
    Raises :class:`StoreUnavailable` when Redis cannot be reached.
    """
    where = describe_client(client)
    with redis_errors("CONFIG GET maxmemory-policy", where):
        try:
            reply = cast(Mapping[bytes | str, bytes | str], client.config_get("maxmemory-policy"))
        except redis.exceptions.ResponseError:  # unknown, renamed or forbidden (NOPERM)
            return None
    values = {_text(k): _text(v) for k, v in reply.items()}
    policy = values.get("maxmemory-policy", "")
    if policy.startswith("allkeys-"):
        return (
            f"Redis at {where} has maxmemory-policy {policy}: at maxmemory it may evict "
            "cronwf's history (cursors, counters), which would re-run or miss scheduled "
            "instants; set maxmemory-policy to noeviction (or a volatile-* policy)"
        )
    return None
