"""Stream priorities through both adapters, over real UDP on 127.0.0.1: an
urgent stream overtakes a bulk transfer of the same session, ``set_priority``
reorders what is queued, bad values raise. Every check counts bytes and order,
never wall-clock time."""

from __future__ import annotations

import anyio
import pytest

from stt_io.errors import StreamClosedError, STTError

from .test_adapters import SEED, Box, gather

pytestmark = pytest.mark.anyio

KiB = 1024
MiB = 1024 * KiB


async def test_an_urgent_message_overtakes_a_bulk_transfer(stt):
    chunk, total = 64 * KiB, 16 * MiB
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            urgent_seen = Box()

            @server.on_session
            async def serve(session):
                async def drain(stream):
                    try:
                        async for message in stream:
                            if message[:1] == b"!":
                                # The bytes that had arrived when the urgent
                                # message did.
                                stats = session.statistics()
                                urgent_seen.put(stats["stream_bytes_received"])
                    except STTError:
                        pass  # the test ends before the transfer does
                await gather(lambda: session.accept_stream(), lambda: session.accept_stream())
                await gather(*(lambda s=s: drain(s) for s in list(session._streams.values())))

            session = await client.connect(server.address, server.node_id)
            bulk = session.open_stream(priority=7)
            urgent = session.open_stream(priority=0)
            accepted = 0

            async def produce():
                nonlocal accepted
                while accepted < total:
                    await bulk.send(bytes(chunk))
                    accepted += chunk + 4  # message framing: a varint length

            backlog = Box()

            async def send_urgent():
                # Wait until bulk data waits in the sender unsent, then send.
                while True:
                    sent = session.statistics()["stream_bytes_sent"]
                    if accepted - sent >= 2 * MiB or accepted >= total:
                        break
                    await anyio.sleep(0.001)
                message = b"!" + bytes(99)
                await urgent.send(message)
                backlog.put((sent, accepted - sent, len(message) + 2))

            await gather(produce, send_urgent)
            received = await urgent_seen.get()
            sent, unsent, urgent_bytes = await backlog.get()
            assert unsent >= 2 * MiB, "the bulk transfer never built a backlog"
            # The urgent message went before (nearly) all of the bulk bytes
            # still queued when it was sent: what arrived ahead of it is what
            # was already sent, plus what came in the same burst of datagrams
            # (the receiver reads a burst before its application runs).
            overtaken_by = received - urgent_bytes - sent
            print(f"bulk: {sent} B sent and {unsent} B queued when the urgent message was;"
                  f" {overtaken_by} B more arrived before it")
            assert overtaken_by <= unsent // 8, (overtaken_by, unsent)


async def test_set_priority_reorders_queued_streams_and_checks_values(stt):
    size = 2 * MiB
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            order = []
            peer_priorities = []
            done = Box()

            @server.on_session
            async def serve(session):
                async def read(stream):
                    # Streams the peer opens have the default urgency here:
                    # priorities are never sent.
                    peer_priorities.append(stream.priority)
                    message = await stream.receive()
                    order.append((stream.stream_id, len(message)))
                await gather(lambda: session.accept_stream(), lambda: session.accept_stream())
                await gather(*(lambda s=s: read(s) for s in list(session._streams.values())))
                done.put(True)

            session = await client.connect(server.address, server.node_id)
            first, second = session.open_stream(), session.open_stream()
            assert (first.priority, first.incremental) == (3, False)
            second.set_priority(0, incremental=True)
            assert (second.priority, second.incremental) == (0, True)
            second.set_priority(1)  # the flag stays
            assert (second.priority, second.incremental) == (1, True)
            # Queued in this order, the second (more urgent) arrives first.
            await first.send(bytes(size))
            await second.send(bytes(size))
            await done.get()
            assert order == [(second.stream_id, size), (first.stream_id, size)]
            assert peer_priorities == [3, 3]

            for bad, error in ((8, ValueError), (-1, ValueError), (True, TypeError),
                               (2.0, TypeError), (None, TypeError)):
                with pytest.raises(error):
                    first.set_priority(bad)
                if bad is not None:
                    with pytest.raises(error):
                        session.open_stream(priority=bad)
            with pytest.raises(TypeError):
                first.set_priority(2, incremental="yes")
            with pytest.raises(TypeError):
                session.open_stream(incremental=1)
            assert first.priority == 3
            stream = session.open_stream(priority=6, incremental=True)
            assert (stream.priority, stream.incremental) == (6, True)
            await session.close()
            with pytest.raises(Exception):
                first.set_priority(2)


async def test_set_priority_on_a_finished_stream_raises(stt):
    with anyio.fail_after(30):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            @server.on_session
            async def serve(session):
                stream = await session.accept_stream()
                async for message in stream:
                    await stream.send(message)
                await stream.close()

            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            await stream.send(b"ping")
            assert await stream.receive() == b"ping"
            await stream.close()
            with pytest.raises(StreamClosedError):
                await stream.receive()
            # Both sides finished: the stream is gone once the last
            # acknowledgement is in.
            while stream.stream_id in client._endpoint.stream_ids(session.session_id):
                await anyio.sleep(0.01)
            with pytest.raises(StreamClosedError):
                stream.set_priority(1)
