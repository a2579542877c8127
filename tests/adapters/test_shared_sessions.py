"""One session per peer, shared by the application and the overlays, over real UDP
sockets on both adapters.

The application's session carries the DHT, pub/sub and content traffic to its
peer with no handshake more; the session the DHT's pool opened is what the
application's ``connect`` returns, with no handshake; and after a simultaneous
open the overlays of both nodes end on the session that was kept.
"""

from __future__ import annotations

import os

import anyio
import pytest

from stt_proto.identity import Identity

SEED = b"shared sessions adapter test seed"

pytestmark = pytest.mark.anyio


def handshakes(dht) -> int:
    return dht.node.statistics()["handshakes_completed"]


def pool_session(dht, peer) -> bytes | None:
    return dht.node._engine.pool.session_of(peer.node_id)


class Pair:
    """Two DHT members that know nothing of each other yet."""

    def __init__(self, stt) -> None:
        self.a, self.b = (stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED,
                                          host="127.0.0.1", port=0) for _ in range(2))

    async def __aenter__(self):
        await self.a.start()
        await self.b.start()
        return self.a, self.b

    async def __aexit__(self, *exc_info):
        await self.a.stop()
        await self.b.stop()


async def wait_for(condition, step: float = 0.02) -> None:
    while not condition():
        await anyio.sleep(step)


async def test_the_overlays_use_the_application_session(stt):
    with anyio.fail_after(30):
        async with Pair(stt) as (a, b):
            session = await a.node.connect(b.node.address, b.node_id)
            await wait_for(lambda: pool_session(b, a) is not None)
            counts = handshakes(a), handshakes(b)
            assert counts == (1, 1)
            # The DHT: b joins through a, a looks b up.
            await b.bootstrap([(a.node.address, a.node_id)], timeout=10)
            assert (await a.find_node(b.node_id)).node_id == b.node_id
            assert pool_session(a, b) == session.session_id
            # Pub/sub.
            received = []
            pub_a, pub_b = stt.PubSubManager(dht=a), stt.PubSubManager(dht=b)
            await pub_b.subscribe("readings", lambda topic, data, sender: received.append(data))
            await pub_a.publish("readings", b"21.5 C")
            await wait_for(lambda: received)
            assert received == [b"21.5 C"]
            # Content.
            cd_a, cd_b = stt.ContentDistribution(dht=a), stt.ContentDistribution(dht=b)
            data = os.urandom(300_000)
            content_id = await cd_a.publish_content(data)
            assert await cd_b.retrieve_content(content_id) == data
            assert (handshakes(a), handshakes(b)) == counts
            assert a.statistics()["pool_connects"] == b.statistics()["pool_connects"] == 0
            assert pool_session(a, b) == session.session_id and not session.is_closed()
            for overlay in (pub_a, pub_b, cd_a, cd_b):
                await overlay.stop()


async def test_connect_returns_the_session_the_dht_opened_without_a_handshake(stt):
    with anyio.fail_after(30):
        async with Pair(stt) as (a, b):
            await a.bootstrap([(b.node.address, b.node_id)], timeout=10)
            pooled = pool_session(a, b)
            assert a.node._engine.pool.owns(pooled)  # the DHT's pool dialled it
            # b confirms its end on a's first packet after the handshake (the
            # bootstrap's answers rode in the handshake itself).
            await wait_for(lambda: pool_session(b, a) is not None)
            before = handshakes(a), handshakes(b)
            reused = a.node.statistics()["connects_reused"]
            session = await a.node.connect(b.node.address, b.node_id)
            assert session.session_id == pooled
            assert (handshakes(a), handshakes(b)) == before
            assert a.node.statistics()["connects_reused"] == reused + 1
            assert not a.node._engine.pool.owns(pooled)  # the application's now
            # It works as the application's session, and the DHT still uses it.
            served = []

            async def serve():
                peer = await b.node.accept()
                stream = await peer.accept_stream()
                served.append(await stream.receive())

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(serve)
                stream = session.open_stream()
                await stream.send(b"over the pool's session")
            assert served == [b"over the pool's session"]
            await b.put(b"value after the handover")
            assert pool_session(a, b) == pooled
            assert (handshakes(a), handshakes(b)) == before


async def test_after_a_simultaneous_open_the_overlays_use_the_kept_session(stt):
    with anyio.fail_after(30):
        async with Pair(stt) as (a, b):
            got = {}

            async def open_from(one, other):
                got[one] = await one.node.connect(other.node.address, other.node_id)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(open_from, a, b)
                tasks.start_soon(open_from, b, a)
            small = a if a.node_id < b.node_id else b
            assert got[small].initiator and not got[b if small is a else a].initiator
            # Already before the losing session is gone, the pools send on the kept one.
            for one, other in ((a, b), (b, a)):
                assert pool_session(one, other) in (None, got[one].session_id)
            # The losing session's close goes through; then overlay traffic.
            await wait_for(lambda: all(len(one.node._endpoint.peer_sessions(other.node_id)) == 1
                                       for one, other in ((a, b), (b, a))))
            await b.bootstrap([(a.node.address, a.node_id)], timeout=10)
            received = []
            pub_a, pub_b = stt.PubSubManager(dht=a), stt.PubSubManager(dht=b)
            await pub_b.subscribe("after", lambda topic, data, sender: received.append(data))
            await pub_a.publish("after", b"one session")
            await wait_for(lambda: received)
            for one, other in ((a, b), (b, a)):
                assert pool_session(one, other) == got[one].session_id
                assert [s for s, _, _ in one.node._endpoint.peer_sessions(other.node_id)] == \
                    [got[one].session_id]
            assert (handshakes(a), handshakes(b)) == (2, 2)
            for overlay in (pub_a, pub_b):
                await overlay.stop()
