"""A TCP proxy in front of a real redis-server that a test can freeze or cut at an exact point.

Why: the Redis failures that hurt a leader-elected service are the network's. A link that goes
*silent* (the sockets stay open, nothing answers: every read waits for its timeout) behaves
nothing like a stopped server (connections refused at once), and only the silent kind shows
how long a replica takes to notice. Stopping redis-server also strikes everyone at once and at
no particular moment; this proxy strikes one client's link (a redis-py client of the test, or
a ``cronwf serve`` process pointed at :attr:`RedisProxy.url`) exactly where the test says:
right after the reply to a given command, in the middle of a pipeline.

To know where that is, the proxy reads RESP in both directions: each client command (a list
of bytes arguments; commands inside a pipeline one by one) and each reply, which it pairs with
its command by order (replies come in order on each connection). RESP2 and RESP3 replies are
understood: simple strings, errors, integers, bulk strings, arrays (nested, null), maps, sets,
attributes, doubles, booleans, nulls, big numbers, verbatim strings and pushes (which answer
no command). Bytes are forwarded unchanged; parsing only observes them.

Faults::

    pause()   a silent partition: nothing moves in either direction, every socket stays open,
              nothing is lost (bytes wait, in the proxy or in the kernel, until resume()).
    resume()  forwards everything held, then carries on.
    cut()     a loud partition: every connection is closed (EOF, or a reset); the next
              connections work normally again.
    pause_after_reply(predicate)
              pause() at the exact byte where the reply to a matching command ends.

While paused, new connections are accepted but frozen too: the client's connect succeeds (the
kernel would complete the TCP handshake of a listening socket anyway) and nothing answers; the
proxy opens their upstream connection only on resume, so the server sees nothing of them
until then. A real blackhole would drop the SYN instead, so a client there fails on its
connect timeout; here it fails on its first read timeout. Bytes a client sends while paused
stay in the kernel and reach the server on resume, even when the client has given up and
closed meanwhile, which is what TCP retransmission does after a partition heals: the server
may run a command whose client saw only a timeout.

Not tracked (forwarded untouched, their commands and replies no longer paired): connections
that enter pub/sub or MONITOR or turn replies off (``CLIENT REPLY``), where replies stop
answering commands one to one, and any connection whose bytes are not RESP. Inline commands
are passed through and split on whitespace.

One thread per proxy runs every socket through a selector; nothing busy-waits (the thread
sleeps in ``select`` until a socket or a control call wakes it), and :meth:`RedisProxy.close`
closes every socket and joins the thread.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType

__all__ = ["Command", "Predicate", "RedisProxy", "RespError", "RespReader", "Value", "command"]

Predicate = Callable[[list[bytes]], bool]
"""Chooses commands by their arguments, e.g. ``[b"EVALSHA", b"9f2c...", b"1", b"key"]``."""

_SIMPLE = frozenset(b"+-:,#_(")  # one line: simple string, error, integer, double, boolean...
_BULK = frozenset(b"$=!")  # a length line, then that many bytes: bulk, verbatim, bulk error
_AGGREGATE = frozenset(b"*~>")  # a count line, then that many values: array, set, push
_PAIRS = frozenset(b"%|")  # a count line, then twice that many values: map, attribute
_TYPES = _SIMPLE | _BULK | _AGGREGATE | _PAIRS
_ATTRIBUTE = ord("|")
_PUSH = ord(">")
_MAX_LINE = 1 << 20
_UNTRACKED = frozenset({b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"MONITOR"})

_CHUNK = 1 << 16  # bytes read from a socket at a time
_HIGH_WATER = 1 << 22  # a direction holding this much stops reading until it drains
_CONNECT_TIMEOUT = 2.0  # to the upstream redis-server, which is local
_CONTROL_TIMEOUT = 5.0  # for a control call waiting on the proxy's thread


def command(name: str | bytes, *leading: str | bytes) -> Predicate:
    """A predicate for command ``name`` (any case) whose first arguments are ``leading``.

    ``command("EVALSHA", sha)`` matches every ``EVALSHA`` of that script.
    """
    wanted = (name.encode() if isinstance(name, str) else name).upper()
    first = [arg.encode() if isinstance(arg, str) else arg for arg in leading]

    def matches(args: list[bytes]) -> bool:
        return bool(args) and args[0].upper() == wanted and args[1 : 1 + len(first)] == first

    return matches


# --------------------------------------------------------------------------------------------
# RESP


class RespError(ValueError):
    """The bytes are not RESP: the connection is forwarded untracked from then on."""


@dataclass(frozen=True)
class Value:
    """One complete top-level RESP value found by :meth:`RespReader.feed`."""

    end: int
    """Where it ends in the chunk just fed (one past its last byte)."""
    kind: int
    """Its type byte (``ord("+")``, ``ord("*")``...); an inline command's is ``ord("*")``."""
    args: list[bytes] | None = None
    """The arguments of a command (readers made with ``commands=True``)."""


@dataclass
class _Open:
    """An aggregate whose elements are still arriving."""

    left: int
    attribute: bool


class RespReader:
    """Splits a byte stream into complete RESP values, resumable at any byte.

    Feed chunks as they arrive, cut anywhere (inside a length line, inside a bulk string);
    each call returns the values that ended in that chunk. Bulk payloads are skipped by their
    length without being copied, except a command's arguments when ``commands`` is true.
    """

    def __init__(self, *, commands: bool = False) -> None:
        self._commands = commands
        self._line = bytearray()  # an incomplete header line
        self._bulk_left = 0  # bytes of a bulk payload (and its CRLF) still to come
        self._bulk: bytearray | None = None  # that payload, when it is an argument
        self._open: list[_Open] = []
        self._kind: int | None = None  # the type of the top-level value being read
        self._args: list[bytes] = []

    def feed(self, data: bytes) -> list[Value]:
        values: list[Value] = []
        at, size = 0, len(data)
        while at < size:
            if self._bulk_left:
                take = min(self._bulk_left, size - at)
                if self._bulk is not None:
                    self._bulk += data[at : at + take]
                at += take
                self._bulk_left -= take
                if self._bulk_left:
                    break
                if self._bulk is not None:
                    if not self._bulk.endswith(b"\r\n"):
                        raise RespError("a bulk string longer than its length")
                    self._args.append(bytes(self._bulk[:-2]))
                    self._bulk = None
                if self._element_done():
                    values.append(self._emit(at))
                continue
            newline = data.find(b"\n", at)
            if newline < 0:
                self._line += data[at:]
                if len(self._line) > _MAX_LINE:
                    raise RespError(f"a line longer than {_MAX_LINE} bytes")
                break
            self._line += data[at : newline + 1]
            at = newline + 1
            line = bytes(self._line)
            self._line.clear()
            if self._header(line):
                values.append(self._emit(at))
        return values

    def _header(self, line: bytes) -> bool:
        """Take one line; True when it completes a top-level value."""
        kind = line[0]
        if self._kind is None:
            if kind not in _TYPES:
                if not self._commands:
                    raise RespError(f"not a RESP type: {line[:20]!r}")
                self._args = line.split()  # an inline command
                if not self._args:
                    return False  # a blank line: not a command
                self._kind = ord("*")
                return True
            self._kind = kind
        if not line.endswith(b"\r\n"):
            raise RespError(f"a line without CRLF: {line[:20]!r}")
        if kind in _SIMPLE:
            return self._element_done()
        try:
            count = int(line[1:-2])
        except ValueError:
            raise RespError(f"not a length: {line[:20]!r}") from None
        if kind in _BULK:
            if count < 0:  # RESP2's null bulk string
                return self._element_done()
            self._bulk_left = count + 2
            argument = self._commands and len(self._open) <= 1
            self._bulk = bytearray() if argument else None
            return False
        if kind not in _AGGREGATE and kind not in _PAIRS:
            raise RespError(f"not a RESP type: {line[:20]!r}")
        if kind in _PAIRS:
            count *= 2
        if count > 0:
            self._open.append(_Open(count, kind == _ATTRIBUTE))
            return False
        if kind == _ATTRIBUTE:  # an empty attribute annotates nothing
            if not self._open:
                self._kind = None
            return False
        return self._element_done()  # empty, or RESP2's null array

    def _element_done(self) -> bool:
        """One value ended; close the aggregates it completes. True at top level."""
        while self._open:
            innermost = self._open[-1]
            innermost.left -= 1
            if innermost.left:
                return False
            self._open.pop()
            if innermost.attribute:
                # An attribute annotates the value after it and is no element itself.
                if not self._open:
                    self._kind = None
                return False
        return True

    def _emit(self, end: int) -> Value:
        assert self._kind is not None
        value = Value(end, self._kind, self._args if self._commands else None)
        self._kind, self._args = None, []
        return value


# --------------------------------------------------------------------------------------------
# Connections


@dataclass
class Command:
    """A client command the proxy saw, and the type of its reply once one came."""

    connection: int
    """Which client connection sent it (numbered from 1 in the order of accepting)."""
    args: tuple[bytes, ...]
    reply: str | None = None
    """The reply's RESP type (``"+"``, ``"-"`` for an error, ``"$"``...); None before it."""


@dataclass(eq=False)
class _Pipe:
    """One direction of a connection: bytes read from ``source``, not yet sent on."""

    source: socket.socket
    reader: RespReader
    held: bytearray = field(default_factory=bytearray)
    may_send: int = 0
    """While paused: how many leading bytes of ``held`` may still go (the rest of a reply
    that triggered the pause)."""
    ended: bool = False
    """The source sent EOF: close the connection once ``held`` is delivered."""

    def sendable(self, paused: bool) -> int:
        return min(self.may_send, len(self.held)) if paused else len(self.held)


@dataclass(eq=False)
class _Link:
    """A client connection and its own connection to the server."""

    number: int
    client: socket.socket
    upstream: socket.socket | None = None
    requests: _Pipe = field(init=False)
    replies: _Pipe = field(init=False)
    waiting: deque[Command] = field(default_factory=deque)
    """Commands sent on, in order, whose replies have not come yet."""
    tracked: bool = True

    def __post_init__(self) -> None:
        self.requests = _Pipe(self.client, RespReader(commands=True))

    def attach(self, upstream: socket.socket) -> None:
        self.upstream = upstream
        self.replies = _Pipe(upstream, RespReader())

    def pipes(self) -> list[_Pipe]:
        return [self.requests, self.replies] if self.upstream is not None else [self.requests]


@dataclass(eq=False)
class _Trigger:
    predicate: Predicate
    on_pause: Callable[[], object] | None
    event: threading.Event
    pipe: _Pipe | None = None
    """Once it fired: the replies it holds back until the matching reply is delivered."""


# --------------------------------------------------------------------------------------------
# The proxy


class RedisProxy:
    """A proxy on 127.0.0.1 (a free port) to the redis-server at ``upstream``.

    Listening and forwarding from construction; use as a context manager or :meth:`close`.
    Every client connection gets a connection of its own to the server. ``log_size`` bounds
    the log of commands kept for :meth:`commands`.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, log_size: int = 10_000) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._links: dict[int, _Link] = {}
        self._accepted = 0
        self._log: deque[Command] = deque(maxlen=log_size)
        self._seen = 0
        self._paused = False
        self._trigger: _Trigger | None = None
        self._cuts_asked = 0
        self._cuts_done = 0
        self._reset_on_cut = False
        self._closing = False
        self._stopped = False
        self._errors: list[BaseException] = []
        self._interest: dict[socket.socket, int] = {}
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._wake_reader, self._wake_writer = socket.socketpair()
        try:
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(128)
            self._listener.setblocking(False)
            self._wake_reader.setblocking(False)
            self._wake_writer.setblocking(False)
            self._selector.register(self._listener, selectors.EVENT_READ)
            self._selector.register(self._wake_reader, selectors.EVENT_READ)
        except BaseException:
            self._close_own_sockets()
            raise
        self.port: int = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._thread = threading.Thread(
            target=self._run, name=f"redis-proxy-{self.port}", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> RedisProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- faults -----------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop forwarding in both directions, on every connection, keeping sockets open.

        Once this returns, no further byte reaches a client or the server until
        :meth:`resume`. Pausing a paused proxy changes nothing.
        """
        with self._lock:
            if not self._paused:
                self._freeze()
        self._wake()

    def resume(self) -> None:
        """Forward everything held, then carry on (connecting the connections accepted
        while paused to the server)."""
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            trigger = self._trigger
            if trigger is not None and trigger.pipe is not None:
                # Resumed before the matching reply was out: the pause is over already, so
                # on_pause is not called; whoever waits on the event is released.
                self._trigger = None
                trigger.event.set()
        self._wake()

    def cut(self, *, reset: bool = False) -> None:
        """Close every connection, client and server side; connections made afterwards work
        as usual (frozen, if paused).

        Clients see EOF, or a reset with ``reset`` (also, as the kernel does, when the proxy
        had not read all they sent, e.g. while paused)."""
        if threading.current_thread() is self._thread:  # from on_pause
            with self._lock:
                self._cut_now(reset)
            return
        with self._changed:
            self._cuts_asked += 1
            asked = self._cuts_asked
            self._reset_on_cut = self._reset_on_cut or reset
            self._wake()
            done = self._changed.wait_for(
                lambda: self._cuts_done >= asked or self._stopped, _CONTROL_TIMEOUT
            )
        if not done:
            raise TimeoutError("the proxy's thread did not cut the connections")

    def pause_after_reply(
        self, predicate: Predicate, on_pause: Callable[[], object] | None = None
    ) -> threading.Event:
        """Arm a one-shot pause: after the reply to the next command matching ``predicate``.

        The reply is forwarded to its client exactly up to its last byte; whatever follows
        it (the next replies of a pipeline, even in the same TCP segment) is held, and the
        whole proxy is paused as by :meth:`pause`. Then ``on_pause()`` is called, from the
        proxy's thread, and the returned event is set. A predicate or ``on_pause`` that raises
        is reported by :meth:`close`. One trigger at a time; :meth:`disarm` removes it.
        """
        event = threading.Event()
        with self._lock:
            if self._trigger is not None:
                raise RuntimeError("a pause_after_reply trigger is armed already")
            self._trigger = _Trigger(predicate, on_pause, event)
        return event

    def disarm(self) -> bool:
        """Remove the trigger that has not fired yet; False if there is none."""
        with self._lock:
            if self._trigger is None or self._trigger.pipe is not None:
                return False
            self._trigger = None
            return True

    # -- observations -----------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Client connections open now."""
        with self._lock:
            return len(self._links)

    @property
    def accepted(self) -> int:
        """Client connections accepted since the start."""
        with self._lock:
            return self._accepted

    @property
    def command_count(self) -> int:
        """Commands seen since the start, beyond the bound of the log."""
        with self._lock:
            return self._seen

    def commands(self, predicate: Predicate | None = None) -> list[Command]:
        """The logged commands (the most recent ``log_size``) matching ``predicate``, oldest
        first; copies."""
        with self._lock:
            logged = [replace(entry) for entry in self._log]
        return [entry for entry in logged if predicate is None or predicate(list(entry.args))]

    def commands_seen(self, predicate: Predicate | None = None) -> int:
        """How many logged commands match ``predicate`` (all with None)."""
        return len(self.commands(predicate))

    # -- shutdown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection and the listening socket, and join the thread. Raises if a
        predicate, an ``on_pause`` or the proxy itself failed meanwhile."""
        with self._lock:
            self._closing = True
        self._wake()
        if self._thread is not threading.current_thread():  # else it stops after on_pause
            self._thread.join(_CONTROL_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError("the proxy's thread did not stop")
        errors, self._errors = self._errors, []
        if errors:
            raise RuntimeError(f"the Redis proxy failed: {errors[0]!r}") from errors[0]

    def _close_own_sockets(self) -> None:
        self._selector.close()
        for own in (self._listener, self._wake_reader, self._wake_writer):
            own.close()

    # -- the proxy's thread -----------------------------------------------------------------

    def _wake(self) -> None:
        # Full (a wake-up is pending anyway) or closed (stopping): nothing to do.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _run(self) -> None:
        try:
            while True:
                with self._changed:
                    if self._closing:
                        break
                    if self._cuts_done < self._cuts_asked:
                        self._cut_now(self._reset_on_cut)
                        self._cuts_done, self._reset_on_cut = self._cuts_asked, False
                        self._changed.notify_all()
                    if not self._paused:
                        for link in list(self._links.values()):
                            if link.upstream is None:
                                self._connect(link)
                    self._watch_all()
                ready = self._selector.select()
                with self._lock:
                    for key, events in ready:
                        self._handle(key, events)
                    finished = self._finished_trigger()
                if finished is not None:
                    self._finish(finished)
        except BaseException as error:
            self._errors.append(error)
        finally:
            with self._changed:
                for link in list(self._links.values()):
                    self._drop(link)
                self._close_own_sockets()
                self._stopped = True
                self._changed.notify_all()

    def _handle(self, key: selectors.SelectorKey, events: int) -> None:
        if key.fileobj is self._wake_reader:
            try:
                while self._wake_reader.recv(4096):
                    pass
            except BlockingIOError:
                pass
            return
        if key.fileobj is self._listener:
            self._accept()
            return
        link, reading, writing = key.data
        if link.number not in self._links:
            return  # dropped by an earlier event of this round
        if events & selectors.EVENT_WRITE:
            self._send(link, writing)
        if events & selectors.EVENT_READ and link.number in self._links:
            self._receive(link, reading)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._accepted += 1
            link = _Link(self._accepted, client)
            self._links[link.number] = link
            if not self._paused:
                self._connect(link)

    def _connect(self, link: _Link) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=_CONNECT_TIMEOUT)
        except OSError:
            self._drop(link)  # the server is down: the client sees its connection close
            return
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.attach(upstream)

    def _receive(self, link: _Link, pipe: _Pipe) -> None:
        if self._paused:
            return
        try:
            data = pipe.source.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(link)
            return
        if not data:
            pipe.ended = True
            if not pipe.held:
                self._drop(link)
            return
        before = len(pipe.held)
        pipe.held += data
        if link.tracked:
            try:
                values = pipe.reader.feed(data)
            except RespError:
                self._untrack(link)
                return
            if pipe is link.requests:
                self._commands_sent(link, values)
            else:
                self._replies_received(link, pipe, values, before)

    def _commands_sent(self, link: _Link, values: list[Value]) -> None:
        for value in values:
            if not value.args:
                continue  # an empty command, which the server ignores without a reply
            entry = Command(link.number, tuple(value.args))
            self._log.append(entry)
            self._seen += 1
            name, *rest = (arg.upper() for arg in value.args[:2])
            reply_option = name == b"CLIENT" and rest == [b"REPLY"]
            if name in _UNTRACKED or reply_option:
                self._untrack(link)
                return
            link.waiting.append(entry)

    def _replies_received(self, link: _Link, pipe: _Pipe, values: list[Value], before: int) -> None:
        for value in values:
            if value.kind == _PUSH:
                continue  # out of band: answers no command
            if not link.waiting:
                self._untrack(link)  # a reply to nothing: pairing is lost
                return
            entry = link.waiting.popleft()
            entry.reply = chr(value.kind)
            trigger = self._trigger
            if trigger is None or trigger.pipe is not None:
                continue
            try:
                matched = trigger.predicate(list(entry.args))
            except Exception as error:
                self._errors.append(error)
                self._trigger = None
                continue
            if matched:
                self._freeze()
                pipe.may_send = before + value.end
                trigger.pipe = pipe

    def _untrack(self, link: _Link) -> None:
        link.tracked = False
        link.waiting.clear()

    def _send(self, link: _Link, pipe: _Pipe) -> None:
        count = pipe.sendable(self._paused)
        if not count:
            return
        target = link.upstream if pipe is link.requests else link.client
        assert target is not None
        try:
            sent = target.send(pipe.held[: min(count, _CHUNK * 4)])
        except BlockingIOError:
            return
        except OSError:
            self._drop(link)
            return
        del pipe.held[:sent]
        if self._paused:
            pipe.may_send -= sent
        if pipe.ended and not pipe.held:
            self._drop(link)

    def _freeze(self) -> None:
        self._paused = True
        for link in self._links.values():
            for pipe in link.pipes():
                pipe.may_send = 0

    def _finished_trigger(self) -> _Trigger | None:
        """The fired trigger whose reply is delivered (or whose connection is gone)."""
        trigger = self._trigger
        if trigger is None or trigger.pipe is None:
            return None
        delivered = trigger.pipe.may_send <= 0 or not any(
            trigger.pipe in link.pipes() for link in self._links.values()
        )
        if not delivered:
            return None
        self._trigger = None
        return trigger

    def _finish(self, trigger: _Trigger) -> None:
        try:
            if trigger.on_pause is not None:
                trigger.on_pause()
        except Exception as error:
            self._errors.append(error)
        finally:
            trigger.event.set()

    def _cut_now(self, reset: bool) -> None:
        for link in list(self._links.values()):
            self._drop(link, reset=reset)

    def _drop(self, link: _Link, *, reset: bool = False) -> None:
        self._links.pop(link.number, None)
        for own in (link.client, link.upstream):
            if own is None:
                continue
            if self._interest.pop(own, 0):
                self._selector.unregister(own)
            if reset:
                own.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            own.close()

    def _watch_all(self) -> None:
        """Ask the selector for what each socket can do now; nothing else, so that the
        thread sleeps whenever nothing can move."""
        for link in self._links.values():
            requests = link.requests
            if link.upstream is None:
                self._watch(link.client, 0, None)
                continue
            replies = link.replies
            self._watch(
                link.client,
                self._events(requests, replies),
                (link, requests, replies),
            )
            self._watch(
                link.upstream,
                self._events(replies, requests),
                (link, replies, requests),
            )

    def _events(self, reading: _Pipe, writing: _Pipe) -> int:
        events = 0
        if not self._paused and not reading.ended and len(reading.held) < _HIGH_WATER:
            events |= selectors.EVENT_READ
        if writing.sendable(self._paused):
            events |= selectors.EVENT_WRITE
        return events

    def _watch(self, own: socket.socket, events: int, data: object) -> None:
        current = self._interest.get(own, 0)
        if events == current:
            return
        if not current:
            self._selector.register(own, events, data)
        elif not events:
            self._selector.unregister(own)
        else:
            self._selector.modify(own, events, data)
        if events:
            self._interest[own] = events
        else:
            self._interest.pop(own, None)
