"""The pub/sub engine fuzz program without atheris: the checked-in corpus and a
batch of seeded random programs replayed through ``fuzz/_pubsub_engine.py`` (the
same checks ``fuzz/fuzz_pubsub_engine.py`` runs), and the findings of the long
runs as regressions, strict expected failures until the engine is fixed."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from stt_proto.events import PubSubMessage
from stt_proto.identity import Identity
from stt_proto.pubsub import messages as m
from stt_proto.pubsub.config import PubSubConfig
from stt_proto.pubsub.node import PubSubNode

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import _pubsub_engine  # noqa: E402

CORPUS = FUZZ / "corpus" / "pubsub_engine"


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.iterdir()))
def test_corpus_program_keeps_every_invariant(seed):
    _pubsub_engine.run_input((CORPUS / seed).read_bytes())


def test_seeded_random_programs_keep_every_invariant():
    rng = random.Random(1515)
    for _ in range(300):
        _pubsub_engine.run_input(rng.randbytes(rng.randrange(1, 500)))


def test_corpus_reaches_the_deep_paths():
    """The seeds start inside the paths the harness is for, not at the codec."""
    totals: dict[str, int] = {}
    delivered = gaps = 0
    for path in CORPUS.iterdir():
        run = _pubsub_engine.Run(path.read_bytes())
        run.run()
        delivered += run.delivered
        gaps += run.gaps
        for name, value in run.node.stats.items():
            totals[name] = totals.get(name, 0) + value
    assert delivered > 0 and gaps > 0
    for counter in ("messages_forged", "messages_buffer_full", "messages_rate_limited",
                    "control_rate_limited", "publishers_forgotten", "history_evicted",
                    "queue_full", "mesh_pruned_slow", "mesh_pruned_idle", "grafts_refused",
                    "iwant_answered", "gone_sent", "wants_timed_out", "peers_banned",
                    "peer_topics_refused", "messages_too_large"):
        assert totals[counter] > 0, counter


def test_a_broken_invariant_is_reported():
    """The checks can fail: a history that counts fewer bytes than it holds,
    and a delivery that skips a message without a gap, are both caught."""
    run = _pubsub_engine.Run(b"\x00")
    run.node.history.add(next(iter(_pubsub_engine.POOL.values()))[0], 0.0)
    run.node.history.bytes -= 1
    with pytest.raises(AssertionError, match="history bytes"):
        _pubsub_engine.check(run)

    run = _pubsub_engine.Run(b"\x00")
    author = _pubsub_engine.AUTHORS[0].node_id
    topic, epoch = _pubsub_engine.TOPICS[0], _pubsub_engine.EPOCHS[1]
    for seq in (1, 3):
        run.node._events.append(PubSubMessage(
            topic=topic, publisher=author, epoch=epoch, seq=seq,
            data=next(iter(_pubsub_engine.GENUINE[(topic, author, epoch, seq)])),
            message_id=m.message_id(topic, author, epoch, seq)))
    with pytest.raises(AssertionError, match="skipped without a gap"):
        _pubsub_engine.check(run)


# -- findings of fuzz_pubsub_engine, expected to fail until the engine is fixed ----------

TOPIC = m.topic_key("findings")
ADDRESS = ("10.0.0.1", 4001)


def _identity(n: int) -> Identity:
    return Identity.generate(random.Random(n).randbytes)


def _node(**config) -> PubSubNode:
    return PubSubNode(_identity(1), PubSubConfig(**config), wall_offset=1000.0,
                      rng=random.Random(2).randbytes, now=0.0)


def test_a_replayed_message_is_not_delivered_again_after_its_publisher_was_forgotten():
    """Found by fuzz_pubsub_engine. One hostile peer: it forwards a genuine
    message, waits out the repair window (history lets the message go), signs
    one message each with ``max_publishers`` throwaway identities (the genuine
    publisher is forgotten) and replays the genuine message: it is delivered a
    second time. Nothing about it is forged, so the peer is not even scored down."""
    node = _node(max_publishers=2)
    node.subscribe(TOPIC, now=0.0)
    peer, author = _identity(10), _identity(11)
    epoch = node.epoch + 1
    genuine = m.sign_publish(author, TOPIC, epoch, 1, b"pay alice 10", published_ms=epoch)
    node.receive(peer.node_id, ADDRESS, m.encode(genuine), now=0.0)
    node.handle_timer(now=31.0)
    for n in (12, 13):
        throwaway = m.sign_publish(_identity(n), TOPIC, epoch, 1, b"x",
                                   published_ms=epoch + 31_000)
        node.receive(peer.node_id, ADDRESS, m.encode(throwaway), now=31.0)
    node.receive(peer.node_id, ADDRESS, m.encode(genuine), now=31.0)
    seqs = []
    while (event := node.next_event()) is not None:
        if type(event) is PubSubMessage and event.publisher == author.node_id:
            seqs.append(event.seq)
    assert seqs == [1]


def test_nothing_is_queued_for_a_banned_peer_when_the_application_unsubscribes():
    """Found by fuzz_pubsub_engine: ``_ban`` empties the peer's queue but not
    ``peer.summarised``, and ``unsubscribe`` sends UNSUBSCRIBE to every linked
    peer whose link carries the topic, banned or not; ``pop_output`` hands it
    to the host for the stream it was told to stop."""
    node = _node()
    node.subscribe(TOPIC, now=0.0)
    peer = _identity(10).node_id
    node.peer_linked(peer, ADDRESS, now=0.0)
    node.receive(peer, ADDRESS, m.encode(m.Subscribe(topic=TOPIC)), now=0.0)
    node.receive(peer, ADDRESS, b"\x00", now=0.0)   # two malformed messages: banned
    node.receive(peer, ADDRESS, b"\x00", now=0.0)
    assert node.take_banned() == [peer]
    node.unsubscribe(TOPIC, now=0.0)
    assert node.pop_output(peer) is None


def test_nothing_is_queued_for_a_banned_peer_learned_again_from_the_dht():
    """Found by fuzz_pubsub_engine: a ban forgets the peer in every topic, but
    ``providers_found`` (or another peer's PRUNE) puts it back in ``known``
    (``Topic.learn`` does not look at bans), and ``subscribe`` links every
    known, linked peer to the topic: SUBSCRIBE and an IHAVE go into the banned
    peer's queue."""
    node = _node()
    other = m.topic_key("findings, other")
    node.subscribe(TOPIC, now=0.0)
    peer = _identity(10).node_id
    node.peer_linked(peer, ADDRESS, now=0.0)
    node.receive(peer, ADDRESS, b"\x00", now=0.0)   # two malformed messages: banned
    node.receive(peer, ADDRESS, b"\x00", now=0.0)
    assert node.take_banned() == [peer]
    node.publish(other, b"", now=0.0)                   # a topic of ours, not subscribed
    node.providers_found(other, [(peer, ADDRESS)], now=0.0)
    node.subscribe(other, now=0.0)
    assert node.pop_output(peer) is None


#: The fuzzer's own inputs for the findings above (minimised), replayed strictly.
FINDING_INPUTS = {
    "forgotten_publisher_redelivered": bytes.fromhex(
        "00ed00cc026e01000200000000a2adfe000200f6000001002d00000200008900810001f300000101"
        "00000001000000010000000100000092000000000002000902"),
    "control_queued_for_banned_peer": bytes.fromhex(
        "b696020002020000feda050201000000010200008000000000000000000001000001000000e90000"
        "000000e70200000000320000010002000001008901"),
    # The second path: a banned peer learned again from providers_found.
    "control_queued_for_banned_peer_relearned": bytes.fromhex(
        "001ffd00e4000002020000d0000000000100000200001d000000000000000000000000533a01000000"
        "00010000213800f3010200000000cc9502d00000ff0100ff0000003b69"),
}


@pytest.mark.parametrize("name", sorted(FINDING_INPUTS))
def test_a_finding_of_the_fuzzer_holds_strictly(name):
    """The fuzzer's inputs for its findings (fixed) keep every invariant."""
    _pubsub_engine.run_input(FINDING_INPUTS[name], strict=True)
