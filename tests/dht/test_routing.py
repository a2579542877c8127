"""The Kademlia routing table (``stt_proto.dht.routing``): buckets and their
splits, ``closest`` against a brute-force sort, failures and eviction, the
ping-the-oldest flow, the replacement cache, address limits against a hostile
host, and bucket refresh."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.dht.routing import (
    ID_BITS,
    MAX_BUCKETS,
    PING_ANSWER_WINDOW,
    Contact,
    RoutingTable,
    SeenOutcome,
    distance,
)

ADDED, UPDATED, CACHED, REFUSED = (SeenOutcome.ADDED, SeenOutcome.UPDATED,
                                   SeenOutcome.CACHED, SeenOutcome.REFUSED)
OWN = bytes.fromhex("5a" * 32)
OWN_INT = int.from_bytes(OWN, "big")


def at_depth(depth: int, rng: random.Random, own: int = OWN_INT) -> bytes:
    """A random id sharing exactly ``depth`` leading bits with ``own``."""
    free = ID_BITS - depth - 1
    value = ((own >> free) ^ 1) << free | rng.getrandbits(free)
    return value.to_bytes(32, "big")


def addr(n: int) -> tuple[str, int]:
    """The ``n``-th address, each in its own /24 so only the limits under test bite."""
    return (f"10.{n >> 8 & 255}.{n & 255}.1", 4000)


def depth_of(node_id: bytes, own: bytes = OWN) -> int:
    return ID_BITS - distance(node_id, own).bit_length()


def brute_closest(contacts: list[Contact], target: bytes, count: int) -> list[bytes]:
    return [c.node_id for c in sorted(contacts, key=lambda c: distance(c.node_id, target))][:count]


def bucket_of(table: RoutingTable, node_id: bytes) -> int:
    x = int.from_bytes(node_id, "big")
    [index] = [i for i, (low, high) in enumerate(table.bucket_ranges()) if low <= x < high]
    return index


# -- ids and distance ---------------------------------------------------------------


def test_distance_is_xor_and_checks_lengths():
    a, b = bytes(31) + b"\x05", bytes(31) + b"\x03"
    assert distance(a, b) == 6 == distance(b, a)
    assert distance(OWN, OWN) == 0
    assert distance(bytes(32), b"\xff" * 32) == (1 << 256) - 1
    with pytest.raises(ValueError):
        distance(b"\x00" * 31, OWN)


@pytest.mark.parametrize("kwargs", [
    {"k": 0}, {"k": True}, {"replacement_cache_size": 0}, {"max_failures": 0},
    {"max_per_ip_per_bucket": 0}, {"max_per_subnet": -1}, {"refresh_interval": 0.0},
    {"ping_after": -1.0},
])
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError):
        RoutingTable(OWN, **kwargs)


def test_ids_of_the_wrong_length_raise_or_are_unknown():
    with pytest.raises(ValueError):
        RoutingTable(OWN[:31])
    table = RoutingTable(OWN)
    with pytest.raises(ValueError):
        table.seen(OWN[:31], addr(1), now=0.0)
    with pytest.raises(ValueError):
        table.failed(b"", now=0.0)
    with pytest.raises(ValueError):
        table.closest(b"short")
    assert table.get(b"short") is None and b"short" not in table
    assert table.remove(b"short") is False


def test_own_id_is_never_added():
    table = RoutingTable(OWN)
    assert table.seen(OWN, addr(1), now=0.0).outcome is REFUSED
    assert len(table) == 0 and OWN not in table
    assert table.failed(OWN, now=1.0) is False
    assert table.statistics()["refused_own_id"] == 1


# -- buckets ------------------------------------------------------------------------


def test_only_the_bucket_holding_our_id_splits():
    rng = random.Random(1)
    k = 4
    table = RoutingTable(OWN, k=k)
    n = 0
    # Fill depths 0..5 with k contacts each, plus one more per depth.
    for depth in range(6):
        for i in range(k + 1):
            n += 1
            outcome = table.seen(at_depth(depth, rng), addr(n), now=float(n)).outcome
            assert outcome is (ADDED if i < k else CACHED)
        # The extra one split the last bucket, then found its own half full.
        assert table.bucket_count() == depth + 2
    assert len(table) == 6 * k
    for contact in table.contacts():
        assert bucket_of(table, contact.node_id) == depth_of(contact.node_id)
    # A far bucket never splits, however many nodes arrive in it.
    for _ in range(50):
        n += 1
        assert table.seen(at_depth(0, rng), addr(n), now=float(n)).outcome is CACHED
    assert table.bucket_count() == 7 and len(table) == 6 * k
    stats = table.statistics()
    assert stats["splits"] == 6 and stats["buckets"] == 7 and stats["added"] == 6 * k


def test_a_split_can_cascade_when_every_contact_is_deep():
    rng = random.Random(2)
    table = RoutingTable(OWN, k=3)
    for n in range(3):
        table.seen(at_depth(10, rng), addr(n), now=0.0)
    assert table.bucket_count() == 1
    # A far newcomer splits the bucket off our id ten times over, and lands in
    # the shallowest bucket, which is empty.
    assert table.seen(at_depth(0, rng), addr(9), now=1.0).outcome is ADDED
    assert table.bucket_count() == 2
    # A newcomer at depth 10 splits until the deep contacts have a bucket of their own.
    assert table.seen(at_depth(12, rng), addr(10), now=2.0).outcome is ADDED
    assert table.bucket_count() == 12
    assert [bucket_of(table, c.node_id) for c in table.contacts()] == [0, 10, 10, 10, 11]


def test_splits_stop_at_256_buckets():
    table = RoutingTable(OWN, k=1)
    for depth in range(ID_BITS):
        node = (OWN_INT ^ (1 << (ID_BITS - 1 - depth))).to_bytes(32, "big")
        assert table.seen(node, addr(depth), now=float(depth)).outcome is ADDED
    assert table.bucket_count() == MAX_BUCKETS and len(table) == ID_BITS
    # own ^ 3 shares 254 bits, like own ^ 2 already in bucket 254: no split left.
    assert table.seen((OWN_INT ^ 3).to_bytes(32, "big"), addr(999), now=300.0).outcome is CACHED
    assert table.bucket_count() == MAX_BUCKETS
    assert_ranges_partition(table)


def assert_ranges_partition(table: RoutingTable, own: bytes = OWN) -> None:
    ranges = sorted(table.bucket_ranges())
    assert ranges[0][0] == 0 and ranges[-1][1] == 1 << ID_BITS
    for (_, high), (low, _) in zip(ranges, ranges[1:]):
        assert high == low
    for low, high in ranges:
        assert high - low > 0 and (high - low) & (high - low - 1) == 0   # powers of two
        assert low % (high - low) == 0                                   # aligned
    # Our own id lies in the last bucket, and nowhere else.
    low, high = table.bucket_ranges()[-1]
    assert low <= int.from_bytes(own, "big") < high
    for contact in table.contacts():
        assert bucket_of(table, contact.node_id) == min(depth_of(contact.node_id, own),
                                                       table.bucket_count() - 1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(0, 400), k=st.integers(1, 8))
def test_bucket_ranges_cover_the_id_space_exactly(seed, size, k):
    rng = random.Random(seed)
    own = rng.randbytes(32)
    table = RoutingTable(own, k=k, max_per_subnet=10**6, max_per_ip_per_bucket=10**6)
    for n in range(size):
        depth = rng.choice([0, 1, 2, rng.randrange(256)])
        table.seen(at_depth(depth, rng, int.from_bytes(own, "big")), addr(n), now=float(n))
    assert_ranges_partition(table, own)
    per_bucket: dict[int, int] = {}
    for contact in table.contacts():
        index = bucket_of(table, contact.node_id)
        per_bucket[index] = per_bucket.get(index, 0) + 1
    assert all(count <= k for count in per_bucket.values())


# -- closest --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(0, 300), count=st.integers(0, 45),
       k=st.sampled_from([1, 3, 20]), target_kind=st.sampled_from(["random", "near", "member",
                                                                   "own"]),
       excluded=st.integers(0, 10))
def test_closest_equals_a_brute_force_sort(seed, size, count, k, target_kind, excluded):
    rng = random.Random(seed)
    table = RoutingTable(OWN, k=k)
    for n in range(size):
        depth = rng.choice([0, 1, rng.randrange(12), rng.randrange(256)])
        table.seen(at_depth(depth, rng), addr(n), now=float(n))
    contacts = table.contacts()
    if target_kind == "random" or not contacts and target_kind == "member":
        target = rng.randbytes(32)
    elif target_kind == "near":
        target = at_depth(rng.randrange(20), rng)
    elif target_kind == "member":
        target = rng.choice(contacts).node_id
    else:
        target = OWN
    exclude = {c.node_id for c in rng.sample(contacts, min(excluded, len(contacts)))}
    expected = brute_closest([c for c in contacts if c.node_id not in exclude], target, count)
    assert [c.node_id for c in table.closest(target, count, exclude=exclude)] == expected
    # An exclusion list that is not a set works the same.
    assert [c.node_id for c in table.closest(target, count, exclude=list(exclude))] == expected
    assert [c.node_id for c in table.closest(target)] == brute_closest(contacts, target, k)


def test_closest_on_a_large_table_equals_a_brute_force_sort():
    # 150 full buckets (the last one has room to split), 3,000 contacts: far
    # more than a real table ever holds.
    rng = random.Random(13)
    table = RoutingTable(OWN)
    for n in range(3000):
        table.seen(at_depth(n // 20, rng), addr(n), now=float(n))
    assert len(table) == 3000 and table.bucket_count() == 150
    contacts = table.contacts()
    for i in range(60):
        target = rng.randbytes(32) if i % 2 else at_depth(rng.randrange(160), rng)
        count = rng.choice([1, 20, 45])
        assert [c.node_id for c in table.closest(target, count)] == \
            brute_closest(contacts, target, count)


def test_closest_hands_out_copies():
    rng = random.Random(3)
    table = RoutingTable(OWN)
    node = at_depth(0, rng)
    table.seen(node, addr(1), now=5.0)
    [copy] = table.closest(node)
    copy.failures = 99
    copy.address = ("192.0.2.1", 1)
    assert table.get(node) == Contact(node, addr(1), 5.0, 0)
    table.contacts()[0].last_seen = -1.0
    assert table.get(node).last_seen == 5.0


# -- failures and eviction ------------------------------------------------------------


def full_bucket(k: int = 3, **kwargs) -> tuple[RoutingTable, list[bytes], random.Random]:
    """A table whose bucket 0 holds ``k`` contacts seen at times 0, 1, 2, ...

    Our own bucket starts out empty: the first newcomer at depth 0 splits it off."""
    rng = random.Random(4)
    table = RoutingTable(OWN, k=k, **kwargs)
    nodes = [at_depth(0, rng) for _ in range(k)]
    for n, node in enumerate(nodes):
        assert table.seen(node, addr(n), now=float(n)).outcome is ADDED
    return table, nodes, rng


def test_one_lost_reply_never_evicts():
    table, nodes, rng = full_bucket()
    newcomer = at_depth(0, rng)
    assert table.seen(newcomer, addr(50), now=10.0).outcome is CACHED
    assert table.failed(nodes[0], now=11.0) is False
    assert nodes[0] in table and table.get(nodes[0]).failures == 1
    assert newcomer not in table
    assert table.statistics()["failures_counted"] == 1


def test_consecutive_failures_evict_when_a_replacement_waits():
    table, nodes, rng = full_bucket(max_failures=3)
    older, newer = at_depth(0, rng), at_depth(0, rng)
    table.seen(older, addr(50), now=10.0)
    table.seen(newer, addr(51), now=11.0)
    assert table.failed(nodes[1], now=12.0) is False
    assert table.failed(nodes[1], now=13.0) is False
    assert table.failed(nodes[1], now=14.0) is True
    assert nodes[1] not in table and newer in table and older not in table
    promoted = table.get(newer)
    assert promoted.failures == 0 and promoted.address == addr(51) and promoted.last_seen == 11.0
    stats = table.statistics()
    assert stats["evicted"] == 1 and stats["promoted"] == 1 and stats["replacements"] == 1
    assert len(table) == 3


def test_an_answer_resets_the_failure_count():
    table, nodes, rng = full_bucket(max_failures=3)
    table.seen(at_depth(0, rng), addr(50), now=10.0)
    for now in (11.0, 12.0):
        table.failed(nodes[0], now=now)
    assert table.seen(nodes[0], addr(0), now=13.0).outcome is UPDATED
    assert table.get(nodes[0]).failures == 0
    assert table.failed(nodes[0], now=14.0) is False
    assert table.failed(nodes[0], now=15.0) is False
    assert nodes[0] in table and table.get(nodes[0]).failures == 2


def test_without_a_replacement_a_contact_lasts_twice_as_many_failures():
    table, nodes, _ = full_bucket(max_failures=3)
    for now in range(5):
        assert table.failed(nodes[2], now=float(now)) is False
    assert table.get(nodes[2]).failures == 5
    assert table.failed(nodes[2], now=5.0) is True
    assert nodes[2] not in table and len(table) == 2
    assert table.statistics()["evicted"] == 1 and table.statistics()["promoted"] == 0


def test_a_newcomer_takes_the_slot_of_a_contact_past_max_failures():
    table, nodes, rng = full_bucket(max_failures=2)
    for now in (3.0, 4.0):
        assert table.failed(nodes[1], now=now) is False    # nobody to replace it yet
    newcomer = at_depth(0, rng)
    assert table.seen(newcomer, addr(50), now=5.0).outcome is ADDED
    assert nodes[1] not in table and newcomer in table and len(table) == 3
    assert table.statistics()["evicted"] == 1


def test_a_failed_replacement_is_dropped_from_its_cache():
    table, nodes, rng = full_bucket()
    replacement = at_depth(0, rng)
    table.seen(replacement, addr(50), now=10.0)
    assert table.failed(replacement, now=11.0) is False
    assert table.statistics()["replacements"] == 0
    assert table.statistics()["replacements_failed"] == 1
    assert table.failed(at_depth(0, rng), now=12.0) is False    # unknown: nothing happens


def test_remove_promotes_the_newest_replacement():
    table, nodes, rng = full_bucket()
    waiting = [at_depth(0, rng) for _ in range(2)]
    for n, node in enumerate(waiting):
        table.seen(node, addr(60 + n), now=10.0 + n)
    assert table.remove(nodes[0]) is True
    assert nodes[0] not in table and waiting[1] in table and waiting[0] not in table
    assert table.remove(waiting[0]) is True           # a replacement is forgotten too
    assert table.remove(waiting[0]) is False
    assert table.remove(nodes[1]) is True and len(table) == 2
    stats = table.statistics()
    assert stats["removed"] == 2 and stats["promoted"] == 1 and stats["replacements"] == 0


# -- ping the oldest ------------------------------------------------------------------


def test_ping_the_oldest_flow():
    table, nodes, rng = full_bucket(k=3, max_failures=3, ping_after=900.0)
    # Every contact answered recently: caching a newcomer asks for no ping.
    first = table.seen(at_depth(0, rng), addr(50), now=10.0)
    assert first.outcome is CACHED and first.ping is None
    # Much later the least recently seen contact is questionable.
    second = table.seen(at_depth(0, rng), addr(51), now=1000.0)
    assert second.outcome is CACHED and second.ping == table.get(nodes[0])
    # While that ping is outstanding, no other is asked for.
    assert table.seen(at_depth(0, rng), addr(52), now=1001.0).ping is None
    # It answers: it moves to the tail, and the next newcomer gets the next oldest pinged.
    assert table.seen(nodes[0], addr(0), now=1002.0).outcome is UPDATED
    assert [c.node_id for c in table.contacts()] == [nodes[1], nodes[2], nodes[0]]
    newest = at_depth(0, rng)
    assert table.seen(newest, addr(53), now=1003.0).ping.node_id == nodes[1]
    # nodes[1] never answers: each timed-out ping counts, the third evicts it for the newest.
    assert table.failed(nodes[1], now=1010.0) is False
    for now in (1011.0, 1012.0):
        ping = table.seen(at_depth(0, rng), addr(int(now)), now=now).ping
        assert ping is not None and ping.node_id == nodes[1]     # failed once: questionable
        table.failed(nodes[1], now=now + 0.5)
    assert nodes[1] not in table
    assert table.statistics()["pings_requested"] == 4


def test_a_head_that_failed_once_is_pinged_even_when_fresh():
    table, nodes, rng = full_bucket(ping_after=900.0)
    table.failed(nodes[0], now=3.0)
    assert table.seen(at_depth(0, rng), addr(50), now=4.0).ping.node_id == nodes[0]


def test_an_unreported_ping_is_asked_for_again_after_the_answer_window():
    table, nodes, rng = full_bucket(ping_after=0.0)
    assert table.seen(at_depth(0, rng), addr(50), now=10.0).ping.node_id == nodes[0]
    assert table.seen(at_depth(0, rng), addr(51), now=11.0).ping is None
    later = 10.0 + PING_ANSWER_WINDOW
    assert table.seen(at_depth(0, rng), addr(52), now=later).ping.node_id == nodes[0]


# -- the replacement cache ------------------------------------------------------------


def test_the_replacement_cache_keeps_the_newest_within_its_bound():
    table, nodes, rng = full_bucket(k=2, replacement_cache_size=3)
    waiting = [at_depth(0, rng) for _ in range(8)]
    for n, node in enumerate(waiting):
        assert table.seen(node, addr(100 + n), now=10.0 + n).outcome is CACHED
    stats = table.statistics()
    assert stats["replacements"] == 3 and stats["replacements_dropped"] == 5
    # Seeing a cached node again makes it the newest.
    table.seen(waiting[5], addr(105), now=50.0)
    promoted = []
    for victim in nodes + waiting[5:]:
        if table.remove(victim):
            promoted.extend(n for n in waiting if n in table and n not in promoted)
    assert promoted == [waiting[5], waiting[7], waiting[6]]
    assert len(table) == 0 and table.statistics()["replacements"] == 0


# -- address limits -------------------------------------------------------------------


def test_a_hostile_host_with_a_thousand_ids_fills_at_most_its_limits():
    rng = random.Random(5)
    table = RoutingTable(OWN, max_per_ip_per_bucket=2, max_per_subnet=10)
    hostile = ("203.0.113.7", 6881)
    outcomes = [table.seen(at_depth(rng.choice([0, 1, 2, 3, rng.randrange(40)]), rng),
                           hostile, now=float(n)).outcome for n in range(1000)]
    mine = table.contacts()
    assert 0 < len(mine) <= 10
    per_bucket: dict[int, int] = {}
    for contact in mine:
        per_bucket[bucket_of(table, contact.node_id)] = \
            per_bucket.get(bucket_of(table, contact.node_id), 0) + 1
    assert max(per_bucket.values()) <= 2
    stats = table.statistics()
    assert stats["replacements"] <= 2 * table.bucket_count()
    assert outcomes.count(REFUSED) >= 990 - stats["replacements"]
    assert stats["refused_ip_limit"] + stats["refused_subnet_limit"] == outcomes.count(REFUSED)
    # Honest nodes still get in.
    honest = [at_depth(d, rng) for d in range(5)]
    assert all(table.seen(node, addr(n), now=2000.0).outcome is ADDED
               for n, node in enumerate(honest))


@pytest.mark.parametrize("make_address", [
    lambda n: (f"198.51.100.{n % 250 + 1}", 4000 + n),      # one IPv4 /24
    lambda n: (f"2001:db8:0:1::{n:x}", 4000),                # one IPv6 /64
    lambda n: (f"::ffff:198.51.100.{n % 250 + 1}", 4000),    # IPv4-mapped: still that /24
], ids=["ipv4-24", "ipv6-64", "ipv4-mapped"])
def test_one_subnet_holds_at_most_max_per_subnet_contacts(make_address):
    rng = random.Random(6)
    table = RoutingTable(OWN, max_per_subnet=10, max_per_ip_per_bucket=20)
    for n in range(1000):
        table.seen(at_depth(rng.randrange(8), rng), make_address(n), now=float(n))
    assert len(table) == 10
    assert table.statistics()["refused_subnet_limit"] > 0


def test_mapped_and_plain_ipv4_are_one_address():
    rng = random.Random(7)
    table = RoutingTable(OWN, max_per_ip_per_bucket=1)
    assert table.seen(at_depth(0, rng), ("192.0.2.9", 1), now=0.0).outcome is ADDED
    assert table.seen(at_depth(0, rng), ("::ffff:192.0.2.9", 2), now=0.0).outcome is REFUSED
    assert table.statistics()["refused_ip_limit"] == 1


def test_loopback_is_exempt_from_the_address_limits():
    rng = random.Random(8)
    table = RoutingTable(OWN, k=20)
    for n in range(60):
        table.seen(at_depth(n % 3, rng), ("127.0.0.1", 5000 + n), now=float(n))
    assert len(table) == 60
    assert table.statistics()["refused_ip_limit"] == 0


def test_an_address_change_moves_the_contact_and_its_subnet_count():
    rng = random.Random(9)
    table = RoutingTable(OWN, max_per_subnet=1)
    a, b, c = at_depth(0, rng), at_depth(1, rng), at_depth(2, rng)
    assert table.seen(a, ("198.51.100.1", 1), now=0.0).outcome is ADDED
    assert table.seen(b, ("198.51.100.2", 1), now=1.0).outcome is REFUSED
    # a roams to another network: its old subnet is free again.
    assert table.seen(a, ("192.0.2.1", 9), now=2.0).outcome is UPDATED
    assert table.get(a).address == ("192.0.2.1", 9)
    assert table.seen(b, ("198.51.100.2", 1), now=3.0).outcome is ADDED
    # A move into a full subnet is refused: the contact keeps its old address.
    assert table.seen(c, ("203.0.113.1", 1), now=4.0).outcome is ADDED
    assert table.seen(c, ("192.0.2.2", 1), now=5.0).outcome is REFUSED
    assert table.get(c).address == ("203.0.113.1", 1)
    stats = table.statistics()
    assert stats["address_changes"] == 1 and stats["refused_subnet_limit"] == 2


# -- refresh --------------------------------------------------------------------------


def test_refresh_targets_fall_inside_their_buckets():
    rng = random.Random(10)
    table = RoutingTable(OWN, k=2, refresh_interval=3600.0, rng=random.Random(11))
    for n, depth in enumerate([0, 0, 0, 1, 1, 1, 2, 2, 2, 7, 7, 7]):
        table.seen(at_depth(depth, rng), addr(n), now=0.0)
    # Depth 7's third node split the last bucket down to depth 8.
    assert table.bucket_count() == 9
    assert table.next_refresh_at() == float("-inf")         # never touched: due now
    targets = table.refresh_targets(now=100.0)
    assert len(targets) == table.bucket_count()
    for index, target in enumerate(targets):
        assert len(target) == 32 and bucket_of(table, target) == index
    assert table.refresh_targets(now=200.0) == []
    assert table.next_refresh_at() == 3700.0
    # A lookup in bucket 1 counts as its refresh.
    table.touch_bucket(at_depth(1, rng), now=1000.0)
    due = table.refresh_targets(now=3700.0)
    assert [bucket_of(table, t) for t in due] == [0, 2, 3, 4, 5, 6, 7, 8]
    assert len(table.refresh_targets(now=3700.0, force=True)) == 9
    assert table.statistics()["refreshes"] == 26


def test_refresh_targets_are_spread_over_the_bucket():
    table = RoutingTable(OWN, k=1, rng=random.Random(12))
    ids = {bytes(t) for now in range(200)
           for t in table.refresh_targets(now=float(now) * 4000.0)}
    assert len(ids) == 200                   # 2**256 ids: no repeats


# -- bookkeeping ----------------------------------------------------------------------


def test_statistics_counters_move():
    table, nodes, rng = full_bucket(k=2, replacement_cache_size=1, ping_after=0.0)
    table.seen(nodes[0], addr(0), now=5.0)
    table.seen(at_depth(0, rng), addr(70), now=6.0)
    table.seen(at_depth(0, rng), addr(71), now=7.0)
    table.failed(nodes[1], now=8.0)
    stats = table.statistics()
    assert stats == stats | {
        "contacts": 2, "buckets": 2, "replacements": 1, "added": 2, "updated": 1,
        "cached": 2, "replacements_dropped": 1, "failures_counted": 1, "pings_requested": 1,
        "splits": 1, "evicted": 0,
    }
    assert all(isinstance(v, int) for v in stats.values())
