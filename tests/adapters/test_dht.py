"""KademliaDHT on both adapters, over real UDP sockets on 127.0.0.1.

Each test runs on asyncio and on trio (anyio's pytest plugin) with the same body.
"""

from __future__ import annotations

import hashlib
import os

import anyio
import pytest

from stt_io.errors import (
    BootstrapError,
    DhtError,
    MissingSigningKeyError,
    NodeStoppedError,
    ValueTooLargeError,
)
from stt_proto.dht.messages import mutable_key
from stt_proto.identity import Identity

SEED = b"dht adapter test network seed"

pytestmark = pytest.mark.anyio



class Swarm:
    """``count`` DHT members on loopback, all bootstrapped through the first."""

    def __init__(self, stt, count: int, **config) -> None:
        self.dhts = [stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED,
                                     host="127.0.0.1", port=0, **config)
                     for _ in range(count)]

    async def __aenter__(self):
        for dht in self.dhts:
            await dht.start()
        first = self.dhts[0]
        for dht in self.dhts[1:]:
            await dht.bootstrap([(first.node.address, first.node_id)], timeout=10)
        return self.dhts

    async def __aexit__(self, *exc_info):
        for dht in self.dhts:
            await dht.stop()


async def test_members_find_each_other(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 8) as dhts:
            for dht in dhts:
                for other in dhts:
                    found = await dht.find_node(other.node_id)
                    assert found is not None and found.node_id == other.node_id
                    assert found.address[1] == other.node.address[1]
                    assert found.node_id_hex == other.node_id.hex()


async def test_put_get_immutable_from_every_member(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 6) as dhts:
            key = await dhts[2].put(b"a value")
            assert key == hashlib.blake2b(b"a value", digest_size=32).digest()
            for dht in dhts:
                assert await dht.get(key) == b"a value"
            assert await dhts[0].get(os.urandom(32)) is None


async def test_put_mutable_keeps_the_newest_and_refuses_rollback(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 5) as dhts:
            author = dhts[1]
            key = await author.put_mutable(b"first", salt=b"s")
            assert key == mutable_key(author.node_id, b"s")
            assert await dhts[3].get(key) == b"first"
            await author.put_mutable(b"second", salt=b"s")
            assert await dhts[4].get(key) == b"second"
            with pytest.raises(DhtError):
                await author.put_mutable(b"old", salt=b"s", seq=1)
            assert await dhts[0].get(key) == b"second"


async def test_providers(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 6) as dhts:
            key = hashlib.blake2b(b"content", digest_size=32).digest()
            assert await dhts[1].provide(key) >= 1
            assert await dhts[4].provide(key) >= 1
            found = await dhts[5].find_providers(key)
            assert {p.node_id for p in found} == {dhts[1].node_id, dhts[4].node_id}
            assert await dhts[5].find_providers(os.urandom(32)) == []


async def test_connect_through_the_dht_reuses_the_pool_session(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 4) as dhts:
            received = []

            async def serve():
                # The shared session reaches accept when it was inbound, or when
                # the peer opens a stream on a session our pool opened.
                while True:
                    session = await dhts[3].node.accept()
                    if session.peer_id == dhts[0].node_id:
                        break
                stream = await session.accept_stream()
                received.append(await stream.receive())
                await stream.send(b"pong")

            async with anyio.create_task_group() as tg:
                tg.start_soon(serve)
                session = await dhts[0].connect(dhts[3].node_id)
                assert session.peer_id == dhts[3].node_id
                stream = session.open_stream()
                await stream.send(b"ping")
                assert await stream.receive() == b"pong"
            assert received == [b"ping"]
            sessions = dhts[0].statistics()["pool_sessions"]
            assert await dhts[0].connect(dhts[3].node_id) is session  # one per peer
            assert dhts[0].statistics()["pool_sessions"] == sessions


async def test_oversized_and_bad_arguments_raise_clear_errors(stt):
    with anyio.fail_after(20):
        async with Swarm(stt, 2, max_value_bytes=100) as dhts:
            with pytest.raises(ValueTooLargeError, match="max_value_bytes"):
                await dhts[0].put(b"x" * 101)
            with pytest.raises(TypeError):
                await dhts[0].put("text")
            with pytest.raises(ValueError):
                await dhts[0].get(b"short")
            with pytest.raises(ValueError):
                await dhts[0].find_closest(os.urandom(32), count=0)


async def test_legacy_identity_cannot_sign(stt):
    with anyio.fail_after(20):
        legacy = Identity.from_private_bytes(os.urandom(32))
        dht = stt.KademliaDHT(identity=legacy, shared_seed=SEED, host="127.0.0.1", port=0)
        async with dht:
            with pytest.raises(MissingSigningKeyError):
                await dht.put_mutable(b"v")


async def test_bootstrap_gives_up_with_bootstrap_error(stt):
    with anyio.fail_after(20):
        async with stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED,
                                   host="127.0.0.1", port=0, initial_rtt=0.05) as dht:
            silent = Identity.generate().node_id
            with pytest.raises(BootstrapError):
                await dht.bootstrap([(("127.0.0.1", 9), silent)], timeout=1.0,
                                    retry_interval=0.2)


async def test_state_file_rejoins_without_bootstrap_nodes(stt, tmp_path):
    state = tmp_path / "dht.json"
    with anyio.fail_after(30):
        async with Swarm(stt, 4) as dhts:
            ident = Identity.generate()
            member = stt.KademliaDHT(identity=ident, shared_seed=SEED, host="127.0.0.1",
                                     port=0, state_file=state)
            await member.start()
            await member.bootstrap([(dhts[0].node.address, dhts[0].node_id)])
            await member.stop()
            assert state.exists()
            again = stt.KademliaDHT(identity=ident, shared_seed=SEED, host="127.0.0.1",
                                    port=0, state_file=state)
            async with again:
                found = await again.find_node(dhts[3].node_id)
                assert found is not None and found.node_id == dhts[3].node_id


async def test_attached_to_a_node_and_stopped(stt):
    with anyio.fail_after(20):
        async with stt.Node(shared_seed=SEED) as node:
            dht = stt.KademliaDHT(node=node)
            await dht.start()
            assert dht.node is node and dht.node_id == node.node_id
            await dht.stop()
            with pytest.raises(NodeStoppedError):
                await dht.get(os.urandom(32))


async def test_statistics_and_contacts(stt):
    with anyio.fail_after(20):
        async with Swarm(stt, 3) as dhts:
            stats = dhts[1].statistics()
            assert stats["requests_answered"] + stats["requests_sent"] > 0
            assert stats["pool_sessions"] >= 1
            ids = {c.node_id for c in dhts[1].contacts()}
            assert dhts[0].node_id in ids


def test_manual_form_reads_identity_and_seed_from_the_environment(tmp_path, monkeypatch):
    from stt_io.keys import save_identity
    ident = Identity.generate()
    save_identity(ident, tmp_path / "id")
    monkeypatch.setenv("STT_IDENTITY", str(tmp_path / "id"))
    monkeypatch.setenv("STT_SEED", SEED.decode())
    from seigr_toolset_transmissions.dht import KademliaDHT
    dht = KademliaDHT(node_id=ident.node_id, port=9337)
    assert dht.node_id == ident.node_id
    with pytest.raises(ValueError, match="node id"):
        KademliaDHT(node_id=os.urandom(32), port=9337)
    monkeypatch.delenv("STT_IDENTITY")
    with pytest.raises(ValueError, match="identity"):
        KademliaDHT(node_id=ident.node_id, port=9337)


async def test_stopping_the_node_fails_waiting_dht_calls(stt):
    with anyio.fail_after(20):
        async with stt.Node(shared_seed=SEED) as node:
            dht = stt.KademliaDHT(node=node, initial_rtt=5.0)
            await dht.start()
            silent = Identity.generate().node_id
            errors = []

            async def join():
                try:
                    await dht.bootstrap([(("127.0.0.1", 9), silent)], timeout=15)
                except NodeStoppedError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(join)
                await anyio.sleep(0.2)
                await node.stop()
            assert len(errors) == 1


async def test_bootstrap_timeout_bounds_each_attempt(stt):
    with anyio.fail_after(20):
        async with stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED,
                                   host="127.0.0.1", port=0, initial_rtt=5.0) as dht:
            silent = Identity.generate().node_id
            started = anyio.current_time()
            with pytest.raises(BootstrapError):
                await dht.bootstrap([(("127.0.0.1", 9), silent)], timeout=1.0)
            assert anyio.current_time() - started < 3.0
            assert dht.statistics()["queries_running"] == 0  # given up, not leaked


async def test_inbound_dht_sessions_reach_accept_only_with_application_traffic(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 4) as dhts:
            # Members bootstrapped through the first: their sessions are DHT-only.
            assert not dhts[0].node._accepted
            session = await dhts[2].connect(dhts[0].node_id)
            stream = session.open_stream()
            await stream.send(b"hello")
            accepted = await dhts[0].node.accept()
            assert accepted.peer_id == dhts[2].node_id
            assert await (await accepted.accept_stream()).receive() == b"hello"
