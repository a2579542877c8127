"""Pub/sub members in the simulator: an Endpoint, an OverlayHost, a DhtNode and a
PubSubNode per member, joined through one bootstrap node, on ``Network``'s
default link (every pair routed on first use).

:class:`Member` keeps what its application received: the messages per
``(publisher, epoch)`` in arrival order and the gaps reported, so a test can
check exactly-once, per-publisher order and completeness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stt_proto.events import PubSubGap, PubSubMessage
from stt_proto.pubsub.config import PubSubConfig
from stt_proto.pubsub.node import PubSubNode
from stt_proto.testing import Link

from tests.helpers.overlay_sim import OverlayMember, OverlayNet

SEED = b"pubsub simulation network seed"


@dataclass
class Member(OverlayMember):
    pubsub: PubSubNode
    received: dict[tuple[bytes, bytes, int], list[int]] = field(default_factory=dict)
    arrival: dict[tuple[bytes, bytes, int, int], float] = field(default_factory=dict)
    gaps: list[PubSubGap] = field(default_factory=list)
    alive: bool = True


class PubSubNet(OverlayNet):
    seed_bytes = SEED
    member_class = Member

    def __init__(self, seed: int = 1, *, link: Link | None = None, rtt: float = 0.05,
                 pubsub: dict[str, Any] | None = None, dht: dict[str, Any] | None = None):
        super().__init__(seed, link=link, rtt=rtt, dht=dht)
        self.pubsub_config = PubSubConfig(**(pubsub or {}))

    def _record(self, member: Member, event: Any) -> None:
        kind = type(event)
        if kind is PubSubMessage:
            key = (event.topic, event.publisher, event.epoch)
            member.received.setdefault(key, []).append(event.seq)
            member.arrival[key + (event.seq,)] = self.net.now
        elif kind is PubSubGap:
            member.gaps.append(event)

    def add(self, *, bootstrap: Member | None = None, pubsub_class: type = PubSubNode) -> Member:
        def attach(identity: Any, host: Any) -> tuple:
            pubsub = pubsub_class(identity, self.pubsub_config, rng=self.rng.randbytes,
                                  now=self.net.now)
            host.attach_pubsub(pubsub)
            return (pubsub,)

        return self._add(attach, bootstrap)

    def call(self, member: Member, fn: Any) -> Any:
        return member.node.call(lambda host, now: fn(member.pubsub, now))

    def subscribe(self, member: Member, topic: bytes) -> None:
        self.call(member, lambda p, now: p.subscribe(topic, now=now))

    def publish(self, member: Member, topic: bytes, data: bytes) -> Any:
        return self.call(member, lambda p, now: p.publish(topic, data, now=now))

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
