"""One DHT member, sans-I/O: messages in, messages out, a timer, query results.

:class:`DhtNode` knows nothing of sessions or sockets. Its owner (the overlay,
or the message-level simulator) hands it every DHT message that arrived on an
authenticated session with :meth:`DhtNode.receive` — the ``peer_id`` given is
the session's proven peer, so every answer provably comes from the id it
claims — and carries out what :meth:`DhtNode.messages_to_send` returns, opening
sessions as needed. A peer whose session cannot be set up is reported with
:meth:`DhtNode.peer_unreachable`.

Trust: only peers that talked to us over their own session enter the routing
table; ids a lookup learns from other nodes' answers are candidates until their
first answer (which needs a handshake, proving the id). A request carried by a
handshake INITIATION (:meth:`DhtNode.answer_early`) comes from the holder of the
id's key but not yet from a proven member: it is answered (the answer is sealed
for members only) and the peer enters the table only once its session is
confirmed (:meth:`DhtNode.peer_confirmed`).

What peers can fill is bounded: the routing table (bucket size, IP and subnet
limits), the value and provider stores (records, bytes, per-publisher limits),
our pending requests, and each peer's request rate (a token bucket).
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import DecodeError, DhtBusyError, EncodeError, ValueTooLargeError
from ..events import DhtQueryCompleted
from .config import DhtConfig
from .messages import (
    AddProvider,
    Contact,
    Error,
    ErrorCode,
    FindNode,
    FindValue,
    GetProviders,
    ImmutableValue,
    Nodes,
    Ping,
    Pong,
    Providers,
    Store,
    StoreResult,
    StoreStatus,
    UnsupportedVersionError,
    ValueFound,
    decode,
    encode,
    immutable_key,
    mutable_key,
)
from .queries import (
    FindNodeQuery,
    FindProvidersQuery,
    GetQuery,
    PingQuery,
    ProvideQuery,
    PutQuery,
    Query,
)
from .records import PROVIDER, ProviderStore, Republisher, ValueStore, record_key, sign_mutable
from .routing import RoutingTable, SeenOutcome, distance
from .rpc import RpcManager

__all__ = ["DhtNode", "DhtBusyError"]

Address = Any


class _TokenBucket:
    __slots__ = ("tokens", "at", "told_at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at
        self.told_at = -1.0  # when the peer last got Error(RATE_LIMITED)


#: A peer over its rate hears so at most this often; its other requests are
#: dropped unanswered (an answer per request would be a reply flood of our own).
RATE_LIMITED_NOTICE_INTERVAL = 1.0


class _HandOffs:
    """Owner of the STOREs that give newcomers their records: counts those in
    flight, so hand-offs never take more than their share of pending requests."""

    __slots__ = ("in_flight",)
    done = False

    def __init__(self) -> None:
        self.in_flight = 0

    def on_answer(self, node: Any, entry: Any, message: Any, now: float) -> None:
        self.in_flight -= 1

    def on_missed(self, node: Any, entry: Any, failed: bool, now: float) -> None:
        if failed:
            self.in_flight -= 1


class DhtNode:
    """The DHT engine of one node.

    :param own_id: this node's id (its X25519 public key).
    :param identity: the node's :class:`~stt_proto.identity.Identity`, needed only
        to sign mutable values.
    :param rng: source of random bytes (transaction ids, refresh targets).
    """

    def __init__(self, own_id: bytes, config: DhtConfig | None = None, *,
                 identity: Any = None, rng: Callable[[int], bytes] = os.urandom) -> None:
        if len(own_id) != 32:
            raise ValueError("own_id must be 32 bytes")
        self.own_id = bytes(own_id)
        self.config = config = config or DhtConfig()
        self.identity = identity
        self.address: Address = None
        """Our address as peers see it (set by the owner; needed to provide)."""
        self._rng = rng
        self.table = RoutingTable(
            self.own_id, k=config.k, replacement_cache_size=config.replacement_cache_size,
            max_failures=config.max_failures, max_per_ip_per_bucket=config.max_per_ip_per_bucket,
            max_per_subnet=config.max_per_subnet, refresh_interval=config.refresh_interval,
            rng=random.Random(int.from_bytes(rng(8), "big")))
        self.values = ValueStore(
            max_value_bytes=config.max_value_bytes, max_records=config.max_records,
            max_bytes=config.max_record_bytes,
            max_records_per_publisher=config.max_records_per_publisher, ttl=config.record_ttl)
        self.providers = ProviderStore(
            max_keys=config.max_provider_keys, max_providers_per_key=config.max_providers_per_key,
            max_keys_per_provider=config.max_keys_per_provider, ttl=config.record_ttl)
        self.rpc = RpcManager(config, rng)
        self._queries: dict[int, Query] = {}
        self._next_query = 1
        self._app_queries = 0
        self._internal_queries = 0
        self._deferred: list[Callable[[float], None]] = []
        self._events: list[DhtQueryCompleted] = []
        self._rates: OrderedDict[bytes, _TokenBucket] = OrderedDict()
        # Peers answered early, until their session is confirmed (peer_confirmed);
        # as many as the rate limiter tracks, the oldest forgotten.
        self._early_peers: OrderedDict[bytes, None] = OrderedDict()
        # What we published ourselves, republished every republish_interval
        # (bounded: max_records of our own).
        self.own = Republisher(republish_interval=config.republish_interval,
                               max_records=config.max_records)
        self._next_refresh: float | None = None
        self._handoffs = _HandOffs()
        self.stats: dict[str, int] = {
            "messages_received": 0, "messages_malformed": 0, "messages_bad_version": 0,
            "requests_answered": 0, "requests_rate_limited": 0, "requests_refused_busy": 0,
            "records_invalid": 0, "handoff_records_sent": 0, "lookups_started": 0,
            "internal_queries_deferred": 0, "republished": 0, "contacts_refused": 0,
            "peers_unreachable": 0, "answers_unencodable": 0, "requests_answered_early": 0,
        }

    # -- the owner's side: input ------------------------------------------------------

    def receive(self, peer_id: bytes, address: Address, data: bytes, *, now: float) -> None:
        """A DHT message from ``peer_id`` (authenticated by its session) at ``address``."""
        self.stats["messages_received"] += 1
        try:
            message = decode(data)
        except UnsupportedVersionError as exc:
            self.stats["messages_bad_version"] += 1
            if exc.is_request and exc.txid is not None and self._allow(peer_id, now):
                self._send(peer_id, address, Error(
                    txid=exc.txid, code=ErrorCode.UNSUPPORTED_VERSION, retry_after_ms=0))
            return
        except DecodeError:
            self.stats["messages_malformed"] += 1
            return
        self._seen(peer_id, address, now)
        if message.is_request:
            bucket = self._bucket(peer_id, now)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                self._answer(peer_id, address, message, now)
            else:
                self.stats["requests_rate_limited"] += 1
                if now - bucket.told_at >= RATE_LIMITED_NOTICE_INTERVAL:
                    bucket.told_at = now
                    self._send(peer_id, address, Error(
                        txid=message.txid, code=ErrorCode.RATE_LIMITED,
                        retry_after_ms=int(RATE_LIMITED_NOTICE_INTERVAL * 1000)))
            return
        entry = self.rpc.match(peer_id, message, now)
        if entry is not None and entry.owner is not None and not entry.owner.done:
            entry.owner.on_answer(self, entry, message, now)
        self._flush(now)

    def answer_early(self, peer_id: bytes, address: Address, data: bytes, *, max_bytes: int,
                     now: float) -> bytes | None:
        """Answer a request that arrived inside a handshake INITIATION from
        ``peer_id`` (``docs/protocol.md`` 6.9), in at most ``max_bytes`` bytes.

        Only requests that change nothing here are answered (PING and the
        FIND_* and GET_PROVIDERS lookups), within the peer's request rate; the
        peer does not enter the routing table, since the handshake has not yet
        proven it a member. ``None``: not answered early; the peer sends the
        request again over the session and :meth:`receive` handles it.
        """
        try:
            message = decode(data)
        except DecodeError:
            return None
        if not isinstance(message, (Ping, FindNode, FindValue, GetProviders)):
            return None
        if not self._allow(peer_id, now):
            return None
        answer = self._answer_message(peer_id, address, message, now)
        encoded = None if answer is None else self._encode_fitting(answer, max_bytes)
        if encoded is not None:
            self.stats["requests_answered_early"] += 1
            early = self._early_peers
            early[peer_id] = None
            early.move_to_end(peer_id)
            if len(early) > self.config.max_rate_tracked_peers:
                early.popitem(last=False)
        return encoded

    def peer_confirmed(self, peer_id: bytes, address: Address, *, now: float) -> None:
        """The session of a peer we answered early (:meth:`answer_early`) is
        confirmed: it is a member, and its request counts as contact now. A
        joining node may send nothing more, so without this its neighbours
        would never learn of it."""
        if self._early_peers.pop(peer_id, 0) is None:
            self._seen(peer_id, address, now)
            self._flush(now)

    def peer_unreachable(self, peer_id: bytes, *, now: float) -> None:
        """No session to ``peer_id`` could be set up: its requests fail now."""
        self.stats["peers_unreachable"] += 1
        for entry in self.rpc.fail_peer(peer_id):
            self._failed(entry, now)
        self._flush(now)

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.rpc.get_timer(), self.values.next_expiry(),
                                 self.providers.next_expiry(), self._next_refresh,
                                 self.own.next_due()) if t is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, *, now: float) -> None:
        for entry, failed in self.rpc.handle_timer(now):
            if failed:
                self._failed(entry, now)
            elif entry.owner is not None and not entry.owner.done and entry.transmissions == 2:
                entry.owner.on_missed(self, entry, False, now)
        self.values.expire(now=now)
        self.providers.expire(now=now)
        if self._next_refresh is not None and self._next_refresh <= now:
            self._refresh(now)
        self._republish(now)
        self._flush(now)

    # -- the owner's side: output -----------------------------------------------------

    def messages_to_send(self) -> list[tuple[bytes, Address, bytes]]:
        """``(peer_id, address, payload)`` for each DHT frame to send."""
        out = self.rpc.outgoing
        self.rpc.outgoing = []
        return out

    def next_event(self) -> DhtQueryCompleted | None:
        return self._events.pop(0) if self._events else None

    # -- operations ----------------------------------------------------------------------

    def bootstrap(self, seeds: Iterable[tuple[bytes, Address]], *, now: float) -> int:
        """Join through ``seeds``: a lookup of our own id, then a refresh of every bucket."""
        seeds = [(bytes(node_id), address) for node_id, address in seeds
                 if bytes(node_id) != self.own_id]
        return self._start(FindNodeQuery(self._new_id(), self, self.own_id, seeds=seeds,
                                         kind="bootstrap"), now)

    def find_node(self, target: bytes, *, now: float, exact: bool = False) -> int:
        return self._start(FindNodeQuery(self._new_id(), self, _key(target), exact=exact), now)

    def get(self, key: bytes, *, now: float) -> int:
        return self._start(GetQuery(self._new_id(), self, _key(key)), now)

    def put(self, value: bytes, *, now: float) -> tuple[int, bytes]:
        """Store an immutable value; returns ``(query_id, key)``."""
        value = bytes(value)
        self._check_value(value)
        self._check_room()
        key = immutable_key(value)
        record = ImmutableValue(value=value)
        self.own.add(key, record, now=now)
        return self._start(PutQuery(self._new_id(), self, key, record), now), key

    def put_mutable(self, value: bytes, *, salt: bytes = b"", seq: int | None = None,
                    cas: int | None = None, now: float) -> tuple[int, bytes]:
        """Store a value signed by this node under ``mutable_key(own_id, salt)``.

        ``seq`` defaults to one more than the highest this node knows locally.
        """
        if self.identity is None:
            raise ValueError("put_mutable needs the node's identity to sign")
        value = bytes(value)
        self._check_value(value)
        self._check_room()
        key = mutable_key(self.own_id, bytes(salt))
        if seq is None:
            known = self.values.get(key, now=now)
            own = self.own.get(key)
            seq = 1 + max(getattr(known, "seq", 0), getattr(own, "seq", 0))
        record = sign_mutable(self.identity, value, salt=bytes(salt), seq=seq)
        self.own.add(key, record, now=now)
        return self._start(PutQuery(self._new_id(), self, key, record, cas=cas), now), key

    def provide(self, key: bytes, *, now: float) -> int:
        key = _key(key)
        self._check_room()
        self.own.add(key, PROVIDER, now=now)
        return self._start(ProvideQuery(self._new_id(), self, key), now)

    def stop_providing(self, key: bytes) -> None:
        """Stop republishing ``key`` (records at other nodes expire on their own)."""
        self.own.remove(_key(key), provider=True)

    def find_providers(self, key: bytes, count: int = 20, *, now: float) -> int:
        if not 1 <= count <= 255:
            raise ValueError("count must be within 1..255")
        return self._start(FindProvidersQuery(self._new_id(), self, _key(key), count), now)

    def ping(self, peer_id: bytes, address: Address, *, now: float) -> int:
        return self._start(PingQuery(self._new_id(), bytes(peer_id), address), now)

    def cancel(self, query_id: int) -> None:
        """Give up ``query_id``: no event follows; its requests' answers are ignored."""
        query = self._queries.pop(query_id, None)
        if query is None or query.done:
            return
        query.done = True
        if query.internal:
            self._internal_queries -= 1
        else:
            self._app_queries -= 1

    def statistics(self) -> dict[str, int]:
        stats = dict(self.stats)
        stats.update(self.rpc.stats)
        stats.update({f"table_{k}": v for k, v in self.table.statistics().items()})
        stats.update({f"values_{k}": v for k, v in self.values.statistics().items()})
        stats.update({f"providers_{k}": v for k, v in self.providers.statistics().items()})
        stats["pending_requests"] = len(self.rpc)
        stats["queries_running"] = len(self._queries)
        return stats

    # -- queries --------------------------------------------------------------------------

    def _new_id(self) -> int:
        query_id = self._next_query
        self._next_query += 1
        return query_id

    def _check_value(self, value: bytes) -> None:
        if len(value) > self.config.max_value_bytes:
            raise ValueTooLargeError(f"value of {len(value)} bytes exceeds max_value_bytes "
                             f"({self.config.max_value_bytes})")

    def _check_room(self) -> None:
        if self._app_queries >= self.config.max_lookups:
            raise DhtBusyError(f"{self._app_queries} DHT operations are running "
                               f"(max_lookups={self.config.max_lookups})")

    def _start(self, query: Query, now: float) -> int:
        if query.internal:
            self._internal_queries += 1
        else:
            self._check_room()
            self._app_queries += 1
        self.stats["lookups_started"] += 1
        self._queries[query.query_id] = query
        query.start(self, now)
        self._flush(now)
        return query.query_id

    def _query_done(self, query: Query, now: float) -> None:
        self._queries.pop(query.query_id, None)
        if query.internal:
            self._internal_queries -= 1
        else:
            self._app_queries -= 1
            self._events.append(DhtQueryCompleted(query_id=query.query_id, kind=query.kind,
                                                  result=query.result))
        if query.kind == "bootstrap":
            # A joining node learns the rest of the network by refreshing every
            # bucket, as the paper's join does.
            for target in self.table.refresh_targets(now=now, force=True):
                self._internal(lambda at, t=target: FindNodeQuery(self._new_id(), self, t,
                                                                  internal=True), now)
            if self._next_refresh is None:
                self._next_refresh = now + self.config.refresh_interval

    def _internal(self, make: Callable[[float], Query], now: float) -> None:
        """Run a query the node needs for itself, or queue it when too many run."""
        if self._internal_queries >= self.config.max_internal_lookups:
            self.stats["internal_queries_deferred"] += 1
            self._deferred.append(make)
            return
        self._start(make(now), now)

    def _request(self, peer_id: bytes, address: Address, build: Callable[[bytes], Any],
                 owner: Query | None, now: float, attempts: int | None = None,
                 patience: float = 0.0) -> Any:
        return self.rpc.request(peer_id, address, build, owner=owner, now=now, attempts=attempts,
                                patience=patience)

    def _failed(self, entry: Any, now: float) -> None:
        self.table.failed(entry.peer_id, now=now)
        if entry.owner is not None and not entry.owner.done:
            entry.owner.on_missed(self, entry, True, now)

    def _flush(self, now: float) -> None:
        """Let waiting queries use the room answers and failures freed."""
        while self._deferred and self._internal_queries < self.config.max_internal_lookups:
            self._start(self._deferred.pop(0)(now), now)
        if self.rpc.has_room():
            for query in list(self._queries.values()):
                if not query.done:
                    query.pump(self, now)
                if not self.rpc.has_room():
                    break

    # -- serving peers ------------------------------------------------------------------

    def _allow(self, peer_id: bytes, now: float) -> bool:
        bucket = self._bucket(peer_id, now)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _bucket(self, peer_id: bytes, now: float) -> _TokenBucket:
        """``peer_id``'s request allowance, refilled up to ``now``."""
        rate = self.config.requests_per_second
        bucket = self._rates.get(peer_id)
        if bucket is None:
            bucket = self._rates[peer_id] = _TokenBucket(2 * rate, now)
            if len(self._rates) > self.config.max_rate_tracked_peers:
                self._rates.popitem(last=False)
        else:
            self._rates.move_to_end(peer_id)
            bucket.tokens = min(2 * rate, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        return bucket

    def _seen(self, peer_id: bytes, address: Address, now: float) -> None:
        result = self.table.seen(peer_id, address, now=now)
        if result.outcome is SeenOutcome.ADDED:
            if self._next_refresh is None:  # the first contact: buckets now need refreshing
                self._next_refresh = now + self.config.refresh_interval
            self._hand_off(peer_id, address, now)
        elif result.outcome is SeenOutcome.CACHED and result.ping is not None:
            # Ping the bucket's least recently seen contact: if it fails, the
            # table evicts it and promotes a replacement. The table asks once
            # per bucket until the answer window passes.
            oldest = result.ping
            self.rpc.request(oldest.node_id, oldest.address, lambda txid: Ping(txid=txid),
                             owner=None, now=now)
        elif result.outcome is SeenOutcome.REFUSED:
            self.stats["contacts_refused"] += 1

    def _hand_off(self, peer_id: bytes, address: Address, now: float) -> None:
        """Give a newcomer the values it is closer to than we are (the paper's join).

        Hand-offs use at most a quarter of ``max_pending_requests``, so newcomers
        that never answer (Sybils cost nothing) cannot starve lookups."""
        budget = self.config.max_handoff_records
        share = self.config.max_pending_requests // 4
        handoffs = self._handoffs
        if not budget or handoffs.in_flight >= share:
            return
        for key, record in self.values.items(now=now):
            if distance(peer_id, key) < distance(self.own_id, key):
                entry = self.rpc.request(
                    peer_id, address, lambda txid, r=record: Store(txid=txid, record=r, cas=None),
                    owner=handoffs, now=now)
                if entry is None:
                    return
                handoffs.in_flight += 1
                self.stats["handoff_records_sent"] += 1
                budget -= 1
                if not budget or handoffs.in_flight >= share:
                    return

    def _closest_contacts(self, target: bytes, exclude: bytes) -> list[Contact]:
        contacts = []
        for c in self.table.closest(target, self.config.k, exclude=(exclude,)):
            try:
                contacts.append(Contact(node_id=c.node_id, address=c.address))
            except EncodeError:  # an address the wire cannot carry: keep it to ourselves
                continue
        return contacts

    def _answer(self, peer_id: bytes, address: Address, message: Any, now: float) -> None:
        self.stats["requests_answered"] += 1
        answer = self._answer_message(peer_id, address, message, now)
        if answer is not None:
            self._send(peer_id, address, answer)

    def _answer_message(self, peer_id: bytes, address: Address, message: Any,
                        now: float) -> Any:
        txid = message.txid
        if isinstance(message, Ping):
            try:
                answer: Any = Pong(txid=txid, observed_address=address)
            except EncodeError:
                self.stats["answers_unencodable"] += 1
                return None
        elif isinstance(message, FindNode):
            answer = Nodes(txid=txid, contacts=self._closest_contacts(message.target, peer_id))
        elif isinstance(message, FindValue):
            record = self.values.get(message.key, now=now)
            answer = ValueFound(txid=txid, record=record,
                                contacts=self._closest_contacts(message.key, peer_id))
        elif isinstance(message, Store):
            key = record_key(message.record) or bytes(32)  # None: refused as invalid
            status = self.values.store(key, message.record,
                                       publisher=peer_id, cas=message.cas, now=now)
            answer = StoreResult(txid=txid, status=StoreStatus(status))
        elif isinstance(message, AddProvider):
            added = self.providers.add(message.key, peer_id, address, now=now)
            answer = StoreResult(txid=txid,
                                 status=StoreStatus.OK if added else StoreStatus.REFUSED_FULL)
        elif isinstance(message, GetProviders):
            providers = []
            for node_id, addr in self.providers.get(message.key,
                                                    min(message.count, self.config.k), now=now):
                try:
                    providers.append(Contact(node_id=node_id, address=addr))
                except EncodeError:  # a provider seen at an address the wire cannot carry
                    continue
            answer = Providers(txid=txid, providers=providers,
                               contacts=self._closest_contacts(message.key, peer_id))
        else:  # a request type this version does not serve
            answer = Error(txid=txid, code=ErrorCode.MALFORMED, retry_after_ms=0)
        return answer

    def _send(self, peer_id: bytes, address: Address, message: Any) -> None:
        """Queue an answer, with fewer contacts if it would not fit in one packet."""
        data = self._encode_fitting(message, self.config.max_message_bytes)
        if data is not None:
            self.rpc.outgoing.append((peer_id, address, data))

    def _encode_fitting(self, message: Any, max_bytes: int) -> bytes | None:
        """``message`` encoded in at most ``max_bytes``, dropping its farthest
        contacts as needed; ``None`` (counted) if it cannot fit."""
        try:
            data = encode(message)
            while len(data) > max_bytes and getattr(message, "contacts", ()):
                message = dataclasses.replace(message, contacts=message.contacts[:-1])
                data = encode(message)
        except EncodeError:  # an address the wire cannot carry (a zoned IPv6 one, ...)
            self.stats["answers_unencodable"] += 1
            return None
        if len(data) > max_bytes:
            self.stats["answers_unencodable"] += 1
            return None
        return data

    # -- maintenance ----------------------------------------------------------------------

    def _refresh(self, now: float) -> None:
        self._next_refresh = now + self.config.refresh_interval
        for target in self.table.refresh_targets(now=now):
            self._internal(lambda at, t=target: FindNodeQuery(self._new_id(), self, t,
                                                              internal=True), now)

    def _republish(self, now: float) -> None:
        for key, item in self.own.due(now=now):
            self.stats["republished"] += 1
            if item is PROVIDER:
                self._internal(lambda at, k=key: ProvideQuery(self._new_id(), self, k,
                                                              internal=True), now)
            else:
                self._internal(lambda at, k=key, r=item: PutQuery(self._new_id(), self, k, r,
                                                                  internal=True), now)

    def records_published(self) -> list[bytes]:
        """Keys of the values this node published and republishes."""
        return [key for (key, provides) in self.own._own if not provides]


def _key(key: bytes) -> bytes:
    key = bytes(key)
    if len(key) != 32:
        raise ValueError("keys and node ids are 32 bytes")
    return key
