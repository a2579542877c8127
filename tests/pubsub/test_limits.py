"""Every limit of the pub/sub engine against a hostile peer, one node fed by hand:
each bites at its named value, is counted, and leaves the node working."""

from __future__ import annotations

import random

import pytest

from stt_proto.errors import MessageTooLargeError, PubSubError
from stt_proto.identity import Identity
from stt_proto.pubsub import messages as m
from stt_proto.pubsub.config import PubSubConfig
from stt_proto.pubsub.node import PubSubNode

TOPIC = m.topic_key("limits")
ADDRESS = ("10.1.1.1", 4000)
#: The node's wall clock at ``now`` 0 (``wall_offset`` 1000 s), in milliseconds:
#: the peers' messages are stamped with it, published as the node subscribed.
WALL_MS = 1_000_000


def make(**config) -> PubSubNode:
    rng = random.Random(1)
    # Wall clock at 1,000 s: epochs of a few milliseconds are from long before.
    node = PubSubNode(Identity.generate(rng.randbytes), PubSubConfig(**config),
                      rng=rng.randbytes, now=0.0, wall_offset=1000.0)
    return node


def peer_identity(n: int) -> Identity:
    return Identity.generate(random.Random(100 + n).randbytes)


def link(node: PubSubNode, who: Identity) -> bytes:
    node.peer_linked(who.node_id, ADDRESS, now=0.0)
    return who.node_id


def feed(node, peer_id, message, now=0.0):
    node.receive(peer_id, ADDRESS, m.encode(message), now=now)


def sent(node, peer_id):
    out = []
    while (data := node.pop_output(peer_id)) is not None:
        out.append(m.decode(data))
    return out


def test_config_is_validated():
    with pytest.raises(ValueError):
        PubSubConfig(mesh_low=8, mesh_degree=6)
    with pytest.raises(ValueError):
        PubSubConfig(max_message_size=(16 << 20) + 1)
    with pytest.raises(TypeError):
        PubSubConfig(heartbeat="1")
    with pytest.raises(ValueError):
        PubSubConfig(max_topics=0)


def test_max_topics():
    node = make(max_topics=2)
    node.subscribe(m.topic_key("a"), now=0.0)
    node.publish(m.topic_key("b"), b"x", now=0.0)
    with pytest.raises(PubSubError, match="max_topics"):
        node.subscribe(m.topic_key("c"), now=0.0)
    with pytest.raises(PubSubError):
        node.publish(m.topic_key("c"), b"x", now=0.0)
    node.subscribe(m.topic_key("a"), now=0.0)  # a topic it has is fine


def test_max_message_size_on_publish_and_on_arrival():
    node = make(max_message_size=100)
    with pytest.raises(MessageTooLargeError, match="max_message_size"):
        node.publish(TOPIC, b"x" * 101, now=0.0)
    assert node.stats["messages_published"] == 0
    node.subscribe(TOPIC, now=0.0)
    author = peer_identity(1)
    peer = link(node, author)
    feed(node, peer, m.sign_publish(author, TOPIC, 5, 1, b"y" * 101, published_ms=WALL_MS))
    assert node.stats["messages_too_large"] == 1
    assert node.next_event() is None


def test_max_peer_topics():
    node = make(max_peer_topics=3)
    peer = link(node, peer_identity(1))
    for i in range(10):
        feed(node, peer, m.Subscribe(topic=m.topic_key(f"t{i}")))
    assert node.stats["peer_topics_refused"] == 7
    assert len(node._peers[peer].topics) == 3


def test_max_known_subscribers_from_peer_exchange():
    node = make(max_known_subscribers=5)
    node.subscribe(TOPIC, now=0.0)
    peer = link(node, peer_identity(1))
    contacts = tuple(m.Contact(node_id=bytes([i]) * 32, address=("10.2.0.%d" % i, 4000))
                     for i in range(1, 17))
    feed(node, peer, m.Prune(topic=TOPIC, backoff_ms=1000, peers=contacts))
    assert len(node.known_subscribers(TOPIC)) == 5


def test_max_messages_per_second_from_a_publisher_flooding_its_own():
    node = make(max_messages_per_second=10.0)
    node.subscribe(TOPIC, now=0.0)
    author = peer_identity(1)
    peer = link(node, author)
    for seq in range(1, 101):
        feed(node, peer, m.sign_publish(author, TOPIC, 5, seq, b"f", published_ms=WALL_MS + 500),
             now=0.5)
    assert node.stats["messages_rate_limited"] == 80   # burst: twice the rate
    assert node._peers[peer].score == -80.0
    for seq in range(101, 121):
        feed(node, peer, m.sign_publish(author, TOPIC, 5, seq, b"f", published_ms=WALL_MS + 600),
             now=0.6)
    assert node._peers[peer].banned and node.stats["peers_banned"] == 1
    assert node.take_banned() == [peer]


def test_max_control_per_second():
    node = make(max_control_per_second=5.0)
    node.subscribe(TOPIC, now=0.0)
    peer = link(node, peer_identity(1))
    for _ in range(50):
        feed(node, peer, m.IHave(topic=TOPIC, entries=()), now=0.1)
    assert node.stats["control_rate_limited"] == 40


def test_malformed_and_forged_messages_cost_the_sender_and_get_it_banned():
    node = make()
    node.subscribe(TOPIC, now=0.0)
    author, other = peer_identity(1), peer_identity(2)
    peer = link(node, author)
    node.receive(peer, ADDRESS, b"\x01\x05garbage", now=0.0)
    assert node.stats["messages_malformed"] == 1
    good = m.sign_publish(other, TOPIC, 5, 1, b"genuine", published_ms=WALL_MS)
    forged = m.Publish(topic=TOPIC, publisher=good.publisher,
                       signing_public_key=good.signing_public_key, epoch=5, seq=1,
                       published_ms=WALL_MS, data=b"altered", signature=good.signature)
    feed(node, peer, forged)
    assert node.stats["messages_forged"] == 1
    assert node._peers[peer].banned
    feed(node, peer, good)
    assert node.stats["messages_from_banned"] == 1
    assert node.next_event() is None


def test_max_queued_bytes_per_peer_and_control_beyond_it():
    node = make(max_queued_bytes_per_peer=1000)
    peer = node._peer(peer_identity(1).node_id, ADDRESS, 0.0)
    big = m.sign_publish(node.identity, TOPIC, 1, 1, b"z" * 600, published_ms=WALL_MS)
    assert node._send(peer, big)
    assert not node._send(peer, m.sign_publish(node.identity, TOPIC, 1, 2, b"z" * 600,
                                               published_ms=WALL_MS))
    assert node.stats["queue_full"] == 1
    assert node._send(peer, m.Graft(topic=TOPIC), control=True)  # control has room left
    assert peer.queued_bytes <= 2 * 1000


def test_max_wants_in_flight():
    node = make(max_wants_in_flight=3)
    node.subscribe(TOPIC, now=0.0)
    peer = link(node, peer_identity(1))
    entries = tuple(sorted((m.IHaveEntry(publisher=bytes([i]) * 32, epoch=5, high=10)
                            for i in range(1, 11)), key=lambda e: (e.publisher, e.epoch)))
    # Ten publishers of an epoch from long before the subscription: each needs
    # its latest message looked at (is it from before our time?), three at once.
    feed(node, peer, m.IHave(topic=TOPIC, entries=entries))
    wants = [x for x in sent(node, peer) if type(x) is m.IWant]
    assert len(wants) == 3
    assert all((w.first, w.last) == (10, 10) for w in wants)
    assert sum(len(t.wants) for t in node._topics.values()) == 3


def test_iwant_answers_from_history_and_says_gone_for_the_rest():
    node = make()
    for i in range(5):
        node.publish(TOPIC, b"m%d" % i, now=0.0)
    peer = link(node, peer_identity(1))
    topic = node._topics[TOPIC]
    for message in topic.unsent:  # nobody was found yet: put them in the history
        node.history.add(message, 0.0)
    feed(node, peer, m.IWant(topic=TOPIC, publisher=node.own_id, epoch=node.epoch,
                             first=3, last=9))
    answer = sent(node, peer)
    assert [x.seq for x in answer if type(x) is m.Publish] == [3, 4, 5]
    (gone,) = [x for x in answer if type(x) is m.Gone]
    assert (gone.first, gone.last) == (6, 9)


def test_max_queued_messages_per_peer_holds_whatever_the_size():
    node = make(max_queued_messages_per_peer=4)
    peer = node._peer(peer_identity(1).node_id, ADDRESS, 0.0)
    for seq in range(1, 5):
        assert node._send(peer, m.sign_publish(node.identity, TOPIC, 1, seq, b"s",
                                               published_ms=WALL_MS))
    assert not node._send(peer, m.sign_publish(node.identity, TOPIC, 1, 5, b"s",
                                               published_ms=WALL_MS))
    assert node.stats["queue_full"] == 1
    assert node._send(peer, m.Graft(topic=TOPIC), control=True)  # twice as many for control


def test_a_copy_we_already_have_is_dropped_before_it_is_decoded():
    node = make()
    node.subscribe(TOPIC, now=0.0)
    author = peer_identity(1)
    peer = link(node, author)
    genuine = m.sign_publish(author, TOPIC, 5, 1, b"once", published_ms=WALL_MS + 10)
    feed(node, peer, genuine)
    data = bytearray(m.encode(genuine))
    data[-1] ^= 1  # a copy with a broken signature: never even checked
    node.receive(peer, ADDRESS, bytes(data), now=0.1)
    assert node.stats["messages_duplicate"] == 1 and node.stats["messages_forged"] == 0
    assert m.publish_slot(bytes(data)) == (TOPIC, author.node_id, 5, 1)
    assert m.publish_slot(b"\x01\x01" + bytes(200)) is None


def test_a_gone_from_a_late_joiner_sends_the_iwant_elsewhere_and_reports_nothing_early():
    node = make(repair_window=30.0)
    node.subscribe(TOPIC, now=0.0)
    author = peer_identity(9)
    epoch = WALL_MS + 5  # begun after the subscription: owed from seq 1
    a, b = link(node, peer_identity(1)), link(node, peer_identity(2))
    for peer in (a, b):
        feed(node, peer, m.IHave(topic=TOPIC, entries=(
            m.IHaveEntry(publisher=author.node_id, epoch=epoch, high=3),)))
    asked = {p: [x for x in sent(node, p) if type(x) is m.IWant] for p in (a, b)}
    first = a if asked[a] else b
    other = b if first == a else a
    assert [(w.first, w.last) for w in asked[first]] == [(1, 3)] and not asked[other]
    # The peer asked joined late: it has 2 and 3, not 1.
    for seq in (2, 3):
        feed(node, first, m.sign_publish(author, TOPIC, epoch, seq, b"m",
                                         published_ms=epoch + seq))
    feed(node, first, m.Gone(topic=TOPIC, publisher=author.node_id, epoch=epoch,
                             first=1, last=1))
    assert node.next_event() is None  # nothing reported lost
    (again,) = [x for x in sent(node, other) if type(x) is m.IWant]
    assert (again.first, again.last) == (1, 1)
    feed(node, other, m.Gone(topic=TOPIC, publisher=author.node_id, epoch=epoch,
                             first=1, last=1), now=0.2)
    node.handle_timer(now=5.0)
    assert node.next_event() is None  # still within the repair window
    node.handle_timer(now=31.0)
    gap = node.next_event()
    assert (gap.first, gap.last) == (1, 1)
    assert [node.next_event().seq for _ in range(2)] == [2, 3]


def test_a_message_of_ours_that_no_peer_gets_is_counted_when_handed_over():
    """``messages_published_to_nobody`` is what ``stt pub`` reports from: the
    engine's word when it hands a message over, not the peers seen afterwards
    (a subscriber that got it may have left by then)."""
    node = make()
    node.publish(TOPIC, b"early", now=0.0)       # held while the DHT is asked
    assert node.stats["messages_published_to_nobody"] == 0
    node.providers_found(TOPIC, [], now=0.1)    # nobody subscribes
    assert node.stats["messages_published_to_nobody"] == 1
    subscriber = peer_identity(1)
    node.providers_found(TOPIC, [(subscriber.node_id, ADDRESS)], now=0.2)
    link(node, subscriber)
    node.publish(TOPIC, b"heard", now=0.3)
    assert node.stats["messages_published_to_nobody"] == 1
    assert [x.data for x in sent(node, subscriber.node_id) if type(x) is m.Publish] == [b"heard"]
