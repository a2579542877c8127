"""Fuzz harness for a responder endpoint fed hostile datagrams (atheris).

Two in-process endpoints, A (initiator) and B (responder, the target), first
establish a real session. Then the fuzzer drives a program of operations:
arbitrary datagrams from a few source addresses, genuine packets mutated,
replayed or spliced, DATA packets carrying a live session's index, INITIATIONs
with a valid ``mac1`` (so they reach the Noise layer), real connects from
spoofed sources, application traffic, closes, and simulated time moving on (with
``handle_timer``, ``datagrams_to_send`` and ``next_event`` called as an adapter
would). A and B keep talking throughout over a perfect link.

Invariant, for any input:

* no exception leaves ``receive_datagram``, ``handle_timer``,
  ``datagrams_to_send`` or ``next_event``: untrusted bytes only take the drop path;
* no session is closed by an unauthenticated packet: the established session
  survives and still carries a datagram both ways at the end; B reports no close
  other than graceful ones A asked for;
* memory stays bounded: every table of both endpoints (sessions, half-open,
  pending connects, indices, replay cache, queued events) within its limit;
* no amplification: an unauthenticated datagram is answered with at most as
  many bytes as it carried, only to its own source, and the unvalidated
  handshake bytes sent never exceed those received.

Run: ``python fuzz/fuzz_endpoint.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys
from collections import deque

import atheris

with atheris.instrument_imports():
    from _harness import A_ADDR, B_ADDR, SOURCES, Ops, check_tables, data_header
    from _harness import make_endpoint
    from stt_proto.constants import PacketKind
    from stt_proto.errors import LocalProtocolError
    from stt_proto.events import DatagramReceived, SessionClosed, SessionEstablished
    from stt_proto.handshake import MIN_INITIATION_SIZE, encode_initiation

#: Small limits, so the fuzzer reaches them.
B_LIMITS = dict(max_sessions=6, max_sessions_per_address=3, max_half_open=4,
                replay_cache_size=8, handshakes_per_second_before_cookies=3, max_events=64)
MAX_OPS = 40
MAX_TIMER_ENTRIES = 10_000


class Pair:
    """A and B over a perfect link, with every datagram of both captured."""

    def __init__(self) -> None:
        self.now = 0.0
        self.a = make_endpoint(1, max_pending_connects=32)
        self.b = make_endpoint(2, **B_LIMITS)
        self.pool: deque[bytes] = deque(maxlen=48)
        self.a_sessions: set[bytes] = set()
        self.b_sessions: set[bytes] = set()
        self.a_closing: set[bytes] = set()
        self.received: list[bytes] = []
        self.main_a = self.a.connect(B_ADDR, self.b.node_id, now=self.now)
        self.pump()
        if self.main_a not in self.a_sessions or len(self.b_sessions) != 1:
            raise AssertionError("the first session was not established")
        (self.main_b,) = self.b_sessions

    # -- moving datagrams -------------------------------------------------------

    def to_b(self, data: bytes, source, *, authentic: bool) -> None:
        """Hand one datagram to B, and check what it answers at once."""
        self.b.receive_datagram(data, source, self.now)
        out = self.b.datagrams_to_send(self.now)
        if not authentic:
            answered = 0
            for reply, dst in out:
                if dst != source:
                    raise AssertionError(f"unauthenticated datagram from {source!r} "
                                         f"made B send to {dst!r}")
                answered += len(reply)
            if answered > len(data):
                raise AssertionError(f"amplification: {len(data)} bytes in, {answered} out")
        self.from_b(out)

    def from_b(self, out) -> None:
        for data, dst in out:
            self.pool.append(data)
            if dst == A_ADDR:
                self.a.receive_datagram(data, B_ADDR, self.now)

    def pump(self, spoof=None) -> None:
        """Exchange datagrams until both are quiet; the first INITIATION A sends
        leaves from ``spoof`` if given (a forged source address)."""
        for _ in range(200):
            self.events()
            out = self.a.datagrams_to_send(self.now)
            more = self.b.datagrams_to_send(self.now)
            if not out and not more:
                return
            self.from_b(more)
            for data, dst in out:
                self.pool.append(data)
                if dst != B_ADDR:
                    raise AssertionError(f"A sent to {dst!r}")
                source = A_ADDR
                if spoof is not None and data[0] == PacketKind.INITIATION:
                    source, spoof = spoof, None
                self.to_b(data, source, authentic=source == A_ADDR)
        raise AssertionError("the two endpoints never went quiet")

    def events(self) -> None:
        while (event := self.a.next_event()) is not None:
            if isinstance(event, SessionEstablished):
                self.a_sessions.add(event.session_id)
            elif isinstance(event, SessionClosed):
                if event.session_id in self.a_sessions and event.session_id not in self.a_closing:
                    raise AssertionError(f"A's session closed by the network: {event!r}")
                self.a_sessions.discard(event.session_id)
            elif isinstance(event, DatagramReceived):
                self.received.append(event.data)
        while (event := self.b.next_event()) is not None:
            if isinstance(event, SessionEstablished):
                self.b_sessions.add(event.session_id)
            elif isinstance(event, SessionClosed):
                if event.session_id == self.main_b or event.reason != "graceful":
                    raise AssertionError(f"B closed a session: {event!r}")
                self.b_sessions.discard(event.session_id)
            elif isinstance(event, DatagramReceived):
                self.received.append(event.data)

    def check(self) -> None:
        for endpoint in (self.a, self.b):
            stats = check_tables(endpoint)
            if stats["timer_entries"] > MAX_TIMER_ENTRIES:
                raise AssertionError(f"{stats['timer_entries']} timer entries")

    def advance(self, dt: float) -> None:
        target = self.now + dt
        for _ in range(10_000):
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            if not timers or min(timers) > target:
                self.now = target
                return
            self.now = max(self.now, min(timers))
            for endpoint in (self.a, self.b):
                at = endpoint.get_timer()
                if at is not None and at <= self.now:
                    endpoint.handle_timer(self.now)
            self.pump()
        raise AssertionError("timers keep firing without time moving on")

    def survives(self) -> None:
        """The first session still carries a datagram each way."""
        self.received.clear()
        self.a.send_datagram(self.main_a, b"still there?", now=self.now)
        self.b.send_datagram(self.main_b, b"yes", now=self.now)
        self.pump()
        self.advance(1.0)
        if sorted(self.received) != [b"still there?", b"yes"]:
            raise AssertionError(f"the session no longer works: {self.received!r}")


def test_one_input(data: bytes) -> None:
    ops = Ops(data)
    pair = Pair()
    for _ in range(MAX_OPS):
        if not ops.more():
            break
        op = ops.byte() % 9
        source = SOURCES[ops.byte() % len(SOURCES)]
        if op == 0:
            pair.to_b(ops.blob(), source, authentic=False)
        elif op == 1 and pair.pool:
            packet = pair.pool[ops.byte() % len(pair.pool)]
            pair.to_b(ops.mutate(packet, insert=31, overwrite=8), source, authentic=False)
        elif op == 2:
            # Looks like A's packets: a live receiver index of B, any packet
            # number and body.
            ours = [p for p in pair.pool if p[0] == PacketKind.DATA]
            index = int.from_bytes(ours[ops.byte() % len(ours)][1:5], "big") if ours else 0
            pair.to_b(data_header(index, ops.u64()) + ops.blob(), source, authentic=False)
        elif op == 3:
            # An INITIATION with a valid mac1: it reaches the Noise layer.
            suite = 1 + ops.byte() % 2
            noise = ops.blob().ljust(MIN_INITIATION_SIZE, b"\0")[:1100]
            cookie = ops.take(16) if ops.byte() & 1 else None
            packet, _ = encode_initiation(suite, ops.u16(), noise, pair.b.node_id, cookie)
            pair.to_b(packet, source, authentic=False)
        elif op == 4:
            pair.advance(ops.byte() / 16)
        elif op == 5:
            try:
                pair.a.connect(B_ADDR, pair.b.node_id, now=pair.now)
            except LocalProtocolError:
                pass  # max_pending_connects: local misuse, documented
            pair.pump(spoof=None if source == A_ADDR else source)
        elif op == 6 and pair.pool:
            pair.to_b(pair.pool[ops.byte() % len(pair.pool)], source, authentic=False)
        elif op == 7:
            extra = sorted(pair.a_sessions - {pair.main_a})
            if extra:
                session_id = extra[ops.byte() % len(extra)]
                pair.a_closing.add(session_id)
                pair.a.close(session_id, now=pair.now)
                pair.pump()
        elif op == 8:
            pair.a.send_datagram(pair.main_a, ops.take(ops.byte()), now=pair.now)
            pair.b.send_datagram(pair.main_b, ops.take(ops.byte()), now=pair.now)
            pair.pump()
        pair.events()
        pair.check()
    pair.survives()
    pair.check()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
