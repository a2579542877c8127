"""Record verification, the value and provider stores, and the republish schedule.

Time is simulated throughout: every call takes the ``now`` the test chooses.
"""

from __future__ import annotations

import random

import pytest

from stt_proto.dht.messages import (
    MAX_SALT_BYTES,
    MAX_VALUE_BYTES,
    ImmutableValue,
    MutableValue,
    StoreStatus,
    immutable_key,
    mutable_key,
    mutable_signed_bytes,
)
from stt_proto.dht.records import (
    IMMUTABLE_OVERHEAD_BYTES,
    MUTABLE_OVERHEAD_BYTES,
    PROVIDER,
    ProviderStore,
    Republisher,
    ValueStore,
    record_author,
    record_footprint,
    record_key,
    sign_mutable,
    verify_record,
)
from stt_proto.errors import LocalProtocolError, MissingSigningKeyError
from stt_proto.identity import Identity

TTL = 100.0
ALICE = Identity.from_signing_seed(b"\x01" * 32)
MALLORY = Identity.from_signing_seed(b"\x02" * 32)
LEGACY = Identity.from_private_bytes(b"\x03" * 32)
PUB_A = b"\xaa" * 32
PUB_B = b"\xbb" * 32
# The neutral point (y = 1): a key of small order, refused by the identity module.
SMALL_ORDER_KEY = b"\x01" + b"\x00" * 31


def peer(n: int) -> bytes:
    return n.to_bytes(32, "big")


def immutable(n: int, size: int = 8) -> tuple[bytes, ImmutableValue]:
    value = n.to_bytes(size, "big")
    return immutable_key(value), ImmutableValue(value=value)


def mutable(identity: Identity = ALICE, value: bytes = b"v", *, salt: bytes = b"",
            seq: int = 1) -> tuple[bytes, MutableValue]:
    return mutable_key(identity.node_id, salt), sign_mutable(identity, value, salt=salt, seq=seq)


def tampered(record: object, **fields: object) -> object:
    """A copy of a frozen record with fields replaced, bypassing its validation
    (what a buggy or hostile in-process caller could hand over)."""
    copy = object.__new__(type(record))
    for name in type(record).__slots__:
        object.__setattr__(copy, name, fields.get(name, getattr(record, name)))
    return copy


# -- verify_record -----------------------------------------------------------------------


def test_immutable_record_verifies_only_under_its_hash() -> None:
    key, record = immutable(1)
    assert verify_record(key, record)
    assert verify_record(bytearray(key), record)
    assert not verify_record(immutable_key(b"other"), record)
    assert not verify_record(key[:31], record)
    assert not verify_record(key + b"\x00", record)


def test_mutable_record_verifies_under_author_and_salt() -> None:
    key, record = mutable(salt=b"profile", seq=7)
    assert verify_record(key, record)
    assert record_author(record) == ALICE.node_id
    assert record_key(record) == key


def test_forged_signature_is_refused() -> None:
    key, record = mutable()
    flipped = bytes([record.signature[0] ^ 1]) + record.signature[1:]
    assert not verify_record(key, MutableValue(
        signing_public_key=record.signing_public_key, salt=b"", seq=1, value=b"v",
        signature=flipped))


def test_signature_of_another_identity_under_the_authors_key_is_refused() -> None:
    key, _ = mutable()
    forged = MutableValue(signing_public_key=ALICE.signing_public_key, salt=b"", seq=1,
                          value=b"v", signature=MALLORY.sign(mutable_signed_bytes(b"", 1, b"v")))
    assert not verify_record(key, forged)


def test_own_valid_record_offered_under_the_victims_key_is_refused() -> None:
    victim_key, _ = mutable(ALICE)
    _, mallorys = mutable(MALLORY)
    assert verify_record(mutable_key(MALLORY.node_id, b""), mallorys)
    assert not verify_record(victim_key, mallorys)


def test_key_of_another_salt_is_refused() -> None:
    _, record = mutable(salt=b"a")
    assert not verify_record(mutable_key(ALICE.node_id, b"b"), record)
    assert not verify_record(mutable_key(ALICE.node_id, b""), record)


@pytest.mark.parametrize("field, value", [("seq", 2), ("value", b"w"), ("salt", b"x")])
def test_any_signed_field_changed_breaks_the_signature(field: str, value: object) -> None:
    key, record = mutable()
    changed = MutableValue(**{name: getattr(record, name) for name in type(record).__slots__
                              if name != field}, **{field: value})
    # A changed salt also changes the key: check both the old and the matching key.
    assert not verify_record(key, changed)
    assert not verify_record(mutable_key(ALICE.node_id, changed.salt), changed)


def test_small_order_signing_key_is_refused_and_has_no_author() -> None:
    record = MutableValue(signing_public_key=SMALL_ORDER_KEY, salt=b"", seq=1, value=b"v",
                          signature=b"\x00" * 64)
    assert record_author(record) is None
    assert record_key(record) is None
    assert not verify_record(b"\x00" * 32, record)


@pytest.mark.parametrize("garbage", [
    None, b"value", "value", 42, 3.5, {"value": b"v"}, (b"v",), [b"v"], object(),
    object.__new__(ImmutableValue), object.__new__(MutableValue),
])
def test_objects_that_are_not_records_are_refused_without_raising(garbage: object) -> None:
    assert not verify_record(b"\x00" * 32, garbage)
    assert record_key(garbage) is None
    assert record_author(garbage) is None


@pytest.mark.parametrize("fields", [
    {"value": "v"},  # text, not bytes
    {"value": bytearray(b"v")},  # the codec only ever produces bytes
    {"value": b"v" * (MAX_VALUE_BYTES + 1)},
    {"salt": b"s" * (MAX_SALT_BYTES + 1)},
    {"salt": None},
    {"seq": True},
    {"seq": -1},
    {"seq": 1 << 64},
    {"seq": 1.0},
    {"signing_public_key": "k" * 32},
    {"signing_public_key": b"\x00" * 31},
    {"signature": None},
    {"signature": b"\x00" * 63},
])
def test_mutable_records_with_bad_fields_are_refused(fields: dict) -> None:
    key, record = mutable()
    assert not verify_record(key, tampered(record, **fields))


@pytest.mark.parametrize("value", ["text", None, b"v" * (MAX_VALUE_BYTES + 1)])
def test_immutable_records_with_bad_fields_are_refused(value: object) -> None:
    key, record = immutable(1)
    assert not verify_record(key, tampered(record, value=value))


def test_subclasses_of_records_are_refused() -> None:
    class Sneaky(ImmutableValue):
        __slots__ = ()

    record = Sneaky(value=b"v")
    assert not verify_record(immutable_key(b"v"), record)
    assert record_key(record) is None


@pytest.mark.parametrize("key", [None, "k" * 32, 0, list(range(32))])
def test_keys_that_are_not_bytes_are_refused(key: object) -> None:
    assert not verify_record(key, immutable(1)[1])  # type: ignore[arg-type]


def test_sign_mutable_needs_a_signing_identity_and_valid_fields() -> None:
    with pytest.raises(MissingSigningKeyError):
        sign_mutable(LEGACY, b"v", seq=1)
    with pytest.raises(ValueError):
        sign_mutable(ALICE, b"v" * (MAX_VALUE_BYTES + 1), seq=1)
    with pytest.raises(ValueError):
        sign_mutable(ALICE, b"v", salt=b"s" * (MAX_SALT_BYTES + 1), seq=1)
    with pytest.raises(ValueError):
        sign_mutable(ALICE, b"v", seq=-1)


def test_footprint_counts_value_salt_and_fixed_fields() -> None:
    assert record_footprint(ImmutableValue(value=b"abc")) == IMMUTABLE_OVERHEAD_BYTES + 3
    _, record = mutable(value=b"abcd", salt=b"xy")
    assert record_footprint(record) == MUTABLE_OVERHEAD_BYTES + 2 + 4


# -- ValueStore: verification and sequence numbers ---------------------------------------


def test_store_and_get_an_immutable_value() -> None:
    store = ValueStore(ttl=TTL)
    key, record = immutable(1)
    assert store.store(key, record, publisher=PUB_A, now=0) is StoreStatus.OK
    assert store.get(key, now=1) == record
    assert key in store and len(store) == 1
    stats = store.statistics()
    assert stats["stored"] == 1 and stats["records"] == 1
    assert stats["bytes"] == record_footprint(record)
    assert store.records_of(PUB_A) == 1


def test_store_refuses_invalid_records_and_counts_them() -> None:
    store = ValueStore(ttl=TTL)
    key, record = immutable(1)
    _, signed = mutable()
    offers = [
        (immutable_key(b"x"), record),  # wrong key
        (mutable(ALICE)[0], mutable(MALLORY)[1]),  # Mallory's record under Alice's key
        (key, None), (key, b"raw bytes"), (key, {"value": b"x"}),
        (key, object.__new__(MutableValue)),
        (mutable()[0], tampered(signed, signature=b"\x00" * 64)),
        (key, tampered(record, value="text")),
    ]
    for offered_key, offered in offers:
        assert store.store(offered_key, offered, publisher=PUB_A, now=0) \
            is StoreStatus.REFUSED_INVALID
    for cas in ("1", 1.0, True):
        assert store.store(*mutable(), publisher=PUB_A, cas=cas, now=0) \
            is StoreStatus.REFUSED_INVALID
    assert len(store) == 0
    assert store.statistics()["refused_invalid"] == len(offers) + 3
    assert store.statistics()["stored"] == 0


def test_store_refuses_values_over_its_limit() -> None:
    store = ValueStore(max_value_bytes=16, ttl=TTL)
    key, record = immutable(1, size=17)
    assert store.store(key, record, publisher=PUB_A, now=0) is StoreStatus.REFUSED_TOO_LARGE
    assert store.store(*mutable(value=b"v" * 17), publisher=PUB_A, now=0) \
        is StoreStatus.REFUSED_TOO_LARGE
    assert store.store(*immutable(2, size=16), publisher=PUB_A, now=0) is StoreStatus.OK
    assert store.statistics()["refused_too_large"] == 2


def test_mutable_keeps_the_highest_sequence_and_refuses_rollback() -> None:
    store = ValueStore(ttl=TTL)
    key, first = mutable(value=b"one", seq=1)
    _, second = mutable(value=b"two", seq=2)
    assert store.store(key, first, publisher=PUB_A, now=0) is StoreStatus.OK
    assert store.store(key, second, publisher=PUB_A, now=1) is StoreStatus.OK
    assert store.get(key, now=1) == second
    assert store.next_expiry() == 1 + TTL  # a new version lives a full ttl
    assert store.store(key, first, publisher=PUB_A, now=2) is StoreStatus.REFUSED_ROLLBACK
    # The same sequence number with another value is a rollback too (BEP 44).
    _, fork = mutable(value=b"fork", seq=2)
    assert store.store(key, fork, publisher=PUB_A, now=3) is StoreStatus.REFUSED_ROLLBACK
    assert store.get(key, now=3) == second
    stats = store.statistics()
    assert (stats["stored"], stats["replaced"], stats["refused_rollback"]) == (1, 1, 2)
    assert stats["bytes"] == record_footprint(second) and len(store) == 1


def test_same_sequence_and_value_refreshes() -> None:
    store = ValueStore(ttl=TTL)
    key, record = mutable(seq=5)
    store.store(key, record, publisher=PUB_A, now=0)
    assert store.store(key, record, publisher=PUB_B, now=60) is StoreStatus.OK
    assert store.next_expiry() == 60 + TTL
    assert store.statistics()["refreshed"] == 1
    # A refresh charges nobody: the record stays with its first publisher.
    assert (store.records_of(PUB_A), store.records_of(PUB_B)) == (1, 0)


def test_compare_and_swap() -> None:
    store = ValueStore(ttl=TTL)
    key, first = mutable(value=b"one", seq=1)
    # Nothing held: nothing to compare against, the record is taken.
    assert store.store(key, first, publisher=PUB_A, cas=9, now=0) is StoreStatus.OK
    _, second = mutable(value=b"two", seq=2)
    assert store.store(key, second, publisher=PUB_A, cas=0, now=1) is StoreStatus.REFUSED_CAS
    assert store.store(key, second, publisher=PUB_A, cas=2, now=1) is StoreStatus.REFUSED_CAS
    assert store.get(key, now=1) == first
    assert store.store(key, second, publisher=PUB_A, cas=1, now=1) is StoreStatus.OK
    assert store.get(key, now=1) == second
    # A matching cas does not license a rollback.
    assert store.store(key, first, publisher=PUB_A, cas=2, now=2) is StoreStatus.REFUSED_ROLLBACK
    assert store.statistics()["refused_cas"] == 2


def test_cas_is_ignored_for_immutable_values() -> None:
    store = ValueStore(ttl=TTL)
    key, record = immutable(1)
    assert store.store(key, record, publisher=PUB_A, cas=5, now=0) is StoreStatus.OK
    assert store.store(key, record, publisher=PUB_A, cas=6, now=1) is StoreStatus.OK


def test_publisher_must_be_a_node_id() -> None:
    store = ValueStore()
    with pytest.raises(ValueError):
        store.store(*immutable(1), publisher=b"short", now=0)


@pytest.mark.parametrize("kwargs", [
    {"max_value_bytes": MAX_VALUE_BYTES + 1}, {"max_value_bytes": 0}, {"max_records": 0},
    {"max_bytes": -1}, {"max_records_per_publisher": True}, {"ttl": 0}, {"ttl": "1"},
])
def test_value_store_limits_are_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ValueStore(**kwargs)


# -- ValueStore: limits against a hostile publisher ------------------------------------


def test_one_publisher_cannot_fill_the_store() -> None:
    store = ValueStore(max_records=100, max_records_per_publisher=5, ttl=TTL)
    statuses = [store.store(*immutable(n), publisher=PUB_A, now=0) for n in range(50)]
    assert statuses.count(StoreStatus.OK) == 5
    assert statuses[5:] == [StoreStatus.REFUSED_FULL] * 45
    assert store.statistics()["refused_publisher_limit"] == 45
    assert store.statistics()["refused_full"] == 0
    assert store.store(*immutable(1000), publisher=PUB_B, now=0) is StoreStatus.OK
    assert store.records_of(PUB_A) == 5 and len(store) == 6
    # Once its records expire the publisher has room again.
    assert store.store(*immutable(51), publisher=PUB_A, now=TTL) is StoreStatus.OK
    assert store.records_of(PUB_A) == 1


def test_many_publishers_fill_the_store_and_newcomers_are_refused_not_evicting() -> None:
    store = ValueStore(max_records=10, max_records_per_publisher=2, ttl=TTL)
    for n in range(10):
        assert store.store(*immutable(n), publisher=peer(n // 2), now=0) is StoreStatus.OK
    for n in range(10, 20):
        assert store.store(*immutable(n), publisher=peer(n), now=1) is StoreStatus.REFUSED_FULL
    assert store.statistics()["refused_full"] == 10
    assert all(store.get(immutable(n)[0], now=1) is not None for n in range(10))
    # Expiry makes room, without waiting for the timer: store() expires first.
    assert store.store(*immutable(99), publisher=peer(99), now=TTL) is StoreStatus.OK
    assert len(store) == 1 and store.statistics()["expired"] == 10


def test_byte_budget_is_enforced() -> None:
    per_record = IMMUTABLE_OVERHEAD_BYTES + 100
    store = ValueStore(max_bytes=3 * per_record, ttl=TTL)
    for n in range(3):
        assert store.store(*immutable(n, size=100), publisher=peer(n), now=0) is StoreStatus.OK
    assert store.store(*immutable(3, size=1), publisher=peer(3), now=0) is StoreStatus.REFUSED_FULL
    assert store.statistics()["bytes"] == 3 * per_record
    assert store.statistics()["refused_full"] == 1


def test_replacement_that_does_not_fit_keeps_the_old_record() -> None:
    key, small = mutable(value=b"s", seq=1)
    store = ValueStore(max_bytes=record_footprint(small) + 10, ttl=TTL)
    assert store.store(key, small, publisher=PUB_A, now=0) is StoreStatus.OK
    _, big = mutable(value=b"b" * 50, seq=2)
    assert store.store(key, big, publisher=PUB_A, now=1) is StoreStatus.REFUSED_FULL
    assert store.get(key, now=1) == small
    assert store.statistics()["bytes"] == record_footprint(small)


def test_replacement_is_charged_to_its_sender() -> None:
    store = ValueStore(max_records_per_publisher=1, ttl=TTL)
    key, first = mutable(seq=1)
    _, second = mutable(seq=2)
    _, third = mutable(seq=3)
    assert store.store(key, first, publisher=PUB_A, now=0) is StoreStatus.OK
    assert store.store(*immutable(1), publisher=PUB_B, now=0) is StoreStatus.OK
    # PUB_B is at its limit: it cannot take over a record by replacing it.
    assert store.store(key, second, publisher=PUB_B, now=1) is StoreStatus.REFUSED_FULL
    assert store.statistics()["refused_publisher_limit"] == 1
    assert store.store(key, second, publisher=peer(7), now=1) is StoreStatus.OK
    assert (store.records_of(PUB_A), store.records_of(peer(7))) == (0, 1)
    # The original publisher can replace it again (it has room now).
    assert store.store(key, third, publisher=PUB_A, now=2) is StoreStatus.OK
    assert store.statistics()["publishers"] == 2


# -- ValueStore: expiry ----------------------------------------------------------------


def test_records_expire_after_ttl() -> None:
    store = ValueStore(ttl=TTL)
    key, record = immutable(1)
    store.store(key, record, publisher=PUB_A, now=10)
    assert store.next_expiry() == 10 + TTL
    assert store.expire(now=10 + TTL - 0.001) == 0
    assert store.get(key, now=10 + TTL - 0.001) == record
    # Due but not yet collected: get() already hides it, items() too.
    assert store.get(key, now=10 + TTL) is None
    assert list(store.items(now=10 + TTL)) == []
    assert list(store.items()) == [(key, record)]
    assert store.expire(now=10 + TTL) == 1
    assert store.next_expiry() is None
    stats = store.statistics()
    assert (stats["expired"], stats["records"], stats["bytes"], stats["publishers"]) == (1, 0, 0, 0)


def test_refresh_postpones_expiry_without_growing_the_heap() -> None:
    store = ValueStore(ttl=TTL)
    key, record = immutable(1)
    store.store(key, record, publisher=PUB_A, now=0)
    for t in range(1, 2001):  # a peer refreshing over and over
        assert store.store(key, record, publisher=PUB_B, now=t * 0.01) is StoreStatus.OK
    assert store.statistics()["heap_entries"] == 1
    assert store.expire(now=TTL) == 0  # the stale deadline is moved, not obeyed
    assert store.next_expiry() == pytest.approx(20 + TTL)
    assert store.get(key, now=TTL + 10) == record
    assert store.expire(now=20 + TTL) == 1


def test_next_expiry_is_exact_after_refreshes() -> None:
    store = ValueStore(ttl=TTL)
    k1, r1 = immutable(1)
    k2, r2 = immutable(2)
    store.store(k1, r1, publisher=PUB_A, now=0)
    store.store(k2, r2, publisher=PUB_A, now=5)
    store.store(k1, r1, publisher=PUB_A, now=50)
    assert store.next_expiry() == 5 + TTL
    assert store.expire(now=5 + TTL) == 1
    assert store.next_expiry() == 50 + TTL
    assert store.keys() == [k1]


def test_an_expired_mutable_record_no_longer_blocks_lower_sequences() -> None:
    store = ValueStore(ttl=TTL)
    key, newer = mutable(seq=9)
    _, older = mutable(value=b"old", seq=3)
    store.store(key, newer, publisher=PUB_A, now=0)
    assert store.store(key, older, publisher=PUB_A, now=TTL - 1) is StoreStatus.REFUSED_ROLLBACK
    assert store.store(key, older, publisher=PUB_A, now=TTL) is StoreStatus.OK


def test_items_hand_over_live_records() -> None:
    store = ValueStore(ttl=TTL)
    k1, r1 = immutable(1)
    k2, r2 = mutable()
    store.store(k1, r1, publisher=PUB_A, now=0)
    store.store(k2, r2, publisher=PUB_A, now=50)
    assert dict(store.items(now=60)) == {k1: r1, k2: r2}
    assert dict(store.items(now=TTL)) == {k2: r2}
    # Walking a snapshot: the store may change under the iteration.
    for key, _ in store.items():
        store.expire(now=1000)
    assert len(store) == 0


def test_seeded_random_operations_keep_the_accounting_exact() -> None:
    seed = 1234
    rng = random.Random(seed)
    store = ValueStore(max_records=40, max_bytes=40 * 60, max_records_per_publisher=8, ttl=TTL)
    now = 0.0
    for _ in range(3000):
        now += rng.random() * 3
        n = rng.randrange(80)
        store.store(*immutable(n, size=rng.choice((8, 9))), publisher=peer(rng.randrange(8)),
                    now=now)
        if rng.random() < 0.1:
            store.expire(now=now)
        held = list(store.items())
        stats = store.statistics()
        assert stats["records"] == len(held) <= 40, seed
        assert stats["bytes"] == sum(map(record_footprint, (r for _, r in held))) <= 40 * 60, seed
        assert stats["heap_entries"] == len(held), seed
        assert sum(store.records_of(peer(p)) for p in range(8)) == len(held), seed
        assert all(store.records_of(peer(p)) <= 8 for p in range(8)), seed
        deadlines = [held.expires_at for held in store._records.values()]
        assert store.next_expiry() == (min(deadlines) if deadlines else None), seed


# -- ProviderStore ---------------------------------------------------------------------


KEY = b"\x11" * 32
ADDR = ("192.0.2.1", 4000)


def test_providers_are_returned_most_recent_first() -> None:
    store = ProviderStore(ttl=TTL)
    for n in range(3):
        assert store.add(KEY, peer(n), ("192.0.2.1", 4000 + n), now=n)
    assert [p for p, _ in store.get(KEY, 10, now=5)] == [peer(2), peer(1), peer(0)]
    assert store.get(KEY, 2, now=5) == [(peer(2), ("192.0.2.1", 4002)),
                                        (peer(1), ("192.0.2.1", 4001))]
    # A refresh moves the provider to the front and records where it is now.
    assert store.add(KEY, peer(0), ("198.51.100.9", 9), now=6)
    assert store.get(KEY, 1, now=6) == [(peer(0), ("198.51.100.9", 9))]
    assert store.get(b"\x22" * 32, 5, now=6) == []
    assert store.get(KEY, 0, now=6) == []
    stats = store.statistics()
    assert (stats["added"], stats["refreshed"], stats["records"], stats["keys"]) == (3, 1, 3, 1)


def test_only_live_providers_are_returned_and_expiry_follows_refreshes() -> None:
    store = ProviderStore(ttl=TTL)
    store.add(KEY, peer(1), ADDR, now=0)
    store.add(KEY, peer(2), ADDR, now=10)
    store.add(KEY, peer(1), ADDR, now=20)  # refreshed
    assert store.next_expiry() == 10 + TTL
    assert [p for p, _ in store.get(KEY, 5, now=10 + TTL)] == [peer(1)]
    assert store.expire(now=10 + TTL) == 1
    assert store.next_expiry() == 20 + TTL
    assert store.expire(now=20 + TTL) == 1
    assert store.next_expiry() is None
    stats = store.statistics()
    assert (stats["expired"], stats["keys"], stats["records"], stats["distinct_providers"]) == (2, 0, 0, 0)
    assert len(store) == 0 and store.keys() == []


def test_a_full_key_refuses_newcomers_and_keeps_its_providers() -> None:
    store = ProviderStore(max_providers_per_key=3, ttl=TTL)
    for n in range(3):
        assert store.add(KEY, peer(n), ADDR, now=0)
    for n in range(3, 50):  # Sybil ids trying to push the honest providers out
        assert not store.add(KEY, peer(n), ADDR, now=1)
    assert {p for p, _ in store.get(KEY, 20, now=1)} == {peer(0), peer(1), peer(2)}
    assert store.statistics()["refused_key_full"] == 47
    # Honest providers keep refreshing; a slot frees only when one stops.
    assert store.add(KEY, peer(0), ADDR, now=50) and store.add(KEY, peer(1), ADDR, now=50)
    assert store.add(KEY, peer(9), ADDR, now=TTL)
    assert {p for p, _ in store.get(KEY, 20, now=TTL)} == {peer(0), peer(1), peer(9)}


def test_one_provider_cannot_announce_unbounded_keys() -> None:
    store = ProviderStore(max_keys=100, max_keys_per_provider=4, ttl=TTL)
    results = [store.add(peer(1000 + n), PUB_A, ADDR, now=0) for n in range(30)]
    assert results.count(True) == 4
    assert store.statistics()["refused_provider_limit"] == 26
    assert store.keys_of(PUB_A) == 4
    assert store.add(peer(5000), PUB_B, ADDR, now=0)
    # Refreshing a key it already provides is still allowed.
    assert store.add(peer(1000), PUB_A, ADDR, now=1)


def test_the_number_of_keys_is_bounded() -> None:
    store = ProviderStore(max_keys=5, ttl=TTL)
    for n in range(5):
        assert store.add(peer(1000 + n), peer(n), ADDR, now=0)
    assert not store.add(peer(2000), peer(99), ADDR, now=0)
    assert store.statistics()["refused_key_limit"] == 1
    # A key that already exists still takes providers.
    assert store.add(peer(1000), peer(99), ADDR, now=0)
    assert store.add(peer(2000), peer(99), ADDR, now=TTL)  # all expired first


def test_provider_refresh_flood_keeps_one_heap_entry() -> None:
    store = ProviderStore(ttl=TTL)
    for t in range(2000):
        store.add(KEY, PUB_A, ADDR, now=t * 0.01)
    assert len(store._expiry) == 1 and len(store) == 1
    assert store.statistics()["refreshed"] == 1999


def test_provider_items_and_validation() -> None:
    store = ProviderStore(ttl=TTL)
    store.add(KEY, PUB_A, ADDR, now=0)
    store.add(KEY, PUB_B, ADDR, now=50)
    assert sorted(store.items()) == sorted([(KEY, PUB_A, ADDR), (KEY, PUB_B, ADDR)])
    assert list(store.items(now=TTL)) == [(KEY, PUB_B, ADDR)]
    with pytest.raises(ValueError):
        store.add(b"short", PUB_A, ADDR, now=0)
    with pytest.raises(ValueError):
        store.add(KEY, "not an id", ADDR, now=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProviderStore(max_providers_per_key=0)


# -- Republisher -----------------------------------------------------------------------


INTERVAL = 22.0


def test_records_are_due_every_interval_from_when_they_were_published() -> None:
    own = Republisher(republish_interval=INTERVAL)
    key, record = immutable(1)
    own.add(key, record, now=0)
    own.add(KEY, PROVIDER, now=5)
    assert own.next_due() == INTERVAL
    assert own.due(now=INTERVAL - 0.001) == []
    assert own.due(now=INTERVAL) == [(key, record)]
    assert own.next_due() == 5 + INTERVAL
    assert own.due(now=5 + INTERVAL) == [(KEY, PROVIDER)]
    assert own.next_due() == 2 * INTERVAL
    # After a long pause each is published once, and scheduled from now.
    assert own.due(now=1000) == [(key, record), (KEY, PROVIDER)]
    assert own.next_due() == 1000 + INTERVAL
    assert own.statistics()["republished"] == 4


def test_value_and_provide_of_one_key_are_kept_apart() -> None:
    own = Republisher(republish_interval=INTERVAL)
    key, record = immutable(1)
    own.add(key, record, now=0)
    own.add(key, PROVIDER, now=0)
    assert len(own) == 2
    assert own.get(key) == record and own.get(key, provider=True) is PROVIDER
    assert own.remove(key)
    assert not own.remove(key)
    assert own.due(now=INTERVAL) == [(key, PROVIDER)]
    assert own.remove(key, provider=True)
    assert own.next_due() is None and own.due(now=10 * INTERVAL) == []


def test_re_adding_replaces_and_reschedules() -> None:
    own = Republisher(republish_interval=INTERVAL)
    key, first = mutable(seq=1)
    _, second = mutable(seq=2)
    own.add(key, first, now=0)
    own.add(key, second, now=10)
    assert own.next_due() == 10 + INTERVAL
    assert own.due(now=INTERVAL) == []
    assert own.due(now=10 + INTERVAL) == [(key, second)]


def test_churn_keeps_the_schedule_bounded() -> None:
    own = Republisher(republish_interval=INTERVAL)
    keys = [immutable(n) for n in range(5)]
    for t in range(3000):
        key, record = keys[t % 5]
        own.add(key, record, now=t)
        if t % 7 == 0:
            own.remove(key)
    stats = own.statistics()
    assert stats["heap_entries"] <= 2 * len(own) + 17
    assert own.due(now=10_000) and own.statistics()["heap_entries"] == len(own)


def test_republisher_refuses_bad_items_and_overflow() -> None:
    own = Republisher(republish_interval=INTERVAL, max_records=2)
    key, record = immutable(1)
    with pytest.raises(ValueError):
        own.add(immutable_key(b"other"), record, now=0)
    with pytest.raises(ValueError):
        own.add(mutable(ALICE)[0], mutable(MALLORY)[1], now=0)
    with pytest.raises(TypeError):
        own.add(key, b"raw", now=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        own.add(b"short", PROVIDER, now=0)
    own.add(key, record, now=0)
    own.add(KEY, PROVIDER, now=0)
    with pytest.raises(LocalProtocolError):
        own.add(key, PROVIDER, now=0)
    own.add(key, record, now=1)  # replacing a held one needs no room
    assert len(own) == 2
    with pytest.raises(ValueError):
        Republisher(republish_interval=0)
