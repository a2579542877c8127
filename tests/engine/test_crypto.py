"""Tests of :mod:`stt_proto.crypto`: packet protection, the replay window, key
lifetimes and key rotation.

Pure and in memory. Keys come from real ``Noise_IKpsk2_25519_*_BLAKE2s``
handshakes between two X25519 identities that share a PSK; all randomness
(static keys, ephemerals, forged bytes) comes from seeded ``random.Random``
instances, and time is a plain number passed as ``now``.
"""

from __future__ import annotations

import functools
import random
import struct
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.constants import AEAD_TAG_SIZE, DATA_HEADER_SIZE
from stt_proto.crypto import (
    INTEGRITY_LIMIT_FAILURES,
    PREVIOUS_KEY_GRACE,
    REJECT_AFTER_PACKETS,
    REJECT_AFTER_TIME,
    REKEY_AFTER_PACKETS,
    REKEY_AFTER_TIME,
    REPLAY_WINDOW_SIZE,
    MAX_PACKET_NUMBER,
    KeyExhaustedError,
    KeyLimits,
    KeyRing,
    PacketKeys,
    ReplayWindow,
)
from stt_proto.errors import LocalProtocolError
from stt_proto.noise import CipherState, HandshakeState

CIPHERS = ["AESGCM", "ChaChaPoly"]
HEADER = struct.Struct(">BIQ")

# Indices as the endpoint would pick them; distinct per side and per handshake.
I_INDEX = 0x11111111
R_INDEX = 0x22222222


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _handshake(cipher: str, seed: int) -> tuple[CipherState, CipherState, CipherState, CipherState]:
    """Run a full IKpsk2 handshake; return ``(i_send, i_recv, r_send, r_recv)``.

    Cached: the explicit-nonce methods leave a CipherState unchanged, so several
    PacketKeys may share one handshake's cipher states.
    """
    rnd = random.Random(seed)

    def rng(n: int) -> bytes:
        return rnd.randbytes(n)

    initiator_static = X25519PrivateKey.from_private_bytes(rng(32))
    responder_static = X25519PrivateKey.from_private_bytes(rng(32))
    responder_public = responder_static.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    psk = rng(32)
    name = f"Noise_IKpsk2_25519_{cipher}_BLAKE2s"
    initiator = HandshakeState(
        name, True, prologue=b"stt test", s=initiator_static, rs=responder_public,
        psks=[psk], rng=rng,
    )
    responder = HandshakeState(
        name, False, prologue=b"stt test", s=responder_static, psks=[psk], rng=rng
    )
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    i_to_r, r_to_i = initiator.split()
    r_i_to_r, r_r_to_i = responder.split()
    return i_to_r, r_to_i, r_r_to_i, r_i_to_r


def make_pair(
    cipher: str = "AESGCM",
    *,
    seed: int = 0,
    now: float = 0.0,
    i_index: int = I_INDEX,
    r_index: int = R_INDEX,
    limits: KeyLimits = KeyLimits(),
) -> tuple[PacketKeys, PacketKeys]:
    """PacketKeys of both sides of one handshake: ``(initiator, responder)``."""
    i_send, i_recv, r_send, r_recv = _handshake(cipher, seed)
    initiator = PacketKeys(
        send=i_send, recv=i_recv, local_index=i_index, remote_index=r_index,
        created_at=now, initiator=True, limits=limits,
    )
    responder = PacketKeys(
        send=r_send, recv=r_recv, local_index=r_index, remote_index=i_index,
        created_at=now, initiator=False, limits=limits,
    )
    return initiator, responder


def craft(cipher: str, pn: int, payload: bytes = b"x", *, seed: int = 0,
          index: int = R_INDEX) -> bytes:
    """A genuine initiator-to-responder datagram with any packet number.

    Lets a test skip ahead without sealing millions of packets; the nonce rule is
    the test's business here (each test crafts each number once).
    """
    i_send = _handshake(cipher, seed)[0]
    header = HEADER.pack(0x04, index, pn)
    return header + i_send.encrypt_with_nonce(pn, header, payload)


def drops(keys: PacketKeys) -> int:
    stats = keys.statistics()
    return sum(v for k, v in stats.items() if k not in ("packets_sent", "packets_received"))


@pytest.fixture(params=CIPHERS)
def cipher(request: pytest.FixtureRequest) -> str:
    return request.param


# ---------------------------------------------------------------------------
# Packet protection
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\x01", bytes(range(256)) * 5])
def test_round_trip_both_directions(cipher: str, payload: bytes) -> None:
    a, b = make_pair(cipher)
    pn, datagram = a.seal(payload, now=1.0)
    assert pn == 0
    assert len(datagram) == DATA_HEADER_SIZE + len(payload) + AEAD_TAG_SIZE
    # The clear header carries the *receiver's* index and the packet number.
    assert HEADER.unpack_from(datagram) == (0x04, R_INDEX, 0)
    assert b.open_untrusted(datagram, now=1.0) == (0, payload)
    pn, datagram = b.seal(payload, now=1.0)
    assert HEADER.unpack_from(datagram) == (0x04, I_INDEX, 0)
    assert a.open_untrusted(datagram, now=1.0) == (0, payload)
    assert a.statistics()["packets_sent"] == 1 and a.statistics()["packets_received"] == 1
    assert drops(a) == drops(b) == 0


def test_payload_is_encrypted(cipher: str) -> None:
    a, _ = make_pair(cipher)
    payload = b"secret frames " * 10
    _, datagram = a.seal(payload, now=0.0)
    assert payload not in datagram


def test_bytes_like_datagrams_open(cipher: str) -> None:
    a, b = make_pair(cipher)
    _, d1 = a.seal(b"one", now=0.0)
    _, d2 = a.seal(b"two", now=0.0)
    assert b.open_untrusted(bytearray(d1), now=0.0) == (0, b"one")
    assert b.open_untrusted(memoryview(d2), now=0.0) == (1, b"two")


def test_packet_numbers_strictly_increasing(cipher: str) -> None:
    a, b = make_pair(cipher)
    numbers = []
    for i in range(200):
        pn, datagram = a.seal(b"%d" % i, now=0.0)
        assert HEADER.unpack_from(datagram)[2] == pn
        numbers.append(pn)
    assert numbers == list(range(200))
    assert a.packets_sent == 200


def test_replayed_packet_dropped_and_counted(cipher: str) -> None:
    a, b = make_pair(cipher)
    _, datagram = a.seal(b"once", now=0.0)
    assert b.open_untrusted(datagram, now=0.0) == (0, b"once")
    for _ in range(3):
        assert b.open_untrusted(datagram, now=0.0) is None
    stats = b.statistics()
    assert stats["replayed"] == 3
    assert stats["packets_received"] == 1
    assert stats["auth_failures"] == 0  # replays never reach the AEAD


def test_reordered_within_window_accepted_once_each(cipher: str) -> None:
    a, b = make_pair(cipher)
    sealed = [a.seal(b"p%d" % i, now=0.0) for i in range(50)]
    order = list(range(50))
    random.Random(7).shuffle(order)
    for i in order:
        assert b.open_untrusted(sealed[i][1], now=0.0) == (i, b"p%d" % i)
    for i in order:
        assert b.open_untrusted(sealed[i][1], now=0.0) is None
    stats = b.statistics()
    assert stats["packets_received"] == 50 and stats["replayed"] == 50
    assert b.highest_received == 49


def test_older_than_window_dropped(cipher: str) -> None:
    _, b = make_pair(cipher)
    top = 5000
    assert b.open_untrusted(craft(cipher, top), now=0.0) == (top, b"x")
    # The window holds [top - size + 1, top].
    oldest = top - REPLAY_WINDOW_SIZE + 1
    assert b.open_untrusted(craft(cipher, oldest - 1), now=0.0) is None
    assert b.statistics()["too_old"] == 1
    assert b.open_untrusted(craft(cipher, oldest), now=0.0) == (oldest, b"x")


def test_truncated_datagrams_dropped(cipher: str) -> None:
    a, b = make_pair(cipher)
    _, datagram = a.seal(b"hello world", now=0.0)
    for n in range(len(datagram)):
        assert b.open_untrusted(datagram[:n], now=0.0) is None
    stats = b.statistics()
    # Too short for a header plus tag: malformed; longer: fails the AEAD.
    assert stats["malformed"] == DATA_HEADER_SIZE + AEAD_TAG_SIZE
    assert stats["auth_failures"] == len(datagram) - (DATA_HEADER_SIZE + AEAD_TAG_SIZE)
    assert b.open_untrusted(datagram, now=0.0) == (0, b"hello world")


def test_every_bit_flip_dropped(cipher: str) -> None:
    a, b = make_pair(cipher)
    _, datagram = a.seal(b"hi", now=0.0)
    bits = len(datagram) * 8
    for bit in range(bits):
        flipped = bytearray(datagram)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert b.open_untrusted(bytes(flipped), now=0.0) is None, f"bit {bit}"
    assert drops(b) == bits
    assert b.statistics()["packets_received"] == 0
    # No forgery moved the window: the genuine packet still opens, and the
    # session goes on.
    assert b.highest_received == -1
    assert b.open_untrusted(datagram, now=0.0) == (0, b"hi")
    _, later = a.seal(b"more", now=0.0)
    assert b.open_untrusted(later, now=0.0) == (1, b"more")


def test_forged_packets_dropped(cipher: str) -> None:
    a, b = make_pair(cipher, limits=KeyLimits(reject_after_packets=2**64 - 1,
                                              rekey_after_packets=2**62))
    rnd = random.Random(1)
    numbers = [1, 2, 1000, 10**12, 2**63, 2**64 - 2, 2**64 - 1]
    # Packet numbers run on across a session's keys, so the receiver counts the
    # sender's limit from the first packet it opened under this key.
    _, first = a.seal(b"first", now=0.0)
    assert b.open_untrusted(first, now=0.0) == (0, b"first")
    for pn in numbers:
        body = rnd.randbytes(rnd.randrange(AEAD_TAG_SIZE, 200))
        assert b.open_untrusted(HEADER.pack(0x04, R_INDEX, pn) + body, now=0.0) is None
    stats = b.statistics()
    # Numbers past MAX_PACKET_NUMBER are not numbers the sender may use, so they
    # never reach the AEAD.
    beyond = sum(pn > MAX_PACKET_NUMBER for pn in numbers)
    assert beyond == 3
    assert stats["auth_failures"] == len(numbers) - beyond
    assert stats["rejected_expired"] == beyond
    assert b.highest_received == 0
    _, genuine = a.seal(b"still here", now=0.0)
    assert b.open_untrusted(genuine, now=0.0) == (1, b"still here")


def test_wrong_index_dropped(cipher: str) -> None:
    a, b = make_pair(cipher)
    _, datagram = a.seal(b"x", now=0.0)
    # Sealed for R_INDEX; re-labelled (which also breaks the AEAD) or opened by the
    # initiator's own keys, whose index differs.
    relabelled = HEADER.pack(0x04, R_INDEX + 1, 0) + datagram[DATA_HEADER_SIZE:]
    assert b.open_untrusted(relabelled, now=0.0) is None
    assert a.open_untrusted(datagram, now=0.0) is None
    assert b.statistics()["wrong_index"] == 1
    assert a.statistics()["wrong_index"] == 1
    assert b.open_untrusted(datagram, now=0.0) == (0, b"x")


_RECEIVER = make_pair("AESGCM", seed=3)[1]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda pn, body: HEADER.pack(0x04, R_INDEX, pn) + body,
            st.integers(0, 2**64 - 1),
            st.binary(max_size=80),
        ),
    )
)
def test_open_never_raises(data: bytes) -> None:
    before = drops(_RECEIVER)
    assert _RECEIVER.open_untrusted(data, now=0.0) is None
    assert drops(_RECEIVER) == before + 1


def test_volume_sanity(cipher: str) -> None:
    # Not a benchmark: a few thousand full-size packets through both directions.
    a, b = make_pair(cipher)
    payload = bytes(1200)
    for i in range(3000):
        pn, datagram = a.seal(payload, now=0.0)
        assert b.open_untrusted(datagram, now=0.0) == (i, payload)
    assert b.statistics()["packets_received"] == 3000
    assert drops(b) == 0


def test_repr_has_no_key_material(cipher: str) -> None:
    a, b = make_pair(cipher)
    ring = KeyRing()
    ring.install(a, now=0.0, confirmed=True)
    text = repr(a) + repr(b) + repr(ring)
    for cs in _handshake(cipher, 0):
        assert cs.key.hex() not in text
        assert repr(cs.key) not in text
    assert "PacketKeys" in repr(a) and "initiator" in repr(a)


def test_packet_keys_validate_arguments() -> None:
    i_send, i_recv, _, _ = _handshake("AESGCM", 0)
    ok = dict(send=i_send, recv=i_recv, local_index=1, remote_index=2, created_at=0.0,
              initiator=True)
    PacketKeys(**ok)
    for bad in ({"local_index": -1}, {"remote_index": 2**32}, {"local_index": 1.5},
                {"send": CipherState("AESGCM")}):
        with pytest.raises(ValueError):
            PacketKeys(**{**ok, **bad})


# ---------------------------------------------------------------------------
# Replay window
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 32, 63, 65, 100, -64, 64.0, True])
def test_replay_window_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(size)  # type: ignore[arg-type]


def test_replay_window_basics() -> None:
    assert REPLAY_WINDOW_SIZE >= 2048
    w = ReplayWindow(64)
    assert w.highest == -1 and w.size == 64
    assert not w.would_accept(-1)
    assert w.would_accept(0)
    w.accept(0)
    assert not w.would_accept(0)
    with pytest.raises(ValueError):
        w.accept(0)
    w.accept(100)
    assert w.highest == 100
    assert not w.would_accept(36) and w.is_too_old(36)
    assert w.would_accept(37) and not w.is_too_old(37)
    with pytest.raises(ValueError):
        w.accept(36)


def test_jump_far_ahead_keeps_memory_bounded(cipher: str) -> None:
    w = ReplayWindow()
    w.accept(0)
    w.accept(10**12)
    # White-box: the bitmap never outgrows the window, whatever the jump.
    assert w._bitmap.bit_length() <= w.size
    assert sys.getsizeof(w._bitmap) <= w.size // 8 + 64
    assert w.would_accept(10**12 - w.size + 1)
    assert not w.would_accept(10**12 - w.size)
    w.accept(2**64 - 2)
    assert w._bitmap.bit_length() <= w.size
    # The same through PacketKeys, with limits that allow such packet numbers.
    limits = KeyLimits(rekey_after_packets=2**62, reject_after_packets=2**64 - 1)
    _, b = make_pair(cipher, limits=limits)
    assert b.open_untrusted(craft(cipher, 0), now=0.0) == (0, b"x")
    assert b.open_untrusted(craft(cipher, 10**12), now=0.0) == (10**12, b"x")
    assert b._window._bitmap.bit_length() <= REPLAY_WINDOW_SIZE
    assert b.open_untrusted(craft(cipher, 1), now=0.0) is None
    assert b.statistics()["too_old"] == 1


def _model(size: int, sequence: list[int]) -> list[bool]:
    """Reference: accept a number the first time, unless it is below the window."""
    seen: set[int] = set()
    highest = -1
    out = []
    for pn in sequence:
        ok = pn not in seen and pn > highest - size
        if ok:
            seen.add(pn)
            highest = max(highest, pn)
        out.append(ok)
    return out


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_replay_window_matches_model(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 300), label="n")
    base = list(range(n))
    dups = data.draw(st.lists(st.sampled_from(base), max_size=n), label="dups")
    sequence = data.draw(st.permutations(base + dups), label="sequence")
    w = ReplayWindow(64)
    got = []
    for pn in sequence:
        ok = w.would_accept(pn)
        if ok:
            w.accept(pn)
        got.append(ok)
    assert got == _model(64, sequence)
    accepted = [pn for pn, ok in zip(sequence, got) if ok]
    assert len(accepted) == len(set(accepted))
    assert w._bitmap.bit_length() <= 64


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_packets_each_opened_exactly_once(data: st.DataObject) -> None:
    # All within the 4096-packet window, so every packet opens exactly once.
    n = data.draw(st.integers(1, 60), label="n")
    a, b = make_pair("AESGCM", seed=5)
    sealed = [a.seal(b"%d" % i, now=0.0)[1] for i in range(n)]
    dups = data.draw(st.lists(st.integers(0, n - 1), max_size=n), label="dups")
    order = data.draw(st.permutations(list(range(n)) + dups), label="order")
    opened = []
    for i in order:
        result = b.open_untrusted(sealed[i], now=0.0)
        if result is not None:
            assert result == (i, b"%d" % i)
            opened.append(i)
    assert sorted(opened) == list(range(n))
    assert b.statistics()["replayed"] == len(dups)


# ---------------------------------------------------------------------------
# Key limits
# ---------------------------------------------------------------------------


def test_key_limits_defaults() -> None:
    limits = KeyLimits()
    assert limits.rekey_after_time == REKEY_AFTER_TIME == 120.0
    assert limits.reject_after_time == REJECT_AFTER_TIME == 180.0
    assert limits.rekey_after_packets == REKEY_AFTER_PACKETS == 2**22
    assert limits.reject_after_packets == REJECT_AFTER_PACKETS == 2**23
    assert limits.integrity_limit_failures == INTEGRITY_LIMIT_FAILURES == 2**36
    assert limits.previous_key_grace == PREVIOUS_KEY_GRACE == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rekey_after_time": 0},
        {"rekey_after_time": -1.0},
        {"rekey_after_time": float("nan")},
        {"reject_after_time": float("inf")},
        {"rekey_after_time": 180.0},  # not below reject_after_time
        {"rekey_after_time": 200.0},
        {"rekey_after_packets": 0},
        {"rekey_after_packets": 2**23},  # not below reject_after_packets
        {"rekey_after_packets": 1.5},
        {"reject_after_packets": True},
        {"reject_after_packets": 2**64 + 1, "rekey_after_packets": 10},
        {"integrity_limit_failures": 0},
        {"previous_key_grace": 0},
        {"previous_key_grace": "5"},
    ],
)
def test_key_limits_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        KeyLimits(**kwargs)  # type: ignore[arg-type]


def test_key_limits_frozen() -> None:
    with pytest.raises(AttributeError):
        KeyLimits().rekey_after_time = 1.0  # type: ignore[misc]


def test_seal_refuses_after_packet_limit(cipher: str) -> None:
    limits = KeyLimits(rekey_after_packets=2, reject_after_packets=4)
    a, b = make_pair(cipher, limits=limits)
    for i in range(4):
        assert a.can_send(now=0.0)
        pn, datagram = a.seal(b"", now=0.0)
        assert pn == i
        if i == 0:
            assert b.open_untrusted(datagram, now=0.0) == (0, b"")
    assert not a.can_send(now=0.0)
    with pytest.raises(KeyExhaustedError):
        a.seal(b"", now=0.0)
    assert issubclass(KeyExhaustedError, LocalProtocolError)
    assert a.packets_sent == 4  # the failed call burnt no number
    # A packet number the sender was not allowed to use is refused on receipt.
    assert b.open_untrusted(craft(cipher, 4), now=0.0) is None
    assert b.statistics()["rejected_expired"] == 1


def test_seal_and_open_refuse_after_time_limit(cipher: str) -> None:
    limits = KeyLimits(rekey_after_time=10.0, reject_after_time=20.0)
    a, b = make_pair(cipher, now=100.0, limits=limits)
    _, early = a.seal(b"a", now=119.9)
    _, late = a.seal(b"b", now=119.9)
    assert b.open_untrusted(early, now=119.9) == (0, b"a")
    assert not a.can_send(now=120.0) and not b.can_receive(now=120.0)
    assert a.expires_at == 120.0
    with pytest.raises(KeyExhaustedError):
        a.seal(b"c", now=120.0)
    assert b.open_untrusted(late, now=120.0) is None
    assert b.statistics()["rejected_expired"] == 1


def test_needs_rekey_at_soft_limits(cipher: str) -> None:
    limits = KeyLimits(rekey_after_time=10.0, reject_after_time=20.0,
                       rekey_after_packets=3, reject_after_packets=6)
    a, b = make_pair(cipher, now=50.0, limits=limits)
    # Packets: after the third seal.
    for _ in range(2):
        a.seal(b"", now=50.0)
    assert not a.needs_rekey(now=50.0)
    a.seal(b"", now=50.0)
    assert a.needs_rekey(now=50.0)
    # Time: the initiator at rekey_after_time ...
    assert not b.needs_rekey(now=59.9)
    a2, b2 = make_pair(cipher, now=50.0, limits=limits)
    assert not a2.needs_rekey(now=59.9) and a2.needs_rekey(now=60.0)
    assert a2.rekey_at == 60.0
    # ... the responder halfway between the soft and hard limits, so the two sides
    # do not start colliding handshakes.
    assert not b2.needs_rekey(now=64.9) and b2.needs_rekey(now=65.0)
    assert b2.can_send(now=65.0)


def test_integrity_limit_refuses_key(cipher: str) -> None:
    limits = KeyLimits(integrity_limit_failures=3)
    a, b = make_pair(cipher, limits=limits)
    _, genuine = a.seal(b"ok", now=0.0)
    for pn in range(1, 4):
        assert b.open_untrusted(HEADER.pack(0x04, R_INDEX, pn) + bytes(20), now=0.0) is None
    assert b.statistics()["auth_failures"] == 3
    assert not b.can_receive(now=0.0)
    assert b.needs_rekey(now=0.0)
    assert b.open_untrusted(genuine, now=0.0) is None
    assert b.statistics()["rejected_expired"] == 1
    assert b.statistics()["auth_failures"] == 3  # refused before the AEAD


# ---------------------------------------------------------------------------
# Key ring
# ---------------------------------------------------------------------------


def _session(cipher: str, *, limits: KeyLimits = KeyLimits()) -> tuple[KeyRing, KeyRing]:
    """Rings of an established session: initiator confirmed, responder confirmed by
    the initiator's first packet."""
    ki, kr = make_pair(cipher, seed=10, i_index=0x100, r_index=0x200, limits=limits)
    ring_i, ring_r = KeyRing(limits=limits), KeyRing(limits=limits)
    ring_i.install(ki, now=0.0, confirmed=True)
    ring_r.install(kr, now=0.0, confirmed=False)
    with pytest.raises(LocalProtocolError):
        ring_r.seal(b"too early", now=0.0)
    _, first = ring_i.seal(b"hello", now=0.0)
    opened = ring_r.open_untrusted(first, 0x200, now=0.0)
    assert opened == (kr, 0, b"hello")
    assert ring_r.current is kr and ring_r.next is None and ring_r.previous is None
    return ring_i, ring_r


def _rekey(cipher: str, ring_i: KeyRing, ring_r: KeyRing, *, now: float,
           limits: KeyLimits = KeyLimits()) -> tuple[PacketKeys, PacketKeys]:
    ki, kr = make_pair(cipher, seed=11, now=now, i_index=0x101, r_index=0x201, limits=limits)
    ring_r.install(kr, now=now, confirmed=False)  # responder sent the response
    ring_i.install(ki, now=now, confirmed=True)  # initiator processed it
    return ki, kr


def _index(datagram: bytes) -> int:
    return HEADER.unpack_from(datagram)[1]


def test_keyring_initiator_rotation_and_grace(cipher: str) -> None:
    ring_i, ring_r = _session(cipher)
    old_i = ring_i.current
    assert old_i is not None
    ki, kr = _rekey(cipher, ring_i, ring_r, now=10.0)
    assert ring_i.current is ki and ring_i.previous is old_i
    assert set(ring_i.indices()) == {0x100, 0x101}
    assert ring_i.next_deadline() == 10.0 + PREVIOUS_KEY_GRACE

    # The responder still sends with the old key; the initiator opens it as previous.
    pn, datagram = ring_r.seal(b"old key", now=11.0)
    assert _index(datagram) == 0x100
    assert ring_i.open_untrusted(datagram, 0x100, now=11.0) == (old_i, pn, b"old key")

    # After the grace period, the old key opens nothing and is dropped.
    _, late = ring_r.seal(b"too late", now=15.0)
    assert ring_i.open_untrusted(late, 0x100, now=15.0) is None
    assert ring_i.previous is None and ring_i.indices() == (0x101,)
    assert ring_i.next_deadline() is None
    stats = ring_i.statistics()
    assert stats["grace_expired"] == 1
    assert stats["packets_received"] == 1 and stats["packets_sent"] == 1  # old key's


def test_keyring_expire_drops_previous() -> None:
    ring_i, ring_r = _session("AESGCM", limits=KeyLimits(previous_key_grace=0.5))
    _rekey("AESGCM", ring_i, ring_r, now=10.0)
    deadline = ring_i.next_deadline()
    assert deadline == 10.5
    ring_i.expire(deadline - 0.1)
    assert ring_i.previous is not None
    ring_i.expire(deadline)
    assert ring_i.previous is None and ring_i.next_deadline() is None


def test_keyring_responder_next_confirmed_by_first_packet(cipher: str) -> None:
    ring_i, ring_r = _session(cipher)
    old_r = ring_r.current
    ki, kr = _rekey(cipher, ring_i, ring_r, now=10.0)
    assert ring_r.next is kr and ring_r.current is old_r
    assert set(ring_r.indices()) == {0x200, 0x201}

    # Unconfirmed: the responder keeps sealing with the old key.
    pn, datagram = ring_r.seal(b"still old", now=10.5)
    assert _index(datagram) == 0x100 and pn == 0

    # A forged packet for the new index must not confirm anything.
    forged = HEADER.pack(0x04, 0x201, 0) + bytes(32)
    assert ring_r.open_untrusted(forged, 0x201, now=10.5) is None
    assert ring_r.next is kr

    # The initiator's first packet under the new key confirms it.
    new_pn, new = ring_i.seal(b"new key", now=10.6)
    assert _index(new) == 0x201
    assert ring_r.open_untrusted(new, 0x201, now=10.6) == (kr, new_pn, b"new key")
    assert ring_r.current is kr and ring_r.previous is old_r and ring_r.next is None
    assert ring_r.next_deadline() == 10.6 + PREVIOUS_KEY_GRACE
    reply_pn, reply = ring_r.seal(b"switched", now=10.7)
    assert _index(reply) == 0x101
    assert ring_i.open_untrusted(reply, 0x101, now=10.7) == (ki, reply_pn, b"switched")


def test_keyring_nothing_in_flight_lost(cipher: str) -> None:
    ring_i, ring_r = _session(cipher)
    # Both sides have packets in flight under the old key when the rekey happens.
    in_flight_i = [ring_i.seal(b"i-old-%d" % n, now=9.0)[1] for n in range(5)]
    in_flight_r = [ring_r.seal(b"r-old-%d" % n, now=9.0)[1] for n in range(5)]
    _rekey(cipher, ring_i, ring_r, now=10.0)
    after_i = [ring_i.seal(b"i-new-%d" % n, now=10.1)[1] for n in range(5)]
    # Responder, not yet confirmed, keeps using the old key.
    after_r = [ring_r.seal(b"r-still-old-%d" % n, now=10.1)[1] for n in range(3)]

    # Deliver shuffled, new and old mixed, all within the grace period.
    rnd = random.Random(42)
    to_r = in_flight_i + after_i
    rnd.shuffle(to_r)
    got_r = {ring_r.open_untrusted(d, _index(d), now=12.0) for d in to_r}
    to_i = in_flight_r + after_r
    rnd.shuffle(to_i)
    got_i = {ring_i.open_untrusted(d, _index(d), now=12.0) for d in to_i}
    assert None not in got_r and None not in got_i
    assert {p for _, _, p in got_r} == {b"i-old-%d" % n for n in range(5)} | {
        b"i-new-%d" % n for n in range(5)
    }
    assert len(got_i) == 8
    stats = ring_r.statistics()
    assert stats["packets_received"] == 11  # 1 from setup + 10
    assert stats["auth_failures"] == stats["replayed"] == stats["unknown_index"] == 0


def test_keyring_unknown_index_and_collisions() -> None:
    ring_i, ring_r = _session("AESGCM")
    _, datagram = ring_i.seal(b"x", now=0.0)
    assert ring_r.open_untrusted(datagram, 0x999, now=0.0) is None
    assert ring_r.statistics()["unknown_index"] == 1
    ki, _ = make_pair("AESGCM", seed=12, i_index=0x100, r_index=0x300)
    with pytest.raises(ValueError):
        ring_i.install(ki, now=1.0, confirmed=True)  # 0x100 still in use


def test_keyring_seal_exhausted_key() -> None:
    limits = KeyLimits(rekey_after_packets=1, reject_after_packets=2)
    ring_i, _ = _session("AESGCM", limits=limits)
    ring_i.seal(b"", now=0.0)  # the second packet; the first went in _session
    with pytest.raises(KeyExhaustedError):
        ring_i.seal(b"", now=0.0)
    assert ring_i.current is not None and ring_i.current.needs_rekey(now=0.0)


def test_keyring_simultaneous_rekey_keeps_peer_key() -> None:
    # We responded to the peer's rekey (next pending) and our own rekey completes:
    # the pending key, which the peer already sends with, stays openable.
    ring_i, ring_r = _session("AESGCM")
    peer_side, ours = make_pair("AESGCM", seed=13, i_index=0x500, r_index=0x600)
    ring_i.install(peer_side, now=5.0, confirmed=True)
    ring_r.install(ours, now=5.0, confirmed=False)
    mine_i, mine_r = make_pair("AESGCM", seed=14, i_index=0x700, r_index=0x800)
    ring_r.install(mine_i, now=5.1, confirmed=True)
    assert ring_r.current is mine_i and ring_r.previous is ours and ring_r.next is None
    peer_pn, datagram = ring_i.seal(b"peer", now=5.2)
    assert ring_r.open_untrusted(datagram, 0x600, now=5.2) == (ours, peer_pn, b"peer")


def test_keyring_packet_numbers_continue_across_keys(cipher: str) -> None:
    # Loss recovery keeps one packet-number space per session: a new key starts
    # where the key it replaces stopped, on both sides of a rekey.
    ring_i, ring_r = _session(cipher)
    sent_i = [ring_i.seal(b"i", now=1.0)[0] for _ in range(5)]
    sent_r = [ring_r.seal(b"r", now=1.0)[0] for _ in range(3)]
    ki, kr = _rekey(cipher, ring_i, ring_r, now=10.0)
    first_i, datagram = ring_i.seal(b"new", now=10.1)
    assert first_i == sent_i[-1] + 1 and ki.packets_sent == 1
    ring_r.seal(b"old key still", now=10.1)
    assert ring_r.open_untrusted(datagram, 0x201, now=10.1) == (kr, first_i, b"new")
    first_r, _ = ring_r.seal(b"new", now=10.2)
    assert first_r == sent_r[-1] + 2 and kr.packets_sent == 1
    with pytest.raises(LocalProtocolError):
        kr.continue_from(0)


@pytest.mark.parametrize("pn", [MAX_PACKET_NUMBER + 1, 2**63 + 5, 2**64 - 2])
def test_a_genuine_packet_numbered_past_what_an_ack_can_name_is_dropped(cipher: str,
                                                                        pn: int) -> None:
    """A member can seal any number with its keys; one beyond the varint range
    (ACK frames name packets by varint) is dropped before it reaches the
    session, whose acknowledgement ranges could not hold it."""
    _, responder = make_pair(cipher)
    assert responder.open_untrusted(craft(cipher, pn), now=0.0) is None
    assert responder.statistics()["rejected_expired"] == 1
    assert responder.open_untrusted(craft(cipher, MAX_PACKET_NUMBER), now=0.0) is not None


def test_sealing_stops_at_the_last_packet_number(cipher: str) -> None:
    initiator, responder = make_pair(cipher)
    initiator.continue_from(MAX_PACKET_NUMBER)
    pn, datagram = initiator.seal(b"last", now=0.0)
    assert pn == MAX_PACKET_NUMBER
    assert responder.open_untrusted(datagram, now=0.0) == (pn, b"last")
    with pytest.raises(KeyExhaustedError):
        initiator.seal(b"one more", now=0.0)
