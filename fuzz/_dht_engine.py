"""The program and the checks of ``fuzz_dht_engine.py``, without atheris, so that
``tests/dht/test_fuzz_engine.py`` replays the corpus and any finding through the
very same code.

A fuzz input is read (with ``_harness.Ops``) as one configuration byte and then
up to :data:`MAX_OPS` operations on one :class:`~stt_proto.dht.node.DhtNode`
whose routing table, value store and provider store start populated. Every
message it receives comes from an authenticated peer (the owner hands the node
the session's proven id), so the peer may send anything at all, but always
under its own id. The operation byte, modulo :data:`OP_COUNT`, picks:

``OP_RAW``        a peer sends raw fuzzer bytes;
``OP_REQUEST``    a peer sends a valid request built from fuzzer fields;
``OP_ANSWER``     the peer a pending request went to answers it validly (contacts
                  near the target, verified or forged records, any store status),
                  which drives lookups, gets, puts, CAS and rollbacks, providers;
``OP_ANSWER_BAD`` the same answer with one to four edits of its encoding;
``OP_MISMATCH``   a valid answer from the wrong peer or under the wrong txid;
``OP_TIME``       time advances (or jumps to the node's timer) and the timer fires;
``OP_APP``        the application starts find_node, get, put, put_mutable,
                  provide, find_providers, ping or bootstrap, or stops providing;
``OP_UNREACHABLE`` the owner reports a peer's session could not be set up;
``OP_BURST``      one peer sends the same request many times (the rate limit);
``OP_GENUINE``    a peer sends a genuine codec seed message, mutated.

Invariants, checked after every operation (:func:`check_node`, :func:`check_outgoing`,
:func:`check_events`) and at the end (:func:`drain`):

* ``receive``, ``handle_timer`` and ``peer_unreachable`` never raise; the
  application's operations raise only their documented errors;
* ``get_timer()`` is ``None`` or a finite float ``>= 0``;
* every outgoing payload decodes and is at most ``max_message_bytes``, and goes
  to a 32-byte peer id other than our own;
* every limit holds: contacts at most ``k`` per bucket, replacements at most
  ``replacement_cache_size`` per bucket, pending requests, running lookups
  (application and internal), records, record bytes, records per publisher,
  provider keys, providers per key, keys per provider, tracked request rates,
  our own republished records;
* only ids that talked to the node over their own session are in its routing
  table (never one an answer merely named), and never the node itself;
* every completion event belongs to an application operation, comes once, has
  that operation's kind and a sane result: ``find_node``/``bootstrap`` at most
  ``k`` distinct nodes, nearest first, without us; ``get`` ``None`` or a record
  that verifies under the key; ``put``/``provide`` a report for the key whose
  outcomes add up to at most ``k``; ``find_providers`` at most ``count``
  distinct providers; ``ping`` ``None`` or a round trip ``>= 0``;
* liveness: once the input is over and nobody answers any more, every
  application operation ends within a bounded number of timer steps.
"""

from __future__ import annotations

import math
import random

from _harness import Ops, seeded_rng
from make_dht_seeds import genuine_messages
from stt_proto.dht import messages as m
from stt_proto.dht.config import DhtConfig
from stt_proto.dht.node import DhtNode
from stt_proto.dht.queries import StoreReport
from stt_proto.dht.records import sign_mutable, verify_record
from stt_proto.dht.routing import MAX_BUCKETS, distance
from stt_proto.dht.rpc import MAX_RTT_ENTRIES
from stt_proto.errors import DecodeError, DhtBusyError, LocalProtocolError
from stt_proto.events import DhtQueryCompleted
from stt_proto.identity import Identity

OP_RAW, OP_REQUEST, OP_ANSWER, OP_ANSWER_BAD, OP_MISMATCH, OP_TIME, OP_APP, \
    OP_UNREACHABLE, OP_BURST, OP_GENUINE = range(10)
OP_COUNT = 10
MAX_OPS = 64
#: Timer steps :func:`drain` allows the application's operations to end in.
DRAIN_STEPS = 2_000

#: Small limits, so that a short input reaches every one of them.
CONFIG = dict(
    k=4, alpha=2, refresh_interval=60.0, rpc_attempts=2, min_rpc_timeout=0.05,
    max_rpc_timeout=2.0, initial_rtt=0.2, max_pending_requests=12, max_lookups=4,
    max_internal_lookups=2, requests_per_second=4.0, max_rate_tracked_peers=4,
    replacement_cache_size=2, max_failures=2, max_per_ip_per_bucket=2, max_per_subnet=3,
    max_value_bytes=256, max_message_bytes=600, record_ttl=100.0, republish_interval=40.0,
    max_records=6, max_record_bytes=1_500, max_records_per_publisher=3, max_provider_keys=4,
    max_providers_per_key=2, max_keys_per_provider=2, max_handoff_records=2,
)

_r = random.Random(20261205)
NODE_IDENTITY = Identity.generate(seeded_rng(1))
OWN_ID = NODE_IDENTITY.node_id
OWN_ADDRESS = ("198.51.100.1", 9000)
AUTHORS = [Identity.generate(seeded_rng(2)), Identity.generate(seeded_rng(3))]


def _address(i: int) -> tuple[str, int]:
    """Public IPv4 in a few /24s, some IPv6, some LAN (exempt from the subnet limits)."""
    if i % 5 == 4:
        return (f"2001:db8::{i + 1:x}", 4000 + i)
    if i % 5 == 3:
        return (f"10.0.{i}.1", 4000 + i)
    return (f"203.0.{113 + i % 3}.{i + 1}", 4000 + i)


#: Peers and the nodes answers may name: (id, address). The first 16 start in
#: the routing table.
POOL = [(_r.randbytes(32), _address(i)) for i in range(24)]
POOL_IDS = [node_id for node_id, _ in POOL]
VALUES = [b"", b"hello", b"x" * 200, b"y" * 256]
SALTS = [b"", b"s", b"profile"]


def _records() -> list:
    records = [m.ImmutableValue(value=v) for v in VALUES]
    for author in (*AUTHORS, NODE_IDENTITY):
        for salt in SALTS[:2]:
            for seq in (1, 2, 5):
                records.append(sign_mutable(author, b"v%d" % seq, salt=salt, seq=seq))
    good = records[-1]
    # A forged signature and a value too large for this node's store.
    records.append(m.MutableValue(signing_public_key=good.signing_public_key, salt=good.salt,
                                  seq=9, value=good.value, signature=bytes(64)))
    records.append(m.ImmutableValue(value=b"z" * 400))
    return records


RECORDS = _records()
KEYS = ([m.immutable_key(v) for v in VALUES]
        + [m.mutable_key(a.node_id, s) for a in (*AUTHORS, NODE_IDENTITY) for s in SALTS]
        + POOL_IDS[:4] + [OWN_ID, bytes(32), b"\xff" * 32])
GENUINE = [m.encode(message) for message in genuine_messages()]
_OWNER_ADDRESSES = [
    ("2001:db8::99", 5000, 0, 0),       # asyncio's IPv6 4-tuple
    ("fe80::1%eth0", 5001),             # a zoned address the wire cannot carry
    ("127.0.0.1", 5002),
]


def make_node(config_byte: int) -> tuple[DhtNode, float]:
    """The node every input starts from, and the time it starts at."""
    config = DhtConfig(disjoint_paths=1 + (config_byte & 1), **CONFIG)
    node = DhtNode(OWN_ID, config, identity=NODE_IDENTITY, rng=seeded_rng(7))
    node.address = OWN_ADDRESS
    for node_id, address in POOL[:16]:
        node.table.seen(node_id, address, now=0.0)
    for i, record in enumerate(RECORDS[:8:3]):
        node.values.store(_key_of(record), record, publisher=POOL_IDS[i], now=0.0)
    for i in range(3):
        node.providers.add(KEYS[i], POOL_IDS[i], POOL[i][1], now=0.0)
    return node, 1.0


def _key_of(record) -> bytes:
    if type(record) is m.ImmutableValue:
        return m.immutable_key(record.value)
    author = next(a for a in (*AUTHORS, NODE_IDENTITY)
                  if a.signing_public_key == record.signing_public_key)
    return m.mutable_key(author.node_id, record.salt)


class Run:
    """One input's program against one node, with the bookkeeping the checks need."""

    def __init__(self, data: bytes) -> None:
        self.ops = Ops(data[1:])
        self.node, self.now = make_node(data[0] if data else 0)
        # Ids that proved themselves by sending over their own session.
        self.authenticated = {node_id for node_id, _ in POOL[:16]}
        self.started: dict[int, tuple[str, bytes, int]] = {}
        self.completed: set[int] = set()
        self.results: dict[int, object] = {}
        self.verified: dict[bytes, object] = {}

    # -- fuzzer-chosen pieces ----------------------------------------------------------

    def id32(self) -> bytes:
        return self.ops.take(32).ljust(32, b"\0")

    def address(self):
        b = self.ops.byte()
        if b < 0xE0:
            return POOL[b % len(POOL)][1]
        if b < 0xF0:
            return _OWNER_ADDRESSES[b % len(_OWNER_ADDRESSES)]
        raw = self.ops.take(4).ljust(4, b"\0")
        return (".".join(str(x) for x in raw), 1 + self.ops.u16() % 65535)

    def peer(self) -> tuple[bytes, object]:
        """An authenticated sender (never ourselves: no session reaches ourselves)."""
        b = self.ops.byte()
        if b & 0x40:
            node_id = self.id32()
            if node_id == OWN_ID:
                node_id = POOL_IDS[0]
        else:
            node_id = POOL_IDS[b % len(POOL_IDS)]
        address = self.address() if b & 0x80 else dict(POOL).get(node_id, POOL[0][1])
        return node_id, address

    def key(self) -> bytes:
        b = self.ops.byte()
        return self.id32() if b >= 0xF0 else KEYS[b % len(KEYS)]

    def near(self, target: bytes) -> bytes:
        """An id sharing a long prefix with ``target``: lookups make progress."""
        keep = 28 + self.ops.byte() % 4
        return target[:keep] + self.ops.take(32 - keep).ljust(32 - keep, b"\1")

    def contacts(self, target: bytes, most: int = 8) -> list[m.Contact]:
        out: dict[bytes, m.Contact] = {}
        for _ in range(self.ops.byte() % (most + 1)):
            c = self.ops.byte()
            kind = c % 4
            if kind == 0:
                node_id, address = POOL[(c >> 2) % len(POOL)]
            else:
                node_id = (self.near(target) if kind == 1 else
                           self.id32() if kind == 2 else OWN_ID)
                address = POOL[(c >> 2) % len(POOL)][1] if c & 0x80 else _address(c % 32)
            if node_id not in out:
                out[node_id] = m.Contact(node_id=node_id, address=address)
        return list(out.values())

    def record(self):
        b = self.ops.byte()
        return None if b % (len(RECORDS) + 1) == len(RECORDS) else RECORDS[b % (len(RECORDS) + 1)]

    def request(self, txid: bytes) -> m.Message:
        kind = self.ops.byte() % 7
        if kind == 0:
            return m.Ping(txid=txid)
        if kind == 1:
            return m.FindNode(txid=txid, target=self.key())
        if kind == 2:
            return m.FindValue(txid=txid, key=self.key())
        if kind == 3:
            record = self.record() or RECORDS[0]
            b = self.ops.byte()
            return m.Store(txid=txid, record=record, cas=None if b & 0x80 else b % 8)
        if kind == 4:
            return m.AddProvider(txid=txid, key=self.key())
        if kind == 5:
            return m.GetProviders(txid=txid, key=self.key(), count=1 + self.ops.byte() % 255)
        return m.Error(txid=txid, code=m.ErrorCode.BUSY, retry_after_ms=0)  # an answer, unasked

    def answer(self, request: m.Message, txid: bytes) -> m.Message:
        """A valid answer of the kind ``request`` expects (or an Error)."""
        b = self.ops.byte()
        if b >= 0xF0:
            return m.Error(txid=txid, code=m.ErrorCode(1 + b % 4), retry_after_ms=self.ops.u16())
        target = getattr(request, "target", None) or getattr(request, "key", None) or OWN_ID
        if isinstance(request, m.Ping):
            return m.Pong(txid=txid, observed_address=POOL[b % len(POOL)][1])
        if isinstance(request, m.FindNode):
            return m.Nodes(txid=txid, contacts=self.contacts(target))
        if isinstance(request, m.FindValue):
            return m.ValueFound(txid=txid, record=self.record(), contacts=self.contacts(target))
        if isinstance(request, (m.Store, m.AddProvider)):
            return m.StoreResult(txid=txid, status=m.StoreStatus(b % len(m.StoreStatus)))
        return m.Providers(txid=txid, providers=self.contacts(target, 4),
                           contacts=self.contacts(target))

    def pending(self):
        entries = list(self.node.rpc._pending.values())
        b = self.ops.byte()
        return entries[b % len(entries)] if entries else None

    # -- the program -------------------------------------------------------------------

    def receive(self, peer_id: bytes, address, data: bytes) -> None:
        try:
            m.decode(data)
        except DecodeError:
            pass
        else:
            self.authenticated.add(peer_id)
        self.node.receive(peer_id, address, data, now=self.now)

    def step(self) -> None:
        ops, node = self.ops, self.node
        op = ops.byte() % OP_COUNT
        if op == OP_RAW:
            peer_id, address = self.peer()
            self.receive(peer_id, address, ops.blob())
        elif op == OP_REQUEST:
            peer_id, address = self.peer()
            self.receive(peer_id, address, m.encode(self.request(ops.take(8).ljust(8, b"\0"))))
        elif op in (OP_ANSWER, OP_ANSWER_BAD, OP_MISMATCH):
            entry = self.pending()
            if entry is None:
                return
            peer_id, address, txid = entry.peer_id, entry.address, entry.txid
            if op == OP_MISMATCH:
                if ops.byte() & 1:
                    txid = ops.take(8).ljust(8, b"\0")
                else:
                    peer_id, address = self.peer()
            data = m.encode(self.answer(entry.message, txid))
            if op == OP_ANSWER_BAD:
                data = ops.mutate(data, insert=16, overwrite=4)
            self.receive(peer_id, address, data)
        elif op == OP_TIME:
            b = ops.byte()
            timer = node.get_timer()
            if b < 0x20 and timer is not None:
                self.now = max(self.now, timer)
            else:
                self.now += (0.0, 0.001, 0.03, 0.1, 0.3, 1.0, 2.5, 10.0, 41.0, 61.0, 101.0)[b % 11]
            node.handle_timer(now=self.now)
        elif op == OP_APP:
            self.app()
        elif op == OP_UNREACHABLE:
            entry = self.pending()
            peer_id = entry.peer_id if entry is not None and ops.byte() & 1 else self.peer()[0]
            node.peer_unreachable(peer_id, now=self.now)
        elif op == OP_BURST:
            peer_id, address = self.peer()
            data = m.encode(self.request(ops.take(8).ljust(8, b"\0")))
            for _ in range(ops.byte() % 32):
                self.receive(peer_id, address, data)
        else:
            peer_id, address = self.peer()
            original = GENUINE[ops.byte() % len(GENUINE)]
            self.receive(peer_id, address, ops.mutate(original, insert=16, overwrite=4))

    def app(self) -> None:
        ops, node, now = self.ops, self.node, self.now
        kind = ops.byte() % 9
        try:
            if kind == 0:
                target = self.key()
                qid = node.find_node(target, now=now, exact=bool(ops.byte() & 1))
                self.started[qid] = ("find_node", target, 0)
            elif kind == 1:
                key = self.key()
                self.started[node.get(key, now=now)] = ("get", key, 0)
            elif kind == 2:
                b = ops.byte()
                value = VALUES[b % len(VALUES)] if b < 0xF0 else ops.take(ops.u16() % 400)
                qid, key = node.put(value, now=now)
                self.started[qid] = ("put", key, 0)
            elif kind == 3:
                b = ops.byte()
                seq = None if b & 0x80 else b % 8
                cas = None if b & 0x40 else ops.byte() % 8
                qid, key = node.put_mutable(VALUES[b % len(VALUES)], salt=SALTS[b % len(SALTS)],
                                            seq=seq, cas=cas, now=now)
                self.started[qid] = ("put", key, 0)
            elif kind == 4:
                key = self.key()
                self.started[node.provide(key, now=now)] = ("provide", key, 0)
            elif kind == 5:
                key, count = self.key(), ops.byte()
                self.started[node.find_providers(key, count, now=now)] = ("find_providers",
                                                                          key, count)
            elif kind == 6:
                peer_id, address = self.peer()
                self.started[node.ping(peer_id, address, now=now)] = ("ping", peer_id, 0)
            elif kind == 7:
                seeds = [self.peer() for _ in range(ops.byte() % 4)]
                self.started[node.bootstrap(seeds, now=now)] = ("bootstrap", OWN_ID, 0)
            else:
                node.stop_providing(self.key())
        except (DhtBusyError, ValueError, LocalProtocolError):
            # The documented refusals: too many operations, a value over
            # max_value_bytes (a ValueError), a count outside 1..255, too many
            # own records to republish.
            pass

    def run(self) -> None:
        for _ in range(MAX_OPS):
            if not self.ops.more():
                break
            self.step()
            check(self)
        drain(self)


def check_node(node: DhtNode, authenticated: set[bytes],
               verified: dict[bytes, object] | None = None) -> None:
    config = node.config
    timer = node.get_timer()
    if timer is not None and not (isinstance(timer, float) and math.isfinite(timer)
                                  and timer >= 0):
        raise AssertionError(f"get_timer() = {timer!r}")
    table = node.table
    buckets = table.bucket_count()
    if not 1 <= buckets <= MAX_BUCKETS:
        raise AssertionError(f"{buckets} buckets")
    for bucket in table._buckets:
        if len(bucket.contacts) > config.k:
            raise AssertionError(f"a bucket of {len(bucket.contacts)} contacts, k = {config.k}")
        if len(bucket.replacements) > config.replacement_cache_size:
            raise AssertionError(f"{len(bucket.replacements)} replacements in a bucket")
    contacts = table.contacts()
    if len(table) != len(contacts) or len(contacts) > config.k * buckets:
        raise AssertionError(f"{len(table)} contacts in {buckets} buckets")
    for contact in contacts:
        if contact.node_id == node.own_id:
            raise AssertionError("the node is in its own routing table")
        if contact.node_id not in authenticated:
            raise AssertionError(f"{contact.node_id.hex()} entered the table on a peer's word")
    limits = {
        "pending requests": (len(node.rpc), config.max_pending_requests),
        "application lookups": (node._app_queries, config.max_lookups),
        "internal lookups": (node._internal_queries, config.max_internal_lookups),
        "records": (len(node.values), config.max_records),
        "record bytes": (node.values.statistics()["bytes"], config.max_record_bytes),
        "provider keys": (len(node.providers.keys()), config.max_provider_keys),
        "tracked request rates": (len(node._rates), config.max_rate_tracked_peers),
        "RTT estimates": (len(node.rpc._rtt), MAX_RTT_ENTRIES),
        "own records": (len(node.own), config.max_records),
    }
    for name, (value, limit) in limits.items():
        if not 0 <= value <= limit:
            raise AssertionError(f"{name}: {value} outside 0..{limit}")
    if len(node._queries) != node._app_queries + node._internal_queries:
        raise AssertionError(f"{len(node._queries)} queries, counted "
                             f"{node._app_queries} + {node._internal_queries}")
    for publisher, count in node.values._per_publisher.items():
        if count > config.max_records_per_publisher:
            raise AssertionError(f"{count} records charged to one publisher")
    for key, providers in node.providers._keys.items():
        if len(providers) > config.max_providers_per_key:
            raise AssertionError(f"{len(providers)} providers of one key")
    for provider, count in node.providers._per_provider.items():
        if count > config.max_keys_per_provider:
            raise AssertionError(f"one provider recorded for {count} keys")
    for key, record in node.values.items():
        # Records are frozen: one verified earlier under this key needs no
        # second signature check (which would cost most of the run's time).
        if verified is not None and verified.get(key) is record:
            continue
        if not verify_record(key, record):
            raise AssertionError(f"the store holds a record that does not verify under {key.hex()}")
        if verified is not None:
            verified[key] = record


def check_outgoing(node: DhtNode) -> None:
    for peer_id, _address, data in node.messages_to_send():
        if type(peer_id) is not bytes or len(peer_id) != 32 or peer_id == node.own_id:
            raise AssertionError(f"a message to {peer_id!r}")
        if len(data) > node.config.max_message_bytes:
            raise AssertionError(f"a message of {len(data)} bytes")
        m.decode(data)  # raises on anything the node should never have sent


def check_events(run: Run) -> None:
    node = run.node
    k = node.config.k
    while (event := node.next_event()) is not None:
        if type(event) is not DhtQueryCompleted:
            raise AssertionError(f"unexpected event {event!r}")
        qid = event.query_id
        if qid not in run.started:
            raise AssertionError(f"completion of query {qid}, never started by the application")
        if qid in run.completed:
            raise AssertionError(f"query {qid} completed twice")
        run.completed.add(qid)
        run.results[qid] = event.result
        kind, key, count = run.started[qid]
        if event.kind != kind:
            raise AssertionError(f"query {qid} of kind {kind} completed as {event.kind}")
        result = event.result
        if kind in ("find_node", "bootstrap"):
            ids = [node_id for node_id, _ in result]
            dists = [distance(node_id, key) for node_id in ids]
            if len(ids) > k or len(set(ids)) != len(ids) or node.own_id in ids \
                    or dists != sorted(dists):
                raise AssertionError(f"{kind} result {result!r}")
        elif kind == "get":
            if result is not None and not verify_record(key, result):
                raise AssertionError(f"get returned a record that does not verify: {result!r}")
        elif kind in ("put", "provide"):
            if type(result) is not StoreReport or result.key != key:
                raise AssertionError(f"{kind} result {result!r}")
            outcomes = [result.stored, result.unanswered, *result.refused.values()]
            if min(outcomes) < 0 or sum(outcomes) > k:
                raise AssertionError(f"{kind} report adds up to more than k: {result!r}")
        elif kind == "find_providers":
            ids = [node_id for node_id, _ in result]
            if len(ids) > count or len(set(ids)) != len(ids):
                raise AssertionError(f"find_providers({count}) gave {result!r}")
        elif kind == "ping":
            if result is not None and not result >= 0:
                raise AssertionError(f"ping result {result!r}")


def check(run: Run) -> None:
    check_outgoing(run.node)
    check_events(run)
    check_node(run.node, run.authenticated, run.verified)


def drain(run: Run) -> None:
    """Nobody answers any more: every application operation must still end."""
    node = run.node
    for _ in range(DRAIN_STEPS):
        if node._app_queries == 0:
            return
        timer = node.get_timer()
        if timer is None:
            raise AssertionError(f"{node._app_queries} operations running and no timer set")
        run.now = max(run.now, timer)
        node.handle_timer(now=run.now)
        check(run)
    raise AssertionError(f"{node._app_queries} operations still running after "
                         f"{DRAIN_STEPS} timer steps")


def run_input(data: bytes) -> None:
    """The whole invariant for one fuzz input; raises AssertionError (or the
    engine's own exception) on a violation."""
    if not data:
        return
    Run(data).run()

