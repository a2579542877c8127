"""Endpoints in memory for the engine tests: a seeded endpoint factory and ``Net``.

No sockets and no clock: ``Net`` hands datagrams from one endpoint to another and
time only moves when a test moves it.
"""

from __future__ import annotations

import random

from stt_proto.config import EndpointConfig
from stt_proto.endpoint import Endpoint
from stt_proto.events import DatagramReceived, SessionEstablished
from stt_proto.identity import Identity

SEED = b"network seed for the endpoint tests"
A_ADDR = ("10.0.0.1", 1000)
B_ADDR = ("10.0.0.2", 2000)


def seeded_rng(seed: int):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def make_endpoint(seed_id: int, *, shared_seed: bytes = SEED, **overrides) -> Endpoint:
    rng = seeded_rng(seed_id)
    config = EndpointConfig(identity=Identity.generate(rng), shared_seed=shared_seed, rng=rng,
                            **overrides)
    return Endpoint(config)


class Net:
    """Two (or more) endpoints and the datagrams in flight between them."""

    def __init__(self, *endpoints: tuple[Endpoint, tuple]) -> None:
        self.by_addr = {addr: ep for ep, addr in endpoints}
        self.addr_of = {id(ep): addr for ep, addr in endpoints}
        self.now = 0.0
        self.events: dict[int, list] = {id(ep): [] for ep, _ in endpoints}
        self.captured: list[tuple[bytes, tuple, tuple]] = []

    def collect(self) -> list[tuple[bytes, tuple, tuple]]:
        """Take every endpoint's outgoing datagrams as (data, src, dst)."""
        out = []
        for addr, ep in self.by_addr.items():
            for data, dst in ep.datagrams_to_send(self.now):
                out.append((data, addr, dst))
            self.drain(ep)
        return out

    def drain(self, ep: Endpoint) -> None:
        while (event := ep.next_event()) is not None:
            self.events[id(ep)].append(event)

    def deliver(self, packets, drop=lambda data, src, dst: False) -> int:
        n = 0
        for data, src, dst in packets:
            self.captured.append((data, src, dst))
            if drop(data, src, dst) or dst not in self.by_addr:
                continue
            self.by_addr[dst].receive_datagram(data, src, self.now)
            n += 1
        for ep in self.by_addr.values():
            self.drain(ep)
        return n

    def run(self, until: float, drop=lambda data, src, dst: False, step_limit: int = 100_000):
        """Exchange datagrams and fire timers until nothing is left before ``until``."""
        for _ in range(step_limit):
            packets = self.collect()
            if packets:
                self.deliver(packets, drop)
                continue
            timers = [t for ep in self.by_addr.values() if (t := ep.get_timer()) is not None]
            if not timers or min(timers) > until:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, min(timers))
            for ep in self.by_addr.values():
                t = ep.get_timer()
                if t is not None and t <= self.now:
                    ep.handle_timer(self.now)
        raise AssertionError("network did not settle")

    def of(self, ep: Endpoint, kind=None) -> list:
        events = self.events[id(ep)]
        return [e for e in events if kind is None or isinstance(e, kind)]


def connect(a: Endpoint, b: Endpoint, net: Net, **kw) -> tuple[bytes, bytes]:
    sid = a.connect(B_ADDR, b.node_id, now=net.now, **kw)
    net.run(net.now + 0.5)
    (est_a,) = net.of(a, SessionEstablished)
    (est_b,) = net.of(b, SessionEstablished)
    assert est_a.session_id == sid and est_a.initiator and est_a.peer_id == b.node_id
    assert not est_b.initiator and est_b.peer_id == a.node_id and est_b.peer_address == A_ADDR
    return sid, est_b.session_id


def exchange(a, b, net, sid_a, sid_b, tag: bytes) -> None:
    before_a = len(net.of(a, DatagramReceived))
    before_b = len(net.of(b, DatagramReceived))
    a.send_datagram(sid_a, b"a->b " + tag, now=net.now)
    b.send_datagram(sid_b, b"b->a " + tag, now=net.now)
    net.run(net.now + 0.1)
    assert net.of(b, DatagramReceived)[before_b:] == [
        DatagramReceived(session_id=sid_b, data=b"a->b " + tag)]
    assert net.of(a, DatagramReceived)[before_a:] == [
        DatagramReceived(session_id=sid_a, data=b"b->a " + tag)]
