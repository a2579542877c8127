"""One session per peer, shared by the application and the overlays, in the simulator.

A session the application opened carries the DHT, pub/sub and content traffic to
that peer with no further handshake; a session the session pool opened for the
DHT serves the application as it is; and when both nodes' pools dial each other
at the same moment, the pair settles on one session, the one the smaller node id
opened (the tie-break ``Node.connect`` uses), on both sides.
"""

from __future__ import annotations

import random

from stt_proto.constants import CONTENT_STREAM_ID, PUBSUB_STREAM_ID
from stt_proto.events import ContentRetrieved, MessageReceived
from stt_proto.pubsub.messages import topic_key
from tests.helpers.content_sim import ContentNet
from tests.helpers.pubsub_sim import PubSubNet

TOPIC = topic_key("shared sessions")


def handshakes(member) -> int:
    return member.host.endpoint.statistics()["handshakes_completed"]


def app_connect(net, a, b) -> dict:
    """The application of ``a`` opens a session to ``b`` (no overlay knows it
    yet); its id on each side (each end names a session its own way)."""
    session_id = a.node.call(lambda host, now: host.endpoint.connect(
        b.node.address, b.node_id, now=now))
    net.net.run(until=net.net.now + 2, stop=lambda: b.host.pool.session_of(a.node_id))
    assert a.host.pool.session_of(b.node_id) == session_id
    return {a.node_id: session_id, b.node_id: b.host.pool.session_of(a.node_id)}


def pair(net_class, seed: int = 1):
    """Two members, not yet in each other's DHT, and the application session
    ``a`` opened to ``b``; ``b`` then joins the DHT through ``a``."""
    net = net_class(seed)
    a, b = net.add(), net.add()
    session_id = app_connect(net, a, b)
    assert (handshakes(a), handshakes(b)) == (1, 1)
    net.wait_query(b, lambda d, now: d.bootstrap([(a.node_id, a.node.address)], now=now))
    return net, a, b, session_id


def test_the_dht_uses_the_application_session():
    net, a, b, ids = pair(PubSubNet)
    found = net.wait_query(a, lambda d, now: d.find_node(b.node_id, now=now, exact=True))
    assert b.node_id in [peer for peer, _ in found]
    assert (handshakes(a), handshakes(b)) == (1, 1)
    assert a.host.pool.session_of(b.node_id) == ids[a.node_id]
    assert b.host.pool.session_of(a.node_id) == ids[b.node_id]
    assert not a.host.pool.owns(ids[a.node_id])  # still the application's to close
    assert a.host.pool.stats["pool_connects"] == b.host.pool.stats["pool_connects"] == 0


def test_pubsub_travels_on_the_application_session():
    net, a, b, ids = pair(PubSubNet)
    net.subscribe(b, TOPIC)
    net.run(2)
    sent = [net.publish(a, TOPIC, b"reading %d" % i).seq for i in range(5)]
    net.run(2)
    assert b.received[(TOPIC, a.node_id, a.pubsub.epoch)] == sent
    assert (handshakes(a), handshakes(b)) == (1, 1)
    for one, other in ((a, b), (b, a)):
        channel = one.host._channels[PUBSUB_STREAM_ID]
        assert channel.links[other.node_id] == ids[one.node_id]


def test_content_travels_on_the_application_session():
    net, a, b, ids = pair(ContentNet)
    data = random.Random(3).randbytes(200_000)
    content_id = net.publish(a, data)
    net.run(2)
    end = net.wait(b, net.retrieve(b, content_id))
    assert isinstance(end, ContentRetrieved) and end.length == len(data)
    assert (handshakes(a), handshakes(b)) == (1, 1)
    assert b.host._channels[CONTENT_STREAM_ID].links[a.node_id] == ids[b.node_id]


def test_the_pools_session_serves_the_application_without_a_handshake():
    net = PubSubNet(2)
    a, b = net.add(), net.add()
    net.wait_query(b, lambda d, now: d.bootstrap([(a.node_id, a.node.address)], now=now))
    session_id = b.host.pool.session_of(a.node_id)
    assert b.host.pool.owns(session_id)  # the pool dialled it for the DHT
    before = handshakes(b)
    # The application takes it over (what Node.connect does with it) and uses it.
    b.host.pool.disown(session_id)
    a.node.record_events = True
    b.node.call(lambda host, now: host.endpoint.send_message(
        session_id, host.endpoint.open_stream(session_id, now=now), b"application data",
        now=now))
    net.run(1)
    assert [e.data for e in a.node.events_of(MessageReceived)] == [b"application data"]
    assert handshakes(b) == before
    # Disowned, it outlives the pool's idle close.
    net.run(b.host.pool.idle_close + 10)
    assert b.host.pool.session_of(a.node_id) == session_id


def test_pools_that_dial_each_other_at_once_settle_on_one_session():
    net = PubSubNet(5)
    a, b = net.add(), net.add()
    small, large = (a, b) if a.node_id < b.node_id else (b, a)
    for one, other in ((a, b), (b, a)):  # both join through the other at the same moment
        one.node.call(lambda host, now, one=one, other=other: one.dht.bootstrap(
            [(other.node_id, other.node.address)], now=now))
    net.subscribe(a, TOPIC)
    net.subscribe(b, TOPIC)
    net.run(3)
    assert (handshakes(a), handshakes(b)) == (2, 2)  # both handshakes ran
    assert large.host.pool.stats["pool_simultaneous_closed"] == 1
    assert small.host.pool.stats["pool_simultaneous_closed"] == 0
    kept = {m.node_id: m.host.pool.session_of(o.node_id) for m, o in ((a, b), (b, a))}
    # Both ends use the session the smaller id opened, and it is the only one left.
    assert small.host.endpoint.session_info(kept[small.node_id])["initiator"]
    assert not large.host.endpoint.session_info(kept[large.node_id])["initiator"]
    for one, other in ((a, b), (b, a)):
        assert [s for s, _, _ in one.host.endpoint.peer_sessions(other.node_id)] == \
            [kept[one.node_id]]
        assert one.host._channels[PUBSUB_STREAM_ID].links[other.node_id] == kept[one.node_id]
    # Traffic flows on it, and it outlives the pool's idle close.
    sent = [net.publish(a, TOPIC, b"after the tie-break %d" % i).seq for i in range(3)]
    net.run(a.host.pool.idle_close + 10)
    assert b.received[(TOPIC, a.node_id, a.pubsub.epoch)] == sent
    for one, other in ((a, b), (b, a)):
        assert one.host.pool.session_of(other.node_id) == kept[one.node_id]
    assert (handshakes(a), handshakes(b)) == (2, 2)
