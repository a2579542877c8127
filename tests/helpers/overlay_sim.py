"""Overlay members in the simulator: what the content and pub/sub simulations share.

Each member is an Endpoint, an OverlayHost and a DhtNode, with one overlay
engine attached, joined through a bootstrap node on ``Network``'s default link
(every pair routed on first use). Making a member and running a DHT query to
its end is the same for every overlay; a simulation says only how to attach
its engine and what to keep of the events the member reports.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stt_proto.config import EndpointConfig
from stt_proto.dht.config import DhtConfig
from stt_proto.dht.node import DhtNode
from stt_proto.endpoint import Endpoint
from stt_proto.events import DhtQueryCompleted
from stt_proto.identity import Identity
from stt_proto.overlay import OverlayHost
from stt_proto.testing import Link, Network


@dataclass
class OverlayMember:
    """A simulated host; subclasses add its overlay engine and what it recorded."""

    node: Any
    host: OverlayHost
    dht: DhtNode

    @property
    def node_id(self) -> bytes:
        return self.dht.own_id


class OverlayNet:
    """Members of one overlay on a simulated network.

    A subclass sets ``seed_bytes`` (the network's shared seed) and
    ``member_class`` (an :class:`OverlayMember`) and implements :meth:`_record`;
    its ``add`` calls :meth:`_add` with how to attach its engine.
    """

    seed_bytes: bytes
    member_class: type

    def __init__(self, seed: int = 1, *, link: Link | None = None, rtt: float = 0.05,
                 dht: dict[str, Any] | None = None,
                 endpoint: dict[str, Any] | None = None) -> None:
        self.net = Network(seed, default_link=link or Link(latency=rtt / 2))
        self.rng = random.Random(seed)
        self.members: list[Any] = []
        self._member_of: dict[Any, Any] = {}
        self.dht_config = DhtConfig(initial_rtt=rtt, **(dht or {}))
        self.endpoint_options = endpoint or {}
        self.rtt = rtt

    def _record(self, member: Any, event: Any) -> None:
        """Keep what the test needs of an event ``member`` reported."""
        raise NotImplementedError

    def _on_event(self, node: Any, event: Any) -> None:
        self._record(self._member_of[node], event)

    def _add(self, attach: Callable[[Identity, OverlayHost], tuple],
             bootstrap: Any) -> Any:
        """A new member: ``attach(identity, host)`` makes and attaches its engine
        and returns the member's fields after the DHT's. Joined through
        ``bootstrap`` when given."""
        rng = self.rng
        identity = Identity.generate(rng.randbytes)
        endpoint = Endpoint(EndpointConfig(identity=identity, shared_seed=self.seed_bytes,
                                           rng=rng.randbytes, connect_timeout=5.0,
                                           **self.endpoint_options))
        host = OverlayHost(endpoint)
        dht = DhtNode(identity.node_id, self.dht_config, identity=identity, rng=rng.randbytes)
        host.attach_dht(dht)
        extra = attach(identity, host)
        node = self.net.add_endpoint(host, on_event=self._on_event)
        node.record_events = False
        dht.address = node.address
        member = self.member_class(node, host, dht, *extra)
        self._member_of[node] = member
        self.members.append(member)
        if bootstrap is not None:
            self.wait_query(member, lambda d, now: d.bootstrap(
                [(bootstrap.node_id, bootstrap.node.address)], now=now))
        return member

    def wait_query(self, member: Any, start: Any, limit: float = 60.0) -> Any:
        """Start a DHT query with ``start(dht, now) -> query_id`` and run the
        network until it ends; its result."""
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

    def run(self, seconds: float) -> None:
        self.net.run(until=self.net.now + seconds)
