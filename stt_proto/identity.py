"""Node identities, their signing keys, and the network pre-shared key.

Identity
--------
Every node owns a long-term X25519 key pair, held by :class:`Identity`. The
node's id **is** its 32-byte public key (``docs/protocol.md``; DESIGN.md,
"Identity and membership"). There is no separate id to register or to sign:
the Noise ``IKpsk2`` handshake only completes if each side proves possession of
the private key behind its static public key, so once a session is up the peer's
id is authenticated by construction. A node therefore cannot claim an id
without that id's private key, and the DHT and every session can trust ids.

Because the private key is the whole identity, :class:`Identity` tries hard not
to leak it by accident: it has ``__slots__`` (no ``__dict__`` for ``vars()`` or
debuggers to dump), its ``repr``/``str``/``format`` show only a prefix of the
*public* id, and it refuses to be pickled, so an identity cannot end up in a log,
a cache or a task queue by way of a generic serializer. Persisting it is an
explicit act: :func:`stt_io.keys.save_identity` writes it to an owner-only file.
This module does no file access itself (sans-I/O; the loaders live in
:mod:`stt_io.keys`), and its randomness is injected.

Signing identity
----------------
A session proves its peer's id, but DHT records, pub/sub messages and provider
claims travel through other nodes and are stored for later: whoever reads one
must be able to check its author from the author's node id alone, offline,
without a session with the author (DESIGN.md, "Signing identity"). X25519 keys
cannot sign, so an identity is built the other way round: it *is* an Ed25519
key, and its X25519 key is derived from it. The node id stays the X25519 public
key, so the Noise handshake and every id already handed out work unchanged.

Construction (RFC 8032 section 5.1.5 for the key expansion, RFC 7748 for X25519)::

    seed                 32 random bytes (secret; RFC 8032 calls it the private key)
    ed25519 key pair     A = [a]B from the seed, held by ``cryptography``
    a                    = clamp(SHA-512(seed)[0:32])          (the Ed25519 scalar)
    X25519 private key   = a, so node_id = X25519(a, 9)
                         = u(A) = (1 + y) / (1 - y)  mod 2^255 - 19

``clamp`` clears bits 0-2 and 255 and sets bit 254, the same as X25519's own
clamping, so the two halves use the same scalar ``a``. Ed25519's twisted Edwards
curve and Curve25519 are birationally equivalent, and the map from an Edwards
point with coordinate ``y`` to the Montgomery ``u`` above takes ``[a]B`` to
``[a]9``: the Ed25519 public key and the node id are the same point in two
forms, and :func:`node_id_from_signing_key` converts the first into the second.
This is exactly what libsodium's ``crypto_sign_ed25519_sk_to_curve25519`` and
``crypto_sign_ed25519_pk_to_curve25519`` compute (the tests check both against
PyNaCl over many keys).

A signed object carries the 32-byte Ed25519 public key next to the signature.
:func:`verify_signature` accepts it only if the key maps to the claimed node id
*and* the signature verifies. That binding is sound because the map is
two-to-one: only ``A`` and ``-A`` (same ``y``, opposite sign of ``x``) give the
same ``u``, and signing with either needs the scalar ``a``, which only the owner
of the node id has. (The node id fixes ``y`` but not the sign, which is why the
key travels with the signature instead of being recomputed.)

The conversion refuses, with :class:`ValueError`, every key that an honest node
never has, the same set that libsodium refuses: encodings that are not
canonical (``y >= p``), points not on the curve, points of small order (the
neutral point among them, where ``1 - y = 0``), and points with a small-order
component. The last check matters because X25519 clamps the small-order part
away: a key ``A + T`` would map to another node id that the owner of ``A`` could
also answer for, so one owner could sign under several ids. Checking it costs a
full scalar multiplication in Python (about a millisecond), so its results are
kept in a bounded cache (:data:`SUBGROUP_CHECK_CACHE_SIZE` keys, counted by
:func:`signing_key_cache_info`), and :func:`verify_signature` only pays it after
the cheap checks and the signature itself have passed. The curve arithmetic in
this module touches public keys only: signing and verifying go through
``cryptography``, and the one step on secret bytes outside it is the key
expansion above (a SHA-512 and the clamping of two bytes).

Using one scalar for both X25519 and Ed25519 is the joint use that libsodium's
conversion functions exist for, analysed by Thormarker (2021, "On using the same
key pair for Ed25519 and an X25519 based KEM"). :meth:`Identity.sign` signs the
bytes it is given, nothing more: callers must put a purpose label at the start
of what they sign (``b"STT dht record v1\x00" + ...``), so that a signature made
for one purpose can never be presented as one for another.

*Legacy identities* hold an X25519 key only: files from before this format,
:meth:`Identity.from_private_bytes` and ``Identity(X25519PrivateKey)``. They work
for sessions as before but cannot sign (:meth:`Identity.sign` raises
:class:`~stt_proto.errors.MissingSigningKeyError`), and they cannot be upgraded:
an Ed25519 seed leads to an X25519 key through a hash, never back. A node that
needs to sign generates a new identity, and with it a new node id.

Network pre-shared key
----------------------
Nodes of one network share a secret ``shared_seed`` distributed out of band. It
is never used as a key directly. :func:`derive_psk` turns it into the 32-byte
Noise PSK with a keyed hash and a fixed label::

    psk = HMAC-BLAKE2s(key=shared_seed, message=PSK_LABEL || uint64_be(len(shared_seed)))

* The fixed label gives **domain separation**: if the same seed is ever fed into
  another derivation (a future protocol version, another purpose), the outputs
  are unrelated, because each uses its own label.
* Using the seed as the HMAC *key* lets seeds of any length of at least
  :data:`MIN_SEED_BYTES` be accepted: HMAC hashes keys longer than the hash's
  block size first, so a long passphrase-like seed and a 32-byte random one both
  yield a uniform 32-byte key of the size Noise requires (Noise section 9).
* BLAKE2s is the hash the handshake already uses, so no new primitive is added.

* The seed's length is part of the message. HMAC zero-pads keys shorter than
  the block size and hashes longer ones, so without it a seed and the same seed
  with a zero byte appended (or a long seed and its BLAKE2s hash) would be the
  same key; with it, two different seeds always give different PSKs, and two
  nodes with different seeds can never complete a handshake.

The 16-byte minimum keeps a seed out of reach of exhaustive search; the
derivation cannot add entropy that the seed does not have.

No function in this module puts key material (private keys, seeds, PSKs) into
an exception message or a ``repr``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import MissingSigningKeyError

__all__ = [
    "Identity",
    "NODE_ID_BYTES",
    "PRIVATE_KEY_BYTES",
    "SIGNING_SEED_BYTES",
    "SIGNING_KEY_BYTES",
    "SIGNATURE_BYTES",
    "SUBGROUP_CHECK_CACHE_SIZE",
    "MIN_SEED_BYTES",
    "PSK_LABEL",
    "derive_psk",
    "validate_seed",
    "parse_node_id",
    "node_id_from_signing_key",
    "verify_signature",
    "signing_key_cache_info",
]

#: Size of a node id: a raw X25519 public key.
NODE_ID_BYTES = 32
#: Size of a raw X25519 private key.
PRIVATE_KEY_BYTES = 32
#: Size of an Ed25519 seed, the secret a signing identity is made from.
SIGNING_SEED_BYTES = 32
#: Size of a raw Ed25519 public key (:attr:`Identity.signing_public_key`).
SIGNING_KEY_BYTES = 32
#: Size of an Ed25519 signature (:meth:`Identity.sign`).
SIGNATURE_BYTES = 64
#: How many signing keys :func:`verify_signature` remembers as checked for a
#: small-order component. The check costs about a millisecond of Python; a node
#: verifies the same few authors again and again, so a small cache removes
#: nearly all of it, while a peer sending fresh keys only evicts older entries.
SUBGROUP_CHECK_CACHE_SIZE = 1024
#: Shortest accepted ``shared_seed``. 128 bits keeps exhaustive search out of reach.
MIN_SEED_BYTES = 16
#: Label mixed into the PSK derivation (domain separation, see the module docstring).
PSK_LABEL = b"STT v1 network pre-shared key"

_PSK_HASH = "blake2s"
# Explicit ASCII class: ``\d`` or ``str.isdigit`` would also accept non-ASCII
# digits, and ``bytes.fromhex`` alone would accept whitespace inside the string.
_HEX_NODE_ID = re.compile(r"[0-9a-fA-F]{%d}" % (2 * NODE_ID_BYTES))
# How many hex characters of the id ``repr`` shows: enough to tell nodes apart
# in logs, short enough to stay readable.
_REPR_HEX_CHARS = 16

_BytesLike = (bytes, bytearray, memoryview)


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _exact_bytes(value: object, size: int, name: str, kind: str) -> bytes:
    """``value`` as ``bytes`` if it is bytes-like and ``size`` long. The messages
    give the type or the length only, never the bytes (they may be a secret)."""
    if not isinstance(value, _BytesLike):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    # bytes() first: len() of a memoryview counts items, not bytes.
    raw = bytes(value)
    if len(raw) != size:
        raise ValueError(f"{kind} is {size} bytes (got {len(raw)})")
    return raw


def _x25519_key_from_seed(seed: bytes) -> X25519PrivateKey:
    """The X25519 private key that shares its scalar with the Ed25519 key of ``seed``.

    RFC 8032 section 5.1.5: the scalar is the first half of SHA-512(seed),
    clamped. Clamping here (X25519 would clamp it again anyway) makes the stored
    bytes equal to libsodium's ``crypto_sign_ed25519_sk_to_curve25519``.
    """
    scalar = bytearray(hashlib.sha512(seed).digest()[:PRIVATE_KEY_BYTES])
    scalar[0] &= 0xF8  # a multiple of the cofactor 8
    scalar[31] &= 0x7F  # below 2^255 ...
    scalar[31] |= 0x40  # ... with bit 254 set
    return X25519PrivateKey.from_private_bytes(bytes(scalar))


class Identity:
    """A node's long-term key: :attr:`node_id` is its X25519 public key.

    A *signing identity* is an Ed25519 key from which the X25519 key is derived
    (module docstring, "Signing identity"), so it can also :meth:`sign` messages
    that anyone verifies from the node id with :func:`verify_signature`. Make one
    with :meth:`generate` or :meth:`from_signing_seed`, or wrap an
    ``Ed25519PrivateKey`` with ``Identity(key)``.

    A *legacy identity* holds an X25519 key only (:meth:`from_private_bytes`, or
    ``Identity(X25519PrivateKey)``); it runs sessions but cannot sign.

    Identities are immutable, compare equal and hash by :attr:`node_id`, and
    never show a private key in a ``repr``, ``str`` or ``format``. They cannot
    be pickled; save them with :func:`stt_io.keys.save_identity`.

    :param private_key: an ``Ed25519PrivateKey`` (a signing identity) or an
        ``X25519PrivateKey`` (a legacy identity). Secret.
    :raises TypeError: if ``private_key`` is neither.
    """

    __slots__ = ("_private_key", "_node_id", "_signing_key", "_signing_public_key")

    _private_key: X25519PrivateKey
    _node_id: bytes
    _signing_key: Ed25519PrivateKey | None
    _signing_public_key: bytes | None

    def __init__(self, private_key: Ed25519PrivateKey | X25519PrivateKey) -> None:
        if isinstance(private_key, Ed25519PrivateKey):
            signing_key: Ed25519PrivateKey | None = private_key
            x25519_key = _x25519_key_from_seed(private_key.private_bytes_raw())
            signing_public: bytes | None = private_key.public_key().public_bytes_raw()
        elif isinstance(private_key, X25519PrivateKey):
            signing_key, x25519_key, signing_public = None, private_key, None
        else:
            raise TypeError("private_key must be an Ed25519PrivateKey or an X25519PrivateKey")
        # Identities are hashed by node_id, so they must never change: set the
        # slots through object.__setattr__ and refuse every later assignment.
        object.__setattr__(self, "_private_key", x25519_key)
        object.__setattr__(self, "_node_id", _public_bytes(x25519_key))
        object.__setattr__(self, "_signing_key", signing_key)
        object.__setattr__(self, "_signing_public_key", signing_public)

    # -- constructors --------------------------------------------------------

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> Identity:
        """Create a new signing identity from a 32-byte seed drawn from ``rng``.

        :param rng: source of randomness, called once as ``rng(32)``; its output
            is the Ed25519 seed. Outside tests it must be a CSPRNG (the default,
            :func:`os.urandom`): whoever can reproduce its output owns the identity.
        :returns: the new identity; it :attr:`can_sign`.
        :raises ValueError: if ``rng`` does not return exactly 32 bytes.
        """
        raw = rng(SIGNING_SEED_BYTES)
        if not isinstance(raw, _BytesLike):
            raise ValueError(f"rng must return bytes, not {type(raw).__name__}")
        raw = bytes(raw)
        if len(raw) != SIGNING_SEED_BYTES:
            raise ValueError(f"rng must return {SIGNING_SEED_BYTES} bytes (got {len(raw)})")
        return cls.from_signing_seed(raw)

    @classmethod
    def from_signing_seed(cls, seed: bytes) -> Identity:
        """Rebuild a signing identity from its 32-byte Ed25519 seed.

        :param seed: the seed as returned by :meth:`signing_seed_bytes` (secret).
            Any 32 bytes are a valid seed.
        :returns: the identity; the same seed always gives the same node id.
        :raises TypeError: if ``seed`` is not bytes-like.
        :raises ValueError: if ``seed`` is not exactly 32 bytes long. The message
            gives the length only, never the bytes.
        """
        seed = _exact_bytes(seed, SIGNING_SEED_BYTES, "signing seed", "an Ed25519 signing seed")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        """Rebuild a legacy (X25519-only) identity from its raw 32-byte private key.

        The result cannot sign, even when ``raw`` came from a signing identity's
        :meth:`private_bytes`: the seed cannot be recovered from the X25519 key.
        Persist signing identities with :meth:`signing_seed_bytes` instead.

        :param raw: the private key as returned by :meth:`private_bytes` (secret).
        :returns: the identity, with the same node id as the one ``raw`` came from.
        :raises TypeError: if ``raw`` is not bytes-like.
        :raises ValueError: if ``raw`` is not exactly 32 bytes long. The message
            gives the length only, never the bytes.
        """
        raw = _exact_bytes(raw, PRIVATE_KEY_BYTES, "private key", "an X25519 private key")
        # cryptography accepts any 32 bytes (clamping happens inside X25519),
        # so the length check above is the only way this can fail.
        return cls(X25519PrivateKey.from_private_bytes(raw))

    # -- accessors -----------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        """The node id: the raw 32-byte X25519 public key. Public."""
        return self._node_id

    @property
    def node_id_hex(self) -> str:
        """:attr:`node_id` as 64 lowercase hex characters. Public."""
        return self._node_id.hex()

    @property
    def can_sign(self) -> bool:
        """Whether this identity has a signing key (false for a legacy identity)."""
        return self._signing_key is not None

    @property
    def signing_public_key(self) -> bytes | None:
        """The raw 32-byte Ed25519 public key, or ``None`` for a legacy identity.
        Public: send it with every signature, for :func:`verify_signature`."""
        return self._signing_public_key

    @property
    def private_key(self) -> X25519PrivateKey:
        """The X25519 private key object. **Secret**: hand it to the handshake
        only; never log, display or serialize it."""
        return self._private_key

    def private_bytes(self) -> bytes:
        """The raw 32-byte X25519 private key. **Secret**; never log or display it.

        For a signing identity this is the derived key, and
        :meth:`from_private_bytes` turns it back into a legacy identity with the
        same node id but no signing key: persist :meth:`signing_seed_bytes`
        instead (:func:`stt_io.keys.save_identity` does).

        :returns: the bytes that :meth:`from_private_bytes` accepts.
        """
        return self._private_key.private_bytes_raw()

    def signing_seed_bytes(self) -> bytes:
        """The 32-byte Ed25519 seed. **Secret**: for persistence only
        (:func:`stt_io.keys.save_identity`); never log or display it.

        :returns: the bytes that :meth:`from_signing_seed` accepts.
        :raises MissingSigningKeyError: for a legacy identity.
        """
        return self._require_signing_key().private_bytes_raw()

    # -- signing -------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with this identity's Ed25519 key.

        Anyone holding the node id checks the result with
        ``verify_signature(node_id, signing_public_key, message, signature)``.
        The bytes are signed as given: start them with a label naming their
        purpose, so that the signature cannot be reused for another purpose.

        :param message: the bytes to sign (bytes-like).
        :returns: the 64-byte Ed25519 signature (RFC 8032; deterministic).
        :raises TypeError: if ``message`` is not bytes-like.
        :raises MissingSigningKeyError: for a legacy identity.
        """
        if not isinstance(message, _BytesLike):
            raise TypeError(f"message must be bytes, not {type(message).__name__}")
        return self._require_signing_key().sign(bytes(message))

    def _require_signing_key(self) -> Ed25519PrivateKey:
        if self._signing_key is None:
            raise MissingSigningKeyError()
        return self._signing_key

    # -- display: the public id only -------------------------------------------

    def __repr__(self) -> str:
        return f"Identity(node_id={self._node_id.hex()[:_REPR_HEX_CHARS]}\u2026)"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        # object.__format__ would reject a non-empty spec; apply it to the
        # safe string instead, so f"{identity:>40}" works and stays safe.
        return format(repr(self), format_spec)

    # -- equality: by node id --------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._node_id == other._node_id

    def __hash__(self) -> int:
        return hash(self._node_id)

    # -- immutability and no accidental serialization -------------------------

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Identity is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Identity is immutable")

    def __copy__(self) -> Identity:
        # Immutable, so a copy may be the object itself. Without this,
        # copy.copy() would go through __reduce_ex__ and fail.
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Identity:
        # dataclasses.asdict() deep-copies fields; a config holding an identity
        # must survive that without the key going through a serializer.
        return self

    def __getstate__(self) -> NoReturn:
        raise TypeError("identities are not picklable; use stt_io.keys.save_identity")

    def __reduce__(self) -> NoReturn:
        raise TypeError("identities are not picklable; use stt_io.keys.save_identity")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        # pickle (and copyreg) call __reduce_ex__ first; refuse here as well so
        # no protocol version can reach the default slot-state serialization.
        raise TypeError("identities are not picklable; use stt_io.keys.save_identity")


# ---------------------------------------------------------------------------
# Network pre-shared key
# ---------------------------------------------------------------------------


def validate_seed(shared_seed: bytes) -> bytes:
    """Check that ``shared_seed`` is acceptable as a network seed.

    Shared by :func:`derive_psk`, :class:`~stt_proto.config.EndpointConfig` and
    :func:`stt_io.keys.load_seed`, so every entry point applies the same rule.

    :param shared_seed: the network's secret seed.
    :returns: the seed as ``bytes``.
    :raises TypeError: if the seed is not bytes-like (a ``str`` must be encoded
        first; the encoding is part of the secret, so STT does not guess it).
    :raises ValueError: if the seed is shorter than :data:`MIN_SEED_BYTES`. The
        message gives the length only, never the seed.
    """
    if not isinstance(shared_seed, _BytesLike):
        raise TypeError(f"shared_seed must be bytes, not {type(shared_seed).__name__}")
    seed = bytes(shared_seed)
    if len(seed) < MIN_SEED_BYTES:
        raise ValueError(f"shared_seed must be at least {MIN_SEED_BYTES} bytes (got {len(seed)})")
    return seed


def derive_psk(shared_seed: bytes) -> bytes:
    """Derive the network's 32-byte Noise pre-shared key from ``shared_seed``.

    ``HMAC-BLAKE2s(key=shared_seed, message=PSK_LABEL || uint64_be(len(seed)))``; see the module
    docstring for why. Deterministic: every node with the same seed gets the
    same key.

    :param shared_seed: the network's secret seed, at least 16 bytes, any length
        above that.
    :returns: the PSK (secret), 32 bytes.
    :raises TypeError: if the seed is not bytes-like.
    :raises ValueError: if the seed is shorter than :data:`MIN_SEED_BYTES`.
    """
    seed = validate_seed(shared_seed)
    return hmac.digest(seed, PSK_LABEL + len(seed).to_bytes(8, "big"), _PSK_HASH)


# ---------------------------------------------------------------------------
# Node ids given by users
# ---------------------------------------------------------------------------


def parse_node_id(value: str | bytes) -> bytes:
    """Parse a node id given as 32 raw bytes or as 64 hex characters.

    Hex is case-insensitive and surrounding whitespace is ignored (ids are
    often pasted from terminals); whitespace or separators *inside* the hex are
    rejected rather than guessed at.

    :param value: the raw id (``bytes``/``bytearray``/``memoryview``) or its
        hex form (``str``).
    :returns: the 32-byte node id.
    :raises TypeError: if ``value`` is neither bytes-like nor ``str``.
    :raises ValueError: if ``value`` is not a 32-byte id or 64 hex characters.
        The message describes the value's length, not its content, in case a
        secret was pasted by mistake.
    """
    if isinstance(value, str):
        text = value.strip()
        if _HEX_NODE_ID.fullmatch(text) is None:
            problem = "not all hex" if len(text) == 2 * NODE_ID_BYTES else f"got {len(text)}"
            raise ValueError(
                f"a node id in text must be {2 * NODE_ID_BYTES} hex characters ({problem})"
            )
        return bytes.fromhex(text)
    if isinstance(value, _BytesLike):
        raw = bytes(value)
        if len(raw) != NODE_ID_BYTES:
            hint = "; pass hex ids as str" if len(raw) == 2 * NODE_ID_BYTES else ""
            raise ValueError(f"a raw node id is {NODE_ID_BYTES} bytes (got {len(raw)}){hint}")
        return raw
    raise TypeError(f"node id must be bytes or a hex str, not {type(value).__name__}")


# ---------------------------------------------------------------------------
# Signing keys and node ids: the Edwards-to-Montgomery map
# ---------------------------------------------------------------------------
#
# Public keys only. The curve is edwards25519 (RFC 8032 section 5.1):
# -x^2 + y^2 = 1 + d x^2 y^2 over GF(p). Points are in extended coordinates
# (X : Y : Z : T) with x = X/Z, y = Y/Z, x*y = T/Z (Hisil, Wong, Carter and
# Dawson, "Twisted Edwards Curves Revisited", 2008), whose addition law is
# complete on this curve (a = -1 is a square mod p, d is not), so one formula
# serves for every pair of points, the neutral point included.

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_2D = 2 * _D % _P
# A square root of -1 mod p; RFC 8032 section 5.1.3 uses it to finish the root.
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
# The order of the prime-order subgroup that honest keys live in.
_L = 2**252 + 27742317777372353535851937790883648493
_NEUTRAL = (0, 1, 1, 0)

_Point = tuple[int, int, int, int]


def _edwards_add(p1: _Point, p2: _Point) -> _Point:
    # "add-2008-hwcd-3" (a = -1), complete on edwards25519.
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _2D * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _edwards_double(p1: _Point) -> _Point:
    # "dbl-2008-hwcd" (a = -1); cheaper than adding the point to itself.
    x1, y1, z1, _ = p1
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    e = ((x1 + y1) * (x1 + y1) - a - b) % _P
    g = b - a
    f = g - c
    h = -a - b
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _is_neutral(point: _Point) -> bool:
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0


def _edwards_multiply(scalar: int, point: _Point) -> _Point:
    """``[scalar]point`` by double-and-add. Variable time, so for public
    scalars only (the group order, here)."""
    result = _NEUTRAL
    for bit in bin(scalar)[2:]:
        result = _edwards_double(result)
        if bit == "1":
            result = _edwards_add(result, point)
    return result


def _decode_signing_key_untrusted(key: bytes) -> tuple[int, int]:
    """Decode a 32-byte Ed25519 public key into ``(x, y)``, refusing every
    encoding that is not canonical, not on the curve, or of small order.

    RFC 8032 section 5.1.3, strictly: ``y`` must be below ``p`` (libsodium
    refuses the 19 encodings at or above it too), and ``x = 0`` with the sign
    bit set is refused. The prime-order subgroup check is separate
    (:func:`_in_prime_order_subgroup`) because it is the expensive one.

    :raises ValueError: for any refused key; the message never quotes it.
    """
    if len(key) != SIGNING_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is {SIGNING_KEY_BYTES} bytes (got {len(key)})")
    encoded = int.from_bytes(key, "little")
    sign = encoded >> 255
    y = encoded & ((1 << 255) - 1)
    if y >= _P:
        raise ValueError("not a canonical Ed25519 public key (y is not reduced mod p)")
    # x^2 = (y^2 - 1) / (d y^2 + 1); the denominator never vanishes because d
    # is not a square mod p.
    y2 = y * y % _P
    x2 = (y2 - 1) * pow(_D * y2 + 1, -1, _P) % _P
    # p = 5 (mod 8): x2^((p+3)/8) is a root of x2 or of -x2 (RFC 8032 5.1.3 step 3).
    x = pow(x2, (_P + 3) // 8, _P)
    if x * x % _P != x2:
        x = x * _SQRT_M1 % _P
        if x * x % _P != x2:
            raise ValueError("not an Ed25519 public key (the point is not on the curve)")
    if x == 0 and sign:
        raise ValueError("not a canonical Ed25519 public key (negative zero x)")
    if x & 1 != sign:
        x = _P - x
    point = (x, y, 1, x * y % _P)
    # The eight points of order dividing 8 (y = 1, the neutral point, among
    # them) all vanish after three doublings. Refusing them also keeps 1 - y,
    # the denominator of the map to u, away from zero.
    if _is_neutral(_edwards_double(_edwards_double(_edwards_double(point)))):
        raise ValueError("not a usable Ed25519 public key (a point of small order)")
    return x, y


def _montgomery_u(y: int) -> bytes:
    """The Curve25519 ``u`` of the Edwards point with coordinate ``y``, as a
    node id: ``u = (1 + y) / (1 - y) mod p``, 32 bytes little-endian (RFC 7748
    section 4.1 gives the map)."""
    u = (1 + y) * pow(1 - y, -1, _P) % _P
    return u.to_bytes(NODE_ID_BYTES, "little")


@functools.lru_cache(maxsize=SUBGROUP_CHECK_CACHE_SIZE)
def _in_prime_order_subgroup(key: bytes) -> bool:
    """Whether the (already decoded, valid) key ``[L]A`` is the neutral point,
    i.e. ``A`` has no small-order component. Cached: it is the slow check."""
    x, y = _decode_signing_key_untrusted(key)
    return _is_neutral(_edwards_multiply(_L, (x, y, 1, x * y % _P)))


@functools.lru_cache(maxsize=SUBGROUP_CHECK_CACHE_SIZE)
def _checked_key(key: bytes) -> tuple[bytes, Ed25519PublicKey] | None:
    """The node id a 32-byte key maps to and its ``cryptography`` object, or None
    for a refused key. Cached (bounded, like the subgroup check): decoding the
    point in Python costs about twice the signature check itself, and a
    pub/sub node verifies every message of the same few publishers."""
    try:
        _, y = _decode_signing_key_untrusted(key)
        return _montgomery_u(y), Ed25519PublicKey.from_public_bytes(key)
    except ValueError:
        return None


def signing_key_cache_info() -> functools._CacheInfo:
    """Figures of the bounded cache behind the subgroup check: hits, misses,
    ``maxsize`` (:data:`SUBGROUP_CHECK_CACHE_SIZE`) and the current size."""
    return _in_prime_order_subgroup.cache_info()


def node_id_from_signing_key(signing_public_key: bytes) -> bytes:
    """The node id that an Ed25519 public key belongs to.

    The birational map ``u = (1 + y) / (1 - y) mod 2^255 - 19`` from the
    Edwards form to the Montgomery form, as libsodium's
    ``crypto_sign_ed25519_pk_to_curve25519`` computes it, with the same keys
    refused (module docstring, "Signing identity"). For every signing identity,
    ``node_id_from_signing_key(identity.signing_public_key) == identity.node_id``.

    :param signing_public_key: a raw 32-byte Ed25519 public key (bytes-like).
    :returns: the 32-byte node id (X25519 public key).
    :raises TypeError: if the key is not bytes-like.
    :raises ValueError: if the key is not 32 bytes, not a canonical encoding,
        not on the curve, of small order, or has a small-order component.
    """
    if not isinstance(signing_public_key, _BytesLike):
        raise TypeError(f"signing key must be bytes, not {type(signing_public_key).__name__}")
    key = bytes(signing_public_key)
    _, y = _decode_signing_key_untrusted(key)
    if not _in_prime_order_subgroup(key):
        raise ValueError("not a usable Ed25519 public key (it has a small-order component)")
    return _montgomery_u(y)


def verify_signature(
    node_id: bytes, signing_public_key: bytes, message: bytes, signature: bytes
) -> bool:
    """Whether ``signature`` is ``node_id``'s signature of ``message``.

    True only if ``signing_public_key`` maps to ``node_id``
    (:func:`node_id_from_signing_key`) *and* the Ed25519 signature verifies
    (RFC 8032, through ``cryptography``). Made for untrusted input: any value of
    any type or length gives ``False``, never an exception.

    The checks run cheapest first, so that forged input costs little: the
    lengths, the map to ``u`` and its comparison with ``node_id``, the signature,
    and only then the cached subgroup check.

    :param node_id: the claimed author's 32-byte node id.
    :param signing_public_key: the 32-byte Ed25519 public key sent with the
        signature (:attr:`Identity.signing_public_key`).
    :param message: the signed bytes.
    :param signature: the 64-byte signature (:meth:`Identity.sign`).
    :returns: whether all of the above hold.
    """
    try:
        if not all(
            isinstance(value, _BytesLike)
            for value in (node_id, signing_public_key, message, signature)
        ):
            return False
        node_id, key = bytes(node_id), bytes(signing_public_key)
        message, signature = bytes(message), bytes(signature)
    except (TypeError, ValueError, BufferError):
        # bytes() of a released memoryview raises ValueError.
        return False
    if (
        len(node_id) != NODE_ID_BYTES
        or len(key) != SIGNING_KEY_BYTES
        or len(signature) != SIGNATURE_BYTES
    ):
        return False
    checked = _checked_key(key)
    # Node ids are public: no constant-time comparison is needed.
    if checked is None or checked[0] != node_id:
        return False
    try:
        checked[1].verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return _in_prime_order_subgroup(key)
