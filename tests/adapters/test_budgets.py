"""Node-wide budgets over real UDP on 127.0.0.1, on asyncio and trio
(stt_proto/budget.py, docs/security.md section 3).

A server with a small receive budget accepts sessions from many clients that
each push a megabyte its application never reads, while one more client
exchanges messages the server does read. The server's receive buffers never
pass the budget, the budget's counters move, and the reading client's
messages keep getting through.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest

SEED = b"adapter budget test network seed"
LIMIT = 2_000_000
HOSTILE = 8

pytestmark = pytest.mark.anyio


async def test_a_node_under_hostile_load_stays_within_its_receive_budget(stt):
    with anyio.fail_after(60):
        async with contextlib.AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                stt.Node(shared_seed=SEED, max_node_receive_buffer=LIMIT))
            clients = [await stack.enter_async_context(stt.Node(shared_seed=SEED))
                       for _ in range(HOSTILE)]
            good = await stack.enter_async_context(stt.Node(shared_seed=SEED))
            peak = [0]

            async def watch() -> None:
                while True:
                    used = server.statistics()["node_recv_buffered"]
                    peak[0] = max(peak[0], used)
                    assert used <= LIMIT
                    await anyio.sleep(0.002)

            async def flood(client) -> None:
                session = await client.connect(server.address, server.node_id)
                for _ in range(4):  # streams the server never reads
                    stream = session.open_stream()
                    for _ in range(8):
                        await stream.send(bytes(32_000))

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                for client in clients:
                    tg.start_soon(flood, client)
                await anyio.sleep(1.0)
                # A client whose messages the server reads still gets through.
                session = await good.connect(server.address, server.node_id)
                inbound = await accept_from(server, good.node_id)
                stream = session.open_stream()
                await stream.send(b"good 0")
                peer_stream = await inbound.accept_stream()
                assert await peer_stream.receive() == b"good 0"
                for i in range(1, 20):
                    await stream.send(b"good %d " % i + bytes(10_000))
                    assert (await peer_stream.receive()).startswith(b"good %d " % i)
                stats = server.statistics()
                print({k: stats[k] for k in ("node_recv_buffered", "budget_recv_refused",
                                             "budget_credit_capped")}, "peak", peak[0])
                assert peak[0] <= LIMIT
                assert stats["budget_recv_refused"] + stats["budget_credit_capped"] > 0
                assert peak[0] > LIMIT // 4  # the hostile load did press on the budget
                tg.cancel_scope.cancel()


async def accept_from(server, peer_id: bytes):
    """The server's next inbound session from ``peer_id`` (others are left
    unread, as hostile sessions are)."""
    while True:
        session = await server.accept()
        if session.peer_id == peer_id:
            return session
