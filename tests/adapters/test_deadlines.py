"""Deadline delivery through both adapters, over real UDP on 127.0.0.1.

The loopback loses nothing, so deadlines are made to pass the way they pass on a
live stream whose reader falls behind: the receiver does not read for a while,
flow control holds the sender, and what waited past its deadline is abandoned.
Every check is on order and counts, never on wall-clock time."""

from __future__ import annotations

import struct

import anyio
import pytest

from .test_adapters import SEED, Box

pytestmark = pytest.mark.anyio

KiB = 1024


async def test_messages_past_their_deadline_are_skipped_in_order(stt):
    count, size = 120, 64 * KiB
    with anyio.fail_after(60):
        async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
            result = Box()

            @server.on_session
            async def serve(session):
                stream = await session.accept_stream()
                await anyio.sleep(1.0)  # a reader that fell behind
                numbers = [struct.unpack_from("!I", m)[0] async for m in stream]
                result.put((numbers, stream.messages_skipped))

            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(deadline=0.2)
            for k in range(count):
                await stream.send(struct.pack("!I", k) + bytes(size - 4))
            # The last one has no deadline: it must arrive whatever happened.
            stream.deadline = None
            await stream.send(struct.pack("!I", count))
            await stream.close()
            numbers, skipped = await result.get()
            stats = session.statistics()
    assert numbers == sorted(set(numbers)), "out of order or twice"
    assert numbers[-1] == count
    assert skipped > 0, "nothing was late: the test proves nothing"
    assert len(numbers) + skipped == count + 1
    assert stats["messages_abandoned"] >= skipped


async def test_a_deadline_must_be_a_positive_number(stt):
    async with stt.Node(shared_seed=SEED) as server, stt.Node(shared_seed=SEED) as client:
        session = await client.connect(server.address, server.node_id)
        stream = session.open_stream()
        for bad in (0, -1, float("inf"), float("nan")):
            with pytest.raises(ValueError):
                await stream.send(b"x", deadline=bad)
        for bad in ("0.1", True, None.__class__):
            with pytest.raises(TypeError):
                await stream.send(b"x", deadline=bad)
        with pytest.raises(ValueError):
            session.open_stream(deadline=0)
        await stream.send(b"fine", deadline=5)
