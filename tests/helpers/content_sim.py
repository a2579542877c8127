"""Content members in the simulator: an Endpoint, an OverlayHost, a DhtNode and a
ContentNode with a memory store per member, joined through one bootstrap node,
on ``Network``'s default link (every pair routed on first use).

:class:`Member` keeps the content events its engine reported, so a test can
wait for a retrieval's end and check which providers were dropped and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stt_proto.content.config import ContentConfig
from stt_proto.content.node import ContentNode
from stt_proto.content.store import MemoryStore
from stt_proto.events import (
    ContentProgress,
    ContentProviderDropped,
    ContentRetrievalFailed,
    ContentRetrieved,
)
from stt_proto.testing import Link

from tests.helpers.overlay_sim import OverlayMember, OverlayNet

SEED = b"content simulation network seed"


@dataclass
class Member(OverlayMember):
    content: ContentNode
    store: Any
    done: dict[int, Any] = field(default_factory=dict)       # retrieval id -> end event
    dropped: list[ContentProviderDropped] = field(default_factory=list)
    progress: list[ContentProgress] = field(default_factory=list)
    progress_at: list[float] = field(default_factory=list)   # simulated time of each


class ContentNet(OverlayNet):
    seed_bytes = SEED
    member_class = Member

    def __init__(self, seed: int = 1, *, link: Link | None = None, rtt: float = 0.05,
                 content: dict[str, Any] | None = None, dht: dict[str, Any] | None = None,
                 endpoint: dict[str, Any] | None = None):
        super().__init__(seed, link=link, rtt=rtt, dht=dht, endpoint=endpoint)
        self.content_config = ContentConfig(**(content or {}))

    def _record(self, member: Member, event: Any) -> None:
        kind = type(event)
        if kind in (ContentRetrieved, ContentRetrievalFailed):
            member.done[event.retrieval_id] = event
        elif kind is ContentProviderDropped:
            member.dropped.append(event)
        elif kind is ContentProgress:
            member.progress.append(event)
            member.progress_at.append(self.net.now)

    def add(self, *, bootstrap: Member | None = None, store: Any = None) -> Member:
        store = store if store is not None else MemoryStore(max_bytes=1 << 30)

        def attach(identity: Any, host: Any) -> tuple:
            content = ContentNode(identity.node_id, store, self.content_config,
                                  now=self.net.now)
            host.attach_content(content)
            return content, store

        return self._add(attach, bootstrap)

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
