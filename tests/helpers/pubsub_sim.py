"""Pub/sub members in the simulator: an Endpoint, an OverlayHost, a DhtNode and a
PubSubNode per member, joined through one bootstrap node, on ``Network``'s
default link (every pair routed on first use).

:class:`Member` keeps what its application received: the messages per
``(publisher, epoch)`` in arrival order and the gaps reported, so a test can
check exactly-once, per-publisher order and completeness.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from stt_proto.config import EndpointConfig
from stt_proto.dht.config import DhtConfig
from stt_proto.dht.node import DhtNode
from stt_proto.endpoint import Endpoint
from stt_proto.events import DhtQueryCompleted, PubSubGap, PubSubMessage
from stt_proto.identity import Identity
from stt_proto.overlay import OverlayHost
from stt_proto.pubsub.config import PubSubConfig
from stt_proto.pubsub.node import PubSubNode
from stt_proto.testing import Link, Network

SEED = b"pubsub simulation network seed"


@dataclass
class Member:
    node: Any
    host: OverlayHost
    dht: DhtNode
    pubsub: PubSubNode
    received: dict[tuple[bytes, bytes, int], list[int]] = field(default_factory=dict)
    arrival: dict[tuple[bytes, bytes, int, int], float] = field(default_factory=dict)
    gaps: list[PubSubGap] = field(default_factory=list)
    alive: bool = True

    @property
    def node_id(self) -> bytes:
        return self.dht.own_id


def _on_event(member_of: dict[Any, Member]):
    def on_event(node: Any, event: Any) -> None:
        member = member_of[node]
        kind = type(event)
        if kind is PubSubMessage:
            key = (event.topic, event.publisher, event.epoch)
            member.received.setdefault(key, []).append(event.seq)
            member.arrival[key + (event.seq,)] = node.network.now
        elif kind is PubSubGap:
            member.gaps.append(event)
    return on_event


class PubSubNet:
    def __init__(self, seed: int = 1, *, link: Link | None = None, rtt: float = 0.05,
                 pubsub: dict[str, Any] | None = None, dht: dict[str, Any] | None = None):
        self.net = Network(seed, default_link=link or Link(latency=rtt / 2))
        self.rng = random.Random(seed)
        self.members: list[Member] = []
        self._member_of: dict[Any, Member] = {}
        self.pubsub_config = PubSubConfig(**(pubsub or {}))
        self.dht_config = DhtConfig(initial_rtt=rtt, **(dht or {}))
        self.rtt = rtt

    def add(self, *, bootstrap: Member | None = None, pubsub_class: type = PubSubNode) -> Member:
        rng = self.rng
        identity = Identity.generate(rng.randbytes)
        endpoint = Endpoint(EndpointConfig(identity=identity, shared_seed=SEED,
                                           rng=rng.randbytes, connect_timeout=5.0))
        host = OverlayHost(endpoint)
        dht = DhtNode(identity.node_id, self.dht_config, identity=identity, rng=rng.randbytes)
        host.attach_dht(dht)
        pubsub = pubsub_class(identity, self.pubsub_config, rng=rng.randbytes, now=self.net.now)
        host.attach_pubsub(pubsub)
        node = self.net.add_endpoint(host, on_event=_on_event(self._member_of))
        node.record_events = False
        dht.address = node.address
        member = Member(node, host, dht, pubsub)
        self._member_of[node] = member
        self.members.append(member)
        if bootstrap is not None:
            self.wait_query(member, lambda d, now: d.bootstrap(
                [(bootstrap.node_id, bootstrap.node.address)], now=now))
        return member

    def wait_query(self, member: Member, start: Any, limit: float = 60.0) -> Any:
        done: list[Any] = []
        previous = member.node.on_event

        def watch(node: Any, event: Any) -> None:
            previous(node, event)
            if type(event) is DhtQueryCompleted and event.query_id == query:
                done.append(event.result)

        member.node.on_event = watch
        try:
            query = member.node.call(lambda host, now: start(member.dht, now))
            self.net.run(until=self.net.now + limit, stop=lambda: bool(done))
        finally:
            member.node.on_event = previous
        assert done, "the DHT query did not end"
        return done[0]

    def call(self, member: Member, fn: Any) -> Any:
        return member.node.call(lambda host, now: fn(member.pubsub, now))

    def subscribe(self, member: Member, topic: bytes) -> None:
        self.call(member, lambda p, now: p.subscribe(topic, now=now))

    def publish(self, member: Member, topic: bytes, data: bytes) -> Any:
        return self.call(member, lambda p, now: p.publish(topic, data, now=now))

    def run(self, seconds: float) -> None:
        self.net.run(until=self.net.now + seconds)

    def kill(self, member: Member) -> None:
        """The member vanishes without a word: nothing reaches it, it sends nothing."""
        member.alive = False
        member.node.endpoint = _Dead()


class _Dead:
    """The engine of a crashed host: it takes datagrams and does nothing."""

    def receive_datagram(self, data: bytes, address: Any, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list:
        return []

    def get_timer(self) -> None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> None:
        return None
