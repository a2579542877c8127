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
