"""The operations a DHT node runs across the network, one class per kind.

Each query drives a :class:`~stt_proto.dht.lookup.Lookup` (or a single request)
through the node's RPC layer and ends with one result. The node owns the
queries, feeds them the answers and missed timeouts of their requests, and calls
:meth:`Query.pump` whenever room to send may have appeared.

* ``find_node``: the ``k`` closest nodes that answered; with ``exact`` the
  lookup ends as soon as the target itself answers (over its own session, so
  the answer proves the id).
* ``get``: every record is verified before it counts. An immutable value ends
  the lookup at once; for a mutable one the lookup runs to the end and keeps
  the highest sequence number (BEP 44), so one stale or lying node cannot roll
  a getter back.
* ``put`` / ``provide``: a lookup of the key, then STORE / ADD_PROVIDER to the
  ``k`` closest. This node counts as one of them when it is among the closest.
* ``find_providers``: ends once ``count`` distinct providers are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .lookup import Lookup
from .messages import (
    AddProvider,
    Error,
    FindNode,
    FindValue,
    GetProviders,
    ImmutableValue,
    Nodes,
    Ping,
    Providers,
    Store,
    StoreResult,
    StoreStatus,
)
from .records import verify_record
from .routing import distance

if TYPE_CHECKING:
    from .node import DhtNode
    from .rpc import PendingRequest

__all__ = ["StoreReport", "Query", "FindNodeQuery", "GetQuery", "PutQuery", "ProvideQuery",
           "FindProvidersQuery", "PingQuery"]

Address = Any


@dataclass(slots=True)
class StoreReport:
    """How a ``put`` or ``provide`` went: ``stored`` nodes accepted it (this one included)."""

    key: bytes
    stored: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    """Refusals by :class:`StoreStatus` name (``REFUSED_CAS``, ...)."""
    unanswered: int = 0


def _pairs(contacts) -> list[tuple[bytes, Address]]:
    return [(c.node_id, c.address) for c in contacts]


class Query:
    """Base of every query: an id, a kind, and the end."""

    kind = "query"

    def __init__(self, query_id: int, *, internal: bool = False) -> None:
        self.query_id = query_id
        self.internal = internal
        self.done = False
        self.result: Any = None

    def start(self, node: DhtNode, now: float) -> None:
        self.pump(node, now)

    def pump(self, node: DhtNode, now: float) -> None:
        """Send what the query can send now."""

    def on_answer(self, node: DhtNode, entry: PendingRequest, message: Any, now: float) -> None:
        raise NotImplementedError

    def on_missed(self, node: DhtNode, entry: PendingRequest, failed: bool, now: float) -> None:
        raise NotImplementedError

    def finish(self, node: DhtNode, result: Any, now: float) -> None:
        if not self.done:
            self.done = True
            self.result = result
            node._query_done(self, now)


class LookupQuery(Query):
    """A query made of one iterative lookup of ``target``."""

    def __init__(self, query_id: int, node: DhtNode, target: bytes, *, internal: bool = False,
                 seeds: list[tuple[bytes, Address]] | None = None) -> None:
        super().__init__(query_id, internal=internal)
        self.target = target
        config = node.config
        if seeds is None:
            seeds = _pairs(node.table.closest(target, config.k * config.disjoint_paths))
        self.lookup = Lookup(target, seeds, k=config.k, alpha=config.alpha,
                             paths=config.disjoint_paths, exclude=(node.own_id,))

    def build(self, txid: bytes) -> Any:
        return FindNode(txid=txid, target=self.target)

    def pump(self, node: DhtNode, now: float) -> None:
        if self.done:
            return
        lookup = self.lookup
        chosen = lookup.next_requests()
        for i, (peer_id, address) in enumerate(chosen):
            if node._request(peer_id, address, self.build, self, now,
                             *self.persistence(node, peer_id)) is None:
                # Every candidate chosen from here on was marked as queried:
                # left so, it would hold a window slot that no answer or
                # timeout ever frees, and the lookup would never end.
                for unsent, _ in chosen[i:]:
                    lookup.unsend(unsent)
                break
        if lookup.finished:
            self.lookup_finished(node, now)

    def contacts_of(self, message: Any) -> list[tuple[bytes, Address]]:
        return _pairs(getattr(message, "contacts", ()))

    def persistence(self, node: DhtNode, peer_id: bytes) -> tuple[int | None, float]:
        """``(attempts, patience)`` of the request to ``peer_id``: its
        transmissions (``None``: ``rpc_attempts``) and the seconds it is kept
        trying at the least (see :meth:`RpcManager.request`)."""
        return None, 0.0

    def on_answer(self, node: DhtNode, entry: PendingRequest, message: Any, now: float) -> None:
        if isinstance(message, Error):
            self.lookup.failed(entry.peer_id)
        else:
            self.absorb(node, entry.peer_id, message, now)
            self.lookup.answered(entry.peer_id, self.contacts_of(message))
        self.pump(node, now)

    def absorb(self, node: DhtNode, peer_id: bytes, message: Any, now: float) -> None:
        """Take what an answer carries besides contacts."""

    def on_missed(self, node: DhtNode, entry: PendingRequest, failed: bool, now: float) -> None:
        if failed:
            self.lookup.failed(entry.peer_id)
        else:
            self.lookup.stalled(entry.peer_id)
        self.pump(node, now)

    def lookup_finished(self, node: DhtNode, now: float) -> None:
        node.table.touch_bucket(self.target, now=now)
        self.finish(node, self.lookup.closest(), now)


class FindNodeQuery(LookupQuery):
    kind = "find_node"

    def __init__(self, query_id: int, node: DhtNode, target: bytes, *, exact: bool = False,
                 internal: bool = False, seeds: list[tuple[bytes, Address]] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(query_id, node, target, internal=internal, seeds=seeds)
        self.exact = exact
        if kind is not None:
            self.kind = kind

    def absorb(self, node: DhtNode, peer_id: bytes, message: Any, now: float) -> None:
        if self.exact and peer_id == self.target:
            self.lookup.stop()

    def persistence(self, node: DhtNode, peer_id: bytes) -> tuple[int | None, float]:
        # The one node an exact lookup is after gets more tries, for longer (a
        # rate limit it answers with waits too): no other node can answer for
        # it, and giving up on it fails the whole lookup.
        if self.exact and peer_id == self.target:
            return node.config.rpc_attempts + 2, node.config.target_patience
        return None, 0.0

    def on_missed(self, node: DhtNode, entry: PendingRequest, failed: bool, now: float) -> None:
        # A stalled request is passed over by the end condition; the target of an
        # exact lookup must not be (its answer is the result), so a slow target
        # keeps its window slot until it answers or runs out of tries.
        if self.exact and entry.peer_id == self.target and not failed:
            self.pump(node, now)
            return
        super().on_missed(node, entry, failed, now)


class GetQuery(LookupQuery):
    kind = "get"

    def __init__(self, query_id: int, node: DhtNode, key: bytes, *, internal: bool = False) -> None:
        super().__init__(query_id, node, key, internal=internal)
        self.best: Any = None

    def start(self, node: DhtNode, now: float) -> None:
        self.best = node.values.get(self.target, now=now)
        if isinstance(self.best, ImmutableValue):
            self.finish(node, self.best, now)
        else:
            self.pump(node, now)

    def build(self, txid: bytes) -> Any:
        return FindValue(txid=txid, key=self.target)

    def absorb(self, node: DhtNode, peer_id: bytes, message: Any, now: float) -> None:
        record = getattr(message, "record", None)
        if record is None:
            return
        if not verify_record(self.target, record):
            node.stats["records_invalid"] += 1
            return
        if isinstance(record, ImmutableValue):
            self.best = record
            self.lookup.stop()
        elif self.best is None or record.seq > self.best.seq:
            self.best = record

    def lookup_finished(self, node: DhtNode, now: float) -> None:
        node.table.touch_bucket(self.target, now=now)
        self.finish(node, self.best, now)


class _StoreToClosest(LookupQuery):
    """A lookup of the key, then one request to each of the closest nodes."""

    def __init__(self, query_id: int, node: DhtNode, key: bytes, *,
                 internal: bool = False) -> None:
        super().__init__(query_id, node, key, internal=internal)
        self.report = StoreReport(key=key)
        self.storing = False
        self.stores: set[Any] = set()  # the STORE / ADD_PROVIDER requests awaiting answers
        self.targets: list[tuple[bytes, Address]] = []

    def store_locally(self, node: DhtNode, now: float) -> str | None:
        """Store on this node; the status name, or ``None`` when it cannot."""
        raise NotImplementedError

    def build_store(self, txid: bytes) -> Any:
        raise NotImplementedError

    def lookup_finished(self, node: DhtNode, now: float) -> None:
        if self.storing:
            return
        self.storing = True
        node.table.touch_bucket(self.target, now=now)
        closest = self.lookup.closest(node.config.k)
        own = distance(node.own_id, self.target)
        if len(closest) < node.config.k or own < distance(closest[-1][0], self.target):
            status = self.store_locally(node, now)
            if status is not None:
                self._count(status)
            closest = closest[: node.config.k - 1]
        self.targets = closest
        self.pump(node, now)

    def pump(self, node: DhtNode, now: float) -> None:
        if not self.storing:
            super().pump(node, now)
            return
        while self.targets:
            peer_id, address = self.targets[-1]
            entry = node._request(peer_id, address, self.build_store, self, now)
            if entry is None:
                return
            self.targets.pop()
            self.stores.add(entry)
        if not self.stores:
            self.finish(node, self.report, now)

    def _count(self, status: str) -> None:
        if status == "OK":
            self.report.stored += 1
        else:
            self.report.refused[status] = self.report.refused.get(status, 0) + 1

    def on_answer(self, node: DhtNode, entry: PendingRequest, message: Any, now: float) -> None:
        if not self.storing:
            super().on_answer(node, entry, message, now)
            return
        if entry not in self.stores:
            return  # a lookup request answering late: the lookup is over
        self.stores.discard(entry)
        if isinstance(message, StoreResult):
            self._count(StoreStatus(message.status).name)
        elif isinstance(message, Error):
            self._count("ERROR")
        else:
            self._count("OK")
        self.pump(node, now)

    def on_missed(self, node: DhtNode, entry: PendingRequest, failed: bool, now: float) -> None:
        if not self.storing:
            super().on_missed(node, entry, failed, now)
            return
        if failed and entry in self.stores:
            self.stores.discard(entry)
            self.report.unanswered += 1
            self.pump(node, now)


class PutQuery(_StoreToClosest):
    kind = "put"

    def __init__(self, query_id: int, node: DhtNode, key: bytes, record: Any, *,
                 cas: int | None = None, internal: bool = False) -> None:
        super().__init__(query_id, node, key, internal=internal)
        self.record = record
        self.cas = cas

    def store_locally(self, node: DhtNode, now: float) -> str:
        status = node.values.store(self.target, self.record, publisher=node.own_id,
                                   cas=self.cas, now=now)
        return StoreStatus(status).name

    def build_store(self, txid: bytes) -> Any:
        return Store(txid=txid, record=self.record, cas=self.cas)


class ProvideQuery(_StoreToClosest):
    kind = "provide"

    def store_locally(self, node: DhtNode, now: float) -> str | None:
        if node.address is None:
            return None  # bound to a wildcard address: peers learn ours, we don't
        added = node.providers.add(self.target, node.own_id, node.address, now=now)
        return "OK" if added else "REFUSED_FULL"

    def build_store(self, txid: bytes) -> Any:
        return AddProvider(txid=txid, key=self.target)


class FindProvidersQuery(LookupQuery):
    kind = "find_providers"

    def __init__(self, query_id: int, node: DhtNode, key: bytes, count: int) -> None:
        super().__init__(query_id, node, key)
        self.count = count
        self.found: dict[bytes, Address] = {}

    def start(self, node: DhtNode, now: float) -> None:
        self.found.update(node.providers.get(self.target, self.count, now=now))
        if len(self.found) >= self.count:
            self.finish(node, list(self.found.items())[: self.count], now)
        else:
            self.pump(node, now)

    def build(self, txid: bytes) -> Any:
        return GetProviders(txid=txid, key=self.target, count=min(self.count, 255))

    def absorb(self, node: DhtNode, peer_id: bytes, message: Any, now: float) -> None:
        if isinstance(message, Providers):
            for contact in message.providers:
                if len(self.found) < self.count:
                    self.found.setdefault(contact.node_id, contact.address)
            if len(self.found) >= self.count:
                self.lookup.stop()

    def contacts_of(self, message: Any) -> list[tuple[bytes, Address]]:
        return _pairs(message.contacts) if isinstance(message, (Providers, Nodes)) else []

    def lookup_finished(self, node: DhtNode, now: float) -> None:
        node.table.touch_bucket(self.target, now=now)
        self.finish(node, list(self.found.items())[: self.count], now)


class PingQuery(Query):
    """One PING; the result is the round trip, or ``None`` if it went unanswered."""

    kind = "ping"

    def __init__(self, query_id: int, peer_id: bytes, address: Address, *,
                 internal: bool = False) -> None:
        super().__init__(query_id, internal=internal)
        self.peer_id = peer_id
        self.address = address
        self.sent = False
        self.sent_at = 0.0

    def pump(self, node: DhtNode, now: float) -> None:
        if not self.sent and not self.done:
            if node._request(self.peer_id, self.address, lambda txid: Ping(txid=txid),
                             self, now) is not None:
                self.sent = True
                self.sent_at = now

    def on_answer(self, node: DhtNode, entry: PendingRequest, message: Any, now: float) -> None:
        self.finish(node, now - self.sent_at, now)

    def on_missed(self, node: DhtNode, entry: PendingRequest, failed: bool, now: float) -> None:
        if failed:
            self.finish(node, None, now)
