"""The implementations ``bench/bench_pubsub.py`` measures, behind one interface.

Each class runs one publisher and N subscribers of one topic in this process
on 127.0.0.1. The driver calls, in order::

    await peers.start(n, seed=seed, deliver=deliver)  # publisher + n subscribers, joined
    await peers.publish(data)                         # one message from the publisher
    await peers.stop()

``deliver(index, data)`` is a plain function the class calls once for every
message a subscriber's application receives (subscriber ``index`` in
``range(n)``, duplicates included: counting them is the driver's business).
The methods are awaited on the event loop the class names in ``backend``
(``"asyncio"`` or ``"trio"``); the driver is written on anyio.

In both implementations the publisher does not subscribe: it reaches the
subscribers through its own mechanism (STT: providers in the DHT and fan-out;
gossipsub: fan-out peers among those announcing the topic). Each class
imports its library in ``__init__``, so the driver can tell "not installed"
(``ImportError``) from a failure of the run.
"""

from __future__ import annotations

import abc
import contextlib
import random
from collections.abc import Callable

TOPIC = "bench"

Deliver = Callable[[int, bytes], None]


class PubSubPeers(abc.ABC):
    """One publisher and N subscribers of one pub/sub implementation in this process."""

    #: the name the driver's ``--impl`` uses
    name: str
    #: ``"asyncio"`` or ``"trio"``: the loop every method must be awaited on
    backend: str
    #: one line for the table: transport and security
    transport: str
    #: one line for the table: the settings that matter
    settings: str

    @abc.abstractmethod
    async def start(self, n: int, *, seed: int, deliver: Deliver) -> None:
        """Start the publisher and ``n`` subscribers, joined and subscribed to the topic."""

    @abc.abstractmethod
    async def publish(self, data: bytes) -> None:
        """Publish ``data`` from the publisher; may wait (that is backpressure)."""

    def counters(self) -> dict[str, int]:
        """The library's own counters worth showing (drops, queue waits), if any."""
        return {}

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop every node."""


class Libp2pGossipSub(PubSubPeers):
    """py-libp2p's gossipsub (PyPI ``libp2p``): trio, TCP with Noise and yamux.

    Every node is a libp2p host on 127.0.0.1 TCP with an Ed25519 key drawn from
    the seed, each connected to every other (gossipsub learns its peers from
    connections; there is no discovery in between), running ``Pubsub`` with
    strict signing over ``GossipSub`` with the spec's mesh degrees (D = 6,
    D_lo = 4, D_hi = 12) and a 1 s heartbeat (the library's default is 120 s).
    Everything else is the library's default, including its spam protection:
    a forwarder sending more than ``max_messages_per_topic_per_second`` (10)
    on a topic has the excess dropped. ``spam_limit`` (``--libp2p-spam-limit``)
    changes that figure; 0 turns the check off.
    """

    name = "libp2p"
    backend = "trio"
    transport = "TCP, Noise + yamux, Ed25519"

    #: ``max_messages_per_topic_per_second``; ``None`` keeps the library's default, 0 disables
    spam_limit: float | None = None

    def __init__(self) -> None:
        import multiaddr
        import trio
        from libp2p import new_host
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.peer.peerinfo import PeerInfo
        from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
        from libp2p.pubsub.pubsub import Pubsub
        from libp2p.tools.anyio_service import background_trio_service

        self._trio = trio
        self._multiaddr = multiaddr.Multiaddr
        self._new_host = new_host
        self._key_pair = create_new_key_pair
        self._peer_info = PeerInfo
        self._gossipsub = GossipSub
        self._protocol = PROTOCOL_ID_V11
        self._pubsub_class = Pubsub
        self._service = background_trio_service
        self._stack = contextlib.AsyncExitStack()
        self._nursery = None
        self._hosts: list = []
        self._pubsubs: list = []
        self._routers: list = []

    @property
    def settings(self) -> str:
        if self.spam_limit is None:
            limit = "library default (10/s per forwarder)"
        elif self.spam_limit == 0:
            limit = "off"
        else:
            limit = f"{self.spam_limit:g}/s per forwarder"
        return f"D=6 (4..12), heartbeat 1 s, spam limit {limit}"

    def _router(self):
        options = {}
        if self.spam_limit == 0:
            options["spam_protection_enabled"] = False
        elif self.spam_limit is not None:
            options["max_messages_per_topic_per_second"] = self.spam_limit
        return self._gossipsub(protocols=[self._protocol], degree=6, degree_low=4,
                               degree_high=12, heartbeat_interval=1, **options)

    async def start(self, n: int, *, seed: int, deliver: Deliver) -> None:
        rng = random.Random(seed)
        await self._stack.__aenter__()
        listen = [self._multiaddr("/ip4/127.0.0.1/tcp/0")]
        for _ in range(n + 1):
            host = self._new_host(key_pair=self._key_pair(rng.randbytes(32)))
            await self._stack.enter_async_context(host.run(listen_addrs=listen))
            router = self._router()
            pubsub = self._pubsub_class(host, router)
            await self._stack.enter_async_context(self._service(pubsub))
            await self._stack.enter_async_context(self._service(router))
            await pubsub.wait_until_ready()
            self._hosts.append(host)
            self._routers.append(router)
            self._pubsubs.append(pubsub)
        for index, host in enumerate(self._hosts):
            for other in self._hosts[:index]:
                info = self._peer_info(other.get_id(), other.get_addrs())
                host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
                await host.connect(info)
        self._nursery = await self._stack.enter_async_context(self._trio.open_nursery())
        for index, pubsub in enumerate(self._pubsubs[1:]):
            subscription = await pubsub.subscribe(TOPIC)
            self._nursery.start_soon(self._read, subscription, index, deliver)

    @staticmethod
    async def _read(subscription, index: int, deliver: Deliver) -> None:
        while True:
            message = await subscription.get()
            deliver(index, message.data)

    async def publish(self, data: bytes) -> None:
        await self._pubsubs[0].publish(TOPIC, data)

    async def stop(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        self._hosts.clear()
        self._pubsubs.clear()
        self._routers.clear()
        await self._stack.aclose()


class Libp2pGossipSubUnlimited(Libp2pGossipSub):
    """The same gossipsub with its spam protection off: what its machinery itself sustains.

    The library's default limit drops a forwarder's messages beyond 10 per
    second and topic, the publisher's own included, so above that rate the
    default figures measure the limit, not the transport; this row shows both.
    """

    name = "libp2p-unlimited"
    spam_limit = 0


class SttPubSub(PubSubPeers):
    """STT's ``PubSubManager`` (asyncio) over ``KademliaDHT`` members on UDP.

    Every member is a ``KademliaDHT`` on 127.0.0.1 bootstrapped through the
    publisher's; subscribers announce themselves as providers of the topic and
    form their mesh from each other, and the publisher (not subscribed) finds
    them through the DHT. Settings are the library's defaults.
    """

    name = "stt"
    backend = "asyncio"
    transport = "UDP, Noise IKpsk2 sessions, ChaCha20-Poly1305"

    @property
    def settings(self) -> str:
        from stt_proto.pubsub.config import PubSubConfig

        c = PubSubConfig()
        return (f"library defaults: D={c.mesh_degree} ({c.mesh_low}..{c.mesh_high}), fan-out "
                f"{c.fanout}, heartbeat {c.heartbeat:g} s, {c.max_messages_per_second:g} "
                f"PUBLISH/s per peer")

    SEED = b"stt pub/sub benchmark network seed"

    def __init__(self) -> None:
        import stt
        from stt_proto.identity import Identity

        self._stt = stt
        self._manager = stt.PubSubManager  # AttributeError until the adapter exists
        self._identity = Identity
        self._dhts: list = []
        self._pubsubs: list = []

    async def start(self, n: int, *, seed: int, deliver: Deliver) -> None:
        rng = random.Random(seed)
        for _ in range(n + 1):
            dht = self._stt.KademliaDHT(identity=self._identity.generate(rng.randbytes),
                                        shared_seed=self.SEED, host="127.0.0.1", port=0)
            await dht.start()
            self._dhts.append(dht)
        first = self._dhts[0]
        for dht in self._dhts[1:]:
            await dht.bootstrap([(first.node.address, first.node_id)])
        self._pubsubs = [self._manager(dht=dht) for dht in self._dhts]
        for index, pubsub in enumerate(self._pubsubs[1:]):
            await pubsub.subscribe(TOPIC, lambda _topic, data, _publisher, index=index:
                                   deliver(index, data))

    async def publish(self, data: bytes) -> None:
        await self._pubsubs[0].publish(TOPIC, data)

    def counters(self) -> dict[str, int]:
        # The publisher's and the subscribers' statistics, summed by name.
        totals: dict[str, int] = {}
        for pubsub in self._pubsubs:
            for key, value in pubsub.statistics().items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
        return totals

    async def stop(self) -> None:
        for pubsub in self._pubsubs:
            await pubsub.stop()
        for dht in self._dhts:
            await dht.stop()
        self._pubsubs.clear()
        self._dhts.clear()


#: ``--impl`` name -> adapter class, in the order the table shows them
IMPLEMENTATIONS: dict[str, type[PubSubPeers]] = {
    "stt": SttPubSub,
    "libp2p": Libp2pGossipSub,
    "libp2p-unlimited": Libp2pGossipSubUnlimited,
}
