"""The pub/sub engine in the simulator: meshes over real sessions, delivery once and
in order, repair, gaps, publishers that do not subscribe."""

from __future__ import annotations

from stt_proto.pubsub.messages import topic_key
from tests.helpers.pubsub_sim import PubSubNet

TOPIC = topic_key("sensor_data")


def build(count: int, seed: int = 1, **kwargs) -> PubSubNet:
    net = PubSubNet(seed, **kwargs)
    first = net.add()
    for _ in range(count - 1):
        net.add(bootstrap=first)
    return net


def test_subscribers_get_every_message_once_in_order():
    net = build(12)
    subscribers = net.members[1:]
    for member in subscribers:
        net.subscribe(member, TOPIC)
    net.run(5)
    publisher = net.members[3]
    for i in range(50):
        net.publish(publisher, TOPIC, b"reading %d" % i)
    net.run(5)
    key = (TOPIC, publisher.node_id, publisher.pubsub.epoch)
    for member in subscribers:
        if member is publisher:
            continue
        assert member.received.get(key) == list(range(1, 51)), member.node.name
        assert not member.gaps
    for member in subscribers:
        assert 1 <= len(member.pubsub.mesh_peers(TOPIC)) <= 12


def test_a_node_without_pubsub_stops_the_pubsub_stream_and_the_link_is_dropped():
    from stt_proto.constants import PUBSUB_STREAM_ID
    net = build(4)
    plain = net.members[3]
    plain.host.detach_pubsub()  # a member that runs the DHT only
    seen = []
    previous = plain.node.on_event
    plain.node.on_event = lambda node, event: (seen.append(event), previous(node, event))
    subscriber = net.members[1]
    net.subscribe(subscriber, TOPIC)
    net.run(3)
    # The subscriber found nobody else by the DHT; make it talk pub/sub to the
    # plain member anyway, as a stale provider record would.
    net.call(subscriber, lambda p, now: p.providers_found(
        TOPIC, [(plain.node_id, plain.node.address)], now=now))
    net.run(3)
    assert plain.host.stats["overlay_streams_refused"] >= 1
    assert subscriber.host.stats["pubsub_links_lost"] >= 1
    assert plain.node_id not in subscriber.pubsub.mesh_peers(TOPIC)
    # The stream reached the plain member (refused above); its application
    # never saw it.
    assert PUBSUB_STREAM_ID not in [getattr(e, "stream_id", None) for e in seen]
