"""Issue 16's scenario in the simulator: one publisher, twenty nodes retrieve and then
provide, then a late node retrieves from many providers at once -- on lossy
links, with one provider serving corrupted chunks.

Every retrieval must end with the exact content; the corrupt provider must be
dropped on its first bad chunk (``bad_chunk``) and never asked again, and the
late node must fetch from several providers at once.
"""

from __future__ import annotations

import random

import pytest

from stt_proto.content.store import MemoryStore
from stt_proto.content.tree import CHUNK_SIZE
from stt_proto.events import ContentRetrieved
from stt_proto.testing import Link
from tests.helpers.content_sim import ContentNet

RTT = 0.05


class CorruptStore(MemoryStore):
    """A provider whose disk flips one bit of every chunk it serves."""

    def read_chunk(self, content_id: bytes, index: int) -> bytes | None:
        data = super().read_chunk(content_id, index)
        if data is None or not data:
            return data
        spoiled = bytearray(data)
        spoiled[len(spoiled) // 2] ^= 0x10
        return bytes(spoiled)


def scenario(*, seed: int, retrievers: int, size: int, loss: float):
    net = ContentNet(seed, link=Link(latency=RTT / 2, loss=loss), rtt=RTT,
                     content={"stall_timeout": 2.0})
    publisher = net.add()
    members = [net.add(bootstrap=publisher) for _ in range(retrievers)]
    corrupt = net.add(bootstrap=publisher, store=CorruptStore(max_bytes=1 << 30))
    data = random.Random(seed).randbytes(size)
    content_id = net.publish(publisher, data)
    net.run(2.0)
    # The corrupt node retrieves honestly first (its chunks verify on the way
    # in), then serves them spoiled.
    ends = [net.wait(corrupt, net.retrieve(corrupt, content_id))]
    for member in members:
        ends.append(net.wait(member, net.retrieve(member, content_id)))
    net.run(2.0)  # the last announcements land
    late = net.add(bootstrap=publisher)
    retrieval = net.retrieve(late, content_id)
    ends.append(net.wait(late, retrieval))
    return net, data, content_id, members, corrupt, late, retrieval, ends


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_twenty_retrieve_then_provide_and_a_late_node_fetches_from_many(seed):
    size = 24 * CHUNK_SIZE + 1234
    net, data, content_id, members, corrupt, late, retrieval, ends = scenario(
        seed=seed, retrievers=20, size=size, loss=0.03)
    assert all(type(end) is ContentRetrieved for end in ends), ends
    for member in members + [late]:
        assert member.store.read(content_id) == data
        assert content_id in member.content.published()  # it provides it now
    # The late node used several providers at once.
    assert max(p.providers for p in late.progress) >= 3
    served = [m for m in net.members if m.content.stats["bytes_served"] > 0]
    assert len(served) >= 5
    # Every node that met the corrupt provider dropped it on its first bad chunk.
    bad_drops = [(m, d) for m in net.members for d in m.dropped if d.reason == "bad_chunk"]
    assert bad_drops, "nobody asked the corrupt provider: the scenario proves nothing"
    for member, drop in bad_drops:
        assert drop.provider == corrupt.node_id
        assert member.content.stats["bad_chunks"] == 1
    assert corrupt.content.stats["requests_served"] >= 1
    drops = {(m.node_id, d.provider) for m, d in bad_drops}
    assert len(drops) == len(bad_drops)  # never asked again after its bad chunk


def fan_in_rate(providers: int, *, seed: int, rate_bytes: float, size: int) -> float:
    """Bytes/s one retriever gets from ``providers`` providers whose links to it
    each carry ``rate_bytes`` per second, from its first chunk to its last."""
    net = ContentNet(seed, rtt=RTT)
    first = net.add()
    sources = [first] + [net.add(bootstrap=first) for _ in range(providers - 1)]
    retriever = net.add(bootstrap=first)
    data = random.Random(seed).randbytes(size)
    for source in sources:
        content_id = net.publish(source, data)
        net.net.route(source.node, retriever.node,
                      Link(latency=RTT / 2, bandwidth=8 * rate_bytes, queue_bytes=256_000))
    net.run(2.0)
    end = net.wait(retriever, net.retrieve(retriever, content_id))
    assert type(end) is ContentRetrieved
    assert retriever.store.read(content_id) == data
    elapsed = net.net.now - retriever.progress_at[0]
    return (size - CHUNK_SIZE) / elapsed   # the first chunk came before the clock started


def test_fan_in_four_rate_limited_providers_give_at_least_three_and_a_half_times_one():
    rate = 2_000_000  # bytes/s per provider link
    size = 80 * CHUNK_SIZE
    one = fan_in_rate(1, seed=3, rate_bytes=rate, size=size)
    four = fan_in_rate(4, seed=3, rate_bytes=rate, size=size)
    print(f"fan-in: one provider {one / 1e6:.2f} MB/s, four {four / 1e6:.2f} MB/s, "
          f"ratio {four / one:.2f} (link rate {rate / 1e6:.2f} MB/s)")
    assert one <= rate * 1.01
    assert four >= 3.5 * one
