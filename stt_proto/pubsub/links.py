"""What a pub/sub node keeps per peer and per topic.

A *peer* here is another node we exchange pub/sub messages with over the
pub/sub stream of our session to it. Its outgoing queue is bounded in bytes
(``max_queued_bytes_per_peer``): the host writes from it into the stream
while the stream takes data, so a slow peer fills its own queue and nobody
else's. Its score goes down for forged, malformed or flooding traffic and for
sitting in a mesh without forwarding; at ``min_score`` it is banned.

A *topic* is one the node subscribes to or publishes on: its mesh, the
subscribers it knows of, prune backoffs, the fan-out set of a publisher that is
not subscribed, and the IWANTs in flight.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

__all__ = ["Peer", "Topic", "TokenBucket", "Want"]

#: Messages per peer remembered as sent to us (a few seconds of a busy topic),
#: so a queued copy of one of them is not sent back.
COPIES_REMEMBERED = 4_096

Address = Any


class TokenBucket:
    """``rate`` per second with bursts of twice that."""

    __slots__ = ("rate", "tokens", "at")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = 2 * rate
        self.at = now

    def take(self, now: float) -> bool:
        if now > self.at:
            self.tokens = min(2 * self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Peer:
    __slots__ = ("peer_id", "address", "linked", "queue", "queued_bytes", "topics", "score",
                 "messages", "control", "evictions", "banned", "holds", "lacks", "copies",
                 "summarised", "wanted", "popped")

    def __init__(self, peer_id: bytes, address: Address, *, message_rate: float,
                 control_rate: float, now: float) -> None:
        self.peer_id = peer_id
        self.address = address
        self.linked = False          # our session to it is up (the host says so)
        # (encoded message, (topic, publisher, epoch) of a PUBLISH or None, seq)
        self.queue: deque[tuple[bytes, Any, int]] = deque()
        self.queued_bytes = 0
        self.popped: tuple[Any, int] = (None, 0)   # what the host took last
        self.topics: set[bytes] = set()  # topics it told us it subscribes to
        self.score = 0.0
        self.messages = TokenBucket(message_rate, now)
        self.control = TokenBucket(control_rate, now)
        # New publishers it may make us track per second once the table is
        # full (each pushes a tracked one out).
        self.evictions = TokenBucket(1.0, now)
        self.banned = False
        # (topic, publisher, epoch) -> highest seq it said (or showed) it holds.
        self.holds: OrderedDict[tuple[bytes, bytes, int], int] = OrderedDict()
        # (topic, publisher, epoch, seq) of the latest messages it sent us: it
        # holds those (a summary's high says nothing of the ones below it).
        self.copies: OrderedDict[tuple[bytes, bytes, int, int], None] = OrderedDict()
        # (topic, publisher, epoch) -> the latest range it said GONE for.
        self.lacks: OrderedDict[tuple[bytes, bytes, int], tuple[int, int]] = OrderedDict()
        # Topics whose summary went out on this link (a summary precedes the
        # first message forwarded, so the peer can set its baselines).
        self.summarised: set[bytes] = set()
        self.wanted = False          # the host is asked to open a session to it

    def held(self, key: tuple[bytes, bytes, int], high: int, limit: int) -> None:
        if high > self.holds.get(key, -1):
            self.holds[key] = high
            self.holds.move_to_end(key)
            while len(self.holds) > limit:
                self.holds.popitem(last=False)

    def sent_us(self, key: tuple[bytes, bytes, int], seq: int) -> None:
        copies = self.copies
        copies[key + (seq,)] = None
        if len(copies) > COPIES_REMEMBERED:
            copies.popitem(last=False)

    def lack(self, key: tuple[bytes, bytes, int], first: int, last: int, limit: int) -> None:
        self.lacks[key] = (first, last)
        self.lacks.move_to_end(key)
        while len(self.lacks) > limit:
            self.lacks.popitem(last=False)

    def lacks_seq(self, key: tuple[bytes, bytes, int], seq: int) -> bool:
        gone = self.lacks.get(key)
        return gone is not None and gone[0] <= seq <= gone[1]

    def unlink(self) -> None:
        self.linked = False
        self.queue.clear()
        self.queued_bytes = 0
        self.summarised.clear()
        self.holds.clear()
        self.lacks.clear()
        self.copies.clear()
        self.topics.clear()


class Want:
    """An IWANT in flight: ``first``..``last`` of one publisher's epoch, asked of ``peer``."""

    __slots__ = ("first", "last", "peer", "deadline", "asked")

    def __init__(self, first: int, last: int, peer: bytes, deadline: float) -> None:
        self.first = first
        self.last = last
        self.peer = peer
        self.deadline = deadline
        self.asked = {peer}


class Topic:
    __slots__ = ("key", "subscribed", "ordering", "mesh", "known", "backoff", "fanout",
                 "fanout_used", "discovered_at", "discovering", "wants", "seq", "arrivals",
                 "window_start", "watched", "discovery_delay", "unsent", "unsent_bytes",
                 "announcing")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.subscribed = False
        self.ordering: Any = None               # a delivery.Ordering while subscribed
        self.mesh: set[bytes] = set()
        self.known: OrderedDict[bytes, Address] = OrderedDict()  # subscribers, oldest first
        self.backoff: dict[bytes, float] = {}   # peer -> no graft before this time
        self.fanout: set[bytes] = set()         # where we publish when not subscribed
        self.fanout_used = 0.0
        self.discovered_at: float | None = None
        self.discovering = False
        self.discovery_delay = 1.0              # grows to discovery_interval while few are known
        # Our messages published while we knew nobody to send them to and were
        # still looking: they go out first once somebody is found.
        self.unsent: list[Any] = []
        self.unsent_bytes = 0
        self.announcing = False   # our provider record is being stored in the DHT
        self.wants: dict[tuple[bytes, int], Want] = {}
        self.seq = 0                            # our own messages on this topic so far
        # Messages received per mesh peer in the current idle window (first copy or not).
        self.arrivals: dict[bytes, int] = {}
        self.window_start = 0.0
        self.watched: set[bytes] = set()        # mesh peers present for the whole window

    def learn(self, peer_id: bytes, address: Address, limit: int) -> None:
        if peer_id in self.known:
            self.known.move_to_end(peer_id)
            if address is not None:
                self.known[peer_id] = address
            return
        self.known[peer_id] = address
        while len(self.known) > limit:
            old, _ = self.known.popitem(last=False)
            self.mesh.discard(old)

    def forget(self, peer_id: bytes) -> None:
        self.known.pop(peer_id, None)
        self.mesh.discard(peer_id)
        self.fanout.discard(peer_id)
        self.arrivals.pop(peer_id, None)
