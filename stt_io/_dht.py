"""``KademliaDHT``: the DHT facade both adapters share.

The DHT itself is the sans-I/O :class:`stt_proto.dht.node.DhtNode`, attached to
the node's :class:`stt_proto.overlay.OverlayHost`; this module only starts
operations, waits for their :class:`~stt_proto.events.DhtQueryCompleted` and
turns results into :class:`DHTNode` values and exceptions. The asyncio and trio
modules subclass it with their own ``Node`` class and ``sleep``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stt_proto import events as ev
from stt_proto.dht.config import DhtConfig
from stt_proto.dht.messages import immutable_key, mutable_key
from stt_proto.dht.node import DhtNode
from stt_proto.identity import Identity, parse_node_id

from ._arguments import check_peer_address
from .errors import BootstrapError, NodeStoppedError

__all__ = ["DHTNode", "KademliaDHTBase"]

#: Format version of the files :meth:`KademliaDHTBase.save_state` writes.
STATE_VERSION = 1
#: Contacts a state file keeps (the closest of the table; enough to rejoin).
STATE_CONTACTS = 200
#: What a DHT operation given up at its time limit returns.
TIMED_OUT = object()


@dataclass(frozen=True, slots=True)
class DHTNode:
    """A DHT member: its node id and the address it answered from."""

    node_id: bytes
    address: tuple[str, int]

    @property
    def node_id_hex(self) -> str:
        return self.node_id.hex()

    def __repr__(self) -> str:
        return f"DHTNode({self.node_id.hex()[:16]}..., {self.address[0]}:{self.address[1]})"


class _Waiter:
    __slots__ = ("signal", "done", "result")

    def __init__(self, signal: Any) -> None:
        self.signal = signal
        self.done = False
        self.result: Any = None


def _check_key(key: Any, what: str = "key") -> bytes:
    if isinstance(key, str):
        return parse_node_id(key)
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be 32 bytes (or 64 hex characters), "
                        f"not {type(key).__name__}")
    key = bytes(key)
    if len(key) != 32:
        raise ValueError(f"{what} must be 32 bytes, not {len(key)}")
    return key


def _check_value(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    return bytes(value)


class KademliaDHTBase:
    """A Kademlia DHT member on an STT node.

    ``KademliaDHT(node=node)`` attaches to a node (its socket, identity and
    sessions are shared); ``KademliaDHT(identity=..., shared_seed=..., host=...,
    port=9337)`` owns its node. Without ``identity`` and ``shared_seed`` the
    environment's ``STT_IDENTITY`` (an identity file) and ``STT_SEED`` (the seed
    as text, as the ``stt`` command reads it) are used, so the manual's ``KademliaDHT(node_id=my_node_id, port=9337)``
    runs as written; ``node_id``, if given, must be the identity's.

    :param k: bucket size and replication factor.
    :param alpha: requests each lookup keeps in flight.
    :param state_file: where :meth:`stop` saves the routing table and
        :meth:`start` reads it back, so a restart rejoins without bootstrap nodes.
    :param pool_sessions: most sessions the node keeps before the pool closes the
        least recently used one it opened (default 256); memory against handshakes.
    :param pool_idle_close: seconds after which the pool closes a session it
        opened that carried no DHT message and has no stream open (default 120).
    :param dht_config: any other :class:`stt_proto.dht.config.DhtConfig` field
        (``max_value_bytes``, ``record_ttl``, ``republish_interval``, ...).
    """

    _node_class: type
    DEFAULT_PORT = 9337

    def __init__(self, node: Any = None, *, k: int = 20, alpha: int = 3,
                 identity: Identity | None = None, shared_seed: bytes | None = None,
                 node_id: bytes | str | None = None, host: str = "0.0.0.0",
                 port: int = DEFAULT_PORT, state_file: str | os.PathLike | None = None,
                 node_config: dict[str, Any] | None = None, pool_sessions: int | None = None,
                 pool_idle_close: float | None = None, **dht_config: Any) -> None:
        self._config = DhtConfig(k=k, alpha=alpha, **dht_config)
        if pool_sessions is not None and not (isinstance(pool_sessions, int) and pool_sessions > 0):
            raise ValueError("pool_sessions must be a positive int")
        if pool_idle_close is not None and not pool_idle_close > 0:
            raise ValueError("pool_idle_close must be positive")
        self._pool_settings = (pool_sessions, pool_idle_close)
        if node is not None:
            if identity is not None or shared_seed is not None:
                raise ValueError("pass either node= or identity=/shared_seed=, not both")
            self._owns_node = False
        else:
            if identity is None and os.environ.get("STT_IDENTITY"):
                from .keys import load_identity
                identity = load_identity(os.environ["STT_IDENTITY"])
            if shared_seed is None and os.environ.get("STT_SEED"):
                shared_seed = os.environ["STT_SEED"].encode()  # as the stt command reads it
            if identity is None:
                raise ValueError("KademliaDHT needs node=, or identity= (or STT_IDENTITY): "
                                 "a node id alone cannot prove itself to peers")
            if shared_seed is None:
                raise ValueError("KademliaDHT needs shared_seed= (or STT_SEED), the network's "
                                 "seed")
            node = self._node_class(identity, shared_seed, host=host, port=port,
                                    **(node_config or {}))
            self._owns_node = True
        if node_id is not None and _check_key(node_id, "node_id") != node.node_id:
            raise ValueError("node_id is not the node id of this identity")
        self._node = node
        self._state_file = os.fspath(state_file) if state_file is not None else None
        self._engine: DhtNode | None = None
        self._waiters: dict[int, _Waiter] = {}
        self._started = False

    # -- life cycle --------------------------------------------------------------------

    @property
    def node(self) -> Any:
        """The STT node the DHT runs on."""
        return self._node

    @property
    def node_id(self) -> bytes:
        return self._node.node_id

    @property
    def engine(self) -> DhtNode:
        """The sans-I/O DHT engine (statistics, advanced use)."""
        if self._engine is None:
            raise NodeStoppedError("the DHT is not started")
        return self._engine

    async def start(self) -> None:
        """Start the node (if the DHT owns it) and attach the DHT to it. With a
        ``state_file`` that exists, rejoin through the contacts it lists."""
        if self._started:
            return
        if self._owns_node:
            await self._node.start()
        elif not self._node._running:
            raise NodeStoppedError("start the node before the DHT attached to it")
        node = self._node
        self._engine = DhtNode(node.node_id, self._config, identity=node.identity,
                               rng=node._config.rng)
        host, port = node.address[0], node.address[1]
        if host not in ("0.0.0.0", "::"):
            self._engine.address = (host, port)
        pool = node._engine.pool
        sessions, idle = self._pool_settings
        if sessions is not None:
            pool.max_sessions = sessions
        if idle is not None:
            pool.idle_close = idle
        node._engine.attach_dht(self._engine)
        node._overlay_handlers[ev.DhtQueryCompleted] = self._on_query_done
        node._stop_callbacks.append(self._on_node_stop)
        self._started = True
        if self._state_file is not None and os.path.exists(self._state_file):
            contacts = self._load_state(self._state_file)
            if contacts:  # rejoin before start returns, so lookups have a table
                await self._run(lambda engine, now: engine.bootstrap(contacts, now=now))

    async def stop(self) -> None:
        """Save the state file (if any), detach from the node, stop an owned node."""
        if self._started and self._state_file is not None:
            self.save_state(self._state_file)
        self._detach("the DHT stopped")
        if self._owns_node:
            await self._node.stop()

    def _on_node_stop(self) -> None:
        if self._started and self._state_file is not None:
            self.save_state(self._state_file)
        self._detach("the node stopped")

    def _detach(self, why: str) -> None:
        """Leave the node; every waiting call fails with :class:`NodeStoppedError`."""
        if not self._started:
            return
        self._started = False
        node = self._node
        node._engine.detach_dht()
        node._overlay_handlers.pop(ev.DhtQueryCompleted, None)
        if self._on_node_stop in node._stop_callbacks:
            node._stop_callbacks.remove(self._on_node_stop)
        for waiter in self._waiters.values():
            waiter.done = True
            waiter.result = NodeStoppedError(why)
            waiter.signal.set()
        self._engine = None

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- operations --------------------------------------------------------------------

    def _check_started(self) -> DhtNode:
        if not self._started or self._engine is None or not self._node._running:
            raise NodeStoppedError("the DHT is not running")
        return self._engine

    def _on_query_done(self, event: ev.DhtQueryCompleted) -> None:
        waiter = self._waiters.get(event.query_id)
        if waiter is not None:
            waiter.done = True
            waiter.result = event.result
            waiter.signal.set()

    async def _run(self, start: Any, *, timeout: float | None = None) -> Any:
        """Start a query with ``start(engine, now) -> query_id`` and wait for its
        result; after ``timeout`` seconds give it up and return :data:`TIMED_OUT`."""
        engine = self._check_started()
        node = self._node
        query_id = start(engine, node._now())
        waiter = self._waiters[query_id] = _Waiter(node._new_signal())
        if timeout is not None:
            node._spawn(self._expire(waiter, timeout), "a DHT operation's time limit")
        try:
            node._flush()
            while not waiter.done:
                waiter.signal.clear()
                await waiter.signal.wait()
        finally:
            self._waiters.pop(query_id, None)
            if (not waiter.done or waiter.result is TIMED_OUT) and self._engine is not None:
                self._engine.cancel(query_id)  # given up: free its slot
        if isinstance(waiter.result, BaseException):
            raise waiter.result
        return waiter.result

    async def _expire(self, waiter: _Waiter, seconds: float) -> None:
        await self._sleep(seconds)
        if not waiter.done:
            waiter.done = True
            waiter.result = TIMED_OUT
            waiter.signal.set()

    async def bootstrap(self, nodes: Iterable[Any], *, timeout: float = 30.0,
                        retry_interval: float = 0.5) -> int:
        """Join the network through ``nodes``: ``((host, port), node_id)`` pairs.

        Retries with exponential backoff (from ``retry_interval``) until one
        answers; returns the number of contacts in the routing table. Returns
        or raises within ``timeout`` seconds.

        Raises:
            BootstrapError: no node answered within ``timeout`` seconds.
        """
        seeds = []
        for entry in nodes:
            address, node_id = entry
            address = check_peer_address(address)
            address = self._node._literal_address(address) or \
                await self._node._resolve(address[0], address[1])
            seeds.append((_check_key(node_id, "node_id"), address))
        if not seeds:
            raise ValueError("bootstrap needs at least one ((host, port), node_id)")
        deadline = self._node._now() + timeout
        delay = retry_interval
        while True:
            left = deadline - self._node._now()
            if left > 0:
                await self._run(lambda engine, now: engine.bootstrap(seeds, now=now),
                                timeout=left)
            count = len(self._check_started().table)
            if count:
                return count
            left = deadline - self._node._now()
            if left <= 0:
                raise BootstrapError(f"no bootstrap node answered within {timeout} s")
            await self._sleep(min(delay, left))
            delay = min(delay * 2, 10.0)

    async def find_node(self, node_id: bytes | str) -> DHTNode | None:
        """The member with ``node_id``, reached and authenticated, or ``None``."""
        target = _check_key(node_id, "node_id")
        if target == self.node_id:
            return DHTNode(self.node_id, tuple(self._node.address))
        result = await self._run(lambda engine, now: engine.find_node(target, now=now,
                                                                       exact=True))
        for peer_id, address in result:
            if peer_id == target:
                return DHTNode(peer_id, tuple(address))
        return None

    async def find_closest(self, key: bytes | str, count: int = 20) -> list[DHTNode]:
        """The ``count`` members closest to ``key`` that answered (closest first)."""
        target = _check_key(key)
        if not 1 <= count <= self._config.k:
            raise ValueError(f"count must be within 1..{self._config.k} (k)")
        result = await self._run(lambda engine, now: engine.find_node(target, now=now))
        return [DHTNode(peer_id, tuple(address)) for peer_id, address in result[:count]]

    async def put(self, value: bytes) -> bytes:
        """Store an immutable value; returns its key, ``BLAKE2b-256(value)``.

        Raises:
            ValueTooLargeError: ``value`` exceeds ``max_value_bytes``.
        """
        value = _check_value(value)
        report = await self._run(lambda engine, now: engine.put(value, now=now)[0])
        self._check_stored(report)
        return immutable_key(value)

    async def put_mutable(self, value: bytes, *, salt: bytes = b"", seq: int | None = None,
                          cas: int | None = None) -> bytes:
        """Store ``value`` signed by this node under ``mutable_key(node_id, salt)``;
        returns the key. ``seq`` defaults to one above the highest known here.

        Raises:
            MissingSigningKeyError: the identity cannot sign (an old X25519-only one).
            ValueTooLargeError: ``value`` exceeds ``max_value_bytes``.
        """
        value = _check_value(value)
        salt = _check_value(salt)
        if not self._node.identity.can_sign:
            from .errors import MissingSigningKeyError
            raise MissingSigningKeyError()
        report = await self._run(lambda engine, now: engine.put_mutable(
            value, salt=salt, seq=seq, cas=cas, now=now)[0])
        self._check_stored(report)
        return mutable_key(self.node_id, salt)

    def _check_stored(self, report: Any) -> None:
        if report.stored == 0 and report.refused:
            from .errors import DhtError
            reasons = ", ".join(f"{name} x{count}" for name, count in report.refused.items())
            raise DhtError(f"no node stored the value ({reasons})")

    async def get(self, key: bytes | str) -> bytes | None:
        """The value stored under ``key``, verified, or ``None``."""
        key = _check_key(key)
        record = await self._run(lambda engine, now: engine.get(key, now=now))
        if record is None:
            return None
        return record.value

    async def provide(self, key: bytes | str) -> int:
        """Announce this node as a provider of ``key`` (republished until
        :meth:`stop_providing`); returns how many nodes took the record."""
        key = _check_key(key)
        report = await self._run(lambda engine, now: engine.provide(key, now=now))
        return report.stored

    def stop_providing(self, key: bytes | str) -> None:
        self._check_started().stop_providing(_check_key(key))

    async def find_providers(self, key: bytes | str, count: int = 20) -> list[DHTNode]:
        """Up to ``count`` providers of ``key``."""
        key = _check_key(key)
        result = await self._run(lambda engine, now: engine.find_providers(key, count, now=now))
        return [DHTNode(peer_id, tuple(address)) for peer_id, address in result]

    async def connect(self, node_id: bytes | str, *, timeout: float | None = None) -> Any:
        """A session to the member ``node_id``: the pool's session if there is one,
        else a lookup and a new session.

        Raises:
            LookupError: no member with that id was found.
        """
        target = _check_key(node_id, "node_id")
        node = self._node
        pool = node._engine.pool
        session_id = pool.session_of(target)
        if session_id is not None and session_id in node._sessions:
            return node.take_pool_session(session_id)  # the application holds it now
        peer = await self.find_node(target)
        if peer is None:
            raise LookupError(f"no DHT member {target.hex()[:16]}... was found")
        session_id = pool.session_of(target)
        if session_id is not None and session_id in node._sessions:
            return node.take_pool_session(session_id)
        return await node.connect(peer.address, target, timeout=timeout)

    # -- figures and state -------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        stats = dict(self.engine.statistics())
        stats.update(self._node._engine.pool.stats)
        stats["pool_sessions"] = len(self._node._engine.pool)
        return stats

    def contacts(self) -> list[DHTNode]:
        """A snapshot of the routing table."""
        return [DHTNode(c.node_id, tuple(c.address)) for c in self.engine.table.contacts()]

    def save_state(self, path: str | os.PathLike) -> None:
        """Write the routing table's contacts to ``path`` (atomically, owner-only)."""
        engine = self.engine
        contacts = engine.table.closest(self.node_id, STATE_CONTACTS)
        state = {"version": STATE_VERSION, "node_id": self.node_id.hex(),
                 "contacts": [[c.node_id.hex(), c.address[0], c.address[1]] for c in contacts]}
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".stt-dht-state-")
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(state, file)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def _load_state(self, path: str) -> list[tuple[bytes, tuple[str, int]]]:
        try:
            with open(path) as file:
                state = json.load(file)
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state file version {state.get('version')!r}")
            return [(bytes.fromhex(node_id), (host, int(port)))
                    for node_id, host, port in state["contacts"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the DHT state file {path}: {exc}") from None

    async def _sleep(self, seconds: float) -> None:
        await self.node._sleep(seconds)

