"""Tests of :mod:`stt_proto.noise`: the cacophony test vectors, then failure
handling, secrecy of ``repr``, nonce rules and determinism.

The vectors are vendored in ``tests/vectors/noise`` (their origin and licence are
in the README there; ``STT_NOISE_VECTORS`` overrides the path). A missing file is a
failure, not a skip: without it the implementation is untested against the spec.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.noise import (
    MAX_NONCE,
    CipherState,
    HandshakeState,
    NoiseError,
    SymmetricState,
)

# ---------------------------------------------------------------------------
# Vector loading
# ---------------------------------------------------------------------------


def _vectors_path() -> Path:
    override = os.environ.get("STT_NOISE_VECTORS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "vectors" / "noise" / "cacophony_25519.json"


def _load_vectors() -> tuple[list[dict[str, Any]], str | None]:
    path = _vectors_path()
    try:
        vectors = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    except (OSError, ValueError, KeyError) as exc:
        return [], f"cannot load Noise test vectors from {path}: {exc!r} (set STT_NOISE_VECTORS)"
    if not vectors:
        return [], f"no Noise test vectors in {path}"
    return vectors, None


VECTORS, VECTORS_ERROR = _load_vectors()


def _hex(vector: dict[str, Any], field: str) -> bytes | None:
    return bytes.fromhex(vector[field]) if field in vector else None


def _key(vector: dict[str, Any], field: str) -> X25519PrivateKey | None:
    raw = _hex(vector, field)
    return None if raw is None else X25519PrivateKey.from_private_bytes(raw)


def _side(vector: dict[str, Any], initiator: bool) -> HandshakeState:
    p = "init" if initiator else "resp"
    return HandshakeState(
        vector["protocol_name"],
        initiator,
        prologue=_hex(vector, f"{p}_prologue") or b"",
        s=_key(vector, f"{p}_static"),
        rs=_hex(vector, f"{p}_remote_static"),
        psks=[bytes.fromhex(x) for x in vector.get(f"{p}_psks", [])],
        e=_key(vector, f"{p}_ephemeral"),
    )


def test_vector_file_is_present() -> None:
    if VECTORS_ERROR:
        pytest.fail(VECTORS_ERROR)
    assert len(VECTORS) >= 7


# With the file missing, parametrize over a single placeholder that fails.
@pytest.mark.parametrize(
    "index",
    range(len(VECTORS)) if VECTORS else [None],
    ids=[v["protocol_name"] for v in VECTORS] if VECTORS else ["vectors-missing"],
)
def test_cacophony_vector(index: int | None) -> None:
    if index is None:
        pytest.fail(VECTORS_ERROR or "no vectors")
    vector = VECTORS[index]
    initiator, responder = _side(vector, True), _side(vector, False)
    messages = vector["messages"]

    # Handshake: the initiator sends the even-numbered messages.
    i = 0
    while not (initiator.complete and responder.complete):
        sender, receiver = (initiator, responder) if i % 2 == 0 else (responder, initiator)
        payload = bytes.fromhex(messages[i]["payload"])
        ciphertext = sender.write_message(payload)
        assert ciphertext.hex() == messages[i]["ciphertext"], f"message {i}"
        assert receiver.read_message(ciphertext) == payload, f"message {i}"
        i += 1
    assert initiator.handshake_hash.hex() == vector["handshake_hash"]
    assert responder.handshake_hash.hex() == vector["handshake_hash"]

    # Each side learned (or was given) the other's static key where the pattern has one.
    if "resp_static" in vector:
        expected = X25519PrivateKey.from_private_bytes(bytes.fromhex(vector["resp_static"]))
        assert initiator.remote_static == expected.public_key().public_bytes_raw()
    if "init_static" in vector:
        expected = X25519PrivateKey.from_private_bytes(bytes.fromhex(vector["init_static"]))
        assert responder.remote_static == expected.public_key().public_bytes_raw()

    # Transport: the alternation continues across the end of the handshake
    # (message i is the initiator's iff i is even), with empty associated data.
    i_send, i_recv = initiator.split()
    r_recv, r_send = responder.split()
    assert len(messages) > i, "vector has no transport messages"
    for j in range(i, len(messages)):
        payload = bytes.fromhex(messages[j]["payload"])
        send, recv = (i_send, r_recv) if j % 2 == 0 else (r_send, i_recv)
        ciphertext = send.encrypt_with_ad(b"", payload)
        assert ciphertext.hex() == messages[j]["ciphertext"], f"transport message {j}"
        assert recv.decrypt_with_ad(b"", ciphertext) == payload


# ---------------------------------------------------------------------------
# Helpers for the behavioural tests
# ---------------------------------------------------------------------------

IKPSK2 = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"


def _rng(seed: int):
    return random.Random(seed).randbytes


def _static(seed: int) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))


def _pair(
    name: str = IKPSK2,
    *,
    init_psk: bytes = b"\x11" * 32,
    resp_psk: bytes = b"\x11" * 32,
    seed: int = 1,
) -> tuple[HandshakeState, HandshakeState, dict[str, Any]]:
    """An initiator/responder pair for ``name`` with deterministic keys."""
    si, sr = _static(100 + seed), _static(200 + seed)
    pattern = name.split("_")[1]
    n_psk = pattern.count("psk")
    kw_i: dict[str, Any] = {"psks": [init_psk] * n_psk, "rng": _rng(seed)}
    kw_r: dict[str, Any] = {"psks": [resp_psk] * n_psk, "rng": _rng(seed + 1000)}
    if pattern.startswith("IK"):
        kw_i.update(s=si, rs=sr.public_key().public_bytes_raw())
        kw_r.update(s=sr)
    elif pattern.startswith("XX"):
        kw_i.update(s=si)
        kw_r.update(s=sr)
    initiator = HandshakeState(name, True, prologue=b"stt", **kw_i)
    responder = HandshakeState(name, False, prologue=b"stt", **kw_r)
    return initiator, responder, {"si": si, "sr": sr, "psk": init_psk}


def _run(initiator: HandshakeState, responder: HandshakeState) -> list[bytes]:
    wire = []
    i = 0
    while not initiator.complete:
        sender, receiver = (initiator, responder) if i % 2 == 0 else (responder, initiator)
        msg = sender.write_message(b"payload %d" % i)
        assert receiver.read_message(msg) == b"payload %d" % i
        wire.append(msg)
        i += 1
    assert responder.complete
    return wire


def _priv_hex(key: X25519PrivateKey) -> str:
    return key.private_bytes_raw().hex()


# ---------------------------------------------------------------------------
# Round trips across the supported patterns and modifiers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Noise_NN_25519_ChaChaPoly_SHA256",
        "Noise_XX_25519_AESGCM_BLAKE2b",
        "Noise_IK_25519_AESGCM_SHA256",
        IKPSK2,
        "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s",
        "Noise_NNpsk0+psk2_25519_AESGCM_BLAKE2s",
        "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b",
        "Noise_IKpsk1+psk2_25519_ChaChaPoly_SHA256",
    ],
)
def test_round_trip(name: str) -> None:
    initiator, responder, keys = _pair(name)
    _run(initiator, responder)
    assert initiator.handshake_hash == responder.handshake_hash
    i_send, i_recv = initiator.split()
    r_recv, r_send = responder.split()
    assert r_recv.decrypt_with_nonce(7, b"ad", i_send.encrypt_with_nonce(7, b"ad", b"hi")) == b"hi"
    assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"yo")) == b"yo"
    if "XX" in name or "IK" in name:
        assert responder.remote_static == keys["si"].public_key().public_bytes_raw()
        assert initiator.remote_static == keys["sr"].public_key().public_bytes_raw()
    else:
        assert initiator.remote_static is None and responder.remote_static is None
    assert initiator.split() is initiator.split()


# ---------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------


def _assert_dead(state: HandshakeState) -> None:
    assert state.dead
    with pytest.raises(NoiseError):
        state.read_message(b"\x00" * 200)
    with pytest.raises(NoiseError):
        state.write_message(b"")
    with pytest.raises(NoiseError):
        state.split()
    with pytest.raises(NoiseError):
        state.handshake_hash  # noqa: B018


@pytest.mark.parametrize("offset", [0, 31, 32, 79, 80, -1])
def test_tampered_first_message_kills_responder(offset: int) -> None:
    initiator, responder, _ = _pair("Noise_IK_25519_ChaChaPoly_BLAKE2s")
    msg = bytearray(initiator.write_message(b"hello"))
    msg[offset] ^= 0x01
    with pytest.raises(NoiseError):
        responder.read_message(bytes(msg))
    _assert_dead(responder)


def test_tampered_second_message_kills_initiator() -> None:
    # NN: the first message is unauthenticated, the second carries a tag.
    initiator, responder, _ = _pair("Noise_NN_25519_ChaChaPoly_BLAKE2s")
    responder.read_message(initiator.write_message(b""))
    msg = bytearray(responder.write_message(b"x"))
    msg[-1] ^= 0x80
    with pytest.raises(NoiseError):
        initiator.read_message(bytes(msg))
    _assert_dead(initiator)


@pytest.mark.parametrize("cut", [0, 1, 32, 47, 96])
def test_truncated_message_fails(cut: int) -> None:
    initiator, responder, _ = _pair()
    msg = initiator.write_message(b"")  # e(32) + s(48) + tag(16) = 96 bytes
    assert len(msg) == 96
    with pytest.raises(NoiseError):
        responder.read_message(msg[: len(msg) - cut] if cut else msg + b"\x00")
    _assert_dead(responder)


def test_wrong_psk_fails_at_initiator_reading_message_2() -> None:
    initiator, responder, _ = _pair(init_psk=b"\x11" * 32, resp_psk=b"\x22" * 32)
    # psk2 is mixed at the end of message 2, so message 1 still authenticates...
    assert responder.read_message(initiator.write_message(b"m1")) == b"m1"
    msg2 = responder.write_message(b"m2")
    # ...and the mismatch shows when the initiator authenticates message 2.
    with pytest.raises(NoiseError):
        initiator.read_message(msg2)
    _assert_dead(initiator)


def test_wrong_remote_static_fails() -> None:
    initiator, responder, _ = _pair("Noise_IK_25519_ChaChaPoly_BLAKE2s")
    impostor = HandshakeState(
        "Noise_IK_25519_ChaChaPoly_BLAKE2s", False, prologue=b"stt", s=_static(999)
    )
    with pytest.raises(NoiseError):
        impostor.read_message(initiator.write_message(b""))
    assert impostor.dead and not responder.dead


def test_prologue_mismatch_fails() -> None:
    name = "Noise_NN_25519_ChaChaPoly_BLAKE2s"
    initiator = HandshakeState(name, True, prologue=b"a")
    responder = HandshakeState(name, False, prologue=b"b")
    responder.read_message(initiator.write_message())  # unauthenticated
    with pytest.raises(NoiseError):
        initiator.read_message(responder.write_message())


def test_wrong_turn() -> None:
    initiator, responder, _ = _pair()
    with pytest.raises(NoiseError):
        responder.write_message(b"")
    assert responder.dead
    with pytest.raises(NoiseError):
        initiator.read_message(b"\x00" * 96)
    assert initiator.dead


def test_wrong_turn_mid_handshake() -> None:
    initiator, responder, _ = _pair()
    msg1 = initiator.write_message(b"")
    with pytest.raises(NoiseError):
        initiator.write_message(b"")  # it is the responder's turn now
    _assert_dead(initiator)
    responder.read_message(msg1)


def test_use_after_completion() -> None:
    initiator, responder, _ = _pair()
    _run(initiator, responder)
    for state in (initiator, responder):
        with pytest.raises(NoiseError):
            state.write_message(b"")
        with pytest.raises(NoiseError):
            state.read_message(b"\x00" * 64)
        # A finished handshake keeps its results.
        assert not state.dead
        assert len(state.handshake_hash) == 32
        state.split()


def test_results_unavailable_before_completion() -> None:
    initiator, _, _ = _pair()
    with pytest.raises(NoiseError):
        initiator.handshake_hash  # noqa: B018
    with pytest.raises(NoiseError):
        initiator.split()


def test_oversized_payload_rejected() -> None:
    initiator, _, _ = _pair()
    with pytest.raises(NoiseError):
        initiator.write_message(bytes(65535 - 96 + 1))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("Noise_XK_25519_ChaChaPoly_BLAKE2s", {}),
        ("Noise_NN_448_ChaChaPoly_BLAKE2s", {}),
        ("Noise_NN_25519_AESCCM_BLAKE2s", {}),
        ("Noise_NN_25519_ChaChaPoly_SHA512", {}),
        ("Noise_NNfallback_25519_ChaChaPoly_BLAKE2s", {}),
        ("Noise_NNpsk3_25519_ChaChaPoly_BLAKE2s", {}),
        ("NN_25519_ChaChaPoly_BLAKE2s", {}),
        ("Noise_XX_25519_ChaChaPoly_BLAKE2s", {}),  # missing s
        ("Noise_NN_25519_ChaChaPoly_BLAKE2s", {"s": _static(1)}),  # unused s
        ("Noise_IK_25519_ChaChaPoly_BLAKE2s", {"s": _static(1)}),  # missing rs
        ("Noise_IK_25519_ChaChaPoly_BLAKE2s", {"s": _static(1), "rs": b"\x01" * 31}),
        (IKPSK2, {"s": _static(1), "rs": b"\x09" * 32}),  # missing psk
        (IKPSK2, {"s": _static(1), "rs": b"\x09" * 32, "psks": [b"\x01" * 16]}),
    ],
)
def test_bad_configuration(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        HandshakeState(name, True, **kwargs)


def test_low_order_point_rejected() -> None:
    # An all-zero public key gives an all-zero shared secret.
    initiator = HandshakeState(
        "Noise_IK_25519_ChaChaPoly_BLAKE2s", True, s=_static(1), rs=bytes(32), rng=_rng(1)
    )
    with pytest.raises(NoiseError):
        initiator.write_message(b"")
    assert initiator.dead


# ---------------------------------------------------------------------------
# Secrets stay out of repr, str and error messages
# ---------------------------------------------------------------------------


def test_repr_hides_secrets() -> None:
    psk = bytes(range(32))
    initiator, responder, keys = _pair(init_psk=psk, resp_psk=psk)
    secrets = [_priv_hex(keys["si"]), _priv_hex(keys["sr"]), psk.hex()]

    def check(*objs: object) -> None:
        for obj in objs:
            for text in (repr(obj), str(obj)):
                for secret in secrets:
                    assert secret not in text
                    assert secret[:16] not in text
                assert "\\x" not in text  # no bytes literal of any kind

    check(initiator, responder, initiator._symmetric)
    msg1 = initiator.write_message(b"")
    check(initiator, responder, initiator._symmetric, initiator._symmetric.cipher_state)
    responder.read_message(msg1)
    initiator.read_message(responder.write_message(b""))
    states = initiator.split() + responder.split()
    secrets += [cs.key.hex() for cs in states]
    check(initiator, responder, *states)
    assert "IKpsk2" in repr(initiator) and "initiator" in repr(initiator)
    assert "complete=True" in repr(responder)

    # Error messages are fixed strings.
    bad = bytearray(states[0].encrypt_with_nonce(1, b"", b"data"))
    bad[0] ^= 1
    with pytest.raises(NoiseError) as info:
        states[1].decrypt_with_nonce(1, b"", bytes(bad))
    check(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def test_deterministic_rng_gives_deterministic_messages() -> None:
    a = _run(*_pair(seed=5)[:2])
    b = _run(*_pair(seed=5)[:2])
    c = _run(*_pair(seed=6)[:2])
    assert a == b
    assert a[0][:32] != c[0][:32]


def test_ephemeral_comes_from_rng() -> None:
    raw = b"\x42" * 32
    state = HandshakeState("Noise_NN_25519_ChaChaPoly_BLAKE2s", True, rng=lambda n: raw[:n])
    assert state.local_ephemeral_public is None
    msg = state.write_message(b"")
    expected = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    assert msg[:32] == expected == state.local_ephemeral_public


def test_bad_rng_leaves_state_untouched() -> None:
    state = HandshakeState("Noise_NN_25519_ChaChaPoly_BLAKE2s", True, rng=lambda n: b"short")
    with pytest.raises(ValueError):
        state.write_message(b"")
    assert not state.dead and state.message_index == 0


# ---------------------------------------------------------------------------
# CipherState
# ---------------------------------------------------------------------------

KEY = bytes(range(32))


@pytest.mark.parametrize(
    ("cipher", "aead", "order"),
    [("ChaChaPoly", ChaCha20Poly1305, "little"), ("AESGCM", AESGCM, "big")],
)
def test_nonce_layout(cipher: str, aead: type, order: str) -> None:
    cs = CipherState(cipher, KEY)
    n = 0x0102030405060708
    expected = aead(KEY).encrypt(b"\x00" * 4 + n.to_bytes(8, order), b"pt", b"ad")
    assert cs.encrypt_with_nonce(n, b"ad", b"pt") == expected
    assert cs.n == 0  # explicit nonces leave the counter alone


@pytest.mark.parametrize("cipher", ["ChaChaPoly", "AESGCM"])
def test_nonce_limits(cipher: str) -> None:
    cs = CipherState(cipher, KEY)
    for bad in (-1, 2**64 - 1, 2**64):
        with pytest.raises(NoiseError):
            cs.encrypt_with_nonce(bad, b"", b"x")
        with pytest.raises(NoiseError):
            cs.decrypt_with_nonce(bad, b"", bytes(17))
    ct = cs.encrypt_with_nonce(MAX_NONCE, b"", b"x")
    assert cs.decrypt_with_nonce(MAX_NONCE, b"", ct) == b"x"
    cs.n = 2**64 - 1
    with pytest.raises(NoiseError):
        cs.encrypt_with_ad(b"", b"x")
    with pytest.raises(NoiseError):
        cs.decrypt_with_ad(b"", bytes(17))


def test_no_key_behaviour() -> None:
    cs = CipherState("ChaChaPoly")
    assert not cs.has_key()
    assert cs.encrypt_with_ad(b"ad", b"plain") == b"plain"
    assert cs.decrypt_with_ad(b"ad", b"plain") == b"plain"
    with pytest.raises(NoiseError):
        cs.encrypt_with_nonce(0, b"", b"x")
    with pytest.raises(NoiseError):
        cs.decrypt_with_nonce(0, b"", bytes(16))
    with pytest.raises(NoiseError):
        cs.key  # noqa: B018
    with pytest.raises(NoiseError):
        cs.rekey()


def test_failed_decrypt_does_not_advance_counter() -> None:
    a, b = CipherState("ChaChaPoly", KEY), CipherState("ChaChaPoly", KEY)
    ct = a.encrypt_with_ad(b"ad", b"hello")
    with pytest.raises(NoiseError):
        b.decrypt_with_ad(b"other ad", ct)
    assert b.n == 0
    assert b.decrypt_with_ad(b"ad", ct) == b"hello"
    assert b.n == 1


def test_out_of_order_explicit_nonces() -> None:
    a, b = CipherState("AESGCM", KEY), CipherState("AESGCM", KEY)
    packets = {pn: a.encrypt_with_nonce(pn, b"hdr", b"pkt %d" % pn) for pn in range(10)}
    for pn in (9, 3, 0, 7, 1):
        assert b.decrypt_with_nonce(pn, b"hdr", packets[pn]) == b"pkt %d" % pn
    with pytest.raises(NoiseError):
        b.decrypt_with_nonce(4, b"hdr", packets[5])


@pytest.mark.parametrize(
    ("cipher", "aead", "order"),
    [("ChaChaPoly", ChaCha20Poly1305, "little"), ("AESGCM", AESGCM, "big")],
)
def test_rekey(cipher: str, aead: type, order: str) -> None:
    cs = CipherState(cipher, KEY)
    cs.n = 5
    cs.rekey()
    nonce = b"\x00" * 4 + (2**64 - 1).to_bytes(8, order)
    assert cs.key == aead(KEY).encrypt(nonce, bytes(32), b"")[:32]
    assert cs.n == 5


@settings(max_examples=50, deadline=None)
@given(
    cipher=st.sampled_from(["ChaChaPoly", "AESGCM"]),
    nonce=st.integers(0, MAX_NONCE),
    ad=st.binary(max_size=32),
    plaintext=st.binary(max_size=256),
    flip=st.integers(0, 10_000),
)
def test_cipher_round_trip_and_tamper(
    cipher: str, nonce: int, ad: bytes, plaintext: bytes, flip: int
) -> None:
    cs = CipherState(cipher, KEY)
    ct = cs.encrypt_with_nonce(nonce, ad, plaintext)
    assert len(ct) == len(plaintext) + 16
    assert cs.decrypt_with_nonce(nonce, ad, ct) == plaintext
    bad = bytearray(ct)
    bad[flip % len(bad)] ^= 1 << (flip % 8)
    with pytest.raises(NoiseError):
        cs.decrypt_with_nonce(nonce, ad, bytes(bad))


def test_symmetric_state_long_protocol_name_is_hashed() -> None:
    # Names longer than HASHLEN are hashed; shorter ones are zero-padded.
    short = SymmetricState("Noise_NN_25519_AESGCM_SHA256", "AESGCM", "SHA256")
    assert short.get_handshake_hash() == b"Noise_NN_25519_AESGCM_SHA256".ljust(32, b"\x00")
    long = SymmetricState("Noise_NN_25519_ChaChaPoly_BLAKE2s", "ChaChaPoly", "BLAKE2s")
    assert len(long.get_handshake_hash()) == 32
    assert not long.get_handshake_hash().startswith(b"Noise")


def test_static_dh_cache_gives_identical_handshakes():
    """The ``ss`` result may be cached per peer; the transcript must not change."""
    name = "Noise_IKpsk2_25519_AESGCM_BLAKE2s"
    init_s = X25519PrivateKey.from_private_bytes(bytes(range(32)))
    resp_s = X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
    resp_pub = resp_s.public_key().public_bytes_raw()
    psk = bytes(32)
    outputs = []
    for caches in ((None, None), ({}, {})):
        for _ in range(2):  # the second round uses the filled caches
            rng_i, rng_r = random.Random(1), random.Random(2)
            i = HandshakeState(name, True, s=init_s, rs=resp_pub, psks=[psk],
                               rng=rng_i.randbytes, static_dh_cache=caches[0])
            r = HandshakeState(name, False, s=resp_s, psks=[psk], rng=rng_r.randbytes,
                               static_dh_cache=caches[1])
            m1 = i.write_message(b"one")
            assert r.read_message(m1) == b"one"
            m2 = r.write_message(b"two")
            assert i.read_message(m2) == b"two"
            outputs.append((m1, m2, i.handshake_hash, r.handshake_hash))
        if caches[0] is not None:
            assert len(caches[0]) == 1 and len(caches[1]) == 1
    assert len(set(outputs)) == 1
