"""ContentDistribution on both adapters, over real UDP sockets on 127.0.0.1.

Each test runs on asyncio and on trio (anyio's pytest plugin) with the same body.
"""

from __future__ import annotations

import os

import anyio
import pytest

from stt_io.errors import ContentNotFoundError
from stt_proto.content.tree import CHUNK_SIZE, HashTree
from stt_proto.identity import Identity

SEED = b"content adapter test network seed"

pytestmark = pytest.mark.anyio



class Swarm:
    """``count`` DHT members on loopback, bootstrapped through the first, each with
    a ContentDistribution on a memory store (``stores`` may name directories)."""

    def __init__(self, stt, count: int, stores=None, **content) -> None:
        self.dhts = [stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED,
                                     host="127.0.0.1", port=0) for _ in range(count)]
        stores = stores or [None] * count
        self.cds = [stt.ContentDistribution(dht=dht, store=store, **content)
                    for dht, store in zip(self.dhts, stores)]

    async def __aenter__(self):
        for dht in self.dhts:
            await dht.start()
        first = self.dhts[0]
        for dht in self.dhts[1:]:
            await dht.bootstrap([(first.node.address, first.node_id)], timeout=10)
        return self

    async def __aexit__(self, *exc_info):
        for cd in self.cds:
            await cd.stop()
        for dht in self.dhts:
            await dht.stop()


async def test_manual_pattern_as_written(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 3) as swarm:
            dht = swarm.dhts[1]
            my_node_id = dht.node_id
            my_data = os.urandom(3 * CHUNK_SIZE + 77)

            content_dist = stt.ContentDistribution(dht=dht, node_id=my_node_id)
            content_id = await content_dist.publish_content(my_data)
            assert content_id == HashTree.of_bytes(my_data).content_id

            retrieved_data = await content_dist.retrieve_content(content_id)
            assert retrieved_data == my_data

            # And from another node, which fetches it over the network.
            other = swarm.cds[2]
            assert await other.retrieve_content(content_id) == my_data
            assert other.statistics()["chunks_received"] == 4
            assert content_id in other.published()
            await content_dist.stop()


async def test_a_file_from_two_providers_with_progress_and_a_range(stt, tmp_path):
    with anyio.fail_after(60):
        async with Swarm(stt, 4) as swarm:
            source = tmp_path / "source.bin"
            data = os.urandom(10 * CHUNK_SIZE + 5)
            source.write_bytes(data)
            content_id = await swarm.cds[1].publish_content(str(source))
            assert await swarm.cds[2].retrieve_content(content_id) == data
            seen = []
            target = tmp_path / "copy.bin"
            length = await swarm.cds[3].retrieve_to_file(
                content_id, target, progress=lambda done, total, providers:
                seen.append((done, total, providers)))
            assert length == len(data)
            assert target.read_bytes() == data
            assert seen and seen[-1][:2] == (len(data), len(data))
            part = await swarm.cds[0].retrieve_range(content_id, CHUNK_SIZE - 3, 10)
            assert part == data[CHUNK_SIZE - 3:CHUNK_SIZE + 7]
            tail = await swarm.cds[0].retrieve_range(content_id, len(data) - 2, 100)
            assert tail == data[-2:]
            assert swarm.cds[0].statistics()["chunks_received"] >= 3


async def test_unknown_content_is_not_found(stt):
    with anyio.fail_after(30):
        async with Swarm(stt, 2, provider_lookups=1) as swarm:
            with pytest.raises(ContentNotFoundError):
                await swarm.cds[1].retrieve_content(bytes(32))


async def test_node_id_must_be_the_dhts(stt):
    dht = stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED,
                          host="127.0.0.1", port=0)
    with pytest.raises(ValueError):
        stt.ContentDistribution(dht=dht, node_id=bytes(32))
    with pytest.raises(TypeError):
        stt.ContentDistribution(dht=object())


async def test_retrieving_to_a_file_what_the_store_has_copies_it_locally(stt, tmp_path):
    with anyio.fail_after(30):
        async with Swarm(stt, 2) as swarm:
            data = os.urandom(2 * CHUNK_SIZE + 9)
            cd = swarm.cds[1]
            content_id = await cd.publish_content(data)
            target = tmp_path / "out.bin"
            assert await cd.retrieve_to_file(content_id, target) == len(data)
            assert target.read_bytes() == data
            assert cd.statistics()["chunks_received"] == 0
            # The file it serves in place, retrieved onto itself, is left alone.
            source = tmp_path / "in.bin"
            source.write_bytes(data[:100])
            small = await cd.publish_content(str(source))
            assert await cd.retrieve_to_file(small, source) == 100
            assert source.read_bytes() == data[:100]


async def test_concurrent_retrievals_of_one_content_fetch_it_once(stt):
    """Three calls at once, none providing afterwards: one fetch, three
    answers, and the store forgets the content only once the last has read it."""
    with anyio.fail_after(30):
        async with Swarm(stt, 3) as swarm:
            data = os.urandom(5 * CHUNK_SIZE + 1)
            content_id = await swarm.cds[1].publish_content(data)
            cd = swarm.cds[2]
            results = []

            async def retrieve():
                results.append(await cd.retrieve_content(content_id, provide=False))

            async with anyio.create_task_group() as tasks:
                for _ in range(3):
                    tasks.start_soon(retrieve)
            assert results == [data] * 3
            stats = cd.statistics()
            assert stats["chunks_received"] == 6 and stats["retrievals_joined"] == 2
            assert not cd.store.has(content_id) and cd.published() == []
