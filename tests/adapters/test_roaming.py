"""A node that moves to a new socket in the middle of a transfer keeps its
sessions (``Node.rebind``, ``docs/protocol.md`` 7.11), on both adapters, over
real UDP sockets on 127.0.0.1: the peer validates the new address and follows;
every byte arrives, in order, on the same stream."""

from __future__ import annotations

import hashlib
import os

import anyio
import pytest


SEED = b"roaming adapter test network seed"
CHUNK = os.urandom(64 * 1024)
CHUNKS = 400  # 25 MiB

pytestmark = pytest.mark.anyio



async def stream_to(stream, moved: anyio.Event, move_after: int) -> str:
    digest = hashlib.sha256()
    for i in range(CHUNKS):
        await stream.send(CHUNK)
        digest.update(CHUNK)
        if i == move_after:
            moved.set()
    await stream.close()
    return digest.hexdigest()


async def read_all(stream) -> tuple[int, str]:
    digest, total = hashlib.sha256(), 0
    async for data in stream:
        digest.update(data)
        total += len(data)
    return total, digest.hexdigest()


@pytest.mark.parametrize("direction", ["client sends", "client receives"])
async def test_a_client_that_rebinds_mid_transfer_keeps_its_session(stt, direction):
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            inbound: list = []
            got: dict = {}
            moved, served = anyio.Event(), anyio.Event()

            @server.on_session
            async def serve(session):
                inbound.append(session)
                stream = await session.accept_stream()
                if direction == "client sends":
                    got["server"] = await read_all(stream)
                else:
                    await stream.receive()  # the client's hello
                    got["sent"] = await stream_to(stream, moved, CHUNKS // 3)
                served.set()

            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            old = client.address
            async with anyio.create_task_group() as tasks:
                if direction == "client sends":
                    async def send():
                        got["sent"] = await stream_to(stream, moved, CHUNKS // 3)
                    tasks.start_soon(send)
                else:
                    await stream.send(b"hello")

                    async def receive():
                        got["client"] = await read_all(stream)
                    tasks.start_soon(receive)
                await moved.wait()
                new = await client.rebind()
                assert new != old and new[1] != old[1] and client.address == new
            await served.wait()
            received = got["server"] if direction == "client sends" else got["client"]
            assert received == (CHUNKS * len(CHUNK), got["sent"])
            # The server followed: same session, the client's new address.
            (peer_session,) = inbound
            assert peer_session.peer_address == new and not peer_session.is_closed()
            assert server.statistics()["paths_validated"] == 1
            assert session.statistics()["bytes_retransmitted"] >= 0
            assert not session.is_closed()


async def test_rebind_to_a_taken_port_keeps_the_old_socket(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            session = await client.connect(server.address, server.node_id)
            old = client.address
            with pytest.raises(OSError):
                await client.rebind(server.address[1])
            assert client.address == old
            stream = session.open_stream()
            await stream.send(b"still here")
            inbound = await server.accept()
            assert await (await inbound.accept_stream()).receive() == b"still here"


#: A peer that echoes every message on every stream, waiting out outages.
ECHO_PEER = "\n".join([
    "import asyncio, sys",
    "from stt_io.asyncio import Node",
    "async def echo(session):",
    "    while True:",
    "        stream = await session.accept_stream()",
    "        async for message in stream:",
    "            await stream.send(message)",
    "async def main():",
    "    node = Node(shared_seed=sys.argv[1].encode(), suspend_after=1.0, max_outage=30.0,",
    "                keep_alive_interval=0.3)",
    "    node.on_session(echo)",
    "    await node.start()",
    "    print(node.address[1], node.node_id.hex(), flush=True)",
    "    await asyncio.sleep(3600)",
    "asyncio.run(main())",
])


async def test_a_peer_frozen_for_a_while_is_waited_for_not_dropped(stt):
    """SIGSTOP freezes the peer (as an outage would hide it) for longer than
    ``suspend_after``: the session is suspended, not closed; SIGCONT and the
    first packet resume it, and the stream carries on."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", ECHO_PEER, SEED.decode()],
                            stdout=subprocess.PIPE, text=True)
    try:
        port, node_id = proc.stdout.readline().split()
        with anyio.fail_after(30):
            async with stt.Node(shared_seed=SEED, suspend_after=1.0, max_outage=30.0,
                                keep_alive_interval=0.3) as client:
                suspended, resumed = anyio.Event(), []
                client.on_session_suspended(lambda sid: suspended.set())
                client.on_session_resumed(lambda sid, outage: resumed.append(outage))
                session = await client.connect(("127.0.0.1", int(port)), bytes.fromhex(node_id))
                stream = session.open_stream()
                await stream.send(b"before")
                assert await stream.receive() == b"before"
                os.kill(proc.pid, signal.SIGSTOP)
                await suspended.wait()
                await anyio.sleep(1.5)
                assert not session.is_closed()
                await stream.send(b"during")          # queued while the peer is away
                os.kill(proc.pid, signal.SIGCONT)
                assert await stream.receive() == b"during"
                assert len(resumed) == 1 and resumed[0] > 1.0
                assert client.statistics()["sessions_resumed"] == 1
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# -- one session per peer ----------------------------------------------------------------

async def test_repeated_connects_return_the_live_session_without_a_handshake(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            first = await client.connect(server.address, server.node_id)
            handshakes = client.statistics()["handshakes_completed"]
            again = [await client.connect(server.address, server.node_id) for _ in range(5)]
            assert all(s is first for s in again)
            assert client.statistics()["handshakes_completed"] == handshakes
            assert client.statistics()["connects_reused"] == 5
            # Concurrent connects share one handshake.
            other = stt.Node(shared_seed=SEED)
            async with other:
                got = []
                async with anyio.create_task_group() as tasks:
                    for _ in range(4):
                        async def one():
                            got.append(await other.connect(server.address, server.node_id))
                        tasks.start_soon(one)
                assert len({id(s) for s in got}) == 1
                assert other.statistics()["handshakes_completed"] == 1
            fresh = await client.connect(server.address, server.node_id, new=True)
            assert fresh is not first and not fresh.is_closed()


async def test_a_simultaneous_open_converges_to_one_session(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as a, stt.Node(shared_seed=SEED) as b:
            inbound = {"a": [], "b": []}
            a.on_session(lambda s: _record(inbound["a"], s))
            b.on_session(lambda s: _record(inbound["b"], s))
            got = {}

            async def open_from(name, node, peer):
                got[name] = await node.connect(peer.address, peer.node_id)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(open_from, "a", a, b)
                tasks.start_soon(open_from, "b", b, a)
            small, large = ("a", "b") if a.node_id < b.node_id else ("b", "a")
            # Both hold the session the smaller id opened.
            assert got[small].initiator and not got[large].initiator
            await anyio.sleep(0.3)  # the losing session's close goes through
            assert not got["a"].is_closed() and not got["b"].is_closed()
            stream = got["a"].open_stream()
            await stream.send(b"one session")
            peer_stream = await got["b"].accept_stream()
            assert await peer_stream.receive() == b"one session"
            seen = {k: [(x.session_id == got[k].session_id, x.initiator, x.is_closed())
                        for x in v] for k, v in inbound.items()}
            assert inbound == {"a": [], "b": []}, (small, seen)  # no second session seen


async def _record(into, session):
    into.append(session)
