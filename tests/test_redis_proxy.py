"""The fault-injection proxy of ``tests/redis_proxy.py``, against a real redis-server.

The proxy is only useful if it is invisible until told otherwise, and exact when told: these
tests pin down that bytes pass unchanged (pipelines, binary payloads, RESP3), that commands and
replies are paired the way the server answers them, and what each fault does to a client:
``pause()`` leaves it waiting with nothing lost, ``pause_after_reply`` stops at the last byte
of one reply, ``cut()`` closes its connection and the next one works.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import RedisServer
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_proxy import RedisProxy, RespReader, command

WAIT = 2.0  # seconds a test waits for something that should happen at once
QUIET = 0.3  # seconds of silence that show nothing is coming


@pytest.fixture
def proxy(redis_client: redis.Redis) -> Iterator[RedisProxy]:
    """A proxy in front of the session server, emptied first (``redis_client``)."""
    host, port = (redis_client.connection_pool.connection_kwargs[k] for k in ("host", "port"))
    with RedisProxy(host, port) as running:
        yield running


def through(proxy: RedisProxy, **options: Any) -> redis.Redis:
    """A redis-py client of the proxy, which gives up on the first timeout or error."""
    defaults: dict[str, Any] = {"socket_timeout": 0.5, "retry": Retry(NoBackoff(), 0)}
    return redis.Redis.from_url(proxy.url, **{**defaults, **options})


def pack(*args: bytes | str) -> bytes:
    """One command as a client sends it: a RESP array of bulk strings."""
    raw = [arg.encode() if isinstance(arg, str) else arg for arg in args]
    return b"*%d\r\n" % len(raw) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in raw)


def raw_client(proxy: RedisProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)


def receive(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def nothing_arrives(sock: socket.socket) -> bool:
    sock.settimeout(QUIET)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(WAIT)
    raise AssertionError(f"received {data!r}")


def drain(sock: socket.socket) -> bytes:
    """Everything that arrives until a moment of silence."""
    data = b""
    sock.settimeout(QUIET)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    finally:
        sock.settimeout(WAIT)
    return data


def closed_by_peer(sock: socket.socket) -> bool:
    """EOF, or a reset (a socket closed with unread data in it resets the connection)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def answered(proxy: RedisProxy, name: str) -> bool:
    """Whether the last ``name`` command the proxy saw has its reply."""
    seen = proxy.commands(command(name))
    return bool(seen) and seen[-1].reply is not None


def arrive_within(seconds: float, condition: Any) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --------------------------------------------------------------------------------------------
# Invisible until told otherwise


def test_commands_pass_through_and_are_logged_with_the_type_of_their_reply(
    proxy: RedisProxy, redis_client: redis.Redis
) -> None:
    client = through(proxy)

    assert client.set("greeting", "hello") is True
    assert client.get("greeting") == b"hello"
    assert client.incr("counter") == 1
    assert client.get("missing") is None
    with pytest.raises(redis.ResponseError):
        client.lpush("greeting", "x")  # WRONGTYPE
    client.close()

    assert redis_client.get("greeting") == b"hello"
    mine = [(c.args, c.reply) for c in proxy.commands() if not c.args[0].startswith(b"CLIENT")]
    assert mine == [
        ((b"SET", b"greeting", b"hello"), "+"),
        ((b"GET", b"greeting"), "$"),
        ((b"INCRBY", b"counter", b"1"), ":"),
        ((b"GET", b"missing"), "$"),
        ((b"LPUSH", b"greeting", b"x"), "-"),
    ]
    assert proxy.commands_seen(command("get")) == 2
    assert proxy.accepted == 1


def test_a_pipeline_of_100_commands_passes_through_intact_and_counts_each_command(
    proxy: RedisProxy,
) -> None:
    client = through(proxy)
    pipeline = client.pipeline(transaction=False)
    for i in range(50):
        pipeline.set(f"key-{i}", i)
        pipeline.get(f"key-{i}")

    replies = pipeline.execute()
    client.close()

    assert replies == [value for i in range(50) for value in (True, str(i).encode())]
    assert proxy.commands_seen(command("SET")) == 50
    assert proxy.commands_seen(command("GET")) == 50
    assert all(c.reply is not None for c in proxy.commands(command("GET")))


def test_the_log_keeps_the_most_recent_commands_and_the_count_all(
    redis_server: RedisServer,
) -> None:
    echoes = [str(i) for i in range(25)]
    replies = b"".join(b"$%d\r\n%s\r\n" % (len(e), e.encode()) for e in echoes)
    with RedisProxy("127.0.0.1", redis_server.port, log_size=10) as proxy:
        with raw_client(proxy) as sock:
            sock.sendall(b"".join(pack("ECHO", echo) for echo in echoes))
            assert receive(sock, len(replies)) == replies

        assert [c.args for c in proxy.commands()] == [(b"ECHO", e.encode()) for e in echoes[15:]]
        assert proxy.command_count == 25


def test_binary_payloads_survive_both_ways_and_are_read_as_one_argument(
    proxy: RedisProxy,
) -> None:
    """Bulk strings full of CRLFs and RESP-looking bytes, the largest spanning many reads."""
    payloads = [
        b"\r\n",
        b"$5\r\n*1\r\n+OK\r\n-ERR\r\n",
        bytes(range(256)) * 4,
        bytes(range(256)) * 8192,  # 2 MiB
    ]
    client = through(proxy, socket_timeout=5)

    for i, payload in enumerate(payloads):
        client.set(f"blob-{i}", payload)
    pipeline = client.pipeline(transaction=False)
    for i in range(len(payloads)):
        pipeline.get(f"blob-{i}")
    assert pipeline.execute() == payloads
    client.close()

    assert [c.args[2] for c in proxy.commands(command("SET"))] == payloads


def test_resp3_replies_of_every_type_are_paired_with_their_commands(proxy: RedisProxy) -> None:
    """Real replies of a RESP3 connection: a push (an invalidation) answers no command."""
    scripts = {
        "redis.setresp(3); return {double=3.5}": ",",
        "redis.setresp(3); return true": "#",
        "redis.setresp(3); return {big_number='123456789012345678901234567890'}": "(",
        "redis.setresp(3); return {verbatim_string={format='txt', string='a\\r\\nb'}}": "=",
        "redis.setresp(3); return {map={a=1, b={set={'x'}}}}": "%",
        "redis.setresp(3); return {set={'x', 'y'}}": "~",
        "return nil": "_",
        "return {1, {2, {}}}": "*",
    }
    with raw_client(proxy) as sock, through(proxy) as other:
        sock.sendall(pack("HELLO", "3") + pack("CLIENT", "TRACKING", "on") + pack("GET", "k"))
        assert arrive_within(WAIT, lambda: proxy.commands_seen(command("GET", "k")) == 1)
        other.set("k", "v")  # invalidates k: a push to the tracking connection
        sock.sendall(b"".join(pack("EVAL", script, "0") for script in scripts) + pack("PING"))
        assert arrive_within(WAIT, lambda: answered(proxy, "PING"))
        received = drain(sock)

    assert b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n" in received
    replies = {c.args[1].decode(): c.reply for c in proxy.commands(command("EVAL"))}
    assert replies == scripts
    assert [c.reply for c in proxy.commands(command("HELLO"))] == ["%"]
    assert [c.reply for c in proxy.commands(command("PING"))] == ["+"]


def test_a_redis_py_client_speaking_resp3_works_through_the_proxy(proxy: RedisProxy) -> None:
    client = through(proxy, protocol=3)
    client.hset("hash", mapping={"a": 1})
    client.sadd("set", "x", "y")
    client.zadd("zset", {"member": 1.5})
    pipeline = client.pipeline(transaction=False)
    pipeline.hgetall("hash").smembers("set").zscore("zset", "member").get("missing")

    assert pipeline.execute() == [{b"a": b"1"}, {b"x", b"y"}, 1.5, None]
    client.close()


def test_a_subscribed_connection_is_forwarded_untracked(proxy: RedisProxy) -> None:
    """Messages answer no command: the proxy stops pairing on that connection, and still
    forwards everything."""
    client, publisher = through(proxy, socket_timeout=WAIT), through(proxy)
    pubsub = client.pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=WAIT)["type"] == "subscribe"

    publisher.publish("news", "hello")

    message = pubsub.get_message(timeout=WAIT)
    assert message is not None
    assert message["data"] == b"hello"
    pubsub.close()
    client.close()
    publisher.close()


# --------------------------------------------------------------------------------------------
# The reader, fed any way the bytes may arrive

REPLIES = [
    b"+OK\r\n",
    b"-ERR boom\r\n",
    b":-42\r\n",
    b"$5\r\na\r\nbc\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n*-1\r\n%1\r\n+k\r\n~2\r\n#t\r\n#f\r\n",
    b"%2\r\n+a\r\n,3.25\r\n+b\r\n_\r\n",
    b"~1\r\n(123456789012345678901234567890\r\n",
    b"=9\r\ntxt:a\r\nbc\r\n",
    b"!5\r\nOOPS!\r\n",
    b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
    b"|1\r\n+ttl\r\n:3600\r\n$2\r\nhi\r\n",  # an attribute, then the reply it annotates
    b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n",  # an attribute inside an array
]


def ends(values: list[Any], offset: int = 0) -> list[int]:
    return [offset + value.end for value in values]


def test_the_reader_finds_the_end_of_every_resp2_and_resp3_reply() -> None:
    stream = b"".join(REPLIES)
    expected = [sum(len(r) for r in REPLIES[: i + 1]) for i in range(len(REPLIES))]

    whole = RespReader().feed(stream)

    assert ends(whole) == expected
    assert [chr(v.kind) for v in whole] == [chr(r[0]) for r in REPLIES[:-2]] + ["$", "*"]


def test_the_reader_resumes_at_any_byte() -> None:
    stream = b"".join(REPLIES)
    expected = ends(RespReader().feed(stream))
    reader = RespReader()

    found = [i + 1 for i in range(len(stream)) for _ in reader.feed(stream[i : i + 1])]

    assert found == expected


def test_the_command_reader_collects_arguments_of_resp_and_inline_commands() -> None:
    stream = pack("SET", "k", b"a\r\nb") + b"PING\r\n" + pack("EVALSHA", "abc", "0") + b"*0\r\n"
    reader = RespReader(commands=True)

    values = [v for i in range(0, len(stream), 3) for v in reader.feed(stream[i : i + 3])]

    assert [v.args for v in values] == [
        [b"SET", b"k", b"a\r\nb"],
        [b"PING"],
        [b"EVALSHA", b"abc", b"0"],
        [],
    ]


# --------------------------------------------------------------------------------------------
# pause() and resume(): a silent partition


def test_pause_makes_a_client_time_out_and_holds_its_command_until_resume(
    proxy: RedisProxy, redis_client: redis.Redis
) -> None:
    client = through(proxy)
    assert client.ping() is True
    proxy.pause()

    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.set("k", "during the pause")
    assert 0.4 < time.monotonic() - started < 1.5
    assert redis_client.get("k") is None, "the server must not see a held command"

    proxy.resume()

    assert arrive_within(WAIT, lambda: redis_client.get("k") == b"during the pause")
    assert client.get("k") == b"during the pause"
    client.close()


def test_while_paused_no_reply_is_delivered_and_resume_delivers_it(proxy: RedisProxy) -> None:
    with raw_client(proxy) as sock:
        sock.sendall(pack("PING"))
        assert receive(sock, 7) == b"+PONG\r\n"
        proxy.pause()
        sock.sendall(pack("ECHO", "held"))

        assert nothing_arrives(sock)
        proxy.resume()
        assert receive(sock, 10) == b"$4\r\nheld\r\n"


def test_a_connection_made_while_paused_is_accepted_but_frozen_until_resume(
    proxy: RedisProxy, redis_client: redis.Redis
) -> None:
    proxy.pause()
    before = len(redis_client.client_list())

    with raw_client(proxy) as sock:
        sock.sendall(pack("PING"))
        assert nothing_arrives(sock)
        assert proxy.connections == 1
        assert len(redis_client.client_list()) == before, "no upstream connection yet"

        proxy.resume()
        assert receive(sock, 7) == b"+PONG\r\n"


def test_a_paused_proxy_with_bytes_waiting_on_every_side_sleeps(proxy: RedisProxy) -> None:
    with raw_client(proxy) as sock, raw_client(proxy) as other:
        sock.sendall(pack("PING"))
        assert receive(sock, 7) == b"+PONG\r\n"
        proxy.pause()
        sock.sendall(pack("ECHO", "x" * 100_000))
        other.sendall(pack("PING"))

        started = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - started < 0.05
        proxy.resume()
        assert receive(other, 7) == b"+PONG\r\n"


# --------------------------------------------------------------------------------------------
# pause_after_reply(): a partition at an exact byte

SCRIPT = "return 'first\\r\\nline'"  # a reply with a CRLF inside


def test_pause_after_reply_stops_exactly_at_the_end_of_the_matching_reply(
    proxy: RedisProxy, redis_client: redis.Redis
) -> None:
    """In a pipeline sent in one segment: the replies before the EVALSHA's and its own arrive,
    not one byte more, although the server ran every command."""
    sha = redis_client.script_load(SCRIPT)
    other = redis_client.script_load("return 2")
    paused = proxy.pause_after_reply(command("EVALSHA", sha))
    pipeline = [
        pack("SET", "k", "v"),
        pack("EVALSHA", other, "0"),
        pack("EVALSHA", sha, "0"),
        pack("INCR", "after"),
        pack("GET", "k"),
    ]

    with raw_client(proxy) as sock:
        sock.sendall(b"".join(pipeline))

        assert paused.wait(WAIT)
        assert proxy.paused
        delivered = b"+OK\r\n:2\r\n$11\r\nfirst\r\nline\r\n"
        assert receive(sock, len(delivered)) == delivered
        assert nothing_arrives(sock)
        assert redis_client.get("after") == b"1", "the commands reached the server"

        proxy.resume()
        assert receive(sock, 11) == b":1\r\n$1\r\nv\r\n"
        assert nothing_arrives(sock)


def test_pause_after_reply_lets_a_client_read_that_reply_and_hangs_its_next_call(
    proxy: RedisProxy,
) -> None:
    client = through(proxy)
    script = client.register_script(SCRIPT)
    client.script_load(SCRIPT)  # or the first EVALSHA's reply is NOSCRIPT
    paused = proxy.pause_after_reply(command("EVALSHA", script.sha))

    assert script() == b"first\r\nline"
    assert paused.wait(WAIT)
    with pytest.raises(redis.TimeoutError):
        client.ping()

    proxy.resume()
    assert client.ping() is True
    client.close()


def test_pause_after_reply_inside_a_redis_py_pipeline_holds_the_rest_of_it(
    proxy: RedisProxy,
) -> None:
    client = through(proxy, socket_timeout=WAIT)
    script = client.register_script(SCRIPT)
    client.script_load(SCRIPT)  # loaded: the pipeline sends a bare EVALSHA
    paused = proxy.pause_after_reply(command("EVALSHA", script.sha))
    results: list[Any] = []
    pipeline = client.pipeline(transaction=False)
    pipeline.set("k", "v")
    script(client=pipeline)
    pipeline.get("k")
    worker = threading.Thread(target=lambda: results.extend(pipeline.execute()))

    worker.start()
    assert paused.wait(WAIT)
    worker.join(QUIET)
    assert worker.is_alive(), "the pipeline returned although the GET's reply was held"

    proxy.resume()
    worker.join(WAIT)
    assert results == [True, b"first\r\nline", b"v"]
    client.close()


def test_on_pause_runs_once_the_proxy_is_paused_and_before_the_event_is_set(
    proxy: RedisProxy,
) -> None:
    seen: list[tuple[bool, bool]] = []
    client = through(proxy)
    paused = proxy.pause_after_reply(
        command("ECHO"), on_pause=lambda: seen.append((proxy.paused, paused.is_set()))
    )

    client.echo("one")
    assert paused.wait(WAIT)
    proxy.resume()
    client.echo("two")
    client.close()

    assert seen == [(True, False)], "one-shot: the second ECHO does not pause"
    assert not proxy.paused


def test_on_pause_may_cut_the_connections_right_after_the_reply(proxy: RedisProxy) -> None:
    """A loud partition at an exact point: the matching reply arrives, then EOF."""
    paused = proxy.pause_after_reply(command("ECHO"), on_pause=proxy.cut)

    with raw_client(proxy) as sock:
        sock.sendall(pack("ECHO", "last") + pack("PING"))
        assert paused.wait(WAIT)
        assert receive(sock, 10) == b"$4\r\nlast\r\n"
        assert closed_by_peer(sock)
    proxy.resume()


def test_a_disarmed_trigger_never_fires_and_one_trigger_is_armed_at_a_time(
    proxy: RedisProxy,
) -> None:
    paused = proxy.pause_after_reply(command("PING"))
    with pytest.raises(RuntimeError, match="armed already"):
        proxy.pause_after_reply(command("ECHO"))

    assert proxy.disarm() is True
    client = through(proxy)
    assert client.ping() is True
    client.close()

    assert not paused.is_set()
    assert not proxy.paused
    assert proxy.disarm() is False


def test_a_predicate_that_raises_is_reported_by_close(redis_server: RedisServer) -> None:
    def broken(args: list[bytes]) -> bool:
        raise KeyError("broken predicate")

    proxy = RedisProxy("127.0.0.1", redis_server.port)
    proxy.pause_after_reply(broken)
    client = through(proxy)
    assert client.ping() is True, "a failing predicate matches nothing"
    client.close()

    with pytest.raises(RuntimeError, match="broken predicate"):
        proxy.close()


# --------------------------------------------------------------------------------------------
# cut(): a loud partition


def test_cut_closes_every_connection_and_the_next_connection_works(proxy: RedisProxy) -> None:
    """A client on its connection sees a ConnectionError, and its next call reconnects; a
    pool notices the closed connection before it hands it out, and reconnects unseen."""
    single = through(proxy, single_connection_client=True)
    pooled = through(proxy)
    assert single.ping() is True
    assert pooled.ping() is True
    assert proxy.connections == 2

    proxy.cut()

    assert proxy.connections == 0
    with pytest.raises(redis.ConnectionError):
        single.ping()
    assert single.ping() is True
    assert pooled.ping() is True
    assert proxy.accepted == 4
    single.close()
    pooled.close()


def test_cut_with_reset_resets_the_connections(proxy: RedisProxy) -> None:
    with raw_client(proxy) as sock:
        sock.sendall(pack("PING"))
        assert receive(sock, 7) == b"+PONG\r\n"

        proxy.cut(reset=True)

        with pytest.raises(ConnectionResetError):
            sock.recv(1)


def test_cut_while_paused_closes_the_frozen_connections_too(proxy: RedisProxy) -> None:
    with raw_client(proxy) as sock:
        proxy.pause()
        sock.sendall(pack("PING"))
        assert arrive_within(WAIT, lambda: proxy.connections == 1)

        proxy.cut()

        assert closed_by_peer(sock)
    proxy.resume()
    client = through(proxy)
    assert client.ping() is True
    client.close()


# --------------------------------------------------------------------------------------------
# Shutdown


def test_close_ends_the_thread_and_every_connection(redis_server: RedisServer) -> None:
    proxy = RedisProxy("127.0.0.1", redis_server.port)
    threads = {thread.name for thread in threading.enumerate()}
    assert f"redis-proxy-{proxy.port}" in threads
    with raw_client(proxy) as sock:
        proxy.pause()

        proxy.close()

        assert sock.recv(1) == b""
    assert f"redis-proxy-{proxy.port}" not in {t.name for t in threading.enumerate()}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT).close()
    proxy.close()  # again: nothing to do
