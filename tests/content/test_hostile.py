"""A content engine against peers that push on its limits: every bound has a name in
ContentConfig, a counter, and here a hostile peer that hits it.

The engine is driven directly with encoded messages (no network): what a peer
sends is exactly what ``receive`` gets, and what the node would write into the
peer's stream is what ``pop_output`` gives.
"""

from __future__ import annotations

import os

from stt_proto.content.config import ContentConfig
from stt_proto.content.messages import Cancel, Chunk, Refuse, RefuseReason, Request, decode
from stt_proto.content.node import ContentNode
from stt_proto.content.store import MemoryStore
from stt_proto.content.tree import CHUNK_SIZE
from stt_proto.events import ContentProviderDropped, ContentRetrievalFailed

OWN = b"\x01" * 32
PEER = b"\x02" * 32
ADDRESS = ("192.0.2.2", 9337)


def provider(**config) -> tuple[ContentNode, bytes]:
    store = MemoryStore(max_bytes=64 * CHUNK_SIZE)
    tree = store.add_bytes(os.urandom(8 * CHUNK_SIZE + 3))
    node = ContentNode(OWN, store, ContentConfig(**config))
    node.peer_linked(PEER, ADDRESS, now=0.0)
    return node, tree.content_id


def ask(node: ContentNode, request_id: int, content_id: bytes, index: int, now: float) -> None:
    node.receive(PEER, ADDRESS, Request(request_id=request_id, content_id=content_id,
                                        index=index).encode(), now=now)


def drain(node: ContentNode, peer: bytes = PEER) -> list:
    out = []
    while (data := node.pop_output(peer)) is not None:
        out.append(decode(data))
    return out


def test_requests_beyond_the_queue_bound_are_refused_busy_and_the_rest_served():
    node, cid = provider(max_requests_per_peer=4)
    for i in range(6):
        ask(node, i, cid, i, now=0.0)
    out = drain(node)
    refusals = [m for m in out if type(m) is Refuse]
    chunks = [m for m in out if type(m) is Chunk]
    assert [r.request_id for r in refusals] == [4, 5]
    assert all(r.reason == RefuseReason.BUSY and r.retry_after_ms == 500 for r in refusals)
    assert [c.request_id for c in chunks] == [0, 1, 2, 3]
    assert node.stats["requests_refused_busy"] == 2
    assert node.stats["requests_served"] == 4


def test_chunks_are_read_from_the_store_only_as_the_stream_takes_them():
    node, cid = provider()
    for i in range(8):
        ask(node, i, cid, i, now=0.0)
    assert node.store.stats["store_chunks_read"] == 0   # queued: 8 small requests
    assert type(decode(node.pop_output(PEER))) is Chunk
    assert node.store.stats["store_chunks_read"] == 1


def test_a_requester_faster_than_the_rate_is_refused():
    node, cid = provider(max_requests_per_second=10.0, max_requests_per_peer=1_000,
                         max_queued_refusals=1_000)
    for i in range(30):
        ask(node, i, cid, 0, now=0.0)      # a burst of one second's worth passes
    assert node.stats["requests_refused_rate"] == 20
    for i in range(30, 35):
        ask(node, i, cid, 0, now=0.5)      # half a second later: five more tokens
    assert node.stats["requests_refused_rate"] == 20


def test_a_peer_that_asks_without_reading_its_refusals_is_banned():
    node, cid = provider(max_requests_per_peer=1, max_queued_refusals=8, max_refusals=1_000)
    for i in range(50):
        ask(node, i, cid, 0, now=0.0)      # one queued, the rest refused BUSY, unread
    assert node.take_banned() == [PEER]
    assert node.stats["peers_banned_unread"] == 1
    assert node.stats["requests_refused_busy"] == 9   # eight queued; the ninth banned it
    assert node.pop_output(PEER) is None


def test_unknown_content_and_indexes_past_the_end_are_refused():
    node, cid = provider()
    ask(node, 1, bytes(32), 0, now=0.0)
    ask(node, 2, cid, 9, now=0.0)
    out = drain(node)
    assert [(m.request_id, m.reason) for m in out] == [
        (1, RefuseReason.NOT_FOUND), (2, RefuseReason.OUT_OF_RANGE)]
    assert node.stats["requests_refused_not_found"] == 1
    assert node.stats["requests_refused_range"] == 1


def test_a_cancelled_request_is_not_served():
    node, cid = provider()
    ask(node, 1, cid, 0, now=0.0)
    ask(node, 2, cid, 1, now=0.0)
    node.receive(PEER, ADDRESS, Cancel(request_id=1).encode(), now=0.0)
    assert [m.request_id for m in drain(node)] == [2]
    assert node.stats["requests_cancelled"] == 1


def test_hammering_after_refusals_gets_the_peer_banned_and_ignored():
    node, cid = provider(max_refusals=5, ban_time=10.0)
    for i in range(7):
        ask(node, i, bytes(32), 0, now=0.0)
    assert node.take_banned() == [PEER]
    assert node.stats["peers_banned"] == 1
    ask(node, 99, cid, 0, now=1.0)          # banned: nothing at all comes back
    assert node.pop_output(PEER) is None
    node.peer_linked(PEER, ADDRESS, now=11.0)
    ask(node, 100, cid, 0, now=11.0)        # the ban ended
    assert [m.request_id for m in drain(node)] == [100]


def test_malformed_bytes_ban_the_peer():
    node, _ = provider()
    node.receive(PEER, ADDRESS, b"\x09garbage", now=0.0)
    assert node.stats["messages_malformed"] == 1
    assert node.take_banned() == [PEER]


def test_chunks_nobody_asked_for_ban_the_peer_past_the_bound():
    node, cid = provider(max_unsolicited=3)
    junk = Chunk(request_id=77, length=5, index=0, proof=(), data=b"hello").encode()
    for _ in range(3):
        node.receive(PEER, ADDRESS, junk, now=0.0)
    assert node.take_banned() == []
    node.receive(PEER, ADDRESS, junk, now=0.0)
    assert node.take_banned() == [PEER]
    assert node.stats["chunks_unsolicited"] == 4


def test_the_serving_table_is_bounded_and_idle_peers_make_room():
    node, cid = provider(max_serving_peers=2)
    peers = [bytes([i]) * 32 for i in range(3, 6)]
    for peer in peers:
        node.peer_linked(peer, ADDRESS, now=0.0)
    for n, peer in enumerate(peers[:2]):
        node.receive(peer, ADDRESS, Request(request_id=n, content_id=cid, index=0).encode(),
                     now=0.0)
    node.receive(peers[2], ADDRESS, Request(request_id=9, content_id=cid, index=0).encode(),
                 now=0.0)
    assert [m.reason for m in drain(node, peers[2])] == [RefuseReason.BUSY]
    drain(node, peers[0])  # its queue empties: it is idle now
    node.receive(peers[2], ADDRESS, Request(request_id=10, content_id=cid, index=0).encode(),
                 now=0.0)
    assert [type(m) for m in drain(node, peers[2])] == [Chunk]
    assert node.server.serving_peers() == 2


# -- the retriever's side ------------------------------------------------------------------

def retriever(**config) -> tuple[ContentNode, bytes, MemoryStore]:
    source = MemoryStore(max_bytes=64 * CHUNK_SIZE)
    tree = source.add_bytes(os.urandom(3 * CHUNK_SIZE))
    node = ContentNode(OWN, MemoryStore(max_bytes=64 * CHUNK_SIZE), ContentConfig(**config))
    return node, tree.content_id, source


def start(node: ContentNode, cid: bytes, peers: list[bytes], now: float = 0.0):
    retrieval = node.retrieve(cid, now=now)
    assert node.dht_actions() == [("find_providers", cid)]
    node.providers_found(cid, [(p, ADDRESS) for p in peers], now=now)
    for peer, _ in node.connects_wanted():
        node.peer_linked(peer, ADDRESS, now=now)
    return retrieval


def events(node: ContentNode) -> list:
    out = []
    while (event := node.next_event()) is not None:
        out.append(event)
    return out


def test_a_provider_that_stalls_is_dropped_and_the_retrieval_fails_without_others():
    node, cid, _ = retriever(stall_timeout=2.0, provider_lookups=1)
    start(node, cid, [PEER])
    assert [type(m) for m in drain(node)] == [Request]
    node.handle_timer(now=node.get_timer())
    kinds = [(type(e), getattr(e, "reason", None)) for e in events(node)]
    assert (ContentProviderDropped, "stalled") in kinds
    assert (ContentRetrievalFailed, "no_providers") in kinds


def test_busy_rests_the_provider_and_asks_again_after_the_wait():
    node, cid, source = retriever()
    retrieval = start(node, cid, [PEER])
    request = drain(node)[0]
    node.receive(PEER, ADDRESS, Refuse(request_id=request.request_id, reason=RefuseReason.BUSY,
                                       retry_after_ms=300).encode(), now=0.1)
    assert drain(node) == []                          # resting
    assert abs(node.get_timer() - 0.4) < 1e-9
    node.handle_timer(now=0.4)
    again = drain(node)
    assert [type(m) for m in again] == [Request] and again[0].index == 0
    assert retrieval.state == "fetching"


def busy(node: ContentNode, request: Request, wait_ms: int, now: float) -> None:
    node.receive(PEER, ADDRESS, Refuse(request_id=request.request_id, reason=RefuseReason.BUSY,
                                       retry_after_ms=wait_ms).encode(), now=now)


def test_a_provider_asking_for_a_wait_past_the_bound_is_dropped():
    # The fuzzer's finding: a BUSY asking for 2**32 - 1 ms held the retrieval
    # 49 days with no timer but that rest.
    node, cid, _ = retriever(max_busy_wait=30.0, provider_lookups=1)
    retrieval = start(node, cid, [PEER])
    busy(node, drain(node)[0], 0xFFFFFFFF, now=0.1)
    kinds = [(type(e), getattr(e, "reason", None)) for e in events(node)]
    assert (ContentProviderDropped, "refused") in kinds
    assert (ContentRetrievalFailed, "no_providers") in kinds
    assert retrieval.state == "failed" and node.get_timer() is None


def test_a_wait_within_the_bound_is_granted():
    node, cid, _ = retriever(max_busy_wait=30.0)
    retrieval = start(node, cid, [PEER])
    busy(node, drain(node)[0], 30_000, now=0.1)
    assert PEER in retrieval.providers and abs(node.get_timer() - 30.1) < 1e-9


def test_a_provider_that_only_ever_refuses_busy_is_dropped_after_its_rests():
    node, cid, source = retriever(max_busy_rests=3, provider_lookups=1)
    retrieval = start(node, cid, [PEER])
    now = 0.0
    for rest in range(3):
        busy(node, drain(node)[0], 200, now=now)
        assert PEER in retrieval.providers, rest
        now = node.get_timer()
        node.handle_timer(now=now)
    busy(node, drain(node)[0], 200, now=now)
    assert PEER not in retrieval.providers
    kinds = [(type(e), getattr(e, "reason", None)) for e in events(node)]
    assert (ContentProviderDropped, "refused") in kinds


def test_a_chunk_between_rests_starts_the_count_again():
    node, cid, source = retriever(max_busy_rests=1, initial_depth=1, max_depth=1)
    retrieval = start(node, cid, [PEER])
    tree = source.tree(cid)
    now = 0.0
    for index in range(3):
        busy(node, drain(node)[0], 200, now=now)    # one rest each time: within the bound
        now = node.get_timer()
        node.handle_timer(now=now)
        request = drain(node)[0]
        assert request.index == index and PEER in retrieval.providers
        node.receive(PEER, ADDRESS, Chunk(request_id=request.request_id, length=tree.length,
                                          index=index, proof=tuple(tree.proof(index)),
                                          data=source.read_chunk(cid, index)).encode(), now=now)
    assert retrieval.state == "done"


def test_the_refusals_of_requests_already_on_their_way_are_one_rest():
    node, cid, source = retriever(max_busy_rests=1, initial_depth=3)
    retrieval = start(node, cid, [PEER])
    tree = source.tree(cid)
    probe = drain(node)[0]      # one request until the length is known
    node.receive(PEER, ADDRESS, Chunk(request_id=probe.request_id, length=tree.length, index=0,
                                      proof=tuple(tree.proof(0)),
                                      data=source.read_chunk(cid, 0)).encode(), now=0.05)
    requests = [m for m in drain(node) if type(m) is Request]
    assert [m.index for m in requests] == [1, 2]
    for request in requests:
        busy(node, request, 200, now=0.1)
    assert PEER in retrieval.providers and retrieval.providers[PEER].rests == 1


def test_a_bad_chunk_drops_its_provider_for_good():
    node, cid, source = retriever()
    other = b"\x03" * 32
    retrieval = start(node, cid, [PEER, other])
    request = drain(node)[0]
    tree = source.tree(cid)
    data = bytearray(source.read_chunk(cid, 0))
    data[5] ^= 0x01
    node.receive(PEER, ADDRESS, Chunk(request_id=request.request_id, length=tree.length,
                                      index=0, proof=tuple(tree.proof(0)),
                                      data=bytes(data)).encode(), now=0.1)
    dropped = [e for e in events(node) if type(e) is ContentProviderDropped]
    assert [(d.provider, d.reason) for d in dropped] == [(PEER, "bad_chunk")]
    assert PEER in retrieval.bad and PEER not in retrieval.providers
    assert node.stats["bad_chunks"] == 1
    # The chunk goes to the other provider; the bad one is never asked again.
    assert [m.index for m in drain(node, other)] == [0]
    node.providers_found(cid, [(PEER, ADDRESS)], now=0.2)
    assert PEER not in retrieval.providers
