"""Signing identities: the Ed25519 key, the X25519 key derived from it, and
signatures that verify from the node id alone (``stt_proto.identity``,
"Signing identity").

The key conversions are checked against libsodium through PyNaCl, which
implements the same standard map independently: over many random keys, and
over the keys both must refuse (torsion, small order, non-canonical encodings).
Randomness comes from seeded ``random.Random`` instances; the seed is in the
test's name or printed by the assertion.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import random

import nacl.bindings as sodium
import nacl.exceptions
import nacl.signing
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto import identity as identity_module
from stt_proto.errors import MissingSigningKeyError, STTError
from stt_proto.identity import (
    SIGNATURE_BYTES,
    SIGNING_KEY_BYTES,
    SUBGROUP_CHECK_CACHE_SIZE,
    Identity,
    node_id_from_signing_key,
    signing_key_cache_info,
    verify_signature,
)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
SEED = bytes(range(100, 132))
MESSAGE = b"STT test signature v1\x00a record"


def seeded_seeds(seed: int, count: int) -> list[bytes]:
    rand = random.Random(seed)
    return [rand.randbytes(32) for _ in range(count)]


def sodium_node_id(signing_public_key: bytes) -> bytes | None:
    """libsodium's verdict: the converted key, or None if it refuses the key."""
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(signing_public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, ValueError):
        return None


def ours(signing_public_key: bytes) -> bytes | None:
    try:
        return node_id_from_signing_key(signing_public_key)
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# Edwards points for building hostile keys. The module's own arithmetic builds
# them; libsodium, not our code, then judges them.
# ---------------------------------------------------------------------------

add = identity_module._edwards_add
multiply = identity_module._edwards_multiply


def encode(point) -> bytes:
    x, y, z, _ = point
    inverse = pow(z, -1, P)
    x, y = x * inverse % P, y * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode_any(encoded: bytes):
    """Decode any on-curve encoding, small order included, or return None."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    d = identity_module._D
    x2 = (y * y - 1) * pow(d * y * y + 1, -1, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if x * x % P != x2:
        x = x * identity_module._SQRT_M1 % P
    if x * x % P != x2 or y >= P:
        return None
    if x & 1 != sign:
        x = (P - x) % P
    return (x, y, 1, x * y % P)


def is_neutral(point) -> bool:
    return identity_module._is_neutral(point)


BASE = decode_any((4 * pow(5, -1, P) % P).to_bytes(32, "little"))


def torsion_generator():
    """A point of order exactly 8: [L] of a generic point kills its prime part."""
    rand = random.Random(8)
    while True:
        point = decode_any(rand.randbytes(32))
        if point is None:
            continue
        torsion = multiply(L, point)
        if not is_neutral(multiply(4, torsion)):
            return torsion


T8 = torsion_generator()
TORSION = [multiply(k, T8) for k in range(8)]  # every point of order dividing 8


def test_the_torsion_points_are_what_they_claim():
    assert is_neutral(TORSION[0]) and not any(is_neutral(t) for t in TORSION[1:])
    assert len({encode(t) for t in TORSION}) == 8
    assert all(is_neutral(multiply(8, t)) for t in TORSION)
    assert is_neutral(multiply(L, BASE)) and encode(BASE) == bytes.fromhex(
        "58" + "66" * 31
    )  # RFC 8032's base point encoding


# ---------------------------------------------------------------------------
# The construction, against libsodium
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", seeded_seeds(1400, 150), ids=lambda s: s.hex()[:8])
def test_both_conversions_agree_with_libsodium(seed):
    identity = Identity.from_signing_seed(seed)
    public, secret = sodium.crypto_sign_seed_keypair(seed)
    assert identity.signing_public_key == public
    # sk_to_curve25519: the X25519 private key is libsodium's, byte for byte.
    assert identity.private_bytes() == sodium.crypto_sign_ed25519_sk_to_curve25519(secret)
    # pk_to_curve25519: the node id is the converted public key, both ways.
    assert node_id_from_signing_key(public) == identity.node_id
    assert sodium.crypto_sign_ed25519_pk_to_curve25519(public) == identity.node_id
    # And it is the X25519 public key of that private key, so Noise is unchanged.
    assert sodium.crypto_scalarmult_base(identity.private_bytes()) == identity.node_id


def test_the_derivation_is_rfc8032_key_expansion():
    identity = Identity.from_signing_seed(SEED)
    scalar = bytearray(hashlib.sha512(SEED).digest()[:32])
    scalar[0] &= 248
    scalar[31] = (scalar[31] & 127) | 64
    assert identity.private_bytes() == bytes(scalar)
    # The same scalar times the Edwards base point is the signing key.
    assert encode(multiply(int.from_bytes(scalar, "little"), BASE)) == identity.signing_public_key


def test_random_strings_get_the_same_verdict_as_libsodium():
    rand = random.Random(1401)
    accepted = refused = 0
    for _ in range(400):
        key = rand.randbytes(32)
        verdict = sodium_node_id(key)
        assert ours(key) == verdict, key.hex()
        if verdict is None:
            refused += 1
        else:
            accepted += 1
    # Random strings are mostly refused: half are off the curve, and 7/8 of
    # the rest have a small-order component. Both outcomes must be exercised.
    assert refused > 300 and accepted > 0


@pytest.mark.parametrize("k", range(1, 8))
def test_a_key_with_a_small_order_component_is_refused_like_libsodium(k):
    rand = random.Random(1402 + k)
    for seed in seeded_seeds(rand.randrange(1 << 30), 6):
        public = Identity.from_signing_seed(seed).signing_public_key
        mixed = encode(add(decode_any(public), TORSION[k]))
        assert sodium_node_id(mixed) is None
        with pytest.raises(ValueError, match="small-order"):
            node_id_from_signing_key(mixed)


def test_small_order_points_are_refused_in_every_encoding():
    for torsion in TORSION:
        encoded = encode(torsion)
        for variant in (encoded, encoded[:31] + bytes([encoded[31] ^ 0x80])):
            assert sodium_node_id(variant) is None
            with pytest.raises(ValueError):
                node_id_from_signing_key(variant)


@pytest.mark.parametrize("excess", range(19))
def test_non_canonical_encodings_are_refused_like_libsodium(excess):
    for sign in (0, 0x80):
        key = bytearray((P + excess).to_bytes(32, "little"))
        key[31] |= sign
        assert sodium_node_id(bytes(key)) is None
        with pytest.raises(ValueError):
            node_id_from_signing_key(bytes(key))


def test_the_negated_key_maps_to_the_same_node_id():
    # The map forgets the sign of x: A and -A share the node id, and both are
    # accepted, as libsodium accepts them. Only the owner knows either scalar.
    identity = Identity.from_signing_seed(SEED)
    negated = bytearray(identity.signing_public_key)
    negated[31] ^= 0x80
    assert node_id_from_signing_key(bytes(negated)) == identity.node_id
    assert sodium_node_id(bytes(negated)) == identity.node_id


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x01" * 31, b"\x01" * 33, b"\x00" * 64],
    ids=lambda b: f"{len(b)}-bytes",
)
def test_node_id_from_signing_key_rejects_lengths(bad):
    with pytest.raises(ValueError, match="32 bytes"):
        node_id_from_signing_key(bad)


def test_node_id_from_signing_key_types_and_messages():
    identity = Identity.from_signing_seed(SEED)
    with pytest.raises(TypeError):
        node_id_from_signing_key(identity.signing_public_key.hex())  # type: ignore[arg-type]
    assert node_id_from_signing_key(bytearray(identity.signing_public_key)) == identity.node_id
    assert node_id_from_signing_key(memoryview(identity.signing_public_key)) == identity.node_id
    off_curve = next(k for k in seeded_seeds(1403, 50) if decode_any(k) is None)
    with pytest.raises(ValueError, match="not on the curve") as info:
        node_id_from_signing_key(off_curve)
    assert off_curve.hex() not in str(info.value)


# ---------------------------------------------------------------------------
# Identity: signing and legacy
# ---------------------------------------------------------------------------


def counting_rng(start: int):
    def rng(n: int) -> bytes:
        return bytes((start + i) % 256 for i in range(n))

    return rng


def test_generate_makes_a_signing_identity_from_the_rng_seed():
    identity = Identity.generate(counting_rng(7))
    assert identity.can_sign
    assert identity.signing_seed_bytes() == bytes(range(7, 39))
    assert identity == Identity.from_signing_seed(bytes(range(7, 39)))
    assert Identity.generate().can_sign
    assert Identity.generate() != Identity.generate()


def test_signing_identity_round_trips_through_its_seed():
    identity = Identity.from_signing_seed(SEED)
    again = Identity.from_signing_seed(identity.signing_seed_bytes())
    assert again == identity and again.signing_public_key == identity.signing_public_key
    assert Identity.from_signing_seed(bytearray(SEED)) == identity
    assert Identity.from_signing_seed(memoryview(SEED)) == identity
    wrapped = Identity(Ed25519PrivateKey.from_private_bytes(SEED))
    assert wrapped == identity and wrapped.can_sign
    assert isinstance(identity.private_key, X25519PrivateKey)
    assert len(identity.signing_public_key) == SIGNING_KEY_BYTES


def test_from_private_bytes_of_a_signing_identity_is_the_same_node_without_the_key():
    identity = Identity.from_signing_seed(SEED)
    legacy = Identity.from_private_bytes(identity.private_bytes())
    assert legacy == identity and hash(legacy) == hash(identity)
    assert not legacy.can_sign and legacy.signing_public_key is None


@pytest.mark.parametrize("seed", [b"", SEED[:31], SEED + b"\x00", SEED * 2],
                         ids=lambda s: f"{len(s)}-bytes")
def test_from_signing_seed_rejects_lengths_without_echo(seed):
    with pytest.raises(ValueError, match="32 bytes") as info:
        Identity.from_signing_seed(seed)
    if seed:
        assert seed.hex() not in str(info.value) and SEED[:16].hex() not in str(info.value)


def test_from_signing_seed_rejects_other_types():
    for bad in (SEED.hex(), None, 7, list(SEED)):
        with pytest.raises(TypeError):
            Identity.from_signing_seed(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Ed25519PrivateKey or an X25519PrivateKey"):
        Identity(SEED)  # type: ignore[arg-type]


def test_sign_and_verify():
    identity = Identity.from_signing_seed(SEED)
    signature = identity.sign(MESSAGE)
    assert len(signature) == SIGNATURE_BYTES
    assert identity.sign(MESSAGE) == signature  # Ed25519 is deterministic
    assert identity.sign(bytearray(MESSAGE)) == signature == identity.sign(memoryview(MESSAGE))
    key = identity.signing_public_key
    assert verify_signature(identity.node_id, key, MESSAGE, signature) is True
    assert verify_signature(bytearray(identity.node_id), memoryview(key), bytearray(MESSAGE),
                            memoryview(signature)) is True
    assert verify_signature(identity.node_id, key, MESSAGE + b"!", signature) is False
    assert verify_signature(identity.node_id, key, b"", signature) is False
    # libsodium produces and accepts the very same signature.
    assert nacl.signing.SigningKey(SEED).sign(MESSAGE).signature == signature
    nacl.signing.VerifyKey(key).verify(MESSAGE, signature)
    with pytest.raises(TypeError):
        identity.sign(MESSAGE.decode())  # type: ignore[arg-type]


def test_every_single_bit_flip_of_the_signature_or_key_is_refused():
    identity = Identity.from_signing_seed(SEED)
    signature = identity.sign(MESSAGE)
    key = identity.signing_public_key
    for bit in range(SIGNATURE_BYTES * 8):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not verify_signature(identity.node_id, key, MESSAGE, bytes(flipped)), bit
    for bit in range(SIGNING_KEY_BYTES * 8):
        flipped = bytearray(key)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not verify_signature(identity.node_id, bytes(flipped), MESSAGE, signature), bit
    for bit in range(32 * 8):
        flipped = bytearray(identity.node_id)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not verify_signature(bytes(flipped), key, MESSAGE, signature), bit


def test_a_valid_signature_under_someone_elses_node_id_is_refused():
    alice = Identity.from_signing_seed(SEED)
    mallory = Identity.generate(random.Random(1404).randbytes)
    signature = mallory.sign(MESSAGE)
    # Mallory's signature is fine for Mallory ...
    assert verify_signature(mallory.node_id, mallory.signing_public_key, MESSAGE, signature)
    # ... but her key does not map to Alice's id, whatever she claims.
    assert not verify_signature(alice.node_id, mallory.signing_public_key, MESSAGE, signature)
    # A signature by Alice under the negated key (same node id) does not verify.
    negated = bytearray(alice.signing_public_key)
    negated[31] ^= 0x80
    assert not verify_signature(alice.node_id, bytes(negated), MESSAGE, alice.sign(MESSAGE))


def sign_with_scalar(scalar: int, public: bytes, message: bytes, rand: random.Random) -> bytes:
    """RFC 8032 signing from a bare scalar and an arbitrary claimed public key:
    what an attacker with their own code can do, and ``cryptography`` cannot."""
    nonce = rand.randrange(1, L)
    commitment = encode(multiply(nonce, BASE))
    challenge = int.from_bytes(hashlib.sha512(commitment + public + message).digest(), "little") % L
    return commitment + ((nonce + challenge * scalar) % L).to_bytes(32, "little")


def test_a_key_with_a_torsion_component_cannot_sign_for_its_node_id():
    # The owner of A can make signatures that verify under A + T (T of order
    # 2) whenever the challenge is even, and A + T maps to another node id.
    # Ed25519 verification alone accepts them; verify_signature must not, or
    # one key could sign for two node ids.
    identity = Identity.from_signing_seed(SEED)
    scalar = int.from_bytes(identity.private_bytes(), "little")
    mixed = encode(add(decode_any(identity.signing_public_key), TORSION[4]))
    mixed_node_id = (  # u(A + T) computed directly, since the module refuses to
        (1 + decode_any(mixed)[1]) * pow(1 - decode_any(mixed)[1], -1, P) % P
    ).to_bytes(32, "little")
    assert mixed_node_id != identity.node_id
    rand = random.Random(1405)
    for attempt in range(64):
        message = MESSAGE + bytes([attempt])
        signature = sign_with_scalar(scalar, mixed, message, rand)
        try:
            Ed25519PublicKey.from_public_bytes(mixed).verify(signature, message)
        except InvalidSignature:
            continue
        break
    else:
        pytest.fail("no even challenge in 64 attempts")
    # The forged-looking signature is a real Ed25519 signature under A + T ...
    Ed25519PublicKey.from_public_bytes(mixed).verify(signature, message)
    # ... and it passes every check but the subgroup one.
    assert not verify_signature(mixed_node_id, mixed, message, signature)
    # The same construction with the honest key verifies: the helper is right.
    honest = sign_with_scalar(scalar, identity.signing_public_key, message, rand)
    assert verify_signature(identity.node_id, identity.signing_public_key, message, honest)


GOOD = Identity.from_signing_seed(SEED)
GOOD_ARGS = (GOOD.node_id, GOOD.signing_public_key, MESSAGE, GOOD.sign(MESSAGE))


def _released_view() -> memoryview:
    view = memoryview(bytes(32))
    view.release()
    return view


garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=70),
    st.binary(max_size=70),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=64, max_size=64),
    st.binary(max_size=70).map(bytearray),
    st.binary(max_size=70).map(memoryview),
    st.lists(st.integers(0, 255), max_size=64),
    st.builds(_released_view),
    st.sampled_from([*GOOD_ARGS, GOOD_ARGS[0].hex(), object(), ...]),
)


@settings(max_examples=400, deadline=None)
@given(st.tuples(garbage, garbage, garbage, garbage), st.lists(st.booleans(), min_size=4,
                                                               max_size=4))
def test_verify_signature_never_raises(values, keep):
    # Mix real arguments with garbage, so every check is reached.
    args = tuple(good if k else bad for good, bad, k in zip(GOOD_ARGS, values, keep))
    result = verify_signature(*args)
    assert result is False or args == GOOD_ARGS
    assert result is (args == GOOD_ARGS) or not all(
        isinstance(a, (bytes, bytearray, memoryview)) for a in args
    )


def test_legacy_identity_cannot_sign():
    legacy = Identity.from_private_bytes(bytes(range(1, 33)))
    assert not legacy.can_sign and legacy.signing_public_key is None
    assert not Identity(X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))).can_sign
    for call in (lambda: legacy.sign(MESSAGE), legacy.signing_seed_bytes):
        with pytest.raises(MissingSigningKeyError) as info:
            call()
        error = info.value
        assert isinstance(error, STTError) and isinstance(error, ValueError)
        assert "stt keygen" in str(error)
        assert bytes(range(1, 33)).hex() not in str(error)
    assert "MissingSigningKeyError" in __import__("stt_proto.errors").errors.__all__


# ---------------------------------------------------------------------------
# The existing protections hold for signing identities
# ---------------------------------------------------------------------------


def secret_texts(identity: Identity) -> list[str]:
    forms = []
    for raw in (identity.signing_seed_bytes(), identity.private_bytes()):
        forms += [raw.hex(), raw.hex().upper(), repr(raw), str(raw), raw.hex()[:16]]
    return forms


def test_signing_identity_shows_no_secret():
    identity = Identity.from_signing_seed(SEED)
    expected = f"Identity(node_id={identity.node_id_hex[:16]}\u2026)"
    assert repr(identity) == str(identity) == f"{identity}" == expected
    texts = [repr(identity), str(identity), f"{identity:>90}", repr([identity]),
             repr({identity: 1})]
    for text in texts:
        for secret in secret_texts(identity):
            assert secret not in text


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_signing_identity_is_not_picklable(protocol):
    identity = Identity.from_signing_seed(SEED)
    with pytest.raises(TypeError, match="not picklable") as info:
        pickle.dumps(identity, protocol=protocol)
    for secret in secret_texts(identity):
        assert secret not in str(info.value)


def test_signing_identity_is_immutable_and_slotted():
    identity = Identity.from_signing_seed(SEED)
    assert not hasattr(identity, "__dict__")
    for name in ("_signing_key", "_signing_public_key", "_node_id", "_private_key"):
        with pytest.raises(AttributeError):
            setattr(identity, name, None)
        with pytest.raises(AttributeError):
            delattr(identity, name)
    assert copy.copy(identity) is identity and copy.deepcopy(identity) is identity


# ---------------------------------------------------------------------------
# The bounded cache of subgroup checks, against a peer sending fresh keys
# ---------------------------------------------------------------------------


def test_subgroup_cache_stays_bounded_under_fresh_keys():
    identity_module._in_prime_order_subgroup.cache_clear()
    signer = Identity.from_signing_seed(SEED)
    signature = signer.sign(MESSAGE)
    assert verify_signature(signer.node_id, signer.signing_public_key, MESSAGE, signature)
    assert verify_signature(signer.node_id, signer.signing_public_key, MESSAGE, signature)
    info = signing_key_cache_info()
    assert (info.misses, info.hits, info.currsize) == (1, 1, 1)
    # A hostile peer signs with a fresh identity every time: each costs one
    # check, and the cache never grows past its limit.
    rand = random.Random(1406)
    for _ in range(SUBGROUP_CHECK_CACHE_SIZE + 16):
        fresh = Identity.generate(rand.randbytes)
        assert verify_signature(fresh.node_id, fresh.signing_public_key, MESSAGE,
                                fresh.sign(MESSAGE))
    info = signing_key_cache_info()
    assert info.maxsize == SUBGROUP_CHECK_CACHE_SIZE
    assert info.currsize == SUBGROUP_CHECK_CACHE_SIZE
    assert info.misses == SUBGROUP_CHECK_CACHE_SIZE + 17
