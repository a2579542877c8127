"""The Kademlia routing table: who we know, bucketed by XOR distance from our id.

Theory of operation
===================

Ids are 256-bit (a node id is its 32-byte X25519 public key, DESIGN.md
"Identity"), compared as big-endian integers; the distance between two ids is
their XOR. A contact's *depth* is the length of the prefix it shares with our
own id.

**Buckets** (Kademlia paper, section 2.4). The table starts with one bucket
covering the whole id space. Bucket ``i`` of ``n`` holds the contacts of depth
exactly ``i``; the last one holds every contact of depth ``n - 1`` or more, so
it is the only bucket whose range contains our own id. When a new contact falls
into a full bucket, that bucket is split only if it is the last one. The others
never split: the table stays fine-grained near our id (where lookups end) and
coarse far away, at most ``MAX_BUCKETS`` buckets of ``k`` contacts. Finding a
contact's bucket is one XOR and a ``bit_length``. The relaxed split of the
paper's section 4.2 is not implemented.

**Full buckets** (sections 2.2 and 4.1). Within a bucket contacts are kept least
recently seen first. A newcomer to a full bucket goes to the bucket's
replacement cache (bounded, the oldest entry leaves first) and the table asks
the caller to ping the least recently seen contact, the ``ping`` of a
``CACHED`` result. An answer (:meth:`RoutingTable.seen`) moves that contact to
the tail and resets its failure count; a timeout (:meth:`RoutingTable.failed`)
adds to it. The table asks only when the head is *questionable*: it failed at
least once, or was last seen ``ping_after`` ago or more (BEP 5 uses the same 15
minutes). A head that answered a minute ago would only answer again, and
asking on every newcomer would cost a ping per contact a lookup hears from.
While one ping of a bucket is outstanding (up to ``PING_ANSWER_WINDOW``) no
other is requested.

**Eviction needs evidence.** One lost reply must never evict a contact (bmuller's
``kademlia`` drops a node on its first unanswered request, which empties tables
on lossy links). A contact is evicted after ``max_failures`` consecutive
failures, and then only if a live replacement is waiting to take its slot.
Without one, it stays until ``2 * max_failures`` consecutive failures: a
contact that has answered before and is merely slow or briefly cut off is worth
more than an empty slot, since lookups need these contacts and nobody else is
known in its range. Past twice the threshold it is almost certainly gone, and
keeping it would only send every lookup that reaches this bucket into a
timeout. A newcomer reaching a full bucket that holds a contact past
``max_failures`` takes its place at once: the newcomer is the live
replacement. Any answer resets the count, so failures must be consecutive.

**One host cannot fill the table.** Generating node ids is cheap, addresses
are not, so a bucket holds at most ``max_per_ip_per_bucket`` contacts (and as
many replacements) at one IP address, and the whole table at most
``max_per_subnet`` contacts in one IPv4 /24 or IPv6 /64 (Ethereum's node
discovery uses the same two numbers, per /24). An IPv4-mapped IPv6 address
counts as its IPv4 address. Loopback addresses are exempt: a peer on our own
host is either ours (tests run many nodes on 127.0.0.1) or already controls
the machine.

**Trust.** The caller reports only peers that talked to us over their own
authenticated session, so the id is proven and the address is where that
session runs; an address change for a known id simply replaces the old one.
Nodes a lookup merely heard of never enter the table before their first answer.

**Refresh** (section 2.3). Each bucket remembers when a lookup last fell in
its range (:meth:`RoutingTable.touch_bucket`). :meth:`RoutingTable.refresh_targets`
gives a random id inside every bucket untouched for ``refresh_interval``, for
the caller to look up. A bucket never touched is due at once.

Nothing here reads a clock or draws its own randomness: every time-dependent
method takes ``now``, and refresh ids come from the injected ``rng`` (default
:class:`random.SystemRandom`).
"""

from __future__ import annotations

import enum
import functools
import heapq
import ipaddress
import math
import random
from collections import OrderedDict
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ID_BYTES",
    "ID_BITS",
    "MAX_BUCKETS",
    "PING_ANSWER_WINDOW",
    "Contact",
    "SeenOutcome",
    "SeenResult",
    "RoutingTable",
    "distance",
]

#: Length of a node id (an X25519 public key) and of every key in the DHT.
ID_BYTES = 32
ID_BITS = 8 * ID_BYTES
#: Most buckets a table can have: one per depth 0..254, plus the last bucket
#: (depth 255: our id and the single id that differs from it in the last bit).
MAX_BUCKETS = ID_BITS
#: How long a requested ping stays outstanding. Longer than any request with
#: its retransmissions may take (``DhtConfig``: 3 attempts of at most 10 s), so
#: a caller that never reports the outcome delays the next ping, never blocks it.
PING_ANSWER_WINDOW = 60.0


def distance(a: bytes, b: bytes) -> int:
    """The XOR distance between two 32-byte ids, as an integer.

    Raises:
        ValueError: either id is not :data:`ID_BYTES` long.
    """
    if len(a) != ID_BYTES or len(b) != ID_BYTES:
        raise ValueError(f"ids must be {ID_BYTES} bytes")
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def _id_int(node_id: Any, what: str = "node_id") -> int:
    if not isinstance(node_id, (bytes, bytearray, memoryview)) or len(node_id) != ID_BYTES:
        raise ValueError(f"{what} must be {ID_BYTES} bytes")
    return int.from_bytes(node_id, "big")


#: Host strings whose parsed limit keys are remembered (parsing costs microseconds).
_LIMITS_KEY_CACHE = 4_096


#: Private networks (RFC 1918, RFC 4193) exempt from the address limits.
_LAN_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


@functools.lru_cache(maxsize=_LIMITS_KEY_CACHE)
def _host_limits_key(host: str) -> tuple[Hashable, Hashable] | None:
    """``(ip, subnet)`` keys the address limits count, or ``None`` for loopback and
    private addresses: the limits stop one host or one provider's subnet from
    filling tables on the internet, while a LAN (or a test bed) legitimately
    holds many members in one /24, or many on one machine."""
    try:
        ip: Any = ipaddress.ip_address(host.split("%", 1)[0])   # drop an IPv6 zone
    except ValueError:
        name = host.lower()           # a host name: it is its own "subnet"
        return name, name
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or any(ip in net for net in _LAN_NETWORKS):
        return None
    prefix = 24 if ip.version == 4 else 64
    return ip, ipaddress.ip_network((ip, prefix), strict=False)


def _limits_key(address: Any) -> tuple[Hashable, Hashable] | None:
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return _host_limits_key(address[0])
    # An address of another shape (a simulator's label): limit it as a whole.
    return address, address


@dataclass(slots=True)
class Contact:
    """A node of the routing table. The table hands out copies; changing one
    changes nothing in the table."""

    node_id: bytes
    """Its 32-byte id, proven by the session it talked to us over."""
    address: tuple[str, int]
    """Where that session runs."""
    last_seen: float
    """``now`` of its latest answer or request."""
    failures: int = 0
    """Requests to it that timed out since its latest answer."""


def _copy(contact: Contact) -> Contact:
    return Contact(contact.node_id, contact.address, contact.last_seen, contact.failures)


class SeenOutcome(enum.Enum):
    """What :meth:`RoutingTable.seen` did with a node."""

    ADDED = "added"
    """It is now a contact."""
    UPDATED = "updated"
    """It was a contact: it moved to the tail of its bucket, failures reset."""
    CACHED = "cached"
    """Its bucket is full: it waits in the replacement cache. If the result
    carries a ``ping``, the caller should ping that contact and report the
    outcome with ``seen`` or ``failed``."""
    REFUSED = "refused"
    """Not kept: our own id, or an address limit."""


@dataclass(frozen=True, slots=True)
class SeenResult:
    """The outcome of :meth:`RoutingTable.seen`."""

    outcome: SeenOutcome
    ping: Contact | None = None
    """With ``CACHED``: the contact to ping now (a copy), or ``None``."""


class _Bucket:
    __slots__ = ("contacts", "replacements", "refreshed_at", "ping_id", "ping_at")

    def __init__(self, refreshed_at: float) -> None:
        #: Least recently seen first.
        self.contacts: OrderedDict[bytes, Contact] = OrderedDict()
        #: Oldest first; the newest is promoted first.
        self.replacements: OrderedDict[bytes, Contact] = OrderedDict()
        self.refreshed_at = refreshed_at
        self.ping_id: bytes | None = None    # the contact we asked the caller to ping
        self.ping_at = 0.0


_COUNTERS = (
    "added", "updated", "address_changes", "cached", "promoted", "evicted", "removed",
    "splits", "refused_own_id", "refused_ip_limit", "refused_subnet_limit",
    "replacements_dropped", "replacements_failed", "failures_counted", "pings_requested",
    "refreshes",
)


class RoutingTable:
    """Kademlia buckets around ``own_id``; see the module docstring.

    Args:
        own_id: our 32-byte node id; it never enters the table.
        k: contacts per bucket (and the default size of :meth:`closest`).
        replacement_cache_size: nodes waiting per bucket for a slot.
        max_failures: consecutive failures after which a contact may be
            replaced; without a replacement it stays until twice as many.
        max_per_ip_per_bucket: contacts (and replacements) of one IP per bucket.
        max_per_subnet: contacts of one IPv4 /24 or IPv6 /64 in the table.
        refresh_interval: a bucket no lookup touched for this long is due for
            a refresh.
        ping_after: a least recently seen contact answering within this long
            is not pinged when a newcomer is cached.
        rng: source of refresh ids (default :class:`random.SystemRandom`).

    Raises:
        ValueError: an invalid id or setting.
    """

    def __init__(self, own_id: bytes, *, k: int = 20, replacement_cache_size: int = 20,
                 max_failures: int = 3, max_per_ip_per_bucket: int = 2,
                 max_per_subnet: int = 10, refresh_interval: float = 3600.0,
                 ping_after: float = 900.0, rng: random.Random | None = None) -> None:
        self._own = _id_int(own_id, "own_id")
        self.own_id = bytes(own_id)
        for name, value in (("k", k), ("replacement_cache_size", replacement_cache_size),
                            ("max_failures", max_failures),
                            ("max_per_ip_per_bucket", max_per_ip_per_bucket),
                            ("max_per_subnet", max_per_subnet)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int")
        if not refresh_interval > 0:
            raise ValueError("refresh_interval must be positive")
        if not ping_after >= 0:
            raise ValueError("ping_after must not be negative")
        self.k = k
        self.replacement_cache_size = replacement_cache_size
        self.max_failures = max_failures
        self.max_per_ip_per_bucket = max_per_ip_per_bucket
        self.max_per_subnet = max_per_subnet
        self.refresh_interval = float(refresh_interval)
        self.ping_after = float(ping_after)
        self._rng = rng if rng is not None else random.SystemRandom()
        # Bucket i holds depth i; the last one every depth from its index on.
        self._buckets: list[_Bucket] = [_Bucket(-math.inf)]
        self._count = 0
        self._subnets: dict[Hashable, int] = {}   # contacts per subnet, table-wide
        self._stats = dict.fromkeys(_COUNTERS, 0)

    # -- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __contains__(self, node_id: object) -> bool:
        return self.get(node_id) is not None    # type: ignore[arg-type]

    def get(self, node_id: bytes) -> Contact | None:
        """A copy of the contact with this id, or ``None`` (replacements don't count)."""
        try:
            x = _id_int(node_id)
        except ValueError:
            return None
        contact = self._buckets[self._index(x)].contacts.get(bytes(node_id))
        return None if contact is None else _copy(contact)

    def contacts(self) -> list[Contact]:
        """Copies of every contact, bucket by bucket, least recently seen first."""
        return [_copy(c) for b in self._buckets for c in b.contacts.values()]

    def bucket_count(self) -> int:
        """How many buckets the table has split into (at most :data:`MAX_BUCKETS`)."""
        return len(self._buckets)

    def bucket_ranges(self) -> list[tuple[int, int]]:
        """Each bucket's ids as ``[low, high)`` integer bounds, in bucket order."""
        return [self._range(i) for i in range(len(self._buckets))]

    def statistics(self) -> dict[str, int]:
        """Current sizes (``contacts``, ``buckets``, ``replacements``) and event counters."""
        stats = {
            "contacts": self._count,
            "buckets": len(self._buckets),
            "replacements": sum(len(b.replacements) for b in self._buckets),
        }
        stats.update(self._stats)
        return stats

    def closest(self, target: bytes, count: int | None = None, *,
                exclude: Collection[bytes] = ()) -> list[Contact]:
        """Copies of the ``count`` (default ``k``) contacts closest to ``target``,
        nearest first, leaving out the ids in ``exclude``.

        Buckets are taken in order of their distance band, so only the bands
        that supply the answer are sorted: the target's own bucket is closest;
        every deeper bucket shares one band (they all differ from the target
        at the first bit where it leaves our id); the shallower buckets follow,
        one band each, deepest first.

        Raises:
            ValueError: ``target`` is not 32 bytes.
        """
        t = _id_int(target, "target")
        wanted = self.k if count is None else count
        if wanted <= 0:
            return []
        skip = exclude if isinstance(exclude, (set, frozenset, dict)) else set(exclude)
        index = self._index(t)
        groups: list[list[_Bucket]] = [[self._buckets[index]], self._buckets[index + 1:]]
        groups.extend([self._buckets[i]] for i in range(index - 1, -1, -1))
        found: list[Contact] = []
        for group in groups:
            band = [(int.from_bytes(node_id, "big") ^ t, contact)
                    for bucket in group for node_id, contact in bucket.contacts.items()
                    if node_id not in skip]
            if not band:
                continue
            # Distinct ids have distinct distances, so the key never ties.
            best = heapq.nsmallest(wanted - len(found), band, key=lambda item: item[0])
            found.extend(_copy(contact) for _, contact in best)
            if len(found) >= wanted:
                break
        return found

    # -- what the caller reports -----------------------------------------------------

    def seen(self, node_id: bytes, address: Any, *, now: float) -> SeenResult:
        """The node answered us or sent us a request over its authenticated session.

        Call it for every such message, with the session's address. A known
        contact moves to the tail of its bucket and its failures reset; a new
        node is added, or cached if its bucket is full. A known contact whose
        new address would break an address limit keeps its old one (``REFUSED``).

        Returns:
            What happened; with ``CACHED`` and a ``ping``, ping that contact and
            report its answer (``seen``) or timeout (``failed``).

        Raises:
            ValueError: ``node_id`` is not 32 bytes.
        """
        x = _id_int(node_id)
        if x == self._own:
            return self._refuse("refused_own_id")
        nid = bytes(node_id)
        limits = _limits_key(address)
        bucket = self._buckets[self._index(x)]
        contact = bucket.contacts.get(nid)
        if contact is not None:
            if contact.address != address:
                hit = self._limit_hit(bucket, limits, leaving=contact)
                if hit is not None:
                    return self._refuse(hit)
                self._forget_subnet(contact.address)
                self._count_subnet(limits)
                contact.address = address
                self._stats["address_changes"] += 1
            contact.last_seen = now
            contact.failures = 0
            bucket.contacts.move_to_end(nid)
            if bucket.ping_id == nid:
                bucket.ping_id = None
            self._stats["updated"] += 1
            return SeenResult(SeenOutcome.UPDATED)

        if limits is not None and self._subnets.get(limits[1], 0) >= self.max_per_subnet:
            return self._refuse("refused_subnet_limit")    # before it can split a bucket
        # Section 2.4: a full bucket splits only while its range holds our id.
        while (len(bucket.contacts) >= self.k and bucket is self._buckets[-1]
               and len(self._buckets) < MAX_BUCKETS):
            self._split()
            bucket = self._buckets[self._index(x)]
        newcomer = Contact(nid, address, now)
        if len(bucket.contacts) < self.k:
            hit = self._limit_hit(bucket, limits)
            if hit is not None:
                return self._refuse(hit)
            bucket.replacements.pop(nid, None)
            self._insert(bucket, newcomer, limits)
            self._stats["added"] += 1
            return SeenResult(SeenOutcome.ADDED)

        stale = next((c for c in bucket.contacts.values() if c.failures >= self.max_failures),
                     None)
        if stale is not None and self._limit_hit(bucket, limits, leaving=stale) is None:
            # The stale contact only waited for a live replacement: this is one.
            self._delete(bucket, stale)
            self._stats["evicted"] += 1
            bucket.replacements.pop(nid, None)
            self._insert(bucket, newcomer, limits)
            self._stats["added"] += 1
            return SeenResult(SeenOutcome.ADDED)

        if not self._cache(bucket, newcomer, limits):
            return self._refuse("refused_ip_limit")
        self._stats["cached"] += 1
        return SeenResult(SeenOutcome.CACHED, self._ping_request(bucket, now))

    def failed(self, node_id: bytes, *, now: float) -> bool:
        """A request to the node timed out (after its retransmissions).

        Counts one consecutive failure; evicts the contact past the thresholds
        of the module docstring, promoting the newest replacement that fits.
        A replacement that fails is dropped from its cache: only live ones are
        worth promoting.

        Returns:
            ``True`` if a contact was removed from the table.

        Raises:
            ValueError: ``node_id`` is not 32 bytes.
        """
        x = _id_int(node_id)
        if x == self._own:
            return False
        nid = bytes(node_id)
        bucket = self._buckets[self._index(x)]
        contact = bucket.contacts.get(nid)
        if contact is None:
            if bucket.replacements.pop(nid, None) is not None:
                self._stats["replacements_failed"] += 1
            return False
        contact.failures += 1
        self._stats["failures_counted"] += 1
        if bucket.ping_id == nid:
            bucket.ping_id = None
        if contact.failures >= self.max_failures:
            successor = self._promotable(bucket, leaving=contact)
            if successor is not None or contact.failures >= 2 * self.max_failures:
                self._delete(bucket, contact)
                self._stats["evicted"] += 1
                if successor is not None:
                    self._promote(bucket, successor)
                return True
        return False

    def remove(self, node_id: bytes) -> bool:
        """Forget a node (a contact or a replacement), say because it misbehaved.

        A contact's slot goes to the newest replacement that fits.

        Returns:
            ``True`` if the node was in the table or a replacement cache.
        """
        try:
            x = _id_int(node_id)
        except ValueError:
            return False
        nid = bytes(node_id)
        bucket = self._buckets[self._index(x)]
        contact = bucket.contacts.get(nid)
        if contact is None:
            return bucket.replacements.pop(nid, None) is not None
        self._delete(bucket, contact)
        self._stats["removed"] += 1
        successor = self._promotable(bucket)
        if successor is not None:
            self._promote(bucket, successor)
        return True

    # -- refresh ---------------------------------------------------------------------

    def touch_bucket(self, target: bytes, *, now: float) -> None:
        """A lookup for ``target`` ran: its bucket counts as refreshed at ``now``.

        Raises:
            ValueError: ``target`` is not 32 bytes.
        """
        self._buckets[self._index(_id_int(target, "target"))].refreshed_at = now

    def refresh_targets(self, *, now: float, force: bool = False) -> list[bytes]:
        """One random id inside each bucket untouched for ``refresh_interval``
        (every bucket with ``force``, as a joining node wants); those buckets
        count as refreshed at ``now``. Look each id up."""
        targets = []
        for i, bucket in enumerate(self._buckets):
            if force or now - bucket.refreshed_at >= self.refresh_interval:
                low, high = self._range(i)
                targets.append((low + self._rng.getrandbits((high - low).bit_length() - 1))
                               .to_bytes(ID_BYTES, "big"))
                bucket.refreshed_at = now
        self._stats["refreshes"] += len(targets)
        return targets

    def next_refresh_at(self) -> float:
        """When :meth:`refresh_targets` will next have something: ``-inf`` while a
        bucket was never touched (due now)."""
        return min(b.refreshed_at for b in self._buckets) + self.refresh_interval

    # -- internals -------------------------------------------------------------------

    def _index(self, x: int) -> int:
        depth = ID_BITS - (x ^ self._own).bit_length()
        last = len(self._buckets) - 1
        return depth if depth < last else last

    def _range(self, i: int) -> tuple[int, int]:
        if i == len(self._buckets) - 1:         # shares our first i bits
            width = ID_BITS - i
            low = self._own >> width << width
        else:                                   # shares i bits, then differs
            width = ID_BITS - i - 1
            low = ((self._own >> width) ^ 1) << width
        return low, low + (1 << width)

    def _split(self) -> None:
        """Split the last bucket: contacts deeper than its index move to a new last one."""
        old = self._buckets[-1]
        new = _Bucket(old.refreshed_at)
        depth = len(self._buckets)      # the new bucket's index and minimum depth
        for entries, moved in ((old.contacts, new.contacts),
                               (old.replacements, new.replacements)):
            for nid in [n for n in entries
                        if ID_BITS - (int.from_bytes(n, "big") ^ self._own).bit_length()
                        >= depth]:
                moved[nid] = entries.pop(nid)
        if old.ping_id is not None and old.ping_id in new.contacts:
            new.ping_id, new.ping_at, old.ping_id = old.ping_id, old.ping_at, None
        self._buckets.append(new)
        self._stats["splits"] += 1

    def _limit_hit(self, bucket: _Bucket, limits: tuple[Hashable, Hashable] | None, *,
                   leaving: Contact | None = None) -> str | None:
        """The counter of the address limit one more contact with these keys
        would break (``leaving`` having gone), or ``None`` if it fits."""
        if limits is None:
            return None
        ip, subnet = limits
        same_ip = sum(1 for c in bucket.contacts.values()
                      if c is not leaving and (key := _limits_key(c.address)) is not None
                      and key[0] == ip)
        if same_ip >= self.max_per_ip_per_bucket:
            return "refused_ip_limit"
        in_subnet = self._subnets.get(subnet, 0)
        if leaving is not None:
            key = _limits_key(leaving.address)
            if key is not None and key[1] == subnet:
                in_subnet -= 1
        if in_subnet >= self.max_per_subnet:
            return "refused_subnet_limit"
        return None

    def _refuse(self, counter: str) -> SeenResult:
        self._stats[counter] += 1
        return SeenResult(SeenOutcome.REFUSED)

    def _cache(self, bucket: _Bucket, newcomer: Contact,
               limits: tuple[Hashable, Hashable] | None) -> bool:
        """Put a newcomer in the bucket's replacement cache (the newest at the end);
        ``False`` if its IP already has its share of the cache."""
        cached = bucket.replacements.get(newcomer.node_id)
        if limits is not None:
            same_ip = sum(1 for c in bucket.replacements.values()
                          if c is not cached and (key := _limits_key(c.address)) is not None
                          and key[0] == limits[0])
            if same_ip >= self.max_per_ip_per_bucket:
                return False
        if cached is not None:
            cached.address = newcomer.address
            cached.last_seen = newcomer.last_seen
            bucket.replacements.move_to_end(newcomer.node_id)
            return True
        bucket.replacements[newcomer.node_id] = newcomer
        if len(bucket.replacements) > self.replacement_cache_size:
            bucket.replacements.popitem(last=False)
            self._stats["replacements_dropped"] += 1
        return True

    def _ping_request(self, bucket: _Bucket, now: float) -> Contact | None:
        """The bucket's head, if it is questionable and no ping is outstanding."""
        if bucket.ping_id is not None and now - bucket.ping_at < PING_ANSWER_WINDOW:
            return None
        head = next(iter(bucket.contacts.values()))
        if head.failures == 0 and now - head.last_seen < self.ping_after:
            return None
        bucket.ping_id, bucket.ping_at = head.node_id, now
        self._stats["pings_requested"] += 1
        return _copy(head)

    def _promotable(self, bucket: _Bucket, *, leaving: Contact | None = None) -> Contact | None:
        """The newest replacement that fits the address limits once ``leaving``
        has gone. One that does not fit yet stays cached; that is no refusal."""
        for candidate in reversed(bucket.replacements.values()):
            if self._limit_hit(bucket, _limits_key(candidate.address), leaving=leaving) is None:
                return candidate
        return None

    def _promote(self, bucket: _Bucket, candidate: Contact) -> None:
        del bucket.replacements[candidate.node_id]
        candidate.failures = 0
        self._insert(bucket, candidate, _limits_key(candidate.address))
        self._stats["promoted"] += 1

    def _insert(self, bucket: _Bucket, contact: Contact,
                limits: tuple[Hashable, Hashable] | None) -> None:
        bucket.contacts[contact.node_id] = contact
        self._count += 1
        self._count_subnet(limits)

    def _delete(self, bucket: _Bucket, contact: Contact) -> None:
        del bucket.contacts[contact.node_id]
        self._count -= 1
        self._forget_subnet(contact.address)
        if bucket.ping_id == contact.node_id:
            bucket.ping_id = None

    def _count_subnet(self, limits: tuple[Hashable, Hashable] | None) -> None:
        if limits is not None:
            self._subnets[limits[1]] = self._subnets.get(limits[1], 0) + 1

    def _forget_subnet(self, address: Any) -> None:
        limits = _limits_key(address)
        if limits is not None:
            left = self._subnets[limits[1]] - 1
            if left:
                self._subnets[limits[1]] = left
            else:
                del self._subnets[limits[1]]
