"""The content engine fuzz program without atheris: the checked-in corpus and a
batch of seeded random programs replayed through ``fuzz/_content_engine.py``
(the same checks ``fuzz/fuzz_content_engine.py`` runs), and the findings of the
long runs as regressions."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from stt_proto.content.config import ContentConfig
from stt_proto.content.messages import Request, decode
from stt_proto.content.node import ContentNode
from stt_proto.content.store import MemoryStore
from stt_proto.events import ContentRetrieved

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import _content_engine  # noqa: E402

CORPUS = FUZZ / "corpus" / "content_engine"


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.iterdir()))
def test_corpus_program_keeps_every_invariant(seed):
    _content_engine.run_input((CORPUS / seed).read_bytes(), strict=True)


def test_seeded_random_programs_keep_every_invariant():
    """Strict: no finding is let through."""
    rng = random.Random(1616)
    for _ in range(300):
        _content_engine.run_input(rng.randbytes(rng.randrange(1, 500)), strict=True)


def test_corpus_reaches_the_deep_paths():
    """The seeds start inside the paths the harness is for, not at the codec."""
    totals: dict[str, int] = {}
    retrieved = ranges = dropped_bad = 0
    for path in CORPUS.iterdir():
        run = _content_engine.Run(path.read_bytes(), strict=True)
        run.run()
        retrieved += run.retrieved
        ranges += run.retrieved_ranges
        dropped_bad += run.dropped_bad
        for name, value in run.node.stats.items():
            totals[name] = totals.get(name, 0) + value
    assert retrieved > 0 and ranges > 0 and dropped_bad > 0
    for counter in ("messages_malformed", "chunks_late", "chunks_unsolicited", "bad_chunks",
                    "retrievals_failed", "requests_served", "requests_refused_busy",
                    "requests_refused_rate", "requests_refused_not_found",
                    "requests_refused_range", "requests_cancelled", "peers_banned"):
        assert totals[counter] > 0, counter


def test_a_broken_invariant_is_reported():
    """The checks can fail: a partial holding a chunk that is not the genuine
    one, and a ContentRetrieved the store does not back, are both caught."""
    run = _content_engine.Run(b"\x00")
    content = _content_engine.CONTENTS[0]
    partial = run.store.begin(content.id, content.length)
    partial.write(1, b"\x00" * len(content.chunks[1]), content.tree.leaves[1])
    with pytest.raises(AssertionError, match="not genuine"):
        _content_engine.check(run)

    run = _content_engine.Run(b"\x00")
    retrieval = run.node.retrieve(content.id, now=0.0)
    run.retrievals[retrieval.id] = (retrieval, True, 0, None)
    run.node._events.append(ContentRetrieved(retrieval_id=retrieval.id, content_id=content.id,
                                             length=content.length))
    with pytest.raises(AssertionError, match="store does not hold it"):
        _content_engine.check(run)


# -- findings of fuzz_content_engine, kept as regressions --------------------------------

CONTENT = _content_engine.CONTENTS[0]      # three chunks
PEER, ADDRESS = _content_engine.PEER_IDS[0], _content_engine.ADDRESSES[0]
OTHER, OTHER_ADDRESS = _content_engine.PEER_IDS[1], _content_engine.ADDRESSES[1]


def _node(**config) -> ContentNode:
    return ContentNode(_content_engine.OWN_ID, MemoryStore(), ContentConfig(**config), now=0.0)


def _output(node: ContentNode, peer: bytes = PEER) -> list:
    out = []
    while (data := node.pop_output(peer)) is not None:
        out.append(decode(data))
    return out


def _retrieving(node: ContentNode, count: int = 1) -> list:
    """``count`` retrievals of CONTENT from PEER alone, linked."""
    retrievals = [node.retrieve(CONTENT.id, now=0.0) for _ in range(count)]
    assert node.dht_actions() == [("find_providers", CONTENT.id)]
    node.providers_found(CONTENT.id, [(PEER, ADDRESS)], now=0.0)
    assert node.connects_wanted() == [(PEER, ADDRESS)]
    node.peer_linked(PEER, ADDRESS, now=0.0)
    return retrievals


def _serve_honestly(node: ContentNode, retrievals: list, until: float = 60.0) -> float:
    """PEER answers every REQUEST with its genuine chunk; lookups find PEER;
    time runs to each timer. Returns the time it stopped at."""
    now = 0.0
    while now < until and any(r.state not in ("done", "failed") for r in retrievals):
        for action, key in node.dht_actions():
            if action == "find_providers":
                node.providers_found(key, [(PEER, ADDRESS)], now=now)
        for peer, address in node.connects_wanted():
            node.peer_linked(peer, address, now=now)
        moved = False
        for message in _output(node):
            if type(message) is Request:
                moved = True
                node.receive(PEER, ADDRESS, CONTENT.chunk(message.request_id,
                                                          message.index).encode(), now=now)
        if moved:
            continue
        timer = node.get_timer()
        if timer is None:
            break
        now = max(now, timer)
        node.handle_timer(now=now)
    return now


def test_two_retrievals_of_one_content_both_end():
    """Found by fuzz_content_engine. The application retrieves one content twice
    at once (two ``retrieve_content`` calls, say). Both used to fetch into the
    store's one partial, each blind to the chunks the other wrote: the second
    ended with no request out, no timer and no lookup, and waited forever. Now
    the second waits for the first and ends with it; the chunks are fetched once."""
    node = _node(max_providers=2, initial_depth=2, max_depth=3)
    first, second = _retrieving(node, 2)
    _serve_honestly(node, [first, second])
    assert node.store.has(CONTENT.id)
    ended = []
    while (event := node.next_event()) is not None:
        if type(event) is ContentRetrieved:
            ended.append(event.retrieval_id)
    assert sorted(ended) == [first.id, second.id]
    assert node.retrievals() == []
    assert node.stats["chunks_received"] == len(CONTENT.chunks)
    assert node.stats["retrievals_joined"] == 1


def test_a_chunk_under_another_index_drops_its_provider_as_bad():
    """Found by fuzz_content_engine. One provider answers the request for chunk 1
    with chunk 2 (genuine data and proof, the wrong index). That used to pop
    request 2's entry and leave chunk 1 asked of it forever: the retrieval hung.
    An answer that is not the chunk asked for is now a bad chunk: the provider
    is dropped for good and the retrieval goes on with another."""
    node = _node(max_providers=2, initial_depth=2, max_depth=3, stall_timeout=3.0)
    (retrieval,) = _retrieving(node)
    (probe,) = _output(node)
    node.receive(PEER, ADDRESS, CONTENT.chunk(probe.request_id, 0).encode(), now=0.1)
    one, two = _output(node)
    assert (one.index, two.index) == (1, 2)
    node.receive(PEER, ADDRESS, CONTENT.chunk(one.request_id, 2).encode(), now=0.2)
    assert PEER in retrieval.bad and PEER not in retrieval.providers
    assert node.stats["bad_chunks"] == 1
    # An honest provider found by the next lookup finishes it.
    now = 0.2
    while retrieval.state == "fetching" and now < 30:
        now = max(now, node.get_timer())
        node.handle_timer(now=now)
        for action, key in node.dht_actions():
            node.providers_found(key, [(OTHER, OTHER_ADDRESS), (PEER, ADDRESS)], now=now)
        for peer, address in node.connects_wanted():
            assert peer == OTHER
            node.peer_linked(peer, address, now=now)
        for message in _output(node, OTHER):
            if type(message) is Request:
                node.receive(OTHER, OTHER_ADDRESS, CONTENT.chunk(
                    message.request_id, message.index).encode(), now=now)
    assert retrieval.state == "done"
    assert node.store.read(CONTENT.id) == CONTENT.data


def test_refusals_to_a_peer_that_reads_nothing_stay_bounded():
    """Found by fuzz_content_engine. A peer that never reads its stream (no
    flow-control credit, so the host pops nothing) keeps asking. Each refusal
    used to join its queue without bound: the ban counts within ``ban_time``
    only, and BUSY for ``max_serving_peers`` (no request state for the peer)
    counted nothing. Now a peer that asks while ``max_queued_refusals`` wait
    for it is banned, and what waited goes with it."""
    node = _node(max_serving_peers=1, max_refusals=5, ban_time=6.0, max_queued_refusals=4)
    node.store.add_bytes(CONTENT.data)
    for peer, address in ((PEER, ADDRESS), (OTHER, OTHER_ADDRESS)):
        node.peer_linked(peer, address, now=0.0)
    # OTHER has a request queued: PEER is refused BUSY, with no request state.
    node.receive(OTHER, OTHER_ADDRESS, Request(request_id=1, content_id=CONTENT.id,
                                               index=0).encode(), now=0.0)
    for request_id in range(1_000):
        node.receive(PEER, ADDRESS, Request(request_id=request_id, content_id=CONTENT.id,
                                            index=0).encode(), now=0.0)
        peer = node._peers.get(PEER)
        assert peer is None or len(peer.refusals) <= 4
    assert node.take_banned() == [PEER]
    assert node.stats["peers_banned_unread"] == 1
    assert node.stats["requests_refused_busy"] == 5   # then its messages went unread
    assert _output(node) == []


def test_refusals_within_the_budget_of_each_window_stay_bounded():
    """The other path of the finding above: a peer keeps one refusal short of
    the ``max_refusals`` ban in every ``ban_time`` window and never reads; its
    queue used to grow by ``max_refusals`` per window."""
    node = _node(max_refusals=5, ban_time=6.0, max_queued_refusals=16)
    node.peer_linked(PEER, ADDRESS, now=0.0)
    windows = 0
    while PEER in node._peers and windows < 10:
        for request_id in range(5):
            node.receive(PEER, ADDRESS, Request(request_id=request_id, content_id=bytes(32),
                                                index=0).encode(), now=7.0 * windows)
        windows += 1
        assert PEER not in node._peers or len(node._peers[PEER].refusals) <= 16
    assert windows == 4 and node.take_banned() == [PEER]


def test_a_peer_that_reads_its_refusals_is_not_banned_for_them():
    """The bound is on refusals waiting unread: a peer refused now and then
    that reads them is only ever held to ``max_refusals`` per ``ban_time``."""
    node = _node(max_refusals=50, ban_time=6.0, max_queued_refusals=2)
    node.peer_linked(PEER, ADDRESS, now=0.0)
    for request_id in range(40):
        node.receive(PEER, ADDRESS, Request(request_id=request_id, content_id=bytes(32),
                                            index=0).encode(), now=0.0)
        assert [type(m).__name__ for m in _output(node)] == ["Refuse"]
    assert node.take_banned() == []


def test_a_banned_peer_is_not_asked_for_chunks():
    """Found by fuzz_content_engine. A peer sends malformed bytes and is banned
    (its stream stopped, its messages dropped unread). A lookup then named it
    as a provider, and the retrieval linked it and queued REQUESTs whose answers
    were dropped. A banned peer is no longer taken from a lookup's answer."""
    node = _node()
    node.peer_linked(PEER, ADDRESS, now=0.0)
    node.receive(PEER, ADDRESS, b"\x09garbage", now=0.0)
    assert node.take_banned() == [PEER]
    retrieval = node.retrieve(CONTENT.id, now=0.0)
    node.dht_actions()
    node.providers_found(CONTENT.id, [(PEER, ADDRESS)], now=0.0)
    assert node.connects_wanted() == []
    assert [m for m in _output(node) if type(m) is Request] == []
    assert PEER not in retrieval.providers and retrieval.get_timer() is not None


def test_a_spare_provider_banned_while_it_waits_is_never_asked():
    """Found by fuzz_content_engine. With ``max_providers`` taken, a third
    provider waits as a spare; it sends garbage and is banned; when the others
    are dropped, the spare used to be recruited and asked all the same."""
    node = _node(max_providers=1)
    retrieval = node.retrieve(CONTENT.id, now=0.0)
    node.dht_actions()
    node.providers_found(CONTENT.id, [(PEER, ADDRESS), (OTHER, OTHER_ADDRESS)], now=0.0)
    assert list(retrieval.providers) == [PEER] and retrieval.spares == [(OTHER, OTHER_ADDRESS)]
    node.peer_linked(OTHER, OTHER_ADDRESS, now=0.0)
    node.receive(OTHER, OTHER_ADDRESS, b"\x09garbage", now=0.0)
    assert node.take_banned() == [OTHER] and retrieval.spares == []
    node.peer_unlinked(PEER, now=0.1, unreachable=True)
    # Nobody left to ask: the next lookup is timed; the banned spare is not linked.
    assert retrieval.providers == {} and retrieval.get_timer() is not None
    assert (OTHER, OTHER_ADDRESS) not in node.connects_wanted()
    assert _output(node, OTHER) == []


#: The fuzzer's own programs for the findings above, replayed strictly.
FINDING_INPUTS = {
    "retrieval_hangs_with_every_chunk": bytes.fromhex("10" "070000" "070000" "0a0300"
                                                      "08000100" "0a0200"),
    "retrieval_hangs_on_a_stale_asker": bytes.fromhex("10" "070000" "0a0300" "08000100"
                                                      "0a0200" "0a01" "0c00" "0a01" "03016781"),
    # A spare provider banned while it waited was recruited later and asked.
    "request_to_banned_spare": bytes.fromhex(
        "100702fb010a030008c0ff0008f580009b00b1f00065224a58b791df6af1d8303e61cdc4bb86c3d1"
        "c427103c344c4189eb2f1ece02639e01"),
    # A BUSY asking for 2**32 - 1 ms: the retrieval slept 49 days on one peer's word.
    "busy_wait_of_49_days": bytes.fromhex(
        "10070200020a03000800ab01000a02000a010c000a010c0026313131313131313131d73131313131"
        "315f5f5f5f5f5f5f5f5f01000a02e9e877db42000010070200955f5f5f5f5f5f285f5f5f5f5f5f"),
}


@pytest.mark.parametrize("name", sorted(FINDING_INPUTS))
def test_a_finding_of_the_fuzzer_holds_strictly(name):
    _content_engine.run_input(FINDING_INPUTS[name], strict=True)


#: Inputs of the long runs that broke the harness itself (not the engine), kept
#: so that its bookkeeping stays right.
HARNESS_INPUTS = {
    # The mutated bytes decode to a CHUNK under the request id that linking its
    # sender has just sent: a bad answer, not seen as one by the harness then.
    "raw_bytes_answer_a_request": bytes.fromhex(
        "100700000a03ffff94949494949494949494949494949494949494949494949494949494949494"
        "9494949d9494feffffff000000009494949494949494949494949494949494949494949494949494"
        "9494ffffffffffffffffffffffffffff00080000010a02006501"),
    # A stranger found by a lookup answered, then sent copies nobody asked for
    # and was banned: the harness expected bans of its own peers only.
    "a_stranger_is_banned": bytes.fromhex(
        "10070200020a7e03080001000a00020a037e0800014a00000000000000000a02000a013737373737"
        "37373737373737373737afe877db00000362a7f5b165224a58b791df6af1d8303e61474747474747"
        "474747cdc49086c3d1e9e877db000003620008420000000079657b85f10dc42a"),
}


@pytest.mark.parametrize("name", sorted(HARNESS_INPUTS))
def test_an_input_that_broke_the_harness_replays(name):
    _content_engine.run_input(HARNESS_INPUTS[name], strict=True)
