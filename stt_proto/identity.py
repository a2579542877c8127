"""Node identities and the network pre-shared key.

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

import hmac
import os
import re
from collections.abc import Callable
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "Identity",
    "NODE_ID_BYTES",
    "PRIVATE_KEY_BYTES",
    "MIN_SEED_BYTES",
    "PSK_LABEL",
    "derive_psk",
    "validate_seed",
    "parse_node_id",
]

#: Size of a node id: a raw X25519 public key.
NODE_ID_BYTES = 32
#: Size of a raw X25519 private key.
PRIVATE_KEY_BYTES = 32
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


class Identity:
    """A node's long-term X25519 key pair; :attr:`node_id` is the public key.

    Build one with :meth:`generate` or :meth:`from_private_bytes`, or wrap an
    existing :class:`~cryptography.hazmat.primitives.asymmetric.x25519.X25519PrivateKey`
    with ``Identity(private_key)``. Identities are immutable, compare equal and
    hash by :attr:`node_id`, and never show the private key in a ``repr``, ``str``
    or ``format``. They cannot be pickled; save them with
    :func:`stt_io.keys.save_identity`.

    :param private_key: the private key (secret).
    :raises TypeError: if ``private_key`` is not an ``X25519PrivateKey``.
    """

    __slots__ = ("_private_key", "_node_id")

    _private_key: X25519PrivateKey
    _node_id: bytes

    def __init__(self, private_key: X25519PrivateKey) -> None:
        if not isinstance(private_key, X25519PrivateKey):
            raise TypeError("private_key must be an X25519PrivateKey")
        # Identities are hashed by node_id, so they must never change: set the
        # slots through object.__setattr__ and refuse every later assignment.
        object.__setattr__(self, "_private_key", private_key)
        object.__setattr__(self, "_node_id", _public_bytes(private_key))

    # -- constructors --------------------------------------------------------

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> Identity:
        """Create a new identity from 32 bytes of ``rng``.

        :param rng: source of randomness, called once as ``rng(32)``. Outside
            tests it must be a CSPRNG (the default, :func:`os.urandom`): whoever
            can reproduce its output owns the identity.
        :returns: the new identity.
        :raises ValueError: if ``rng`` does not return exactly 32 bytes.
        """
        raw = rng(PRIVATE_KEY_BYTES)
        if not isinstance(raw, _BytesLike):
            raise ValueError(f"rng must return bytes, not {type(raw).__name__}")
        raw = bytes(raw)
        if len(raw) != PRIVATE_KEY_BYTES:
            raise ValueError(f"rng must return {PRIVATE_KEY_BYTES} bytes (got {len(raw)})")
        return cls.from_private_bytes(raw)

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        """Rebuild an identity from its raw 32-byte private key.

        :param raw: the private key as returned by :meth:`private_bytes` (secret).
        :returns: the identity.
        :raises TypeError: if ``raw`` is not bytes-like.
        :raises ValueError: if ``raw`` is not exactly 32 bytes long. The message
            gives the length only, never the bytes.
        """
        if not isinstance(raw, _BytesLike):
            raise TypeError(f"private key must be bytes, not {type(raw).__name__}")
        # bytes() first: len() of a memoryview counts items, not bytes.
        raw = bytes(raw)
        if len(raw) != PRIVATE_KEY_BYTES:
            raise ValueError(f"an X25519 private key is {PRIVATE_KEY_BYTES} bytes (got {len(raw)})")
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
    def private_key(self) -> X25519PrivateKey:
        """The X25519 private key object. **Secret**: hand it to the handshake
        only; never log, display or serialize it."""
        return self._private_key

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key. **Secret**: for persistence only
        (:func:`stt_io.keys.save_identity`); never log or display it.

        :returns: the bytes that :meth:`from_private_bytes` accepts.
        """
        return self._private_key.private_bytes_raw()

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
