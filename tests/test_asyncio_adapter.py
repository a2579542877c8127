"""The asyncio adapter over real UDP sockets on 127.0.0.1.

Every test runs its own event loop (``asyncio.run``) with an overall deadline,
so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import signal
import subprocess
import sys

import pytest

from stt_io.asyncio import Node
from stt_proto.identity import Identity
from stt_io.errors import (
    AuthenticationError,
    ConnectionTimeoutError,
    MessageTooLargeError,
    SessionClosedError,
    StreamClosedError,
    STTError,
)

SEED = b"asyncio adapter test network seed"


def run(coro, timeout: float = 60.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def echo_server(node: Node) -> None:
    @node.on_session
    async def handle(session):
        while True:
            try:
                stream = await session.accept_stream()
            except SessionClosedError:
                return
            asyncio.ensure_future(echo_stream(stream))


async def echo_stream(stream) -> None:
    try:
        async for message in stream:
            await stream.send(message)
        await stream.close()
    except STTError:
        pass


def test_request_response_and_errors_are_one_hierarchy():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            await echo_server(server)
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
    run(main())


def test_bidirectional_streaming_and_message_limits():
    async def main():
        async with Node(shared_seed=SEED) as server, \
                Node(shared_seed=SEED, max_frame_size=100_000) as client:
            accepted = asyncio.get_running_loop().create_future()
            server.on_session(lambda s: _resolve(accepted, s))
            session = await client.connect(server.address, server.node_id)
            peer = await accepted
            up = session.get_stream(7)  # application-chosen id, usable before the peer sends

            async def produce(stream, tag, n):
                for i in range(n):
                    await stream.send(b"%s %d " % (tag, i) * 50)
                await stream.close()

            async def consume(stream):
                return [m async for m in stream]

            producer = asyncio.ensure_future(produce(up, b"up", 200))
            down = await peer.accept_stream()
            assert down.stream_id == 7
            results = await asyncio.gather(consume(down), produce(down, b"down", 150),
                                           consume(up), producer)
            assert results[0] == [b"up %d " % i * 50 for i in range(200)]
            assert results[2] == [b"down %d " % i * 50 for i in range(150)]
            with pytest.raises(MessageTooLargeError):
                await session.open_stream().send(b"x" * 100_001)
    run(main())


async def _resolve(future, value):
    if not future.done():
        future.set_result(value)


def test_a_200_mib_transfer_verified_by_hash():
    size = 200 * 1024 * 1024
    data = os.urandom(1024 * 1024)

    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            digest = asyncio.get_running_loop().create_future()

            @server.on_session
            async def receive_file(session):
                stream = await session.accept_stream()
                h = hashlib.blake2b()
                total = 0
                async for chunk in stream:
                    h.update(chunk)
                    total += len(chunk)
                digest.set_result((total, h.hexdigest()))

            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            expected = hashlib.blake2b()
            for _ in range(size // len(data)):
                await stream.send(data)
                expected.update(data)
            await stream.close()
            assert await digest == (size, expected.hexdigest())
            assert session.statistics()["stream_bytes_sent"] >= size
    run(main(), timeout=120)


def test_wrong_seed_is_an_authentication_error_and_reported():
    async def main():
        async with Node(shared_seed=SEED) as server, \
                Node(shared_seed=b"another network's seed!!") as client:
            reasons = []
            client.on_session_closed(lambda sid, reason: reasons.append(reason))
            with pytest.raises(AuthenticationError):
                await client.connect(server.address, server.node_id, timeout=5)
            assert reasons == ["auth_failure"]
    run(main())


def test_wrong_peer_id_times_out():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            with pytest.raises(ConnectionTimeoutError) as info:
                await client.connect(server.address, Identity.generate().node_id, timeout=1.5)
            assert isinstance(info.value, TimeoutError)
            with pytest.raises(ValueError):  # not a usable public key at all
                await client.connect(server.address, bytes(32))
    run(main())


def test_nothing_listening_is_refused_not_timed_out():
    async def main():
        async with Node(shared_seed=SEED) as probe:
            port = probe.address[1]
        async with Node(shared_seed=SEED) as client:
            reasons = []
            client.on_session_closed(lambda sid, reason: reasons.append(reason))
            # The port was just released: the OS answers port unreachable. The
            # error type proves the answer came before the (long) timeout.
            with pytest.raises(ConnectionRefusedError):
                await client.connect(("127.0.0.1", port), Identity.generate().node_id,
                                     timeout=30)
            assert reasons == ["error"]
    run(main())


def test_many_streams_and_many_sessions():
    async def main():
        async with Node(shared_seed=SEED) as server:
            await echo_server(server)
            clients = [Node(shared_seed=SEED) for _ in range(20)]
            for c in clients:
                await c.start()
            try:
                sessions = await asyncio.gather(
                    *(c.connect(server.address, server.node_id) for c in clients))
                # 1,000 streams on one session, all in flight at once.
                session = sessions[0]
                streams = [session.open_stream() for _ in range(1000)]

                async def one(stream, i):
                    await stream.send(b"#%d" % i)
                    reply = await stream.receive()
                    await stream.close()
                    return reply

                replies = await asyncio.gather(*(one(s, i) for i, s in enumerate(streams)))
                assert replies == [b"#%d" % i for i in range(1000)]
                # Every other session works at the same time.
                async def ping(session, i):
                    stream = session.open_stream()
                    await stream.send(b"s%d" % i)
                    return await stream.receive()
                assert await asyncio.gather(*(ping(s, i) for i, s in enumerate(sessions))) \
                    == [b"s%d" % i for i in range(len(sessions))]
            finally:
                for c in clients:
                    await c.stop()
    run(main(), timeout=120)


def test_two_hundred_concurrent_sessions_on_one_node():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            await echo_server(server)
            # One client node, 200 sessions to the same server (distinct
            # sessions, same address pair).
            sessions = await asyncio.gather(
                *(client.connect(server.address, server.node_id) for _ in range(200)))
            assert len({s.session_id for s in sessions}) == 200

            async def ping(session, i):
                stream = session.open_stream()
                await stream.send(b"%d" % i)
                return await stream.receive()

            assert await asyncio.gather(*(ping(s, i) for i, s in enumerate(sessions))) \
                == [b"%d" % i for i in range(200)]
            assert server.endpoint.statistics()["sessions"] == 200
    run(main(), timeout=120)


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


def test_a_killed_peer_is_reported_as_timeout():
    proc = subprocess.Popen([sys.executable, "-c", PEER_SCRIPT, SEED.decode()],
                            stdout=subprocess.PIPE, text=True)
    try:
        port, node_id = proc.stdout.readline().split()

        async def main():
            async with Node(shared_seed=SEED, idle_timeout=2.0,
                            keep_alive_interval=0.5) as client:
                closed = asyncio.get_running_loop().create_future()
                client.on_session_closed(lambda sid, reason: _resolve(closed, reason))
                session = await client.connect(("127.0.0.1", int(port)),
                                               bytes.fromhex(node_id))
                stream = session.open_stream()
                await stream.send(b"hello")
                os.kill(proc.pid, signal.SIGKILL)
                assert await closed == "timeout"
                assert session.close_reason == "timeout"
                with pytest.raises(SessionClosedError):
                    await stream.receive()
        run(main(), timeout=30)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_stop_with_open_sessions_cleans_up(recwarn):
    gc.collect()  # what earlier tests left behind is not this test's business
    recwarn.clear()

    async def main():
        baseline = asyncio.all_tasks()
        server = Node(shared_seed=SEED)
        client = Node(shared_seed=SEED)
        await server.start()
        await client.start()
        await echo_server(server)
        sessions = [await client.connect(server.address, server.node_id) for _ in range(5)]
        for s in sessions:
            stream = s.open_stream()
            await stream.send(b"keep me busy")
        reasons = []
        server.on_session_closed(lambda sid, reason: reasons.append(reason))
        await client.stop()
        await asyncio.sleep(0.2)  # the CLOSE frames reach the server
        assert reasons == ["graceful"] * 5
        await server.stop()
        assert all(s.is_closed() for s in sessions)
        assert client._sock.fileno() < 0 and server._sock.fileno() < 0
        for _ in range(3):
            await asyncio.sleep(0)  # woken streams finish their handlers
        assert asyncio.all_tasks() - baseline == set()
    run(main())
    gc.collect()
    assert [w for w in recwarn if issubclass(w.category, ResourceWarning)] == []


def test_uvloop_runs_the_adapter():
    uvloop = pytest.importorskip("uvloop")

    async def main():
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            await echo_server(server)
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
