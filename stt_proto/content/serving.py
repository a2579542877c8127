"""The provider's side: which chunk requests a peer gets answered, in what order.

Theory of operation
-------------------
A requester's REQUESTs are queued per peer and answered in the order they
came, one CHUNK at a time, and only when the host asks for that peer's next
message -- which it does while the peer's content stream holds less than
``max_stream_buffered`` unacknowledged bytes. A chunk is read from the store
just before it is written, so a provider holds, per peer, at most that many
bytes plus the queue of small requests, whatever the peer asks for.

What a peer can push against, and what it gets:

* more than ``max_requests_per_peer`` requests queued, more than
  ``max_requests_per_second`` on average, or a new peer when
  ``max_serving_peers`` already wait: REFUSE ``BUSY`` with ``retry_after``;
* content the store does not have complete: REFUSE ``NOT_FOUND``; an index
  past the content's last chunk: REFUSE ``OUT_OF_RANGE``;
* more than ``max_refusals`` refused requests within ``ban_time``: banned for
  ``ban_time`` (the host stops its stream; its requests are dropped unread).
  (:class:`~stt_proto.content.node.ContentNode` also bans a peer that asks
  while ``max_queued_refusals`` refusals wait for it unread.)

A CANCEL removes a request that has not been answered yet; one for a request
already answered (the chunk is on its way) is ignored.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .config import ContentConfig
from .messages import Chunk, Refuse, RefuseReason, Request
from .tree import chunk_count

__all__ = ["Server"]


class _Requester:
    """One peer's requests at this provider."""

    __slots__ = ("queue", "tokens", "refill_at", "refusals")

    def __init__(self, burst: float, now: float) -> None:
        self.queue: deque[tuple[int, bytes, int]] = deque()   # (request id, content id, index)
        self.tokens = burst
        self.refill_at = now
        self.refusals: deque[float] = deque()                # times of recent refusals


class Server:
    """Answers chunk requests from the ``store`` (see the module docstring)."""

    def __init__(self, store: Any, config: ContentConfig, stats: dict[str, int]) -> None:
        self.store = store
        self.config = config
        self.stats = stats
        for name in ("requests_served", "requests_refused_busy", "requests_refused_rate",
                     "requests_refused_not_found", "requests_refused_range",
                     "requests_cancelled", "peers_banned", "bytes_served"):
            stats.setdefault(name, 0)
        self._peers: dict[bytes, _Requester] = {}
        self._banned_until: dict[bytes, float] = {}
        self._banned_new: list[bytes] = []

    # -- requests ------------------------------------------------------------------------

    def request(self, peer_id: bytes, request: Request, now: float) -> bytes | None:
        """Queue ``request``; the encoded REFUSE to send instead, if refused
        (None also for a banned peer: it gets no answer at all)."""
        if self.is_banned(peer_id, now):
            return None
        config = self.config
        peer = self._peers.get(peer_id)
        if peer is None:
            if len(self._peers) >= config.max_serving_peers and not self._evict_idle():
                return self._refuse(peer_id, None, request, RefuseReason.BUSY,
                                    "requests_refused_busy", now)
            peer = self._peers[peer_id] = _Requester(config.max_requests_per_second, now)
        rate = config.max_requests_per_second
        peer.tokens = min(rate, peer.tokens + (now - peer.refill_at) * rate)
        peer.refill_at = now
        if peer.tokens < 1.0:
            return self._refuse(peer_id, peer, request, RefuseReason.BUSY,
                                "requests_refused_rate", now)
        peer.tokens -= 1.0
        if len(peer.queue) >= config.max_requests_per_peer:
            return self._refuse(peer_id, peer, request, RefuseReason.BUSY,
                                "requests_refused_busy", now)
        length = self.store.length(request.content_id) if self.store.has(
            request.content_id) else None
        if length is None:
            return self._refuse(peer_id, peer, request, RefuseReason.NOT_FOUND,
                                "requests_refused_not_found", now)
        if request.index >= chunk_count(length):
            return self._refuse(peer_id, peer, request, RefuseReason.OUT_OF_RANGE,
                                "requests_refused_range", now)
        peer.queue.append((request.request_id, request.content_id, request.index))
        return None

    def _refuse(self, peer_id: bytes, peer: _Requester | None, request: Request,
                reason: RefuseReason, counter: str, now: float) -> bytes | None:
        self.stats[counter] += 1
        if peer is not None:
            refusals = peer.refusals
            refusals.append(now)
            while refusals and refusals[0] < now - self.config.ban_time:
                refusals.popleft()
            if len(refusals) > self.config.max_refusals:
                self.ban(peer_id, now)
                return None
        wait = self.config.retry_after if reason == RefuseReason.BUSY else 0.0
        return request.refusal(reason, retry_after_ms=int(wait * 1000)).encode()

    def _evict_idle(self) -> bool:
        """Make room by forgetting a peer with nothing queued (its request rate
        and refusals start over); False if every peer has requests waiting."""
        for peer_id, peer in self._peers.items():
            if not peer.queue:
                del self._peers[peer_id]
                return True
        return False

    def cancel(self, peer_id: bytes, request_id: int) -> None:
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        for item in peer.queue:
            if item[0] == request_id:
                peer.queue.remove(item)
                self.stats["requests_cancelled"] += 1
                return

    # -- answers -------------------------------------------------------------------------

    def has_work(self, peer_id: bytes) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and bool(peer.queue)

    def next_message(self, peer_id: bytes) -> bytes | None:
        """The next answer to ``peer_id``: a CHUNK read from the store now, or a
        REFUSE ``NOT_FOUND`` if the content left the store since it was asked."""
        peer = self._peers.get(peer_id)
        if peer is None or not peer.queue:
            return None
        request_id, content_id, index = peer.queue.popleft()
        tree = self.store.tree(content_id)
        data = self.store.read_chunk(content_id, index) if tree is not None else None
        if data is None:
            self.stats["requests_refused_not_found"] += 1
            return Refuse(request_id=request_id, reason=RefuseReason.NOT_FOUND,
                          retry_after_ms=0).encode()
        self.stats["requests_served"] += 1
        self.stats["bytes_served"] += len(data)
        return Chunk(request_id=request_id, length=tree.length, index=index,
                     proof=tuple(tree.proof(index)), data=data).encode()

    # -- peers ---------------------------------------------------------------------------

    def forget(self, peer_id: bytes) -> None:
        """The peer's link is gone: its queued requests go with it (it asks again)."""
        self._peers.pop(peer_id, None)

    def ban(self, peer_id: bytes, now: float) -> None:
        self._peers.pop(peer_id, None)
        if not self.is_banned(peer_id, now):
            self.stats["peers_banned"] += 1
            self._banned_new.append(peer_id)
        self._banned_until[peer_id] = now + self.config.ban_time
        if len(self._banned_until) > 4 * self.config.max_serving_peers:
            # Bounded: the oldest bans go first (they end soonest).
            for old in sorted(self._banned_until, key=self._banned_until.get)[
                    :len(self._banned_until) // 4]:
                del self._banned_until[old]

    def is_banned(self, peer_id: bytes, now: float) -> bool:
        until = self._banned_until.get(peer_id)
        if until is None:
            return False
        if until <= now:
            del self._banned_until[peer_id]
            return False
        return True

    def take_banned(self) -> list[bytes]:
        banned, self._banned_new = self._banned_new, []
        return banned

    def serving_peers(self) -> int:
        return len(self._peers)
