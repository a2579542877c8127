"""What the DHT stores: verified values, provider records, and our own records to republish.

Theory of operation
-------------------
Two kinds of value travel through the DHT (issue 14, "Values"):

* an **immutable** value lives under ``immutable_key(value)``, BLAKE2b-256 of
  the value, so the key alone proves the content;
* a **mutable** value (BEP 44 style) lives under ``mutable_key(author, salt)``
  and carries the author's Ed25519 key, a sequence number and the author's
  signature of ``mutable_signed_bytes(salt, seq, value)``. The author is the
  node id the signing key maps to (``stt_proto.identity``), so the key, the
  author and the signature are checked against each other without asking anyone.

:func:`verify_record` is that check. Every store and every getter runs it, and
it answers ``False``, never raises, for anything a peer can make: forged
signatures, keys of another author or salt, small-order keys, and objects that
are not records at all.

:class:`ValueStore` holds the records peers asked us to keep. A mutable key
keeps its highest sequence number: a lower one, or an equal one with another
value, is a rollback and is refused (BEP 44 does the same), the same one with
the same value refreshes the expiry, and a compare-and-swap names the sequence
number the author expects us to hold. :class:`ProviderStore` holds who provides
what. Both stores are bounded in every dimension a peer can push (records,
bytes, records per publisher; keys, providers per key, keys per provider). When
a limit is reached the *newcomer* is refused and counted, and nothing already
held is evicted: eviction would let a peer with enough ids replace honest
records that their originators keep alive, while refusal only delays newcomers
until something expires (48 hours at most), and every key also lives on k - 1
other nodes.

Records expire ``ttl`` seconds after they were last stored. Each store keeps
one heap entry per record, ordered by expiry. A refresh only moves the
record's own deadline later and leaves the heap alone; when a heap entry comes
up whose record has since been refreshed, it is pushed again with the new
deadline (lazy deletion). The heap thus never holds more than one entry per
record, however often peers refresh, and each timer costs O(log n) per record
it touches instead of a scan of the store. ``store`` and ``add`` expire what is
due first, so a full store never refuses a newcomer for the sake of a record
that is already dead.

:class:`Republisher` is the other side: the records this node published itself
and the keys it provides, each due again every ``republish_interval``
(22 hours, well inside the 48-hour expiry, so one lost round does not let the
record lapse).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Union

from ..errors import LocalProtocolError
from ..identity import Identity, node_id_from_signing_key, verify_signature
from .messages import (
    KEY_BYTES,
    MAX_VALUE_BYTES,
    ImmutableValue,
    MutableValue,
    StoreStatus,
    immutable_key,
    mutable_key,
    mutable_signed_bytes,
)

__all__ = [
    "DEFAULT_TTL",
    "DEFAULT_REPUBLISH_INTERVAL",
    "IMMUTABLE_OVERHEAD_BYTES",
    "MUTABLE_OVERHEAD_BYTES",
    "PROVIDER",
    "verify_record",
    "record_key",
    "record_author",
    "record_footprint",
    "sign_mutable",
    "ValueStore",
    "ProviderStore",
    "Republisher",
]

#: Records and provider entries live this long after their last store (BEP 5, libp2p).
DEFAULT_TTL = 48 * 3600.0
#: Originators store their records again this often: under half the TTL, so a
#: record survives one missed republication.
DEFAULT_REPUBLISH_INTERVAL = 22 * 3600.0
#: Bytes an immutable record is charged beyond its value: its key.
IMMUTABLE_OVERHEAD_BYTES = KEY_BYTES
#: Bytes a mutable record is charged beyond its value and salt: key, signing
#: key, signature and sequence number.
MUTABLE_OVERHEAD_BYTES = KEY_BYTES + 32 + 64 + 8

_BYTES = (bytes, bytearray, memoryview)


# -- verification --------------------------------------------------------------------------


def _author_untrusted(record: MutableValue) -> bytes:
    """The node id of a mutable record's signing key; raises ``ValueError``,
    ``TypeError`` or ``AttributeError`` for anything that is not a usable key."""
    return node_id_from_signing_key(record.signing_public_key)


def verify_record(key: bytes, record: Any) -> bool:
    """Whether ``record`` may be held under ``key``.

    An :class:`ImmutableValue` if ``key == immutable_key(value)``. A
    :class:`MutableValue` if its signing key maps to a node id ``author``,
    ``key == mutable_key(author, salt)``, and the signature of
    ``mutable_signed_bytes(salt, seq, value)`` verifies for ``author``.

    Made for untrusted input: any object (a record whose fields were replaced,
    an instance never initialised, another type) gives ``False``, never an
    exception. Records of a subclass are refused, as the codec refuses them.

    :param key: the 32-byte key the record is offered under.
    :param record: the record to check.
    :returns: whether every check above holds.
    """
    if not isinstance(key, _BYTES):
        return False
    try:
        key = bytes(key)
        if len(key) != KEY_BYTES:
            return False
        kind = type(record)
        if kind is ImmutableValue:
            value = record.value
            if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
                return False
            return immutable_key(value) == key
        if kind is MutableValue:
            salt, seq, value = record.salt, record.seq, record.value
            if type(salt) is not bytes or type(value) is not bytes or type(seq) is not int:
                return False
            # mutable_signed_bytes checks the sizes and the range of seq, so an
            # out-of-range field is refused before the costly key conversion.
            signed = mutable_signed_bytes(salt, seq, value)
            author = _author_untrusted(record)
            if mutable_key(author, salt) != key:
                return False
            return verify_signature(author, record.signing_public_key, signed, record.signature)
    except (AttributeError, TypeError, ValueError, BufferError):
        return False
    return False


def record_key(record: Any) -> bytes | None:
    """The key ``record`` claims to belong under, or ``None`` if it cannot be
    valid under any key (not a record, or a signing key that maps to no node).

    This does not verify the record: pass the result to :func:`verify_record`
    (:meth:`ValueStore.store` does) before trusting it.
    """
    try:
        kind = type(record)
        if kind is ImmutableValue:
            return immutable_key(record.value)
        if kind is MutableValue:
            return mutable_key(_author_untrusted(record), record.salt)
    except (AttributeError, TypeError, ValueError, BufferError):
        pass
    return None


def record_author(record: Any) -> bytes | None:
    """The node id that signed a mutable record, ``None`` for an immutable
    record (it has no author) or for a signing key that maps to no node.

    Not verified: this is the *claimed* author until :func:`verify_record` passed.
    """
    if type(record) is not MutableValue:
        return None
    try:
        return _author_untrusted(record)
    except (AttributeError, TypeError, ValueError, BufferError):
        return None


def record_footprint(record: ImmutableValue | MutableValue) -> int:
    """Bytes a store charges for ``record`` against its ``max_bytes``: the value,
    the salt and the fixed-size fields. Python's own per-object overhead is
    bounded separately, by the limit on the number of records."""
    if type(record) is MutableValue:
        return MUTABLE_OVERHEAD_BYTES + len(record.salt) + len(record.value)
    return IMMUTABLE_OVERHEAD_BYTES + len(record.value)


def sign_mutable(identity: Identity, value: bytes, *, salt: bytes = b"", seq: int) -> MutableValue:
    """A mutable record of ``identity``, to be stored under
    ``mutable_key(identity.node_id, salt)``.

    :param identity: a signing identity (:meth:`Identity.generate`).
    :param value: at most the codec's :data:`~stt_proto.dht.messages.MAX_VALUE_BYTES`.
    :param salt: lets one author keep several values; at most
        :data:`~stt_proto.dht.messages.MAX_SALT_BYTES`.
    :param seq: the sequence number, 0..2**64-1; stores keep the highest.
    :returns: the signed record; :func:`verify_record` accepts it under its key.
    :raises ValueError: value, salt or seq out of range.
    :raises MissingSigningKeyError: ``identity`` is a legacy X25519-only
        identity (also a ``ValueError``).
    """
    salt = bytes(salt)
    value = bytes(value)
    signature = identity.sign(mutable_signed_bytes(salt, seq, value))
    return MutableValue(signing_public_key=identity.signing_public_key, salt=salt, seq=seq,
                        value=value, signature=signature)


# -- shared checks -------------------------------------------------------------------------


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
    return value


def _positive_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _id(value: Any, name: str) -> bytes:
    """A 32-byte key or node id passed by our own caller (misuse raises)."""
    if not isinstance(value, _BYTES) or len(value) != KEY_BYTES:
        raise ValueError(f"{name} must be {KEY_BYTES} bytes")
    return bytes(value)


# -- expiry heaps --------------------------------------------------------------------------
#
# Both stores keep a heap of (deadline, *ids) with one entry per record, whose
# deadline may be earlier than the record's own (it was refreshed since); the
# record's current deadline comes from ``deadline_of(entry)``.


def _pop_due(heap: list, now: float, deadline_of: Callable[[Any], float]) -> Iterator[Any]:
    """Pop and yield the entries of records whose deadline is at or before
    ``now``; entries of records refreshed since are moved to their deadline."""
    while heap and heap[0][0] <= now:
        entry = heap[0]
        actual = deadline_of(entry)
        if actual > now:
            heapq.heapreplace(heap, (actual, *entry[1:]))
            continue
        heapq.heappop(heap)
        yield entry


def _settle(heap: list, deadline_of: Callable[[Any], float]) -> float | None:
    """The earliest deadline of any record, after moving stale entries off the
    top, so that a timer is never armed for a record that was refreshed."""
    while heap:
        entry = heap[0]
        actual = deadline_of(entry)
        if actual == entry[0]:
            return actual
        heapq.heapreplace(heap, (actual, *entry[1:]))
    return None


# -- values --------------------------------------------------------------------------------


class _Held:
    __slots__ = ("record", "publisher", "expires_at", "footprint")

    def __init__(self, record: Any, publisher: bytes, expires_at: float, footprint: int) -> None:
        self.record = record
        self.publisher = publisher
        self.expires_at = expires_at
        self.footprint = footprint


#: Counters of :meth:`ValueStore.statistics`, in their order.
_VALUE_COUNTERS = ("stored", "replaced", "refreshed", "refused_invalid", "refused_too_large",
                   "refused_rollback", "refused_cas", "refused_full",
                   "refused_publisher_limit", "expired")


class ValueStore:
    """The records peers asked this node to keep, verified and bounded.

    A record is charged to its *publisher*, the node id of the session that
    sent the STORE (not the record's author: anyone may store an immutable
    value, and anyone may pass on an author's signed record). A replacement
    by a newer sequence number is charged to whoever sent it; a refresh
    charges nobody.

    :param max_value_bytes: largest value held (at most the codec's 3,072).
    :param max_records: records held at once.
    :param max_bytes: sum of :func:`record_footprint` over the records held.
    :param max_records_per_publisher: records charged to one publisher, so that
        one peer cannot fill the store.
    :param ttl: seconds a record lives after its last store.
    :raises ValueError: a limit that is not positive.
    """

    def __init__(self, *, max_value_bytes: int = 1024, max_records: int = 10_000,
                 max_bytes: int = 16 * 1024 * 1024, max_records_per_publisher: int = 256,
                 ttl: float = DEFAULT_TTL) -> None:
        self.max_value_bytes = _positive_int(max_value_bytes, "max_value_bytes")
        if max_value_bytes > MAX_VALUE_BYTES:
            raise ValueError(f"max_value_bytes must be at most {MAX_VALUE_BYTES}")
        self.max_records = _positive_int(max_records, "max_records")
        self.max_bytes = _positive_int(max_bytes, "max_bytes")
        self.max_records_per_publisher = _positive_int(max_records_per_publisher,
                                                       "max_records_per_publisher")
        self.ttl = _positive_seconds(ttl, "ttl")
        self._records: dict[bytes, _Held] = {}
        self._per_publisher: dict[bytes, int] = {}
        # (expires_at, key): exactly one entry per held record, possibly with an
        # earlier deadline than the record's own (it was refreshed since).
        self._expiry: list[tuple[float, bytes]] = []
        self._bytes = 0
        self._stats = dict.fromkeys(_VALUE_COUNTERS, 0)

    def store(self, key: bytes, record: Any, *, publisher: bytes, cas: int | None = None,
              now: float) -> StoreStatus:
        """Keep ``record`` under ``key`` if it verifies and fits; the STORE handler.

        Checks, in this order: the record's type and value size, then
        :func:`verify_record`, then for a mutable key already held the
        compare-and-swap and the sequence number, then the limits.

        * A ``cas`` must equal the sequence number held (``REFUSED_CAS``). With
          nothing held there is nothing to compare, and the record is taken: a
          node that joined or lost the record must still accept its
          republication. ``cas`` is ignored for an immutable record, whose key
          admits one value only.
        * A lower sequence number, or the same one with another value, is a
          rollback (``REFUSED_ROLLBACK``); the same one with the same value
          refreshes the expiry.

        :param key: the key the peer stores under (peer-controlled).
        :param record: an :class:`ImmutableValue` or :class:`MutableValue`
            (peer-controlled: any object is answered with a status).
        :param publisher: node id of the peer that sent the STORE (ours for a
            local store).
        :param cas: the sequence number the sender expects us to hold, or ``None``.
        :param now: the current time.
        :returns: ``OK``, or why the record was refused. A publisher over its
            own limit gets ``REFUSED_FULL`` too, counted as
            ``refused_publisher_limit``. Call :meth:`next_expiry` afterwards:
            a new record may move the store's deadline.
        :raises ValueError: ``publisher`` is not 32 bytes (a bug of the caller).
        """
        publisher = _id(publisher, "publisher")
        self.expire(now=now)
        kind = type(record)
        if kind is not ImmutableValue and kind is not MutableValue:
            return self._refuse("refused_invalid", StoreStatus.REFUSED_INVALID)
        if cas is not None and (isinstance(cas, bool) or not isinstance(cas, int)):
            return self._refuse("refused_invalid", StoreStatus.REFUSED_INVALID)
        try:
            too_large = len(record.value) > self.max_value_bytes
        except (AttributeError, TypeError):
            return self._refuse("refused_invalid", StoreStatus.REFUSED_INVALID)
        if too_large:
            return self._refuse("refused_too_large", StoreStatus.REFUSED_TOO_LARGE)
        if not verify_record(key, record):
            return self._refuse("refused_invalid", StoreStatus.REFUSED_INVALID)
        key = bytes(key)
        held = self._records.get(key)
        if held is None:
            return self._insert(key, record, publisher, now)
        if kind is ImmutableValue:
            return self._refresh(held, now)
        current = held.record
        if cas is not None and cas != current.seq:
            return self._refuse("refused_cas", StoreStatus.REFUSED_CAS)
        if record.seq < current.seq:
            return self._refuse("refused_rollback", StoreStatus.REFUSED_ROLLBACK)
        if record.seq == current.seq:
            if record.value != current.value:
                return self._refuse("refused_rollback", StoreStatus.REFUSED_ROLLBACK)
            return self._refresh(held, now)
        return self._replace(held, record, publisher, now)

    def _refuse(self, counter: str, status: StoreStatus) -> StoreStatus:
        self._stats[counter] += 1
        return status

    def _refresh(self, held: _Held, now: float) -> StoreStatus:
        # The heap entry keeps its old deadline; expire() pushes it again.
        held.expires_at = now + self.ttl
        self._stats["refreshed"] += 1
        return StoreStatus.OK

    def _insert(self, key: bytes, record: Any, publisher: bytes, now: float) -> StoreStatus:
        if self._per_publisher.get(publisher, 0) >= self.max_records_per_publisher:
            return self._refuse("refused_publisher_limit", StoreStatus.REFUSED_FULL)
        footprint = record_footprint(record)
        if len(self._records) >= self.max_records or self._bytes + footprint > self.max_bytes:
            return self._refuse("refused_full", StoreStatus.REFUSED_FULL)
        held = _Held(record, publisher, now + self.ttl, footprint)
        self._records[key] = held
        self._charge(publisher, +1)
        self._bytes += footprint
        heapq.heappush(self._expiry, (held.expires_at, key))
        self._stats["stored"] += 1
        return StoreStatus.OK

    def _replace(self, held: _Held, record: Any, publisher: bytes, now: float) -> StoreStatus:
        if (publisher != held.publisher
                and self._per_publisher.get(publisher, 0) >= self.max_records_per_publisher):
            return self._refuse("refused_publisher_limit", StoreStatus.REFUSED_FULL)
        footprint = record_footprint(record)
        if self._bytes - held.footprint + footprint > self.max_bytes:
            return self._refuse("refused_full", StoreStatus.REFUSED_FULL)
        self._charge(held.publisher, -1)
        self._charge(publisher, +1)
        self._bytes += footprint - held.footprint
        held.record, held.publisher, held.footprint = record, publisher, footprint
        held.expires_at = now + self.ttl
        self._stats["replaced"] += 1
        return StoreStatus.OK

    def _charge(self, publisher: bytes, delta: int) -> None:
        count = self._per_publisher.get(publisher, 0) + delta
        if count:
            self._per_publisher[publisher] = count
        else:
            del self._per_publisher[publisher]

    def get(self, key: bytes, *, now: float) -> ImmutableValue | MutableValue | None:
        """The live record held under ``key``, or ``None``. Verified when stored."""
        held = self._records.get(bytes(key)) if isinstance(key, _BYTES) else None
        if held is None or held.expires_at <= now:
            return None
        return held.record

    def expire(self, *, now: float) -> int:
        """Drop every record whose expiry is at or before ``now``; the timer handler.

        :returns: how many records were dropped.
        """
        dropped = 0
        for _, key in _pop_due(self._expiry, now, self._deadline):
            held = self._records.pop(key)
            self._charge(held.publisher, -1)
            self._bytes -= held.footprint
            dropped += 1
        self._stats["expired"] += dropped
        return dropped

    def next_expiry(self) -> float | None:
        """When the next record expires (call :meth:`expire` then), or ``None``."""
        return _settle(self._expiry, self._deadline)

    def _deadline(self, entry: tuple[float, bytes]) -> float:
        return self._records[entry[1]].expires_at

    def keys(self) -> list[bytes]:
        """The keys held, live or expired but not yet dropped."""
        return list(self._records)

    def items(self, *, now: float | None = None) -> Iterator[tuple[bytes, Any]]:
        """``(key, record)`` pairs held, live at ``now`` if given: for handing
        records over to a node that joined closer to their keys. Safe to run
        while the store changes (it walks a snapshot)."""
        for key, held in list(self._records.items()):
            if now is None or held.expires_at > now:
                yield key, held.record

    def records_of(self, publisher: bytes) -> int:
        """How many records are charged to ``publisher``."""
        return self._per_publisher.get(bytes(publisher), 0)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, _BYTES) and bytes(key) in self._records

    def statistics(self) -> dict[str, int]:
        """Counters (``stored``, ``replaced``, ``refreshed``, ``expired`` and one
        ``refused_*`` per reason) and gauges (``records``, ``bytes``,
        ``publishers``, ``heap_entries``)."""
        stats = dict(self._stats)
        stats.update(records=len(self._records), bytes=self._bytes,
                     publishers=len(self._per_publisher), heap_entries=len(self._expiry))
        return stats


# -- providers -----------------------------------------------------------------------------


class _Provider:
    __slots__ = ("address", "expires_at")

    def __init__(self, address: Any, expires_at: float) -> None:
        self.address = address
        self.expires_at = expires_at


_PROVIDER_COUNTERS = ("added", "refreshed", "refused_key_limit", "refused_provider_limit",
                      "refused_key_full", "expired")


class ProviderStore:
    """Who provides which key: the ADD_PROVIDER records peers sent us.

    The protocol only lets a node announce *itself* (the session proves the
    provider's id), so the store is bounded per provider as well as per key.
    A key that already has ``max_providers_per_key`` providers refuses
    newcomers instead of evicting one (module docstring): providers that keep
    republishing keep their place, and a peer with many ids cannot push them
    out.

    :param max_keys: keys with at least one provider.
    :param max_providers_per_key: providers remembered for one key.
    :param max_keys_per_provider: keys one provider may announce.
    :param ttl: seconds a provider record lives after its last announcement.
    :raises ValueError: a limit that is not positive.
    """

    def __init__(self, *, max_keys: int = 10_000, max_providers_per_key: int = 20,
                 max_keys_per_provider: int = 1_000, ttl: float = DEFAULT_TTL) -> None:
        self.max_keys = _positive_int(max_keys, "max_keys")
        self.max_providers_per_key = _positive_int(max_providers_per_key, "max_providers_per_key")
        self.max_keys_per_provider = _positive_int(max_keys_per_provider, "max_keys_per_provider")
        self.ttl = _positive_seconds(ttl, "ttl")
        # key -> provider id -> record, least recently announced first.
        self._keys: dict[bytes, OrderedDict[bytes, _Provider]] = {}
        self._per_provider: dict[bytes, int] = {}
        # (expires_at, key, provider id): one entry per record, as in ValueStore.
        self._expiry: list[tuple[float, bytes, bytes]] = []
        self._stats = dict.fromkeys(_PROVIDER_COUNTERS, 0)

    def add(self, key: bytes, provider_id: bytes, address: Any, *, now: float) -> bool:
        """Record that ``provider_id``, reachable at ``address``, provides ``key``.

        A provider already recorded is refreshed: its expiry restarts, its
        address becomes ``address`` (it may have moved), and it becomes the
        most recent. Otherwise the limits apply, checked per provider first,
        then the number of keys, then the providers of this key.

        :param key: the 32-byte key.
        :param provider_id: the provider's node id, proven by the session.
        :param address: where the session sees the provider.
        :param now: the current time.
        :returns: whether the record is held (answer ``OK``, else ``REFUSED_FULL``).
        :raises ValueError: ``key`` or ``provider_id`` is not 32 bytes.
        """
        key = _id(key, "key")
        provider_id = _id(provider_id, "provider_id")
        self.expire(now=now)
        providers = self._keys.get(key)
        entry = providers.get(provider_id) if providers is not None else None
        if entry is not None:
            entry.address = address
            entry.expires_at = now + self.ttl
            providers.move_to_end(provider_id)  # type: ignore[union-attr]
            self._stats["refreshed"] += 1
            return True
        if self._per_provider.get(provider_id, 0) >= self.max_keys_per_provider:
            self._stats["refused_provider_limit"] += 1
            return False
        if providers is None:
            if len(self._keys) >= self.max_keys:
                self._stats["refused_key_limit"] += 1
                return False
            providers = self._keys[key] = OrderedDict()
        elif len(providers) >= self.max_providers_per_key:
            self._stats["refused_key_full"] += 1
            return False
        providers[provider_id] = _Provider(address, now + self.ttl)
        self._per_provider[provider_id] = self._per_provider.get(provider_id, 0) + 1
        heapq.heappush(self._expiry, (now + self.ttl, key, provider_id))
        self._stats["added"] += 1
        return True

    def get(self, key: bytes, count: int, *, now: float) -> list[tuple[bytes, Any]]:
        """Up to ``count`` live providers of ``key``, most recently announced first.

        :returns: ``(provider_id, address)`` pairs.
        """
        providers = self._keys.get(bytes(key)) if isinstance(key, _BYTES) else None
        if providers is None or count < 1:
            return []
        found = []
        for provider_id in reversed(providers):
            entry = providers[provider_id]
            if entry.expires_at > now:
                found.append((provider_id, entry.address))
                if len(found) >= count:
                    break
        return found

    def expire(self, *, now: float) -> int:
        """Drop every provider record expired at ``now``; the timer handler.

        :returns: how many were dropped.
        """
        dropped = 0
        for _, key, provider_id in _pop_due(self._expiry, now, self._deadline):
            providers = self._keys[key]
            del providers[provider_id]
            if not providers:
                del self._keys[key]
            count = self._per_provider[provider_id] - 1
            if count:
                self._per_provider[provider_id] = count
            else:
                del self._per_provider[provider_id]
            dropped += 1
        self._stats["expired"] += dropped
        return dropped

    def next_expiry(self) -> float | None:
        """When the next provider record expires, or ``None``."""
        return _settle(self._expiry, self._deadline)

    def _deadline(self, entry: tuple[float, bytes, bytes]) -> float:
        return self._keys[entry[1]][entry[2]].expires_at

    def keys(self) -> list[bytes]:
        """The keys that have providers."""
        return list(self._keys)

    def items(self, *, now: float | None = None) -> Iterator[tuple[bytes, bytes, Any]]:
        """``(key, provider_id, address)`` for every record, live at ``now`` if given."""
        for key, providers in list(self._keys.items()):
            for provider_id, entry in list(providers.items()):
                if now is None or entry.expires_at > now:
                    yield key, provider_id, entry.address

    def keys_of(self, provider_id: bytes) -> int:
        """How many keys ``provider_id`` is recorded for."""
        return self._per_provider.get(bytes(provider_id), 0)

    def __len__(self) -> int:
        """The number of provider records (pairs of key and provider)."""
        return len(self._expiry)

    def statistics(self) -> dict[str, int]:
        """Counters (``added``, ``refreshed``, ``expired`` and one ``refused_*``
        per limit) and gauges (``keys``, ``records``, ``distinct_providers``)."""
        stats = dict(self._stats)
        stats.update(keys=len(self._keys), records=len(self._expiry),
                     distinct_providers=len(self._per_provider))
        return stats


# -- our own records -----------------------------------------------------------------------


class _ProviderMarker:
    """The type of :data:`PROVIDER`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PROVIDER"


#: Stands for "this node provides the key" in a :class:`Republisher`.
PROVIDER = _ProviderMarker()

OwnItem = Union[ImmutableValue, MutableValue, _ProviderMarker]


class _Own:
    __slots__ = ("item", "due_at", "token")

    def __init__(self, item: OwnItem, due_at: float, token: int) -> None:
        self.item = item
        self.due_at = due_at
        self.token = token


class Republisher:
    """The records this node published and the keys it provides, with when
    each must be published again.

    A key can hold a value *and* be provided at the same time (a node that
    stores content under its hash may also announce itself as its provider),
    so the two are scheduled apart.

    :param republish_interval: seconds between two publications of one record.
    :param max_records: records and provides held together. Only the
        application adds to it, so going over raises instead of dropping.
    :raises ValueError: a limit that is not positive.
    """

    def __init__(self, *, republish_interval: float = DEFAULT_REPUBLISH_INTERVAL,
                 max_records: int = 10_000) -> None:
        self.republish_interval = _positive_seconds(republish_interval, "republish_interval")
        self.max_records = _positive_int(max_records, "max_records")
        self._own: dict[tuple[bytes, bool], _Own] = {}
        # (due_at, token, key, provides). A re-add or a removal leaves the old
        # entry behind; its token no longer matches, and the heap is rebuilt
        # once such leftovers outnumber the live entries.
        self._due: list[tuple[float, int, bytes, bool]] = []
        self._tokens = 0
        self._republished = 0

    def add(self, key: bytes, item: OwnItem, *, now: float) -> None:
        """Remember ``item`` under ``key``, published at ``now``: it is due
        again at ``now + republish_interval``. Replaces what was held under
        ``key`` (a mutable value with a new sequence number, say).

        :param key: the record's key, or the provided key.
        :param item: an :class:`ImmutableValue` or :class:`MutableValue` that
            verifies under ``key``, or :data:`PROVIDER`.
        :raises ValueError: ``key`` is not 32 bytes, or the record does not
            verify under it (it would be refused by every node).
        :raises TypeError: ``item`` is neither a record nor :data:`PROVIDER`.
        :raises LocalProtocolError: ``max_records`` are already held.
        """
        key = _id(key, "key")
        provides = item is PROVIDER
        if not provides:
            if type(item) not in (ImmutableValue, MutableValue):
                raise TypeError(f"item must be a record or PROVIDER, not {type(item).__name__}")
            if not verify_record(key, item):
                raise ValueError("the record does not verify under this key")
        slot = (key, provides)
        if slot not in self._own and len(self._own) >= self.max_records:
            raise LocalProtocolError(
                f"already republishing {self.max_records} records (Republisher.max_records)")
        self._schedule(slot, item, now + self.republish_interval)

    def _schedule(self, slot: tuple[bytes, bool], item: OwnItem, due_at: float) -> None:
        self._tokens += 1
        self._own[slot] = _Own(item, due_at, self._tokens)
        heapq.heappush(self._due, (due_at, self._tokens, slot[0], slot[1]))
        if len(self._due) > 2 * len(self._own) + 16:
            self._due = [(own.due_at, own.token, key, provides)
                         for (key, provides), own in self._own.items()]
            heapq.heapify(self._due)

    def remove(self, key: bytes, *, provider: bool = False) -> bool:
        """Stop republishing the value under ``key`` (or, with ``provider``,
        stop providing it). Copies at other nodes expire on their own.

        :returns: whether there was something to stop.
        """
        return self._own.pop((_id(key, "key"), bool(provider)), None) is not None

    def get(self, key: bytes, *, provider: bool = False) -> OwnItem | None:
        """The value held under ``key``, or :data:`PROVIDER` if ``provider``
        and the key is provided, else ``None``."""
        own = self._own.get((_id(key, "key"), bool(provider)))
        return own.item if own is not None else None

    def due(self, *, now: float) -> list[tuple[bytes, OwnItem]]:
        """What must be published again at ``now``, each rescheduled for
        ``now + republish_interval`` (not its old deadline plus the interval:
        after a long pause, one publication catches up, not several).

        :returns: ``(key, item)`` pairs, earliest deadline first; publish each
            (STORE for a record, ADD_PROVIDER for :data:`PROVIDER`).
        """
        heap, slots = self._due, []
        while heap and heap[0][0] <= now:
            _, token, key, provides = heapq.heappop(heap)
            own = self._own.get((key, provides))
            if own is not None and own.token == token:  # else removed or re-added since
                slots.append((key, provides))
        # Rescheduling may rebuild the heap, so only once the loop is done.
        found = []
        for slot in slots:
            item = self._own[slot].item
            self._schedule(slot, item, now + self.republish_interval)
            found.append((slot[0], item))
        self._republished += len(found)
        return found

    def next_due(self) -> float | None:
        """When :meth:`due` next has something, or ``None``."""
        heap = self._due
        while heap:
            _, token, key, provides = heap[0]
            own = self._own.get((key, provides))
            if own is not None and own.token == token:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def __len__(self) -> int:
        return len(self._own)

    def statistics(self) -> dict[str, int]:
        """``republished`` (a counter), ``values`` and ``provides`` (gauges)."""
        provides = sum(1 for _, is_provide in self._own if is_provide)
        return {"republished": self._republished, "values": len(self._own) - provides,
                "provides": provides, "heap_entries": len(self._due)}
