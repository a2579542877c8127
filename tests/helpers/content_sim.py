"""Content members in the simulator: an Endpoint, an OverlayHost, a DhtNode and a
ContentNode with a memory store per member, joined through one bootstrap node,
on ``Network``'s default link (every pair routed on first use).

:class:`Member` keeps the content events its engine reported, so a test can
wait for a retrieval's end and check which providers were dropped and why.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from stt_proto.config import EndpointConfig
from stt_proto.content.config import ContentConfig
from stt_proto.content.node import ContentNode
from stt_proto.content.store import MemoryStore
from stt_proto.dht.config import DhtConfig
from stt_proto.dht.node import DhtNode
from stt_proto.endpoint import Endpoint
from stt_proto.events import (
    ContentProgress,
    ContentProviderDropped,
    ContentRetrievalFailed,
    ContentRetrieved,
    DhtQueryCompleted,
)
from stt_proto.identity import Identity
from stt_proto.overlay import OverlayHost
from stt_proto.testing import Link, Network

SEED = b"content simulation network seed"


@dataclass
class Member:
    node: Any
    host: OverlayHost
    dht: DhtNode
    content: ContentNode
    store: Any
    done: dict[int, Any] = field(default_factory=dict)       # retrieval id -> end event
    dropped: list[ContentProviderDropped] = field(default_factory=list)
    progress: list[ContentProgress] = field(default_factory=list)
    progress_at: list[float] = field(default_factory=list)   # simulated time of each

    @property
    def node_id(self) -> bytes:
        return self.dht.own_id


def _on_event(member_of: dict[Any, Member]):
    def on_event(node: Any, event: Any) -> None:
        member = member_of[node]
        kind = type(event)
        if kind in (ContentRetrieved, ContentRetrievalFailed):
            member.done[event.retrieval_id] = event
        elif kind is ContentProviderDropped:
            member.dropped.append(event)
        elif kind is ContentProgress:
            member.progress.append(event)
            member.progress_at.append(node.network.now)
    return on_event


class ContentNet:
    def __init__(self, seed: int = 1, *, link: Link | None = None, rtt: float = 0.05,
                 content: dict[str, Any] | None = None, dht: dict[str, Any] | None = None,
                 endpoint: dict[str, Any] | None = None):
        self.net = Network(seed, default_link=link or Link(latency=rtt / 2))
        self.rng = random.Random(seed)
        self.members: list[Member] = []
        self._member_of: dict[Any, Member] = {}
        self.content_config = ContentConfig(**(content or {}))
        self.dht_config = DhtConfig(initial_rtt=rtt, **(dht or {}))
        self.endpoint_options = endpoint or {}
        self.rtt = rtt

    def add(self, *, bootstrap: Member | None = None, store: Any = None) -> Member:
        rng = self.rng
        identity = Identity.generate(rng.randbytes)
        endpoint = Endpoint(EndpointConfig(identity=identity, shared_seed=SEED,
                                           rng=rng.randbytes, connect_timeout=5.0,
                                           **self.endpoint_options))
        host = OverlayHost(endpoint)
        dht = DhtNode(identity.node_id, self.dht_config, identity=identity, rng=rng.randbytes)
        host.attach_dht(dht)
        store = store if store is not None else MemoryStore(max_bytes=1 << 30)
        content = ContentNode(identity.node_id, store, self.content_config, now=self.net.now)
        host.attach_content(content)
        node = self.net.add_endpoint(host, on_event=_on_event(self._member_of))
        node.record_events = False
        dht.address = node.address
        member = Member(node, host, dht, content, store)
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

    def publish(self, member: Member, data: bytes) -> bytes:
        tree = member.store.add_bytes(data)
        member.node.call(lambda host, now: member.content.publish(tree.content_id))
        return tree.content_id

    def retrieve(self, member: Member, content_id: bytes, **options: Any) -> Any:
        return member.node.call(
            lambda host, now: member.content.retrieve(content_id, now=now, **options))

    def wait(self, member: Member, retrieval: Any, limit: float = 120.0) -> Any:
        self.net.run(until=self.net.now + limit, stop=lambda: retrieval.id in member.done)
        assert retrieval.id in member.done, (
            f"retrieval {retrieval.id} did not end: {retrieval.state}, "
            f"{retrieval.done_bytes} bytes, providers {len(retrieval.providers)}")
        return member.done[retrieval.id]

    def run(self, seconds: float) -> None:
        self.net.run(until=self.net.now + seconds)
