"""A deterministic network simulator for running real endpoints end to end.

``stt_proto.testing`` runs real :class:`~stt_proto.endpoint.Endpoint` objects
against each other under *simulated* time: no sockets, no clock, no threads. Every
random choice (packet loss, jitter, node keys, session ids) comes from one
``random.Random(seed)``, so a run is exactly reproducible from its seed: print the
seed when a test fails and the failure replays. It plays the role of trio's
``MockClock`` plus ``FakeNet`` for the sans-I/O engine.

Example: an echo server over a slow, lossy link::

    from stt_proto.events import DatagramReceived, SessionEstablished
    from stt_proto.testing import Link, Network

    net = Network(seed=1)
    client = net.add_node("client")
    server = net.add_node("server")
    net.connect_nodes(client, server, Link(latency=0.025, bandwidth=10e6, loss=0.01))

    def echo(node, event):
        if isinstance(event, DatagramReceived):
            node.send_datagram(event.session_id, event.data)  # flushed for us

    server.on_event = echo
    session = client.connect(server)
    net.run(until=10.0, stop=lambda: client.events_of(SessionEstablished))
    for i in range(10):
        client.send_datagram(session, b"ping %d" % i)
    net.run(until=net.now + 1.0)
    echoed = [e.data for e in client.events_of(DatagramReceived)]
    print(len(echoed), net.statistics()["lost"])

Theory of operation
-------------------
A :class:`Network` keeps one heap of ``(time, seq, ...)`` entries: datagram
arrivals, endpoint timers, and callbacks scheduled with :meth:`Network.call_at`.
``seq`` is a global counter, so entries due at the same instant run in the order
they were scheduled and the heap never compares anything else. :meth:`Network.run`
pops entries in order, moves :attr:`Network.now` to each entry's time and hands
the input to its node's endpoint. After *every* input (a datagram, a timer, or a
command issued through :class:`Node`) the node is *flushed*, as the house-style
adapter contract asks: ``datagrams_to_send(now)`` is drained into the routes'
links, ``next_event()`` is pulled until ``None`` (each event is appended to
:attr:`Node.events` and given to :attr:`Node.on_event`), and the node's single
timer is re-armed from ``get_timer()``.

Timers are re-armed lazily. A node owns at most one live heap entry; when the
endpoint's deadline moves *earlier* a new entry replaces it, and when it moves
*later* the old entry is kept and, once popped, re-pushed at the new deadline
instead of firing. Keep-alive deadlines move later with every packet sent, so this
keeps the heap small. A deadline in the past is clamped to ``now``.

Routes are one-way: ``route(a, b, link)`` carries what ``a`` sends to ``b``'s
address through ``link``. Datagrams to an address without a route are dropped and
counted (``no_route``), unless the network has a ``default_link``: then the first
datagram from ``a`` to a node ``b`` without a route creates the route ``a -> b``
through a copy of it (its own queue, FIFO order and counters), so a large network
needs no route per pair up front and holds only the pairs that talk. One :class:`Link` may carry several routes: it then is a
shared bottleneck whose bandwidth and queue the flows compete for. A datagram
entering a link goes through, in order: the MTU check, the drop-tail queue,
serialization at the link's bandwidth, random loss (the lost datagram still used
its slot on the wire), corruption, propagation (``latency`` plus uniform
``jitter``), then reordering, and finally duplication (the copy arrives right after
the original). Without reordering, arrivals on a link are FIFO even under jitter.

Every loop is bounded: :meth:`Network.run` raises ``RuntimeError`` after
``max_steps`` steps, and an endpoint whose timer keeps firing at the same instant
(a busy loop) raises ``RuntimeError`` too.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from .config import EndpointConfig
from .endpoint import Endpoint
from .events import Event
from .identity import Identity

__all__ = [
    "Link",
    "Network",
    "Node",
    "DEFAULT_SHARED_SEED",
    "DEFAULT_MAX_STEPS",
    "MAX_TIMER_REFIRES",
]

Address = Any

#: Network seed given to nodes unless ``Network(shared_seed=...)`` or
#: ``add_node(shared_seed=...)`` says otherwise. A test value, public by design.
DEFAULT_SHARED_SEED = b"stt_proto.testing network seed"
#: Default step budget of :meth:`Network.run` (an event loop that never settles
#: raises instead of hanging the test suite).
DEFAULT_MAX_STEPS = 1_000_000
#: An endpoint timer that fires this many times at one instant without its
#: deadline moving is a busy loop: :meth:`Network.run` raises ``RuntimeError``.
MAX_TIMER_REFIRES = 100

_LINK_DEFAULTS: dict[str, Any] = {
    "latency": 0.0,
    "jitter": 0.0,
    "bandwidth": None,
    "queue_bytes": None,
    "loss": 0.0,
    "reorder": 0.0,
    "reorder_delay": 0.01,
    "duplicate": 0.0,
    "corrupt": 0.0,
    "corrupt_bits": 1,
    "mtu": None,
}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Link {name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"Link {name} must be finite (got {value!r})")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Link {name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"Link {name} must be at least 1 (got {value!r})")
    return value


def _validate_link(params: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise a full set of link parameters; raise on the first bad one."""
    out = dict(params)
    for name in ("latency", "jitter", "reorder_delay"):
        out[name] = _number(name, params[name])
        if out[name] < 0:
            raise ValueError(f"Link {name} must not be negative (got {params[name]!r} s)")
    for name in ("loss", "reorder", "duplicate", "corrupt"):
        out[name] = _number(name, params[name])
        if not 0.0 <= out[name] <= 1.0:
            raise ValueError(f"Link {name} is a probability within 0..1 (got {params[name]!r})")
    if params["bandwidth"] is not None:
        out["bandwidth"] = _number("bandwidth", params["bandwidth"])
        if out["bandwidth"] <= 0:
            raise ValueError(f"Link bandwidth must be positive bits/s or None "
                             f"(got {params['bandwidth']!r})")
    if params["queue_bytes"] is not None:
        out["queue_bytes"] = _count("queue_bytes", params["queue_bytes"])
        if out["bandwidth"] is None:
            raise ValueError("Link queue_bytes needs a bandwidth: on an infinitely fast "
                             "link nothing ever waits in the queue")
    if params["mtu"] is not None:
        out["mtu"] = _count("mtu", params["mtu"])
    out["corrupt_bits"] = _count("corrupt_bits", params["corrupt_bits"])
    return out


class Link:
    """A one-way channel with latency, bandwidth, a drop-tail queue and impairments.

    Args:
        latency: propagation delay in seconds, added to every datagram.
        jitter: extra delay drawn uniformly from ``[0, jitter)`` per datagram.
            Arrivals stay in order (a datagram never overtakes the previous
            one) unless it is reordered.
        bandwidth: serialization rate in bits per second; ``None`` is infinite.
            Datagrams leave one after the other: a datagram of ``n`` bytes
            departs ``8 * n / bandwidth`` seconds after the previous one left.
        queue_bytes: drop-tail limit on the bytes waiting for serialization
            (the datagram on the wire does not count). A datagram that would
            exceed it is dropped and counted as ``queue_drops``. ``None`` is
            unlimited; requires a ``bandwidth``.
        loss: probability that a datagram is lost after serialization.
        reorder: probability that a datagram is held back ``reorder_delay``
            seconds more and may be overtaken by later ones.
        reorder_delay: extra delay of reordered datagrams, in seconds.
        duplicate: probability that a datagram arrives twice.
        corrupt: probability that a datagram has bits flipped.
        corrupt_bits: a corrupted datagram gets between 1 and this many distinct
            bits flipped.
        mtu: datagrams longer than this many bytes are dropped (``mtu_drops``).

    Raises:
        ValueError: a parameter is out of range (message names it).
        TypeError: a parameter is not a number.

    All randomness comes from the :class:`Network` the link is routed in; a link
    belongs to one network. Change parameters in the middle of a run with
    :meth:`update` (for example ``link.update(loss=1.0)`` to cut it).
    """

    __slots__ = (
        *_LINK_DEFAULTS,
        "_network", "_busy_until", "_last_arrival", "_waiting", "_waiting_bytes",
        "_sent", "_bytes_sent", "_delivered", "_bytes_delivered", "_lost",
        "_queue_drops", "_mtu_drops", "_duplicated", "_corrupted", "_reordered",
        "_queue_peak_bytes",
    )

    def __init__(self, *, latency: float = 0.0, jitter: float = 0.0,
                 bandwidth: float | None = None, queue_bytes: int | None = None,
                 loss: float = 0.0, reorder: float = 0.0, reorder_delay: float = 0.01,
                 duplicate: float = 0.0, corrupt: float = 0.0, corrupt_bits: int = 1,
                 mtu: int | None = None) -> None:
        params = _validate_link({
            "latency": latency, "jitter": jitter, "bandwidth": bandwidth,
            "queue_bytes": queue_bytes, "loss": loss, "reorder": reorder,
            "reorder_delay": reorder_delay, "duplicate": duplicate, "corrupt": corrupt,
            "corrupt_bits": corrupt_bits, "mtu": mtu,
        })
        for name, value in params.items():
            setattr(self, name, value)
        self._network: Network | None = None
        self._busy_until = 0.0
        self._last_arrival = 0.0
        # (start of serialization, size) of datagrams not yet on the wire.
        self._waiting: deque[tuple[float, int]] = deque()
        self._waiting_bytes = 0
        self._sent = self._bytes_sent = self._delivered = self._bytes_delivered = 0
        self._lost = self._queue_drops = self._mtu_drops = 0
        self._duplicated = self._corrupted = self._reordered = 0
        self._queue_peak_bytes = 0

    # ------------------------------------------------------------------ public

    def parameters(self) -> dict[str, Any]:
        """The link's parameters, as keyword arguments of :class:`Link`."""
        return {name: getattr(self, name) for name in _LINK_DEFAULTS}

    def update(self, **params: Any) -> None:
        """Change parameters (validated like the constructor's); the queue and
        the datagrams in flight are kept.

        Raises:
            TypeError: an unknown parameter name, or a non-number.
            ValueError: a value out of range; nothing is changed then.
        """
        unknown = set(params) - set(_LINK_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown Link parameter(s): {', '.join(sorted(unknown))}")
        merged = self.parameters()
        merged.update(params)
        for name, value in _validate_link(merged).items():
            setattr(self, name, value)

    def copy(self) -> Link:
        """A new link with the same parameters and fresh state and counters
        (for the other direction of a full-duplex path)."""
        return Link(**self.parameters())

    def statistics(self) -> dict[str, int]:
        """Counters since creation.

        ``sent`` counts datagrams that entered the link and ``delivered`` those
        handed to the receiver (both copies of a duplicate), so once nothing is in
        flight ``delivered == sent - lost - queue_drops - mtu_drops + duplicated``.
        ``queue_peak_bytes`` is the longest the queue has been.
        """
        return {
            "sent": self._sent,
            "delivered": self._delivered,
            "lost": self._lost,
            "queue_drops": self._queue_drops,
            "mtu_drops": self._mtu_drops,
            "duplicated": self._duplicated,
            "corrupted": self._corrupted,
            "reordered": self._reordered,
            "bytes_sent": self._bytes_sent,
            "bytes_delivered": self._bytes_delivered,
            "queue_peak_bytes": self._queue_peak_bytes,
        }

    def __repr__(self) -> str:
        changed = ", ".join(f"{name}={value!r}" for name, value in self.parameters().items()
                            if value != _LINK_DEFAULTS[name])
        return f"Link({changed})"

    # ------------------------------------------------------------------ model

    def _enter(self, net: Network, data: bytes, src: Address, dst: Node, now: float) -> None:
        """A datagram from ``src`` enters the link at ``now``: schedule its
        arrival (or arrivals) at ``dst``, or drop and count it."""
        size = len(data)
        self._sent += 1
        self._bytes_sent += size
        if self.mtu is not None and size > self.mtu:
            self._mtu_drops += 1
            return
        bandwidth = self.bandwidth
        if bandwidth is None:
            departure = now
        else:
            # Datagrams whose serialization has started have left the queue.
            waiting = self._waiting
            while waiting and waiting[0][0] <= now:
                self._waiting_bytes -= waiting.popleft()[1]
            start = self._busy_until if self._busy_until > now else now
            if start > now:
                if self.queue_bytes is not None and self._waiting_bytes + size > self.queue_bytes:
                    self._queue_drops += 1
                    return
                waiting.append((start, size))
                self._waiting_bytes += size
                if self._waiting_bytes > self._queue_peak_bytes:
                    self._queue_peak_bytes = self._waiting_bytes
            departure = self._busy_until = start + size * 8 / bandwidth
        rng = net.rng
        if self.loss and rng.random() < self.loss:
            self._lost += 1
            return
        if self.corrupt and size and rng.random() < self.corrupt:
            data = self._flip_bits(data, rng)
            self._corrupted += 1
        arrival = departure + self.latency
        if self.jitter:
            arrival += rng.random() * self.jitter
        if self.reorder and rng.random() < self.reorder:
            # Held back and exempt from FIFO: later datagrams may overtake it.
            arrival += self.reorder_delay
            self._reordered += 1
        else:
            if arrival < self._last_arrival:
                arrival = self._last_arrival
            self._last_arrival = arrival
        heap = net._heap
        heapq.heappush(heap, (arrival, next(net._seq), dst, data, src, self))
        net._in_flight += 1
        if self.duplicate and rng.random() < self.duplicate:
            self._duplicated += 1
            heapq.heappush(heap, (arrival, next(net._seq), dst, data, src, self))
            net._in_flight += 1

    def _flip_bits(self, data: bytes, rng: random.Random) -> bytes:
        buf = bytearray(data)
        nbits = len(buf) * 8
        count = 1 if self.corrupt_bits == 1 else rng.randint(1, min(self.corrupt_bits, nbits))
        for bit in rng.sample(range(nbits), count):
            buf[bit >> 3] ^= 1 << (bit & 7)
        return bytes(buf)


class Node:
    """One simulated host: an endpoint at an address, with its event log.

    Create nodes with :meth:`Network.add_node` or :meth:`Network.add_endpoint`.
    Commands go through the node so that their output is flushed at once
    (datagrams into the links, events into :attr:`events`, the timer re-armed);
    calling the endpoint directly is fine too if you then call :meth:`flush`.
    """

    __slots__ = ("network", "endpoint", "address", "name", "node_id", "events", "on_event",
                 "record_events",
                 "_routes", "_flushing", "_timer_at", "_timer_entry", "_timer_seq",
                 "_last_fire", "_refires")

    def __init__(self, network: Network, endpoint: Any, address: Address, name: str,
                 on_event: Callable[[Node, Event], Any] | None) -> None:
        self.network = network
        #: The engine (an :class:`~stt_proto.endpoint.Endpoint`, or any object
        #: with the same sans-I/O surface).
        self.endpoint = endpoint
        #: Where other nodes send to; the source address of what this node sends.
        self.address = address
        self.name = name
        #: The endpoint's node id (``None`` for objects without one).
        self.node_id: bytes | None = getattr(endpoint, "node_id", None)
        #: Every event pulled from the endpoint, in order (while
        #: :attr:`record_events` is true).
        self.events: list[Event] = []
        #: Set to ``False`` to keep :attr:`events` from growing during long
        #: transfers (``on_event`` still sees every event).
        self.record_events = True
        #: ``on_event(node, event)`` is called right after each event is pulled
        #: (and appended to :attr:`events`). Commands it issues through a node are
        #: flushed, so a reply goes out at the same simulated instant.
        self.on_event = on_event
        self._routes: dict[Address, tuple[Link, Node]] = {}
        self._flushing = False
        self._timer_at: float | None = None  # the endpoint's deadline
        self._timer_entry: float | None = None  # time of our live heap entry
        self._timer_seq = -1  # seq of our live heap entry
        self._last_fire = -1.0
        self._refires = 0

    # ------------------------------------------------------------------ commands

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run the command ``fn(endpoint, *args, now=network.now, **kwargs)`` and
        flush; return its result.

        ``fn`` may be an unbound method (``node.call(Endpoint.send_stream_data,
        sid, stream_id, data)``) or any callable taking the endpoint and a
        ``now`` keyword (``node.call(lambda ep, now: ep.close(sid, now=now))``).
        Exceptions from ``fn`` propagate (the node is flushed anyway).
        """
        try:
            return fn(self.endpoint, *args, now=self.network._now, **kwargs)
        finally:
            self.network._flush(self)

    def connect(self, peer: Node, *, timeout: float | None = None) -> bytes:
        """``endpoint.connect(peer.address, peer.node_id, now=..., timeout=...)``,
        then flush.

        Returns:
            The session id; ``SessionEstablished`` or ``SessionClosed`` follows.
        """
        if peer.node_id is None:
            raise ValueError(f"{peer.name} has no node id to connect to")
        return self._command("connect", peer.address, peer.node_id, timeout=timeout)

    def send_datagram(self, session_id: bytes, data: bytes) -> None:
        """``endpoint.send_datagram(session_id, data, now=...)``, then flush."""
        self._command("send_datagram", session_id, data)

    def close(self, session_id: bytes, *, error_code: int = 0, reason: str = "") -> None:
        """``endpoint.close(session_id, now=..., ...)``, then flush."""
        self._command("close", session_id, error_code=error_code, reason=reason)

    def _command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.endpoint, name)(*args, now=self.network._now, **kwargs)
        finally:
            self.network._flush(self)

    def flush(self) -> None:
        """Drain the endpoint's datagrams and events and re-arm its timer (after
        calling the endpoint directly)."""
        self.network._flush(self)

    # ------------------------------------------------------------------ info

    def events_of(self, *types: type) -> list[Event]:
        """The events so far that are instances of any of ``types``."""
        return [event for event in self.events if isinstance(event, types)]

    def statistics(self) -> dict[str, int]:
        """The endpoint's counters (``Endpoint.statistics()``)."""
        return self.endpoint.statistics()

    def __repr__(self) -> str:
        return f"<Node {self.name} at {self.address!r}>"


class Network:
    """Nodes, one-way routes between them, and a simulated clock.

    Args:
        seed: seeds :attr:`rng`, the only source of randomness of the run.
        shared_seed: the network seed nodes get unless ``add_node`` overrides it.
        default_link: a template for pairs of nodes without a route: the first
            datagram from ``a`` to node ``b`` routes ``a -> b`` through
            ``default_link.copy()``. The template itself carries nothing.
            ``None`` (the default): such datagrams are dropped as ``no_route``.
    """

    def __init__(self, seed: int, *, shared_seed: bytes = DEFAULT_SHARED_SEED,
                 default_link: Link | None = None) -> None:
        if default_link is not None and default_link._network is not None:
            raise ValueError("the default_link template must not be routed already")
        self.seed = seed
        #: The template of routes made on first use (see the constructor).
        self.default_link = default_link
        #: Every random choice of the run comes from here, in a fixed order.
        self.rng = random.Random(seed)
        self.shared_seed = shared_seed
        #: Nodes by name, in creation order.
        self.nodes: dict[str, Node] = {}
        self._by_address: dict[Address, Node] = {}
        self._next_host = 1
        self._now = 0.0
        self._heap: list[tuple[float, int, Any, Any, Any, Any]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._links: list[Link] = []
        self._no_route = 0
        self._steps = 0
        self._running = False

    @property
    def now(self) -> float:
        """Simulated seconds since the start (0.0); only :meth:`run` and
        :meth:`step` move it."""
        return self._now

    def __repr__(self) -> str:
        return f"<Network seed={self.seed!r} now={self._now!r} nodes={len(self.nodes)}>"

    # ------------------------------------------------------------------ building

    def add_node(self, name: str | None = None, *, address: Address = None,
                 on_event: Callable[[Node, Event], Any] | None = None,
                 **config: Any) -> Node:
        """Create an :class:`~stt_proto.endpoint.Endpoint` and add it as a node.

        Args:
            name: unique name (default ``"node1"``, ``"node2"``, ...).
            address: its address (default ``("10.0.0.N", 4000)``).
            on_event: see :attr:`Node.on_event`.
            **config: :class:`~stt_proto.config.EndpointConfig` fields. ``rng``
                defaults to a generator seeded from :attr:`rng`, ``identity`` to
                one generated from that ``rng``, and ``shared_seed`` to the
                network's.

        Raises:
            ValueError: the name or address is taken, or the config is invalid.
        """
        node_rng = random.Random(self.rng.getrandbits(64)).randbytes
        config.setdefault("rng", node_rng)
        if "identity" not in config:
            config["identity"] = Identity.generate(config["rng"])
        config.setdefault("shared_seed", self.shared_seed)
        endpoint = Endpoint(EndpointConfig(**config))
        return self.add_endpoint(endpoint, address, name=name, on_event=on_event)

    def add_endpoint(self, endpoint: Any, address: Address = None, *, name: str | None = None,
                     on_event: Callable[[Node, Event], Any] | None = None) -> Node:
        """Add an existing endpoint (or any object with the sans-I/O surface:
        ``receive_datagram``, ``datagrams_to_send``, ``get_timer``,
        ``handle_timer``, ``next_event``) as a node, and flush it.

        Raises:
            ValueError: the name or address is taken.
        """
        if address is None:
            address = self._free_address()
        elif address in self._by_address:
            raise ValueError(f"address {address!r} is already used by "
                             f"{self._by_address[address].name}")
        if name is None:
            name = f"node{len(self.nodes) + 1}"
            while name in self.nodes:
                name += "'"
        elif name in self.nodes:
            raise ValueError(f"a node named {name!r} already exists")
        node = Node(self, endpoint, address, name, on_event)
        self.nodes[name] = node
        self._by_address[address] = node
        self._flush(node)
        return node

    def _free_address(self) -> Address:
        while True:
            n = self._next_host
            self._next_host += 1
            address = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 4000)
            if address not in self._by_address:
                return address

    def node(self, key: Node | str | Address) -> Node:
        """A node of this network by itself, its name or its address.

        Raises:
            KeyError: no such node.
        """
        if isinstance(key, Node):
            if key.network is not self:
                raise KeyError(f"{key!r} belongs to another network")
            return key
        if isinstance(key, str) and key in self.nodes:
            return self.nodes[key]
        try:
            return self._by_address[key]
        except (KeyError, TypeError):
            raise KeyError(f"no node {key!r}") from None

    def route(self, src: Node | str, dst: Node | str, link: Link | None = None) -> Link:
        """Send what ``src`` sends to ``dst``'s address through ``link`` (one way),
        replacing any previous route. ``None`` makes a new perfect link.

        Returns:
            The link.

        Raises:
            ValueError: ``src`` is ``dst``, or ``link`` belongs to another network.
        """
        src, dst = self.node(src), self.node(dst)
        if src is dst:
            raise ValueError("a node cannot route to itself")
        link = Link() if link is None else link
        if link._network is None:
            link._network = self
            self._links.append(link)
        elif link._network is not self:
            raise ValueError("this Link is already used by another Network")
        src._routes[dst.address] = (link, dst)
        return link

    def unroute(self, src: Node | str, dst: Node | str) -> None:
        """Remove the route from ``src`` to ``dst`` (later datagrams are dropped
        as ``no_route``; those already in flight still arrive)."""
        self.node(src)._routes.pop(self.node(dst).address, None)

    def connect_nodes(self, a: Node | str, b: Node | str, link_ab: Link | None = None,
                      link_ba: Link | None = None) -> tuple[Link, Link]:
        """Route ``a -> b`` through ``link_ab`` and ``b -> a`` through ``link_ba``.

        With neither link, both directions are perfect links. If only
        ``link_ab`` is given, ``b -> a`` gets ``link_ab.copy()``: the same
        parameters on its own (full-duplex) channel.

        Returns:
            ``(link_ab, link_ba)``.
        """
        if link_ab is None:
            link_ab = Link()
        if link_ba is None:
            link_ba = link_ab.copy()
        return self.route(a, b, link_ab), self.route(b, a, link_ba)

    def disconnect_nodes(self, a: Node | str, b: Node | str) -> None:
        """Remove both routes between ``a`` and ``b``."""
        self.unroute(a, b)
        self.unroute(b, a)

    def move(self, node: Node | str, address: Address = None, *,
             keep_old: bool = False) -> Address:
        """Give ``node`` a new address, as a NAT that rebinds its mapping or a
        host that changes networks: what it sends from now on comes from there,
        and every route to it now also leads to the new address (through the
        same link). ``keep_old=False`` (a rebinding): datagrams sent to the old
        address from now on are dropped as ``no_route``; ``True`` (a handover
        with both links up): the old address still reaches it. The endpoint is
        not told (a NAT rebinding is invisible to it). Returns the new address
        (default: the next free ``10.x.y.z:4000``).

        Raises:
            ValueError: the address is taken.
        """
        node = self.node(node)
        old = node.address
        if address is None:
            address = self._free_address()
        elif address in self._by_address:
            raise ValueError(f"address {address!r} is already used by "
                             f"{self._by_address[address].name}")
        self._by_address[address] = node
        for other in self.nodes.values():
            route = other._routes.get(old)
            if route is not None:
                other._routes[address] = route
                if not keep_old:
                    del other._routes[old]
        if not keep_old:
            del self._by_address[old]
        node.address = address
        return address

    def call_at(self, when: float, fn: Callable[..., Any], /, *args: Any) -> None:
        """Run ``fn(*args)`` at simulated time ``when`` (after what is already
        scheduled for that instant); it counts as a step.

        Raises:
            ValueError: ``when`` is in the past.
        """
        if not when >= self._now:
            raise ValueError(f"cannot schedule at {when!r}, in the past (now is {self._now!r})")
        heapq.heappush(self._heap, (float(when), next(self._seq), None, fn, args, None))

    # ------------------------------------------------------------------ running

    def run(self, until: float | None = None, *, until_idle: bool = False,
            stop: Callable[[], Any] | None = None, max_steps: int = DEFAULT_MAX_STEPS) -> bool:
        """Process scheduled arrivals, timers and callbacks in time order.

        Args:
            until: process everything due at or before this time, then set
                :attr:`now` to it. ``None`` runs until nothing is scheduled
                (never, while a session keeps sending keep-alives).
            until_idle: return as soon as no datagram is in flight; pending timers
                (retransmissions, keep-alives) do not keep the run going.
            stop: called after each step; the run returns once it is true.
            max_steps: budget of steps for this call.

        Returns:
            True if the run ended early because ``stop()`` was true or the
            network became idle (``until_idle``); False if it reached ``until``
            or ran out of scheduled work.

        Raises:
            RuntimeError: more than ``max_steps`` steps, an endpoint timer
                busy-looping, or a nested call from a callback.
            ValueError: ``until`` is in the past.
        """
        if until is not None and until < self._now:
            raise ValueError(f"until={until!r} is in the past (now is {self._now!r})")
        self._enter_run()
        try:
            if stop is not None and stop():
                return True
            heap = self._heap
            process = self._process
            steps = 0
            while heap:
                if until_idle and not self._in_flight:
                    return True
                if until is not None and heap[0][0] > until:
                    break
                if steps >= max_steps:
                    raise RuntimeError(
                        f"Network.run() took {steps} steps (max_steps) and is not done at "
                        f"now={self._now!r} (seed={self.seed!r}); pass until= or stop=, or "
                        f"raise max_steps")
                if process(heapq.heappop(heap)):
                    steps += 1
                    if stop is not None and stop():
                        return True
            if until_idle and not self._in_flight:
                return True
            if until is not None and until > self._now:
                self._now = float(until)
            return False
        finally:
            self._running = False

    def step(self) -> bool:
        """Process the next scheduled arrival, timer or callback.

        Returns:
            False if nothing was scheduled.
        """
        self._enter_run()
        try:
            heap = self._heap
            while heap:
                if self._process(heapq.heappop(heap)):
                    return True
            return False
        finally:
            self._running = False

    def next_time(self) -> float | None:
        """When the next scheduled entry is due (it may be a timer that turns out
        to have moved), or ``None``."""
        return self._heap[0][0] if self._heap else None

    # ------------------------------------------------------------------ info

    @property
    def in_flight(self) -> int:
        """Datagrams on their way (scheduled to arrive)."""
        return self._in_flight

    @property
    def links(self) -> list[Link]:
        """Every link routed in this network, in order of first use."""
        return list(self._links)

    def statistics(self) -> dict[str, Any]:
        """``now``, ``steps``, ``in_flight``, ``no_route`` and the sum of every
        link's :meth:`Link.statistics`."""
        stats: dict[str, Any] = {
            "now": self._now,
            "steps": self._steps,
            "in_flight": self._in_flight,
            "no_route": self._no_route,
            "links": len(self._links),
        }
        for link in self._links:
            for key, value in link.statistics().items():
                if key == "queue_peak_bytes":
                    stats[key] = max(stats.get(key, 0), value)
                else:
                    stats[key] = stats.get(key, 0) + value
        return stats

    # ------------------------------------------------------------------ internals

    def _enter_run(self) -> None:
        if self._running:
            raise RuntimeError("Network.run()/step() is not reentrant (called from a callback?)")
        self._running = True

    def _process(self, entry: tuple[float, int, Any, Any, Any, Any]) -> bool:
        """Handle one heap entry; return False if it was a stale timer."""
        at, seq, node, data, src, link = entry
        if link is not None:  # a datagram arrives
            if at > self._now:
                self._now = at
            self._in_flight -= 1
            link._delivered += 1
            link._bytes_delivered += len(data)
            node.endpoint.receive_datagram(data, src, self._now)
            self._flush(node)
        elif node is None:  # call_at
            if at > self._now:
                self._now = at
            data(*src)
        else:  # a node's timer
            if seq != node._timer_seq:
                return False  # replaced by an earlier deadline
            node._timer_entry = None
            wanted = node._timer_at
            if wanted is None:
                return False
            if wanted > at:
                # The deadline moved later since this entry was pushed.
                self._push_timer(node, wanted)
                return False
            if at > self._now:
                self._now = at
            now = self._now
            if now == node._last_fire:
                node._refires += 1
                if node._refires > MAX_TIMER_REFIRES:
                    raise RuntimeError(
                        f"{node.name}'s timer fired {node._refires} times at now={now!r} and its "
                        f"deadline ({wanted!r}) does not move: the endpoint busy-loops "
                        f"(seed={self.seed!r})")
            else:
                node._last_fire = now
                node._refires = 0
            node.endpoint.handle_timer(now)
            self._flush(node)
        self._steps += 1
        return True

    def _flush(self, node: Node) -> None:
        """After an input to ``node``: send its datagrams, pull its events (running
        ``on_event``) and re-arm its timer. A flush requested from inside the
        same node's ``on_event`` is folded into the running one."""
        if node._flushing:
            return
        node._flushing = True
        try:
            endpoint = node.endpoint
            routes = node._routes
            src = node.address
            now = self._now
            while True:
                for data, dst in endpoint.datagrams_to_send(now):
                    route = routes.get(dst)
                    if route is None and self.default_link is not None:
                        peer = self._by_address.get(dst)
                        if peer is not None and peer is not node:
                            self.route(node, peer, self.default_link.copy())
                            route = routes[dst]
                    if route is None:
                        self._no_route += 1
                    else:
                        route[0]._enter(self, data, src, route[1], now)
                event = endpoint.next_event()
                if event is None:
                    break
                if node.record_events:
                    node.events.append(event)
                if node.on_event is not None:
                    node.on_event(node, event)
            at = endpoint.get_timer()
            node._timer_at = at
            if at is not None:
                entry = node._timer_entry
                if entry is None or (at if at > now else now) < entry:
                    self._push_timer(node, at)
        finally:
            node._flushing = False

    def _push_timer(self, node: Node, at: float) -> None:
        when = at if at > self._now else self._now
        seq = next(self._seq)
        node._timer_entry = when
        node._timer_seq = seq
        heapq.heappush(self._heap, (when, seq, node, None, None, None))
