"""The DHTs that bench/bench_dht.py compares, behind one async interface.

Each implementation is a :class:`DhtPeers`: N nodes in this process on
127.0.0.1, addressed by their index. The driver calls, in order::

    await peers.start(n, seed=seed)       # N nodes listening, none knowing another
    await peers.bootstrap()               # every node joins through node 0
    await peers.put(node, key, value)     # store through node ``node``
    peers.set_loss(p, seed=seed)          # drop p of every node's outgoing datagrams
    await peers.get(node, key)            # the value, or None
    await peers.stop()

The methods are awaited on the event loop the class names in ``backend``
(``"asyncio"`` or ``"trio"``): the driver is written on anyio and runs each
implementation under its own loop. Loss is injected at the last step before
the socket, on every node, from one seeded ``random.Random``: a dropped
datagram is simply never handed to the kernel. An implementation whose traffic
is not datagrams (py-libp2p runs over TCP here) says so in ``loss_note`` and
``set_loss`` raises ``NotImplementedError``: dropping bytes of a TCP stream is
not packet loss, it is corruption, and a kernel-level drop (``tc netem``) is not
available on this machine.

Each class imports its library in ``__init__``, so the driver can tell "not
installed" (``ImportError``) from a failure of the run.
"""

from __future__ import annotations

import abc
import contextlib
import random


class DhtPeers(abc.ABC):
    """N nodes of one DHT implementation in this process."""

    #: the name the driver's ``--impl`` uses
    name: str
    #: ``"asyncio"`` or ``"trio"``: the loop every method must be awaited on
    backend: str
    #: one line for the table: transport and security
    transport: str
    #: why ``set_loss`` is unsupported, or ``""`` when it is supported
    loss_note: str = ""

    @abc.abstractmethod
    async def start(self, n: int, *, seed: int) -> None:
        """Start ``n`` nodes on 127.0.0.1 (ids drawn from ``seed``), none bootstrapped."""

    @abc.abstractmethod
    async def bootstrap(self) -> float:
        """Join every node through node 0; return the mean routing-table size."""

    @abc.abstractmethod
    async def put(self, node: int, key: bytes, value: bytes) -> bool:
        """Store ``value`` under ``key`` through node ``node``; whether any peer took it."""

    @abc.abstractmethod
    async def get(self, node: int, key: bytes) -> bytes | None:
        """Look ``key`` up through node ``node``: the value, or ``None``."""

    @abc.abstractmethod
    def holds(self, node: int, key: bytes) -> bool:
        """Whether node ``node`` stores ``key`` itself (its get then needs no lookup)."""

    def set_loss(self, p: float, *, seed: int) -> None:
        """Drop a fraction ``p`` of every node's outgoing datagrams from now on."""
        raise NotImplementedError(self.loss_note or "loss injection not supported")

    def loss_counts(self) -> tuple[int, int]:
        """Datagrams sent and dropped since ``set_loss`` (``(0, 0)`` without loss)."""
        return 0, 0

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop every node."""


class _LossyDatagrams:
    """Stands in for an asyncio datagram transport and drops some of what is sent.

    Shared by all nodes of one run so that a single seeded generator decides
    every drop; everything but ``sendto`` is the real transport's.
    """

    def __init__(self, p: float, rng: random.Random) -> None:
        self.p = p
        self.rng = rng
        self.sent = 0
        self.dropped = 0

    def wrap(self, transport):
        lossy = self

        class Wrapped:
            def sendto(self, data, addr=None):
                lossy.sent += 1
                if lossy.rng.random() < lossy.p:
                    lossy.dropped += 1
                    return
                transport.sendto(data, addr)

            def __getattr__(self, name):
                return getattr(transport, name)

        return Wrapped()


class BmullerKademlia(DhtPeers):
    """bmuller's ``kademlia`` (PyPI ``kademlia``): asyncio, UDP via rpcudp, no crypto.

    Settings are the library's defaults (k = 20, alpha = 3, a 5 s RPC timeout
    in rpcudp). Node ids are the library's 160-bit ids, drawn from the seed.
    """

    name = "bmuller"
    backend = "asyncio"
    transport = "UDP, msgpack, no crypto"

    def __init__(self) -> None:
        from kademlia.network import Server
        from kademlia.utils import digest

        self._server_class = Server
        self._digest = digest
        self._servers: list = []
        self._lossy: _LossyDatagrams | None = None

    async def start(self, n: int, *, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(n):
            server = self._server_class(ksize=20, alpha=3, node_id=rng.randbytes(20))
            await server.listen(0, interface="127.0.0.1")
            self._servers.append(server)

    def _address(self, index: int) -> tuple[str, int]:
        return self._servers[index].transport.get_extra_info("sockname")[:2]

    async def bootstrap(self) -> float:
        first = self._address(0)
        for server in self._servers[1:]:
            await server.bootstrap([first])
        sizes = [sum(len(bucket) for bucket in s.protocol.router.buckets)
                 for s in self._servers]
        return sum(sizes) / len(sizes)

    async def put(self, node: int, key: bytes, value: bytes) -> bool:
        return bool(await self._servers[node].set(key, value))

    async def get(self, node: int, key: bytes) -> bytes | None:
        return await self._servers[node].get(key)

    def holds(self, node: int, key: bytes) -> bool:
        return self._servers[node].storage.get(self._digest(key)) is not None

    def set_loss(self, p: float, *, seed: int) -> None:
        # rpcudp sends every request and every answer with protocol.transport.sendto.
        self._lossy = _LossyDatagrams(p, random.Random(seed))
        for server in self._servers:
            server.protocol.transport = self._lossy.wrap(server.transport)

    def loss_counts(self) -> tuple[int, int]:
        return (self._lossy.sent, self._lossy.dropped) if self._lossy else (0, 0)

    async def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()


class Libp2pKadDht(DhtPeers):
    """py-libp2p's kad-dht (PyPI ``libp2p``): trio, TCP with Noise and yamux.

    Every node is a libp2p host listening on 127.0.0.1 TCP with an Ed25519 key
    drawn from the seed, running ``KadDHT`` in server mode with the library's
    defaults (k = 20, alpha = 10, a 10 s query timeout). Keys are hex strings
    (no namespace, which the default non-strict validator accepts).
    """

    name = "libp2p"
    backend = "trio"
    transport = "TCP, Noise + yamux, Ed25519"
    loss_note = "n/a (TCP)"

    def __init__(self) -> None:
        import multiaddr
        from libp2p import new_host
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
        from libp2p.peer.peerinfo import PeerInfo
        from libp2p.tools.anyio_service import background_trio_service

        self._multiaddr = multiaddr.Multiaddr
        self._new_host = new_host
        self._key_pair = create_new_key_pair
        self._server_mode = DHTMode.SERVER
        self._kad = KadDHT
        self._peer_info = PeerInfo
        self._service = background_trio_service
        self._stack = contextlib.AsyncExitStack()
        self._hosts: list = []
        self._dhts: list = []

    async def start(self, n: int, *, seed: int) -> None:
        rng = random.Random(seed)
        await self._stack.__aenter__()
        listen = [self._multiaddr("/ip4/127.0.0.1/tcp/0")]
        for _ in range(n):
            host = self._new_host(key_pair=self._key_pair(rng.randbytes(32)))
            await self._stack.enter_async_context(host.run(listen_addrs=listen))
            dht = self._kad(host, self._server_mode)
            await self._stack.enter_async_context(self._service(dht))
            self._hosts.append(host)
            self._dhts.append(dht)

    async def bootstrap(self) -> float:
        first = self._hosts[0]
        info = self._peer_info(first.get_id(), first.get_addrs())
        for host, dht in zip(self._hosts[1:], self._dhts[1:]):
            host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
            await host.connect(info)
            await dht.add_peer(info.peer_id)
            # A lookup of its own id fills the new node's table and announces it.
            await dht.peer_routing.refresh_routing_table()
        sizes = [dht.get_routing_table_size() for dht in self._dhts]
        return sum(sizes) / len(sizes)

    async def put(self, node: int, key: bytes, value: bytes) -> bool:
        await self._dhts[node].put_value(key.hex(), value)
        return True

    async def get(self, node: int, key: bytes) -> bytes | None:
        return await self._dhts[node].get_value(key.hex())

    def holds(self, node: int, key: bytes) -> bool:
        return self._dhts[node].value_store.get(key.hex().encode()) is not None

    async def stop(self) -> None:
        self._hosts.clear()
        self._dhts.clear()
        await self._stack.aclose()



class SttDht(DhtPeers):
    """STT's ``KademliaDHT`` (asyncio): DHT frames on Noise IKpsk2 sessions over UDP.

    Values are immutable (key = BLAKE2b-256 of the value), so the driver's keys
    are mapped to the keys ``put`` returns. Loss drops outgoing datagrams at each
    node's socket: handshakes, DHT frames and acknowledgements alike.
    """

    name = "stt"
    backend = "asyncio"
    transport = "UDP, Noise IKpsk2 sessions, ChaCha20-Poly1305"

    SEED = b"stt dht benchmark network seed"

    #: ``pool_sessions`` of every member (``None``: the default); set by ``--stt-pool``
    pool_sessions: int | None = None

    def __init__(self) -> None:
        import stt

        self._stt = stt
        self._dhts: list = []
        self._keys: dict[bytes, bytes] = {}
        self._lossy: _LossyDatagrams | None = None

    async def start(self, n: int, *, seed: int) -> None:
        from stt_proto.identity import Identity

        rng = random.Random(seed)
        for _ in range(n):
            dht = self._stt.KademliaDHT(identity=Identity.generate(rng.randbytes),
                                        shared_seed=self.SEED, host="127.0.0.1", port=0,
                                        pool_sessions=self.pool_sessions)
            await dht.start()
            self._dhts.append(dht)

    async def bootstrap(self) -> float:
        first = self._dhts[0]
        for dht in self._dhts[1:]:
            await dht.bootstrap([(first.node.address, first.node_id)])
        sizes = [len(dht.contacts()) for dht in self._dhts]
        return sum(sizes) / len(sizes)

    async def put(self, node: int, key: bytes, value: bytes) -> bool:
        self._keys[key] = await self._dhts[node].put(value)
        return True

    async def get(self, node: int, key: bytes) -> bytes | None:
        return await self._dhts[node].get(self._keys.get(key, bytes(32)))

    def holds(self, node: int, key: bytes) -> bool:
        mapped = self._keys.get(key)
        engine = self._dhts[node].engine
        return mapped is not None and mapped in engine.values

    def set_loss(self, p: float, *, seed: int) -> None:
        lossy = self._lossy = _LossyDatagrams(p, random.Random(seed))
        for dht in self._dhts:
            sock = dht.node._sock
            real_send = sock.send

            def send(datagrams, real_send=real_send):
                # Dropped datagrams count as sent (the loss is the network's); a
                # partial send reports up to the first kept datagram not sent.
                kept, positions = [], []
                for index, item in enumerate(datagrams):
                    lossy.sent += 1
                    if lossy.rng.random() < lossy.p:
                        lossy.dropped += 1
                    else:
                        kept.append(item)
                        positions.append(index)
                sent = real_send(kept) if kept else 0
                return len(datagrams) if sent == len(kept) else positions[sent]
            sock.send = send

    def loss_counts(self) -> tuple[int, int]:
        return (self._lossy.sent, self._lossy.dropped) if self._lossy else (0, 0)

    async def stop(self) -> None:
        for dht in self._dhts:
            await dht.stop()
        self._dhts.clear()


#: ``--impl`` name -> adapter class, in the order the table shows them
IMPLEMENTATIONS: dict[str, type[DhtPeers]] = {
    "stt": SttDht,
    "bmuller": BmullerKademlia,
    "libp2p": Libp2pKadDht,
}
