"""A scripted stream workload for the simulator, shared by the session tests.

A :class:`Workload` drives two nodes of a :class:`stt_proto.testing.Network`
through one session: each *stream plan* says who sends which messages, and how
the stream ends (FIN, a reset by the sender after some messages, or a stop by
the receiver after some messages). The workload sends as fast as the engine
accepts (waiting for ``StreamWritable`` when a send buffer is full), records
every message the engine accepted and every message delivered, and closes each
stream's other side when the peer's side ends, so that a finished workload
leaves no stream open.

:meth:`Workload.check` then asserts the delivery contract: per direction, what
arrived equals what was accepted for sending, byte for byte, in order, exactly
once; on a reset or stopped direction, what arrived is a prefix of it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from stt_proto.endpoint import Endpoint
from stt_proto.errors import SendBufferFullError, StreamClosedError
from stt_proto.events import (
    MessageReceived,
    SessionClosed,
    SessionEstablished,
    StreamClosed,
    StreamEnded,
    StreamReset,
    StreamStopped,
    StreamWritable,
)
from stt_proto.testing import Link, Network, Node

#: Sizes drawn for messages: mostly small, sometimes large, rarely huge.
SIZE_CLASSES = ((0.45, 0, 200), (0.35, 200, 20_000), (0.15, 20_000, 300_000),
                (0.05, 300_000, 4 * 1024 * 1024))


def draw_size(rng: random.Random, max_size: int = 4 * 1024 * 1024) -> int:
    x = rng.random()
    for p, lo, hi in SIZE_CLASSES:
        if x < p:
            return min(rng.randint(lo, hi), max_size)
        x -= p
    return 0


def make_message(rng: random.Random, size: int) -> bytes:
    # randbytes is fast enough even for MiBs, and every byte differs by seed.
    return rng.randbytes(size)


@dataclass
class Direction:
    """One direction of one stream."""

    messages: list[bytes]
    ending: str = "fin"            # "fin", "reset" or "stop"
    after: int = 0                 # reset/stop after this many messages
    accepted: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    ended: bool = False            # StreamEnded seen by the receiver
    reset_seen: bool = False       # StreamReset seen by the receiver
    stopped_seen: bool = False     # StreamStopped seen by the sender
    queue: deque = field(default_factory=deque)
    done_sending: bool = False


class Workload:
    """Streams between ``a`` and ``b`` over session ``(sid_a, sid_b)``."""

    def __init__(self, net: Network, a: Node, b: Node, sid_a: bytes, sid_b: bytes) -> None:
        self.net = net
        self.nodes = {"a": a, "b": b}
        self.sids = {"a": sid_a, "b": sid_b}
        #: (sender side, stream id) -> Direction
        self.directions: dict[tuple[str, int], Direction] = {}
        self.streams: set[int] = set()
        self.closed: dict[str, set[int]] = {"a": set(), "b": set()}
        self.ended_side: dict[tuple[str, int], bool] = {}
        self.errors: list[str] = []
        a.on_event = lambda node, event: self._on_event("a", event)
        b.on_event = lambda node, event: self._on_event("b", event)
        a.record_events = b.record_events = False

    @staticmethod
    def other(side: str) -> str:
        return "b" if side == "a" else "a"

    def add(self, sender: str, stream_id: int, messages: list[bytes], *, ending: str = "fin",
            after: int = 0) -> None:
        direction = Direction(messages=list(messages), ending=ending, after=after)
        direction.queue.extend(direction.messages)
        self.directions[(sender, stream_id)] = direction
        self.streams.add(stream_id)

    def start(self) -> None:
        for (side, stream_id) in list(self.directions):
            self._pump(side, stream_id)

    # ------------------------------------------------------------------ driving

    def _call(self, side: str, fn, *args, **kwargs):
        return self.nodes[side].call(fn, self.sids[side], *args, **kwargs)

    def _pump(self, side: str, stream_id: int) -> None:
        d = self.directions[(side, stream_id)]
        if d.done_sending:
            return
        while d.queue:
            if d.ending == "reset" and len(d.accepted) >= d.after:
                d.queue.clear()
                d.done_sending = True
                self._call(side, Endpoint.reset_stream, stream_id, 77)
                return
            message = d.queue[0]
            try:
                self._call(side, Endpoint.send_message, stream_id, message)
            except SendBufferFullError:
                return  # StreamWritable will resume us
            except StreamClosedError:
                d.queue.clear()  # stopped by the peer
                d.done_sending = True
                return
            d.queue.popleft()
            d.accepted.append(message)
        d.done_sending = True
        if d.ending == "reset":
            self._call(side, Endpoint.reset_stream, stream_id, 77)
        else:
            try:
                self._call(side, Endpoint.end_stream, stream_id)
            except StreamClosedError:
                pass  # stopped meanwhile

    def _close_my_side(self, side: str, stream_id: int) -> None:
        """The peer's direction is over: if we do not send on this stream, end
        our (empty) side so that the stream can close."""
        if (side, stream_id) in self.directions:
            return
        if self.ended_side.get((side, stream_id)):
            return
        self.ended_side[(side, stream_id)] = True
        try:
            self._call(side, Endpoint.end_stream, stream_id)
        except StreamClosedError:
            pass

    def _on_event(self, side: str, event) -> None:
        kind = type(event)
        if kind is MessageReceived:
            d = self.directions.get((self.other(side), event.stream_id))
            if d is None:
                self.errors.append(f"{side}: message on unexpected stream {event.stream_id}")
                return
            d.received.append(event.data)
            if d.ending == "stop" and len(d.received) >= d.after and not d.reset_seen:
                d.reset_seen = True
                self._call(side, Endpoint.stop_stream, event.stream_id, 88)
                self._close_my_side(side, event.stream_id)
        elif kind is StreamEnded:
            d = self.directions.get((self.other(side), event.stream_id))
            if d is not None:
                d.ended = True
            self._close_my_side(side, event.stream_id)
        elif kind is StreamReset:
            d = self.directions.get((self.other(side), event.stream_id))
            if d is not None:
                d.reset_seen = True
            self._close_my_side(side, event.stream_id)
        elif kind is StreamStopped:
            d = self.directions.get((side, event.stream_id))
            if d is not None:
                d.stopped_seen = True
                d.queue.clear()
                d.done_sending = True
        elif kind is StreamWritable:
            if (side, event.stream_id) in self.directions:
                self._pump(side, event.stream_id)
        elif kind is StreamClosed:
            self.closed[side].add(event.stream_id)
        elif kind is SessionClosed and not self.finished():
            self.errors.append(f"{side}: session closed early: {event}")

    # ------------------------------------------------------------------ checks

    def finished(self) -> bool:
        n = len(self.streams)
        return len(self.closed["a"]) == n and len(self.closed["b"]) == n

    def check(self, label: str) -> None:
        assert not self.errors, f"{label}: {self.errors}"
        for (side, stream_id), d in self.directions.items():
            where = f"{label}: stream {stream_id} from {side}"
            got, sent = d.received, d.accepted
            if d.ending == "fin" and not d.stopped_seen:
                assert d.ended, f"{where}: never ended"
                assert len(got) == len(sent), f"{where}: {len(got)} of {len(sent)} arrived"
                for i, (x, y) in enumerate(zip(got, sent)):
                    assert x == y, f"{where}: message {i} differs ({len(x)} vs {len(y)} B)"
            else:
                assert len(got) <= len(sent), f"{where}: more arrived than was sent"
                for i, (x, y) in enumerate(zip(got, sent)):
                    assert x == y, f"{where}: message {i} differs ({len(x)} vs {len(y)} B)"


def connect(net: Network, a: Node, b: Node, *, until: float = 120.0) -> tuple[bytes, bytes]:
    sid_a = a.connect(b)

    def mine(node: Node, peer: Node) -> list:
        return [e for e in node.events_of(SessionEstablished) if e.peer_id == peer.node_id]

    net.run(until=net.now + until, stop=lambda: mine(a, b) and mine(b, a))
    est_a, est_b = mine(a, b), mine(b, a)
    assert est_a and est_b, f"seed {net.seed}: no session"
    assert est_a[-1].session_id == sid_a
    return sid_a, est_b[-1].session_id


def random_link(rng: random.Random) -> Link:
    """A link with random latency, jitter, bandwidth, queue and faults."""
    bandwidth = rng.choice([2e6, 10e6, 50e6, 200e6])
    return Link(
        latency=rng.uniform(0.001, 0.05),
        jitter=rng.choice([0.0, 0.0, rng.uniform(0.0, 0.005)]),
        bandwidth=bandwidth,
        queue_bytes=rng.choice([None, int(bandwidth / 8 * rng.uniform(0.01, 0.1)) + 3000]),
        loss=rng.choice([0.0, rng.uniform(0.0, 0.05), rng.uniform(0.0, 0.3)]),
        reorder=rng.choice([0.0, rng.uniform(0.0, 0.1)]),
        reorder_delay=rng.uniform(0.001, 0.02),
        duplicate=rng.choice([0.0, rng.uniform(0.0, 0.05)]),
        corrupt=rng.choice([0.0, rng.uniform(0.0, 0.05)]),
    )
