"""The scenario suite both adapters must pass, over real UDP sockets on 127.0.0.1.

Every test runs once on asyncio (``stt_io.asyncio``) and once on trio
(``stt_io.trio``), through anyio's pytest plugin: the ``stt`` fixture is the
adapter module of the backend under test, and the test bodies use only the API
the two adapters share plus anyio for sleeping, timeouts and task groups. Every
test has an overall deadline (``anyio.fail_after``), so a hang fails the test
instead of stalling the suite. The byte views differ in shape (a trio
``HalfCloseableStream``, an asyncio ``StreamReader``/``StreamWriter``
look-alike); ``helpers/byte_views.py`` speaks to each in its own API. What only
one backend has lives in ``test_trio_adapter.py``, ``test_asyncio_adapter.py``
and at the end of this file (uvloop).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import signal
import subprocess
import sys

import anyio
import pytest

import stt_io.asyncio
import stt_io.trio
from stt_io.errors import (
    AuthenticationError,
    ConnectionTimeoutError,
    MessageTooLargeError,
    NodeStoppedError,
    SessionClosedError,
    StreamClosedError,
    StreamIdUsedError,
    StreamResetError,
)
from stt_proto.identity import Identity

from ..helpers import byte_views as views
from ..helpers.echo import echo_server, echo_session

SEED = b"adapter scenario test network seed"

pytestmark = pytest.mark.anyio



class Box:
    """A one-shot result another task fills in (anyio's Event plus a value)."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value = None

    def put(self, value) -> None:
        if not self.event.is_set():
            self.value = value
            self.event.set()

    async def get(self):
        await self.event.wait()
        return self.value


async def gather(*functions):
    """Run the zero-argument coroutine functions concurrently; their results in order."""
    results = [None] * len(functions)

    async def one(i, fn):
        results[i] = await fn()

    async with anyio.create_task_group() as tasks:
        for i, fn in enumerate(functions):
            tasks.start_soon(one, i, fn)
    return results


async def test_request_response_and_errors_are_one_hierarchy(stt):
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            echo_server(server)
            session = await client.connect(server.address, server.node_id)
            assert session.peer_id == server.node_id
            assert session.peer_address == server.address
            stream = session.open_stream()
            assert stream.stream_id % 2 == 1  # the initiator allocates odd ids
            for i in range(50):
                await stream.send(b"request %d" % i)
                assert await stream.receive() == b"request %d" % i
            await stream.send(b"")  # empty messages are messages too
            assert await stream.receive() == b""
            await stream.close()
            with pytest.raises(StreamClosedError):
                await stream.receive()
            with pytest.raises(StreamClosedError):
                await stream.send(b"after close")
            stats = session.statistics()
            assert stats["rtt_smoothed"] > 0 and stats["packets_sent"] > 0
            await session.close()
            assert session.is_closed() and session.close_reason == "graceful"
            with pytest.raises(SessionClosedError) as info:
                session.open_stream()
            assert info.value.reason == "graceful"


async def test_accept_queues_sessions_without_a_handler(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            outbound = await client.connect(server.address, server.node_id)
            inbound = await server.accept()
            assert inbound.peer_id == client.node_id and not inbound.initiator
            stream = outbound.open_stream()
            await stream.send(b"first")
            peer_stream = await inbound.accept_stream()
            assert peer_stream.stream_id == stream.stream_id
            assert await peer_stream.receive() == b"first"
            outbound.send_datagram(b"unreliable")
            assert await inbound.receive_datagram() == b"unreliable"


async def test_stop_receiving_stops_the_sender_and_keeps_our_side_open(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            outbound = await client.connect(server.address, server.node_id)
            inbound = await server.accept()
            stream = outbound.open_stream()
            await stream.send(b"wanted")
            peer_stream = await inbound.accept_stream()
            assert await peer_stream.receive() == b"wanted"
            await peer_stream.stop_receiving(7)
            await peer_stream.stop_receiving(7)  # twice does nothing
            with pytest.raises(StreamClosedError):
                await peer_stream.receive()
            # The sender learns it with our code, within a few sends.
            with pytest.raises(StreamResetError) as info:
                for _ in range(10_000):
                    await stream.send(b"x" * 1000)
            assert info.value.error_code == 7
            # Ending the stopped side says the same, with the peer's code.
            with pytest.raises(StreamResetError) as info:
                await stream.close()
            assert info.value.error_code == 7
            # Our sending side still works: the refusal can say why.
            await peer_stream.send(b"no more, thanks")
            await peer_stream.close()
            assert await stream.receive() == b"no more, thanks"
            with pytest.raises(StreamClosedError):
                await stream.receive()
            # Nothing dropped kept the session's credit: a new stream still flows.
            again = outbound.open_stream()
            await again.send(b"y" * 100_000)
            assert await (await inbound.accept_stream()).receive() == b"y" * 100_000


async def test_a_stream_id_used_once_never_opens_again_in_the_session(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            echo_server(server)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(stream_id=1)
            await stream.send(b"once")
            assert await stream.receive() == b"once"
            await stream.close()
            # Until both sides finish, the id names the same stream; once it is
            # gone, the id is spent for this session (docs/protocol.md 7.5).
            while True:
                try:
                    assert session.get_stream(1).stream_id == 1
                except StreamIdUsedError as exc:
                    assert "already used" in str(exc)
                    break
                await anyio.sleep(0.01)
            with pytest.raises(StreamIdUsedError):
                session.open_stream(stream_id=1)
            assert isinstance(StreamIdUsedError("x"), StreamClosedError)
            fresh = session.open_stream()  # an allocated id is always new
            assert fresh.stream_id not in (1,)
            await fresh.send(b"again")
            assert await fresh.receive() == b"again"


async def test_bidirectional_streaming_and_message_limits(stt):
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, \
                stt.Node(shared_seed=SEED, max_frame_size=100_000) as client:
            accepted = Box()

            @server.on_session
            async def keep(session):
                accepted.put(session)

            session = await client.connect(server.address, server.node_id)
            peer = await accepted.get()
            up = session.get_stream(7)  # application-chosen id, usable before the peer sends

            async def produce(stream, tag, n):
                for i in range(n):
                    await stream.send(b"%s %d " % (tag, i) * 50)
                await stream.close()

            async def consume(stream):
                return [m async for m in stream]

            async def down_side():
                down = await peer.accept_stream()
                assert down.stream_id == 7
                received, _ = await gather(lambda: consume(down),
                                           lambda: produce(down, b"down", 150))
                return received

            got_up, _, got_down = await gather(down_side, lambda: produce(up, b"up", 200),
                                               lambda: consume(up))
            assert got_up == [b"up %d " % i * 50 for i in range(200)]
            assert got_down == [b"down %d " % i * 50 for i in range(150)]
            with pytest.raises(MessageTooLargeError):
                await session.open_stream().send(b"x" * 100_001)


async def test_multiplexed_streams_with_their_own_limits(stt):
    """Video, audio and chat side by side, each stream with its own
    ``max_frame_size``: chat sent during a video backlog is not stuck behind it."""
    frame = 256 * 1024
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            arrivals = []  # (kind, index) in arrival order, all streams together
            done = Box()

            @server.on_session
            async def serve(session):
                async def consume(stream):
                    async for message in stream:
                        arrivals.append((message[:4], int(message[4:12])))
                await gather(*[lambda: session.accept_stream() for _ in range(3)])
                await gather(*(lambda s=s: consume(s) for s in list(session._streams.values())))
                done.put(True)

            session = await client.connect(server.address, server.node_id)
            video = session.open_stream(max_frame_size=frame + 12)
            audio = session.open_stream(max_frame_size=1024)
            chat = session.open_stream(max_frame_size=64)
            with pytest.raises(MessageTooLargeError):
                await chat.send(b"x" * 65)
            with pytest.raises(MessageTooLargeError):
                await audio.send(b"x" * 1025)

            async def produce(stream, kind, count, size, pause):
                for i in range(count):
                    await stream.send(kind + b"%08d" % i + bytes(size))
                    if pause:
                        await anyio.sleep(pause)
                await stream.close()

            await gather(lambda: produce(video, b"vid ", 60, frame, 0),
                         lambda: produce(audio, b"aud ", 20, 900, 0.002),
                         lambda: produce(chat, b"chat", 5, 20, 0.005))
            await done.get()
            for kind, count in ((b"vid ", 60), (b"aud ", 20), (b"chat", 5)):
                assert [i for k, i in arrivals if k == kind] == list(range(count))
            last_video = max(n for n, (k, _) in enumerate(arrivals) if k == b"vid ")
            first_chat = min(n for n, (k, _) in enumerate(arrivals) if k == b"chat")
            assert first_chat < last_video  # chat overtook the video backlog


async def test_connect_with_exponential_backoff_until_the_peer_is_up(stt):
    """Refused while nothing listens, then connected once the node starts on
    that port: the retry loop of ``examples/connect_retry.py``."""
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as probe:
            port, server_identity = probe.address[1], Identity.generate()
        async with stt.Node(shared_seed=SEED) as client:
            attempts = []

            async def start_server_later(task_status=anyio.TASK_STATUS_IGNORED):
                task_status.started()
                await anyio.sleep(0.3)
                async with stt.Node(identity=server_identity, shared_seed=SEED,
                                    port=port) as server:
                    echo_server(server)
                    await anyio.sleep(5)

            async with anyio.create_task_group() as tasks:
                await tasks.start(start_server_later)
                delay = 0.02
                while True:
                    try:
                        session = await client.connect(("127.0.0.1", port),
                                                       server_identity.node_id, timeout=2)
                        break
                    except ConnectionRefusedError:
                        attempts.append(delay)
                        await anyio.sleep(delay)
                        delay = min(delay * 2, 1.0)
                stream = session.open_stream()
                await stream.send(b"up at last")
                assert await stream.receive() == b"up at last"
                assert len(attempts) >= 2  # refused fast, several times, before it came up
                tasks.cancel_scope.cancel()


async def test_a_200_mib_transfer_verified_by_hash(stt):
    size = 200 * 1024 * 1024
    data = os.urandom(1024 * 1024)
    with anyio.fail_after(120):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            digest = Box()

            @server.on_session
            async def receive_file(session):
                stream = await session.accept_stream()
                h = hashlib.blake2b()
                total = 0
                async for chunk in stream:
                    h.update(chunk)
                    total += len(chunk)
                digest.put((total, h.hexdigest()))

            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            expected = hashlib.blake2b()
            for _ in range(size // len(data)):
                await stream.send(data)
                expected.update(data)
            await stream.close()
            assert await digest.get() == (size, expected.hexdigest())
            assert session.statistics()["stream_bytes_sent"] >= size


async def test_wrong_seed_is_an_authentication_error_and_reported(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, \
                stt.Node(shared_seed=b"another network's seed!!") as client:
            reasons = []
            client.on_session_closed(lambda sid, reason: reasons.append(reason))
            with pytest.raises(AuthenticationError):
                await client.connect(server.address, server.node_id, timeout=5)
            assert reasons == ["auth_failure"]


async def test_wrong_peer_id_times_out(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            with pytest.raises(ConnectionTimeoutError) as info:
                await client.connect(server.address, Identity.generate().node_id, timeout=1.5)
            assert isinstance(info.value, TimeoutError)
            with pytest.raises(ValueError):  # not a usable public key at all
                await client.connect(server.address, bytes(32))


async def test_nothing_listening_is_refused_not_timed_out(stt):
    with anyio.fail_after(20):
        async with stt.Node(shared_seed=SEED) as probe:
            port = probe.address[1]
        async with stt.Node(shared_seed=SEED) as client:
            reasons = []
            client.on_session_closed(lambda sid, reason: reasons.append(reason))
            # The port was just released: the OS answers port unreachable. The
            # error type proves the answer came before the (long) timeout.
            with pytest.raises(ConnectionRefusedError):
                await client.connect(("127.0.0.1", port), Identity.generate().node_id,
                                     timeout=30)
            assert reasons == ["error"]


async def test_a_cancelled_connect_leaves_nothing_behind(stt):
    with anyio.fail_after(20):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            with anyio.move_on_after(0.3):
                await client.connect(server.address, Identity.generate().node_id, timeout=10)
                pytest.fail("the silent peer answered")
            assert client.statistics()["pending_connects"] == 0
            session = await client.connect(server.address, server.node_id)
            assert not session.is_closed()


async def test_many_streams_and_many_sessions(stt):
    with anyio.fail_after(120):
        async with stt.Node(shared_seed=SEED) as server:
            echo_server(server)
            clients = [stt.Node(shared_seed=SEED) for _ in range(20)]
            for c in clients:
                await c.start()
            try:
                sessions = await gather(
                    *(lambda c=c: c.connect(server.address, server.node_id) for c in clients))
                # 1,000 streams on one session, all in flight at once.
                session = sessions[0]
                streams = [session.open_stream() for _ in range(1000)]

                async def one(stream, i):
                    await stream.send(b"#%d" % i)
                    reply = await stream.receive()
                    await stream.close()
                    return reply

                replies = await gather(*(lambda s=s, i=i: one(s, i)
                                         for i, s in enumerate(streams)))
                assert replies == [b"#%d" % i for i in range(1000)]

                async def ping(session, i):  # every other session works at the same time
                    stream = session.open_stream()
                    await stream.send(b"s%d" % i)
                    return await stream.receive()

                assert await gather(*(lambda s=s, i=i: ping(s, i)
                                      for i, s in enumerate(sessions))) \
                    == [b"s%d" % i for i in range(len(sessions))]
            finally:
                for c in clients:
                    await c.stop()


async def test_two_hundred_concurrent_sessions_on_one_node(stt):
    with anyio.fail_after(120):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            echo_server(server)
            # One client node, 200 sessions to the same server (distinct
            # sessions, same address pair).
            sessions = await gather(
                *(lambda: client.connect(server.address, server.node_id, new=True) for _ in range(200)))
            assert len({s.session_id for s in sessions}) == 200

            async def ping(session, i):
                stream = session.open_stream()
                await stream.send(b"%d" % i)
                return await stream.receive()

            assert await gather(*(lambda s=s, i=i: ping(s, i) for i, s in enumerate(sessions))) \
                == [b"%d" % i for i in range(200)]
            assert server.endpoint.statistics()["sessions"] == 200


PEER_SCRIPT = "\n".join([
    "import asyncio, sys",
    "from stt_io.asyncio import Node",
    "async def main():",
    "    node = Node(shared_seed=sys.argv[1].encode(), idle_timeout=2.0,",
    "                keep_alive_interval=0.5)",
    "    await node.start()",
    "    print(node.address[1], node.node_id.hex(), flush=True)",
    "    await asyncio.sleep(3600)",
    "asyncio.run(main())",
])


async def test_a_killed_peer_is_reported_as_timeout(stt):
    proc = subprocess.Popen([sys.executable, "-c", PEER_SCRIPT, SEED.decode()],
                            stdout=subprocess.PIPE, text=True)
    try:
        port, node_id = proc.stdout.readline().split()
        with anyio.fail_after(30):
            async with stt.Node(shared_seed=SEED, idle_timeout=2.0,
                                keep_alive_interval=0.5) as client:
                closed = Box()
                client.on_session_closed(lambda sid, reason: closed.put(reason))
                session = await client.connect(("127.0.0.1", int(port)),
                                               bytes.fromhex(node_id))
                stream = session.open_stream()
                await stream.send(b"hello")
                os.kill(proc.pid, signal.SIGKILL)
                assert await closed.get() == "timeout"
                assert session.close_reason == "timeout"
                with pytest.raises(SessionClosedError):
                    await stream.receive()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _live_tasks(backend: str) -> set:
    if backend == "asyncio":
        return set(asyncio.all_tasks())
    import trio
    tasks, stack = set(), [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        tasks.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return tasks


async def test_stop_with_open_sessions_cleans_up(stt, anyio_backend, recwarn):
    gc.collect()  # what earlier tests left behind is not this test's business
    recwarn.clear()
    with anyio.fail_after(30):
        baseline = _live_tasks(anyio_backend)
        server = stt.Node(shared_seed=SEED)
        client = stt.Node(shared_seed=SEED)
        await server.start()
        await client.start()
        echo_server(server)
        sessions = [await client.connect(server.address, server.node_id, new=True) for _ in range(5)]
        for s in sessions:
            stream = s.open_stream()
            await stream.send(b"keep me busy")
        reasons = []
        server.on_session_closed(lambda sid, reason: reasons.append(reason))
        await client.stop()
        await anyio.sleep(0.2)  # the CLOSE frames reach the server
        assert reasons == ["graceful"] * 5
        await server.stop()
        assert all(s.is_closed() for s in sessions)
        assert client._sock.fileno() < 0 and server._sock.fileno() < 0
        for _ in range(3):
            await anyio.sleep(0)  # woken streams finish their handlers
        assert _live_tasks(anyio_backend) - baseline == set()
    gc.collect()
    assert [w for w in recwarn if issubclass(w.category, ResourceWarning)] == []


def test_uvloop_runs_the_asyncio_adapter():
    uvloop = pytest.importorskip("uvloop")

    async def main():
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        async with stt_io.asyncio.Node(shared_seed=SEED) as server, \
                stt_io.asyncio.Node(shared_seed=SEED) as client:
            echo_server(server)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            payload = os.urandom(3 * 1024 * 1024)
            await stream.send(payload)
            assert await stream.receive() == payload
            await session.close()
            assert session.close_reason == "graceful"

    async def bounded():
        return await asyncio.wait_for(main(), 60)

    uvloop.run(bounded())


async def test_the_send_lock_is_fifo_and_survives_cancelled_waiters(stt):
    from stt_io._core import FifoLock
    node = stt.Node(shared_seed=SEED)  # only its signals are used
    lock = FifoLock(node._new_signal)
    order, scopes = [], {}

    async def taker(i):
        with anyio.CancelScope() as scope:
            scopes[i] = scope
            await lock.acquire()
            try:
                order.append(i)
                await anyio.sleep(0.01)
            finally:
                lock.release()

    with anyio.fail_after(10):
        assert lock.try_acquire() and not lock.try_acquire()
        async with anyio.create_task_group() as tasks:
            for i in range(1, 5):
                tasks.start_soon(taker, i)
                await anyio.sleep(0.01)  # each is queued before the next comes
            scopes[2].cancel()  # cancelled while waiting: leaves the queue
            await anyio.sleep(0.01)
            lock.release()  # handed to 1 ...
            scopes[1].cancel()  # ... cancelled as it wakes: it passes the lock on
        assert order in ([1, 3, 4], [3, 4])  # 1 may or may not have run first
        assert lock.try_acquire()  # free again, and nobody left queued


async def test_unread_datagrams_are_bounded_oldest_dropped(stt):
    from stt_io._core import MAX_QUEUED_DATAGRAM_BYTES
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            session = await client.connect(server.address, server.node_id)
            inbound = await server.accept()
            size = min(session.max_datagram_payload, 60_000)
            count = MAX_QUEUED_DATAGRAM_BYTES // size + 40
            for i in range(count):
                session.send_datagram(i.to_bytes(4, "big") * (size // 4))
                if i % 8 == 7:
                    await anyio.sleep(0.002)  # no bursts beyond the socket buffers
            await anyio.sleep(0.3)
            stats = inbound.statistics()
            assert stats["datagrams_queued"] * size <= MAX_QUEUED_DATAGRAM_BYTES
            assert stats["datagrams_dropped_unread"] > 0
            assert stats["datagrams_queued"] + stats["datagrams_dropped_unread"] <= count
            first = await inbound.receive_datagram()
            # The oldest arrivals were dropped, so the oldest kept one comes
            # after at least that many (more if the kernel lost some).
            assert int.from_bytes(first[:4], "big") >= stats["datagrams_dropped_unread"]


# -- node.identity, node.serve, stream.as_byte_stream, argument checks -------------------


async def test_node_identity_is_the_key_pair_it_runs_with(stt):
    identity = Identity.generate()
    with anyio.fail_after(30):
        async with stt.Node(identity=identity, shared_seed=SEED) as server, \
                stt.Node(shared_seed=SEED) as client:
            assert server.identity is identity
            assert client.identity.node_id == client.node_id  # generated for it
            # The raw private key rebuilds the same node id, and peers reach it.
            again = Identity.from_private_bytes(client.identity.private_bytes())
            assert again.node_id == client.node_id
            session = await client.connect(server.address, server.identity.node_id)
            inbound = await server.accept()
            assert inbound.peer_id == client.identity.node_id
            assert session.peer_id == server.identity.node_id
            assert len(session.session_id) == 16


@pytest.fixture
async def reported(anyio_backend, caplog):
    """The messages of the handler errors the node reported: through the loop's
    exception handler on asyncio, to the ``stt`` logger on trio."""
    caplog.set_level(logging.ERROR, logger="stt")
    contexts = []
    if anyio_backend == "asyncio":
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: contexts.append(context))

    def messages():
        if anyio_backend == "asyncio":
            return [str(c.get("exception")) for c in contexts]
        return [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    return messages


async def test_serve_runs_a_handler_per_session_and_survives_handler_errors(stt, reported):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            calls = []

            async def handler(session):
                calls.append(session.peer_id)
                if len(calls) == 1:
                    raise RuntimeError("handler bug")
                await echo_session(session)

            async with anyio.create_task_group() as tasks:
                address = await tasks.start(server.serve, handler)
                assert address == server.address
                await client.connect(address, server.node_id)  # its handler raises
                session = await client.connect(address, server.node_id, new=True)
                stream = session.open_stream()
                await stream.send(b"still serving")
                assert await stream.receive() == b"still serving"
                tasks.cancel_scope.cancel()
            assert calls == [client.node_id, client.node_id]
            # serve() was cancelled, the node runs on: sessions queue for accept().
            await client.connect(server.address, server.node_id, new=True)
            assert (await server.accept()).peer_id == client.node_id
    assert reported() == ["handler bug"]


@pytest.mark.parametrize("way", ["on_session", "serve"])
async def test_a_handler_that_is_not_async_is_reported_and_serving_goes_on(stt, reported, way):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            calls = []

            def forgot_async(session):  # a plain function: nothing to await
                calls.append(session)

            async with anyio.create_task_group() as tasks:
                if way == "serve":
                    await tasks.start(server.serve, forgot_async)
                else:
                    server.on_session(forgot_async)
                for n in (1, 2):  # the first failure broke nothing
                    await client.connect(server.address, server.node_id, new=True)
                    while len(calls) < n or len(reported()) < n:
                        await anyio.sleep(0.01)
                tasks.cancel_scope.cancel()
            assert len(calls) == 2
            assert reported() == ["the session handler must be an async function: "
                                  "it returned NoneType, not an awaitable"] * 2


async def test_serve_returns_when_the_node_stops_and_cancels_its_handlers(stt):
    with anyio.fail_after(30):
        server = stt.Node(shared_seed=SEED)
        await server.start()
        async with stt.Node(shared_seed=SEED) as client:
            running, ended = Box(), []

            async def handler(session):
                try:
                    running.put(session)
                    await anyio.sleep(3600)
                finally:
                    ended.append(session.peer_id)

            try:
                async with anyio.create_task_group() as tasks:
                    await tasks.start(server.serve, handler)
                    await client.connect(server.address, server.node_id)
                    await running.get()
                    await server.stop()
                    # Nothing cancels the task group: serve() returns by itself.
            finally:
                await server.stop()
            assert ended == [client.node_id]
            with pytest.raises(NodeStoppedError):
                await server.serve(handler)


async def test_serve_and_on_session_exclude_each_other(stt):
    with anyio.fail_after(10):
        async with stt.Node(shared_seed=SEED) as node:
            node.on_session(echo_session)
            with pytest.raises(RuntimeError, match="on_session"):
                await node.serve(echo_session)


async def test_byte_view_round_trip_and_end_of_stream(stt):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            async def handler(session):
                stream = await session.accept_stream()
                await views.echo_bytes(stream.as_byte_stream())

            server.on_session(handler)
            session = await client.connect(server.address, server.node_id)
            view = session.open_stream().as_byte_stream()

            async def upload():
                for i in range(0, len(payload), 100_000):
                    await views.send_all(view, payload[i:i + 100_000])
                await views.send_eof(view)

            _, echoed = await gather(upload, lambda: views.receive_all(view))
            assert echoed == payload
            assert await views.receive_some(view) == b""  # the end stays the end
            await views.aclose(view)
            with pytest.raises(views.closed_error(view)):
                await views.receive_some(view)


async def test_byte_view_reads_messages_as_bytes_and_sees_a_reset_as_broken(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            for message in (b"one ", b"", b"two ", b"three"):
                await stream.send(message)
            peer = await (await server.accept()).accept_stream()
            view = peer.as_byte_stream()
            received = b""
            while len(received) < len(b"one two three"):
                received += await views.receive_some(view, 3)
            assert received == b"one two three"
            await stream.reset(7)
            with pytest.raises(views.broken_error(view)) as info:
                await views.receive_some(view)
            assert isinstance(info.value.__cause__, StreamResetError)
            assert info.value.__cause__.error_code == 7


async def test_closing_a_byte_view_wakes_a_reader_blocked_in_another_task(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            session = await client.connect(server.address, server.node_id)
            view = session.open_stream().as_byte_stream()
            await views.send_all(view, b"hello")
            peer = await (await server.accept()).accept_stream()
            assert await peer.receive() == b"hello"
            outcome = Box()

            async def blocked_reader():
                try:
                    await views.receive_some(view)
                except Exception as exc:  # noqa: BLE001 - the outcome is the test
                    outcome.put(exc)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(blocked_reader)
                await anyio.sleep(0.05)
                await views.aclose(view)
            assert isinstance(await outcome.get(), views.closed_error(view))
            # The close ended this side: the peer reads the end of the stream.
            with pytest.raises(StreamClosedError):
                await peer.receive()


def _bad_calls(node_id: bytes, address):
    """(what, call, error type, message pattern) for every argument check."""
    return [
        ("address as a str", lambda n: n.connect("127.0.0.1:4000", node_id), TypeError,
         r"address must be a \(host, port\) tuple, got str '127\.0\.0\.1:4000'"),
        ("address of one item", lambda n: n.connect(("127.0.0.1",), node_id), TypeError,
         r"address must be a \(host, port\) tuple, got tuple of 1"),
        ("host as bytes", lambda n: n.connect((b"127.0.0.1", 4000), node_id), TypeError,
         r"host must be a str .*got bytes"),
        ("host with a port", lambda n: n.connect(("127.0.0.1:4000", 4000), node_id),
         ValueError, r"must not carry a port"),
        ("port as a str", lambda n: n.connect(("127.0.0.1", "4000"), node_id), TypeError,
         r"port must be an int, got str '4000'"),
        ("port 0", lambda n: n.connect(("127.0.0.1", 0), node_id), ValueError,
         r"port must be in 1\.\.65535, got 0"),
        ("port 65536", lambda n: n.connect(("127.0.0.1", 65536), node_id), ValueError,
         r"port must be in 1\.\.65535, got 65536"),
        ("port as a bool", lambda n: n.connect(("127.0.0.1", True), node_id), TypeError,
         r"port must be an int, got bool"),
        ("peer_id as hex", lambda n: n.connect(address, node_id.hex()), TypeError,
         r"peer_id must be 32 bytes \(the peer's node id\), got str: use bytes\.fromhex"),
        ("peer_id as hex bytes", lambda n: n.connect(address, node_id.hex().encode()),
         ValueError, r"peer_id must be 32 bytes .*got 64 bytes.*bytes\.fromhex"),
        ("peer_id too short", lambda n: n.connect(address, node_id[:5]), ValueError,
         r"peer_id must be 32 bytes .*got 5 bytes"),
        ("peer_id None", lambda n: n.connect(address, None), TypeError,
         r"peer_id must be 32 bytes .*got NoneType"),
        ("timeout as a str", lambda n: n.connect(address, node_id, timeout="3"), TypeError,
         r"timeout must be a number of seconds, got str"),
        ("timeout 0", lambda n: n.connect(address, node_id, timeout=0), ValueError,
         r"timeout must be a finite number of seconds above 0"),
        ("timeout NaN", lambda n: n.connect(address, node_id, timeout=float("nan")),
         ValueError, r"timeout must be a finite number"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls(bytes(32), ("h", 1)))))
async def test_a_bad_connect_argument_fails_at_once_saying_what_to_pass(stt, case):
    with anyio.fail_after(10):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            what, call, error, pattern = _bad_calls(server.node_id, server.address)[case]
            with pytest.raises(error, match=pattern):
                await call(client)
            stats = client.statistics()
            assert stats["pending_connects"] == 0, what  # nothing was attempted
            assert stats["socket_datagrams_sent"] == 0, what


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(port=70000), ValueError, r"port must be in 0\.\.65535, got 70000"),
    (dict(port="4000"), TypeError, r"port must be an int, got str '4000'"),
    (dict(host="127.0.0.1:4000"), ValueError,
     r"host must not carry a port, got '127\.0\.0\.1:4000': pass host='127\.0\.0\.1', port=4000"),
    (dict(host=None), TypeError, r"host must be a str"),
    (dict(shared_seed="a seed typed as text"), TypeError,
     r"shared_seed must be bytes, got str: use \.encode\(\)"),
    (dict(shared_seed=None), ValueError, r"shared_seed is required"),
    (dict(identity=bytes(32)), TypeError,
     r"identity must be an Identity, got bytes: wrap a raw private key with "
     r"Identity\.from_private_bytes"),
])
async def test_a_bad_node_argument_fails_at_construction(stt, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        stt.Node(**{"shared_seed": SEED, **kwargs})


async def test_handlers_must_be_callable(stt):
    node = stt.Node(shared_seed=SEED)
    with pytest.raises(TypeError, match="the session handler must be callable, got int"):
        node.on_session(42)
    with pytest.raises(TypeError, match="the callback must be callable, got str"):
        node.on_session_closed("print")


async def test_the_overlays_stream_ids_are_not_the_applications(stt):
    from stt_proto.constants import FIRST_OVERLAY_STREAM_ID, PUBSUB_STREAM_ID
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            echo_server(server)
            session = await client.connect(server.address, server.node_id)
            for stream_id in (FIRST_OVERLAY_STREAM_ID, PUBSUB_STREAM_ID, (1 << 62) - 1):
                with pytest.raises(ValueError, match="reserved for the overlays"):
                    session.open_stream(stream_id)
                with pytest.raises(ValueError, match="reserved for the overlays"):
                    session.get_stream(stream_id)
            last = session.open_stream(FIRST_OVERLAY_STREAM_ID - 1)  # the last one that is ours
            await last.send(b"still ours")
            assert await last.receive() == b"still ours"
