"""A fast, seeded, message-level network of DHT engines, for tests and benchmarks.

Each member is a real :class:`~stt_proto.dht.node.DhtNode`; what is simulated is
what lies below it: sessions are assumed (a message from ``a`` reaches ``b``
labelled with ``a``'s id, as an authenticated session would), links have a
one-way latency, jitter and a loss rate, and dead nodes are silent. Everything
runs from one seeded ``random.Random``, so a run is reproducible.

Adversarial members answer every request with what their ``behaviour`` says:

* ``"self"``: FIND_* answers name only the adversary itself;
* ``"far"``: answers name other adversaries, the farthest from the target first;
* ``"garbage"``: answers are random bytes (the codec rejects them);
* ``"silent"``: never answers.

Large networks are built with :meth:`DhtSimulation.populate`, which fills the
routing tables as a converged network would have them (each bucket gets ``k``
random members of its range); :meth:`DhtSimulation.join` runs the real join.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from dataclasses import dataclass
from typing import Any

from .config import DhtConfig
from .messages import Contact, FindNode, FindValue, GetProviders, Nodes, Providers, ValueFound
from .messages import decode, encode
from .node import DhtNode

__all__ = ["DhtSimulation", "SimMember", "LookupOutcome"]

BEHAVIOURS = ("self", "far", "garbage", "silent")


@dataclass(slots=True)
class SimMember:
    node: DhtNode
    address: tuple[str, int]
    alive: bool = True
    behaviour: str | None = None
    """``None`` for an honest member, else one of the adversarial behaviours."""

    @property
    def node_id(self) -> bytes:
        return self.node.own_id


@dataclass(frozen=True, slots=True)
class LookupOutcome:
    result: Any
    rounds: int
    seconds: float


class DhtSimulation:
    """A network of DHT engines under simulated time (see the module docstring)."""

    def __init__(self, seed: int = 1, *, config: DhtConfig | None = None, latency: float = 0.025,
                 jitter: float = 0.0, loss: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.config = config or DhtConfig()
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.now = 0.0
        self.members: dict[bytes, SimMember] = {}
        self._sorted_ids: list[bytes] = []
        self._queue: list[tuple[float, int, Any]] = []
        self._order = itertools.count()
        self._timers: dict[bytes, float] = {}
        self.messages = 0
        self.dropped = 0

    # -- building ------------------------------------------------------------------

    def add_member(self, *, behaviour: str | None = None, identity: Any = None,
                   node_id: bytes | None = None) -> SimMember:
        if behaviour is not None and behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}")
        rng = random.Random(self.rng.getrandbits(64)).randbytes
        if node_id is None:
            node_id = identity.node_id if identity is not None else rng(32)
        node = DhtNode(node_id, self.config, identity=identity, rng=rng)
        n = len(self.members) + 1
        address = (f"10.{n >> 8 & 255}.{n & 255}.1", 4000)  # one /24 per member
        node.address = address
        member = SimMember(node, address, behaviour=behaviour)
        self.members[node_id] = member
        bisect.insort(self._sorted_ids, node_id)
        return member

    def add_members(self, count: int, **kwargs: Any) -> list[SimMember]:
        return [self.add_member(**kwargs) for _ in range(count)]

    def populate(self) -> None:
        """Fill every table as a converged network would: ``k`` random members of
        each bucket's id range (the members are all assumed to have met)."""
        ids = self._sorted_ids
        k = self.config.k
        for member in self.members.values():
            own = int.from_bytes(member.node_id, "big")
            for prefix in range(256):
                # Bucket `prefix`: ids sharing our first `prefix` bits, differing in the next.
                shift = 255 - prefix
                bit = 1 << shift
                base = (own >> (shift + 1)) << (shift + 1)
                low = base | (~own & bit)
                picks = self._range(low, low + bit)
                if len(picks) > k:
                    picks = self.rng.sample(picks, k)
                for index in picks:
                    other = self.members[ids[index]]
                    member.node.table.seen(other.node_id, other.address, now=self.now)
                mine = base | (own & bit)
                if len(self._range(mine, mine + bit)) <= 1:
                    break  # nobody else shares a longer prefix with us
            self._arm(member)

    def _range(self, low: int, high: int) -> range:
        ids = self._sorted_ids
        start = bisect.bisect_left(ids, low.to_bytes(32, "big"))
        stop = bisect.bisect_left(ids, high.to_bytes(32, "big")) if high < 1 << 256 else len(ids)
        return range(start, stop)

    def join(self, member: SimMember, via: SimMember) -> LookupOutcome:
        """Run ``member``'s real join through ``via`` to its end."""
        query = member.node.bootstrap([(via.node_id, via.address)], now=self.now)
        return self._run_query(member, query)

    # -- faults --------------------------------------------------------------------

    def kill(self, fraction: float, *, spare: set[bytes] = frozenset()) -> list[SimMember]:
        """Silence a random ``fraction`` of the honest live members (churn)."""
        live = [m for m in self.members.values() if m.alive and m.behaviour is None
                and m.node_id not in spare]
        victims = self.rng.sample(live, int(len(live) * fraction))
        for member in victims:
            member.alive = False
        return victims

    # -- running ---------------------------------------------------------------------

    def find_node(self, member: SimMember, target: bytes) -> LookupOutcome:
        return self._run_query(member, member.node.find_node(target, now=self.now, exact=True))

    def run_query(self, member: SimMember, start) -> LookupOutcome:
        """``start(node, now) -> query_id``; run until that query ends."""
        return self._run_query(member, start(member.node, self.now))

    def _run_query(self, member: SimMember, query_id: int, *,
                   limit: float = 3600.0) -> LookupOutcome:
        """Run until ``query_id`` ends; ``RuntimeError`` after ``limit`` simulated
        seconds (timers such as republication never let the network go idle)."""
        began = self.now
        node = member.node
        query = node._queries.get(query_id)
        self._collect(member)
        while True:
            event = node.next_event()
            while event is not None:
                if event.query_id == query_id:
                    rounds = query.lookup.rounds if query is not None and \
                        hasattr(query, "lookup") else 0
                    return LookupOutcome(event.result, rounds, self.now - began)
                event = node.next_event()
            if not self._step():
                raise RuntimeError("the simulation went idle before the query ended")
            if self.now - began > limit:
                raise RuntimeError(f"query {query_id!r} did not end within {limit} s")

    def run(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            self._step()
        self.now = max(self.now, until)

    def _step(self) -> bool:
        if not self._queue:
            return False
        at, _, item = heapq.heappop(self._queue)
        self.now = max(self.now, at)
        if isinstance(item, bytes):  # a member's timer
            member = self.members[item]
            if self._timers.get(item) == at and member.alive:
                del self._timers[item]
                member.node.handle_timer(now=self.now)
                self._collect(member)
            return True
        src, dst, data = item
        target = self.members.get(dst)
        if target is None or not target.alive:
            return True
        if target.behaviour is not None:
            self._adversary(target, src, data)
            return True
        target.node.receive(src, self.members[src].address, data, now=self.now)
        self._collect(target)
        return True

    def _collect(self, member: SimMember) -> None:
        for peer_id, _, data in member.node.messages_to_send():
            self._deliver(member.node_id, peer_id, data)
        self._arm(member)

    def _deliver(self, src: bytes, dst: bytes, data: bytes) -> None:
        self.messages += 1
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        delay = self.latency + (self.rng.random() * self.jitter if self.jitter else 0.0)
        heapq.heappush(self._queue, (self.now + delay, next(self._order), (src, dst, data)))

    def _arm(self, member: SimMember) -> None:
        at = member.node.get_timer()
        if at is not None and self._timers.get(member.node_id) != at:
            self._timers[member.node_id] = at
            heapq.heappush(self._queue, (max(at, self.now), next(self._order), member.node_id))

    # -- adversaries -----------------------------------------------------------------

    def _adversary(self, member: SimMember, src: bytes, data: bytes) -> None:
        behaviour = member.behaviour
        if behaviour == "silent":
            return
        try:
            request = decode(data)
        except ValueError:
            return
        if not request.is_request:
            return
        if behaviour == "garbage":
            self._deliver(member.node_id, src, self.rng.randbytes(self.rng.randrange(1, 200)))
            return
        target = getattr(request, "target", None) or getattr(request, "key", None)
        if target is None:
            return
        if behaviour == "self":
            contacts = [Contact(node_id=member.node_id, address=member.address)]
        else:
            bad = [m for m in self.members.values() if m.behaviour is not None]
            t = int.from_bytes(target, "big")
            bad.sort(key=lambda m: -(int.from_bytes(m.node_id, "big") ^ t))
            contacts = [Contact(node_id=m.node_id, address=m.address)
                        for m in bad[: self.config.k]]
        if isinstance(request, FindNode):
            answer: Any = Nodes(txid=request.txid, contacts=contacts)
        elif isinstance(request, FindValue):
            answer = ValueFound(txid=request.txid, record=None, contacts=contacts)
        elif isinstance(request, GetProviders):
            answer = Providers(txid=request.txid, providers=[], contacts=contacts)
        else:
            return
        self._deliver(member.node_id, src, encode(answer))

    # -- facts -----------------------------------------------------------------------

    def live_ids(self) -> list[bytes]:
        return [m.node_id for m in self.members.values() if m.alive and m.behaviour is None]

    def true_closest(self, target: bytes, count: int) -> list[bytes]:
        t = int.from_bytes(target, "big")
        return sorted(self.live_ids(), key=lambda i: int.from_bytes(i, "big") ^ t)[:count]
