"""The Noise Protocol Framework (revision 34), as used by the STT handshake.

This module implements the three state objects of the Noise specification --
:class:`CipherState` (section 5.1), :class:`SymmetricState` (section 5.2) and
:class:`HandshakeState` (section 5.3) -- for the ``25519`` DH function, the
``ChaChaPoly`` and ``AESGCM`` ciphers and the ``BLAKE2s``, ``BLAKE2b`` and
``SHA256`` hashes (section 12). Supported handshake patterns are ``NN``, ``XX``
and ``IK`` (section 7), each with any combination of ``pskN`` modifiers
(section 9), e.g. ``Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s``.

Every primitive comes from elsewhere: X25519 and the AEADs from
``cryptography``, the hashes from :mod:`hashlib`, HMAC from :mod:`hmac`. This
module only arranges them the way the specification says.

Theory of operation
-------------------
A handshake is a fixed script of *tokens*. Each side runs the same script: the
writer of a message turns tokens into bytes, the reader turns the same bytes
back into the same state changes. Both sides keep a running transcript hash
``h`` and a chaining key ``ck``:

* ``e`` / ``s`` put a public key on the wire (the static one encrypted once a
  key exists) and hash it into ``h``;
* ``ee``, ``es``, ``se``, ``ss`` do a Diffie-Hellman and feed the result into
  ``ck`` with HKDF (section 4.3), which also yields a fresh cipher key;
* ``psk`` feeds a pre-shared key into both ``ck`` and ``h``;
* every payload is encrypted (once a key exists) with ``h`` as associated
  data, so any disagreement about the transcript makes authentication fail.

When the last message has been processed, :meth:`HandshakeState.split` gives
two :class:`CipherState` objects, one per direction, and
:attr:`HandshakeState.handshake_hash` is a value both sides share that can be
used for channel binding (section 11.2).

This module is *sans-I/O*: it never touches sockets, clocks or global
randomness. Ephemeral keys come from an injected ``rng`` callable, so a
simulation seeded with a deterministic ``rng`` replays byte for byte.

Secrets (private keys, cipher keys, the chaining key, PSKs) never appear in a
``repr`` or in an exception message. Python cannot reliably wipe memory, so the
module only drops its references to handshake secrets once they are no longer
needed.

Transport use
-------------
Noise's own transport messages use an implicit, incrementing nonce
(:meth:`CipherState.encrypt_with_ad`). STT carries an explicit packet number and
packets may arrive out of order, so :meth:`CipherState.encrypt_with_nonce` and
:meth:`CipherState.decrypt_with_nonce` take the 64-bit nonce as an argument; the
caller is then responsible for never reusing a nonce with the same key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import NoiseError

__all__ = [
    "NoiseError",
    "CipherState",
    "SymmetricState",
    "HandshakeState",
    "DHLEN",
    "KEYLEN",
    "TAGLEN",
    "MAX_NONCE",
    "MAX_MESSAGE_LEN",
]


#: Size of an X25519 public key and of a DH output (section 12.1).
DHLEN = 32
#: Size of every cipher key (section 5).
KEYLEN = 32
#: Size of the AEAD authentication tag (section 5).
TAGLEN = 16
#: Largest nonce a caller may use; 2**64 - 1 is reserved for :meth:`CipherState.rekey`
#: (section 5.1).
MAX_NONCE = 2**64 - 2
#: Largest Noise message, handshake or transport (section 3).
MAX_MESSAGE_LEN = 65535

_REKEY_NONCE = 2**64 - 1
_ZERO_KEY = bytes(KEYLEN)


# ---------------------------------------------------------------------------
# Crypto functions (section 4 and 12)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cipher:
    """An AEAD from section 12: its name, its class, and how it lays out the nonce."""

    name: str
    aead: type[ChaCha20Poly1305] | type[AESGCM]
    # 96-bit nonce = 32 zero bits followed by the 64-bit counter. ChaChaPoly
    # encodes the counter little-endian (section 12.3), AESGCM big-endian
    # (section 12.4). A precompiled Struct keeps this off the hot path.
    nonce: struct.Struct


_CIPHERS: dict[str, _Cipher] = {
    "ChaChaPoly": _Cipher("ChaChaPoly", ChaCha20Poly1305, struct.Struct("<4xQ")),
    "AESGCM": _Cipher("AESGCM", AESGCM, struct.Struct(">4xQ")),
}


@dataclass(frozen=True)
class _Hash:
    """A hash from section 12: its name, hashlib constructor and HASHLEN.

    BLOCKLEN (64 for SHA256/BLAKE2s, 128 for BLAKE2b) is not stored: :mod:`hmac`
    takes it from the hash object, and it agrees with the specification.
    """

    name: str
    #: hashlib's constructor. hmac is given it rather than the name: with a
    #: name, OpenSSL 3 looks the digest up on every call, and a handshake makes
    #: some 25 HMACs per side (2.6x slower with BLAKE2s, measured).
    new: Callable[..., Any]
    hashlen: int

    def digest(self, data: bytes) -> bytes:
        return self.new(data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.new)

    def hkdf(self, chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
        """HKDF as defined in section 4.3: two or three HASHLEN-byte outputs."""
        temp_key = self.hmac(chaining_key, ikm)
        out1 = self.hmac(temp_key, b"\x01")
        out2 = self.hmac(temp_key, out1 + b"\x02")
        if outputs == 2:
            return out1, out2
        out3 = self.hmac(temp_key, out2 + b"\x03")
        return out1, out2, out3


_HASHES: dict[str, _Hash] = {
    "SHA256": _Hash("SHA256", hashlib.sha256, 32),
    "BLAKE2s": _Hash("BLAKE2s", hashlib.blake2s, 32),
    "BLAKE2b": _Hash("BLAKE2b", hashlib.blake2b, 64),
}


def _as_bytes(data: bytes) -> bytes:
    # Accept any bytes-like object, but not an int: bytes(5) would silently
    # become five zero bytes.
    return memoryview(data).tobytes()


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    # cryptography raises ValueError when the result is all zeros (a low-order
    # peer key); section 12.1 allows either behaviour, rejecting is safer.
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise NoiseError("Diffie-Hellman failed (invalid public key)") from None


# ---------------------------------------------------------------------------
# Handshake patterns (section 7 and 9)
# ---------------------------------------------------------------------------

# A pattern is (initiator pre-message, responder pre-message, messages). Messages
# alternate initiator -> responder, responder -> initiator, starting with the
# initiator. Only ``s`` appears in the pre-messages of the supported patterns.
_Tokens = tuple[str, ...]
_Pattern = tuple[_Tokens, _Tokens, tuple[_Tokens, ...]]

_BASE_PATTERNS: dict[str, _Pattern] = {
    "NN": ((), (), (("e",), ("e", "ee"))),
    "XX": ((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "IK": ((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
}

_PROTOCOL_RE = re.compile(
    r"Noise_(?P<base>[A-Z0-9]+)(?P<mods>[a-z0-9+]*)_(?P<dh>[^_]+)_(?P<cipher>[^_]+)_(?P<hash>[^_]+)"
)
_PSK_MOD_RE = re.compile(r"psk([0-9]+)")


def _apply_psk_modifiers(base: _Pattern, modifiers: list[str]) -> _Pattern:
    """Insert ``psk`` tokens as section 9.2 prescribes: ``psk0`` at the start of
    the first message, ``pskN`` at the end of the N-th message."""
    pre_i, pre_r, messages = base
    msgs = [list(m) for m in messages]
    for mod in modifiers:
        m = _PSK_MOD_RE.fullmatch(mod)
        if m is None:
            raise ValueError(f"unsupported pattern modifier {mod!r}")
        n = int(m.group(1))
        if n == 0:
            msgs[0].insert(0, "psk")
        elif n <= len(msgs):
            msgs[n - 1].append("psk")
        else:
            raise ValueError(f"modifier {mod!r} refers to a message the pattern lacks")
    return pre_i, pre_r, tuple(tuple(m) for m in msgs)


@dataclass(frozen=True)
class _Protocol:
    name: str
    pattern: _Pattern
    cipher: _Cipher
    hash: _Hash
    psk_count: int


@functools.lru_cache(maxsize=64)
def _parse_protocol_name(name: str) -> _Protocol:
    """Configure from ``Noise_<pattern>_25519_<cipher>_<hash>`` (section 8)."""
    m = _PROTOCOL_RE.fullmatch(name)
    if m is None:
        raise ValueError(f"malformed Noise protocol name {name!r}")
    if m["base"] not in _BASE_PATTERNS:
        raise ValueError(f"unsupported handshake pattern {m['base']!r}")
    if m["dh"] != "25519":
        raise ValueError(f"unsupported DH function {m['dh']!r}")
    if m["cipher"] not in _CIPHERS:
        raise ValueError(f"unsupported cipher {m['cipher']!r}")
    if m["hash"] not in _HASHES:
        raise ValueError(f"unsupported hash {m['hash']!r}")
    # Section 8: the first modifier follows the pattern name directly, further
    # ones are separated by "+".
    modifiers = m["mods"].split("+") if m["mods"] else []
    pattern = _apply_psk_modifiers(_BASE_PATTERNS[m["base"]], modifiers)
    psk_count = sum(tokens.count("psk") for tokens in pattern[2])
    return _Protocol(name, pattern, _CIPHERS[m["cipher"]], _HASHES[m["hash"]], psk_count)


# ---------------------------------------------------------------------------
# CipherState (section 5.1)
# ---------------------------------------------------------------------------


class CipherState:
    """A cipher key ``k`` and nonce counter ``n`` (section 5.1).

    Without a key, :meth:`encrypt_with_ad` and :meth:`decrypt_with_ad` return
    their input unchanged, as the specification requires during the first
    handshake messages. The explicit-nonce methods always require a key.

    :param cipher: ``"ChaChaPoly"`` or ``"AESGCM"``.
    :param key: optional 32-byte key (secret).
    """

    __slots__ = ("_cipher", "_key", "_aead", "n")

    def __init__(self, cipher: str, key: bytes | None = None) -> None:
        try:
            self._cipher = _CIPHERS[cipher]
        except KeyError:
            raise ValueError(f"unsupported cipher {cipher!r}") from None
        self._key: bytes | None = None
        self._aead: ChaCha20Poly1305 | AESGCM | None = None
        #: Nonce of the next :meth:`encrypt_with_ad`/:meth:`decrypt_with_ad` call.
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def __repr__(self) -> str:
        return f"CipherState(cipher={self._cipher.name!r}, has_key={self.has_key()}, n={self.n})"

    @property
    def cipher_name(self) -> str:
        """Name of the AEAD, ``"ChaChaPoly"`` or ``"AESGCM"``."""
        return self._cipher.name

    @property
    def key(self) -> bytes:
        """The raw 32-byte cipher key. **Secret**: for the packet-protection
        layer only; never log or display it.

        :raises NoiseError: if no key is set.
        """
        if self._key is None:
            raise NoiseError("cipher state has no key")
        return self._key

    def initialize_key(self, key: bytes | None) -> None:
        """Set the key (or clear it with ``None``) and reset ``n`` to zero."""
        if key is not None and len(key) != KEYLEN:
            raise ValueError(f"cipher key must be {KEYLEN} bytes")
        self._key = None if key is None else bytes(key)
        # The AEAD object is built on first use (see _seal/_open) and then kept
        # for the key's life: building it per packet would redo the key schedule
        # every time, and many handshake keys are replaced before they are used.
        self._aead = None
        self.n = 0

    def packet_aead(self):
        """``(aead, nonce_pack)`` for packet protection that calls the AEAD
        directly (one call per packet instead of four): the ``cryptography``
        object for this key, and the function that lays a 64-bit counter out as
        its nonce. The caller keeps nonces within ``0 ..= MAX_NONCE`` and never
        reuses one under a key. **Secret-bearing**: never log it.

        :raises NoiseError: if no key is set.
        """
        if self._key is None:
            raise NoiseError("cipher state has no key")
        aead = self._aead
        if aead is None:
            aead = self._aead = self._cipher.aead(self._key)
        return aead, self._cipher.nonce.pack

    def has_key(self) -> bool:
        """Whether a key is set."""
        return self._key is not None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt with the implicit nonce ``n`` and increment it.

        :returns: ciphertext with a 16-byte tag, or ``plaintext`` if no key is set.
        :raises NoiseError: if the nonces are exhausted.
        """
        if self._key is None:
            return bytes(plaintext)
        out = self._seal(self._check_nonce(self.n), ad, plaintext)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt with the implicit nonce ``n``; increment it only on success.

        :returns: the plaintext, or ``ciphertext`` if no key is set.
        :raises NoiseError: on authentication failure or exhausted nonces.
        """
        if self._key is None:
            return bytes(ciphertext)
        out = self._open(self._check_nonce(self.n), ad, ciphertext)
        self.n += 1
        return out

    def encrypt_with_nonce(self, nonce: int, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt with an explicit nonce (STT's packet number); ``n`` is untouched.

        The caller must never use the same nonce twice with one key.

        :param nonce: integer in ``[0, 2**64 - 2]``.
        :raises NoiseError: if no key is set or the nonce is out of range.
        """
        if self._key is None:
            raise NoiseError("cipher state has no key")
        return self._seal(self._check_nonce(nonce), ad, plaintext)

    def decrypt_with_nonce(self, nonce: int, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt with an explicit nonce; ``n`` is untouched.

        :param nonce: integer in ``[0, 2**64 - 2]``.
        :raises NoiseError: if no key is set, the nonce is out of range, or
            authentication fails.
        """
        if self._key is None:
            raise NoiseError("cipher state has no key")
        return self._open(self._check_nonce(nonce), ad, ciphertext)

    def rekey(self) -> None:
        """Replace the key with ``REKEY(k)`` (sections 4.2 and 11.3); ``n`` is kept.

        :raises NoiseError: if no key is set.
        """
        if self._key is None:
            raise NoiseError("cipher state has no key")
        # The default REKEY: encrypt 32 zero bytes under the reserved nonce
        # 2**64 - 1 and keep the first 32 bytes (dropping the tag).
        new_key = self._seal(_REKEY_NONCE, b"", _ZERO_KEY)[:KEYLEN]
        n = self.n
        self.initialize_key(new_key)
        self.n = n

    # -- internals --------------------------------------------------------

    @staticmethod
    def _check_nonce(nonce: int) -> int:
        # 2**64 - 1 is reserved for rekey, so callers get at most 2**64 - 1 nonces.
        if not 0 <= nonce <= MAX_NONCE:
            raise NoiseError("nonce out of range")
        return nonce

    def _seal(self, nonce: int, ad: bytes, plaintext: bytes) -> bytes:
        aead = self._aead
        if aead is None:
            aead = self._aead = self._cipher.aead(self._key)
        return aead.encrypt(self._cipher.nonce.pack(nonce), plaintext, ad)

    def _open(self, nonce: int, ad: bytes, ciphertext: bytes) -> bytes:
        aead = self._aead
        if aead is None:
            aead = self._aead = self._cipher.aead(self._key)
        try:
            return aead.decrypt(self._cipher.nonce.pack(nonce), ciphertext, ad)
        except InvalidTag:
            raise NoiseError("authentication failed") from None


# ---------------------------------------------------------------------------
# SymmetricState (section 5.2)
# ---------------------------------------------------------------------------


class SymmetricState:
    """Chaining key ``ck``, handshake hash ``h`` and a :class:`CipherState`
    (section 5.2). Used by :class:`HandshakeState`; rarely needed directly.

    :param protocol_name: full Noise protocol name (ASCII).
    :param cipher: cipher name, ``"ChaChaPoly"`` or ``"AESGCM"``.
    :param hash_name: ``"BLAKE2s"``, ``"BLAKE2b"`` or ``"SHA256"``.
    """

    __slots__ = ("_hash", "_cipher_name", "cipher_state", "_ck", "_h")

    def __init__(self, protocol_name: str, cipher: str, hash_name: str) -> None:
        try:
            self._hash = _HASHES[hash_name]
        except KeyError:
            raise ValueError(f"unsupported hash {hash_name!r}") from None
        self._cipher_name = cipher
        self.cipher_state = CipherState(cipher)
        name = protocol_name.encode("ascii")
        hashlen = self._hash.hashlen
        # InitializeSymmetric: short names are used as h directly (zero-padded),
        # longer ones hashed.
        self._h = name.ljust(hashlen, b"\x00") if len(name) <= hashlen else self._hash.digest(name)
        self._ck = self._h

    def __repr__(self) -> str:
        return (
            f"SymmetricState(cipher={self._cipher_name!r}, hash={self._hash.name!r}, "
            f"has_key={self.cipher_state.has_key()})"
        )

    @property
    def hashlen(self) -> int:
        """HASHLEN of the configured hash."""
        return self._hash.hashlen

    def mix_key(self, ikm: bytes) -> None:
        """Feed DH output (or another secret) into ``ck`` and derive a new key."""
        self._ck, temp_k = self._hash.hkdf(self._ck, ikm, 2)
        # HASHLEN 64 (BLAKE2b) yields 64-byte keys; cipher keys are 32 bytes.
        self.cipher_state.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        """``h = HASH(h || data)``."""
        self._h = self._hash.digest(self._h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        """Feed a PSK into both ``ck`` and ``h`` and derive a new key (section 5.2)."""
        self._ck, temp_h, temp_k = self._hash.hkdf(self._ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k[:KEYLEN])

    def get_handshake_hash(self) -> bytes:
        """The current value of ``h``."""
        return self._h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """Encrypt with ``h`` as associated data, then hash the ciphertext in."""
        ciphertext = self.cipher_state.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Decrypt with ``h`` as associated data, then hash the ciphertext in.

        :raises NoiseError: on authentication failure.
        """
        plaintext = self.cipher_state.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Derive the two transport cipher states (initiator->responder first)."""
        temp_k1, temp_k2 = self._hash.hkdf(self._ck, b"", 2)
        return (
            CipherState(self._cipher_name, temp_k1[:KEYLEN]),
            CipherState(self._cipher_name, temp_k2[:KEYLEN]),
        )

    def _forget_secrets(self) -> None:
        # After Split the chaining key and the handshake cipher key are no
        # longer needed; drop our references (h is public: both sides know it).
        self._ck = b""
        self.cipher_state.initialize_key(None)


# ---------------------------------------------------------------------------
# HandshakeState (section 5.3)
# ---------------------------------------------------------------------------


class HandshakeState:
    """One side of a Noise handshake (section 5.3).

    Call :meth:`write_message` and :meth:`read_message` alternately, starting
    with the initiator's write, until :attr:`complete` is true; then use
    :meth:`split` and :attr:`handshake_hash`.

    Any failure while the handshake is in progress -- a message that does not
    authenticate or has the wrong length, a call out of turn -- raises
    :class:`NoiseError` and leaves the state *dead*: every later call raises
    :class:`NoiseError` too, so a half-updated state can never be reused.

    :param protocol_name: e.g. ``"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"``.
    :param initiator: whether this side sends the first message.
    :param prologue: data both sides must agree on; hashed into the transcript.
    :param s: local static key pair, required iff the pattern sends or
        pre-shares this side's static key.
    :param rs: remote static public key (32 bytes), required iff the pattern
        pre-shares the peer's static key (``IK`` initiator).
    :param psks: pre-shared keys (32 bytes each), one per ``psk`` token, in
        order of use.
    :param e: fixed ephemeral key, **for test vectors only**; normally leave it
        ``None``.
    :param rng: source of randomness, called as ``rng(32)`` to make the
        ephemeral key. Inject a deterministic one to replay simulations.
    :param static_dh_cache: optional mapping from a remote static public key
        to ``DH(s, rs)`` for *this* ``s``; filled and reused by the ``ss``
        token. It holds secrets: keep it private and bounded.
    :raises ValueError: for an unsupported protocol name or keys that do not
        match the pattern.
    """

    def __init__(
        self,
        protocol_name: str,
        initiator: bool,
        prologue: bytes = b"",
        s: X25519PrivateKey | None = None,
        rs: bytes | None = None,
        psks: Sequence[bytes] = (),
        e: X25519PrivateKey | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        static_dh_cache: MutableMapping[bytes, bytes] | None = None,
    ) -> None:
        protocol = _parse_protocol_name(protocol_name)
        pre_i, pre_r, messages = protocol.pattern
        local_pre, remote_pre = (pre_i, pre_r) if initiator else (pre_r, pre_i)
        # The messages this side writes: even indices for the initiator.
        own_messages = messages[0 if initiator else 1 :: 2]

        # Check the keys against the pattern now rather than failing mid-way.
        needs_s = "s" in local_pre or any("s" in m for m in own_messages)
        if needs_s and s is None:
            raise ValueError("this pattern needs a local static key (s)")
        if not needs_s and s is not None:
            raise ValueError("this pattern does not use a local static key (s)")
        needs_rs = "s" in remote_pre
        if needs_rs and rs is None:
            raise ValueError("this pattern needs the remote static key (rs)")
        if not needs_rs and rs is not None:
            raise ValueError("this pattern does not pre-share the remote static key (rs)")
        if rs is not None and len(rs) != DHLEN:
            raise ValueError(f"remote static key must be {DHLEN} bytes")
        if len(psks) != protocol.psk_count:
            raise ValueError(f"this pattern needs {protocol.psk_count} PSK(s), got {len(psks)}")
        if any(len(psk) != KEYLEN for psk in psks):
            raise ValueError(f"each PSK must be {KEYLEN} bytes")

        self._protocol = protocol
        self._initiator = bool(initiator)
        self._messages = messages
        self._symmetric = SymmetricState(protocol_name, protocol.cipher.name, protocol.hash.name)
        self._s = s
        self._s_pub = None if s is None else _public_bytes(s)
        self._e = e
        self._e_pub = None if e is None else _public_bytes(e)
        self._rs = None if rs is None else bytes(rs)
        self._re: bytes | None = None
        self._psks = [bytes(p) for p in psks]
        self._rng = rng
        self._static_dh_cache = static_dh_cache
        self._index = 0  # index of the next message in the pattern
        self._dead = False
        self._result: tuple[CipherState, CipherState] | None = None
        self._hash_value: bytes | None = None

        # Initialize (section 5.3): prologue, then pre-message public keys,
        # initiator's first.
        self._symmetric.mix_hash(_as_bytes(prologue))
        for owner_is_initiator, tokens in ((True, pre_i), (False, pre_r)):
            for token in tokens:
                if token != "s":  # the supported patterns pre-share only s
                    raise ValueError(f"unsupported pre-message token {token!r}")
                local = owner_is_initiator == self._initiator
                key = self._s_pub if local else self._rs
                assert key is not None  # guaranteed by the checks above
                self._symmetric.mix_hash(key)

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        return (
            f"HandshakeState(protocol={self._protocol.name!r}, role={role!r}, "
            f"message_index={self._index}, complete={self.complete}, dead={self._dead})"
        )

    # -- public properties --------------------------------------------------

    @property
    def protocol_name(self) -> str:
        """The full Noise protocol name."""
        return self._protocol.name

    @property
    def initiator(self) -> bool:
        """Whether this side is the initiator."""
        return self._initiator

    @property
    def complete(self) -> bool:
        """Whether every handshake message has been written or read."""
        return self._result is not None

    @property
    def dead(self) -> bool:
        """Whether a failure has made this state unusable."""
        return self._dead

    @property
    def message_index(self) -> int:
        """Index of the next handshake message (0 for the first)."""
        return self._index

    @property
    def is_my_turn(self) -> bool:
        """Whether the next call should be :meth:`write_message`."""
        return (self._index % 2 == 0) == self._initiator

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, once known (given or received)."""
        return self._rs

    @property
    def local_ephemeral_public(self) -> bytes | None:
        """This side's ephemeral public key, once chosen."""
        return self._e_pub

    @property
    def handshake_hash(self) -> bytes:
        """The final ``h`` (section 5.2, GetHandshakeHash), for channel binding.

        :raises NoiseError: before the handshake is complete.
        """
        if self._hash_value is None:
            raise NoiseError("handshake is not complete")
        return self._hash_value

    def split(self) -> tuple[CipherState, CipherState]:
        """The transport cipher states ``(initiator->responder,
        responder->initiator)``, the same pair on every call.

        :raises NoiseError: before the handshake is complete.
        """
        if self._result is None:
            raise NoiseError("handshake is not complete")
        return self._result

    # -- messages ----------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """Produce the next handshake message carrying ``payload``.

        :raises NoiseError: if it is the peer's turn, the handshake is complete
            or dead, or the message would exceed 65535 bytes.
        """
        tokens = self._next_tokens(writing=True)
        payload = _as_bytes(payload)
        if self._overhead(tokens) + len(payload) > MAX_MESSAGE_LEN:
            self._dead = True
            raise NoiseError("handshake message would exceed 65535 bytes")
        if "e" in tokens and self._e is None:
            # Draw the ephemeral before touching any state, so a faulty rng
            # leaves the handshake as it was.
            raw = self._rng(DHLEN)
            if len(raw) != DHLEN:
                raise ValueError(f"rng must return {DHLEN} bytes")
            self._e = X25519PrivateKey.from_private_bytes(raw)
            self._e_pub = _public_bytes(self._e)
        try:
            out = bytearray()
            sym = self._symmetric
            for token in tokens:
                if token == "e":
                    assert self._e_pub is not None
                    out += self._e_pub
                    sym.mix_hash(self._e_pub)
                    if self._protocol.psk_count:
                        # Section 9.2: with PSKs, e is also a MixKey input, so
                        # later encryption is keyed by psk *and* fresh randomness.
                        sym.mix_key(self._e_pub)
                elif token == "s":
                    assert self._s_pub is not None
                    out += sym.encrypt_and_hash(self._s_pub)
                else:
                    self._mix_token(token)
            out += sym.encrypt_and_hash(payload)
        except BaseException:
            self._dead = True
            raise
        self._advance()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message and return its payload.

        :raises NoiseError: if the message does not authenticate or is
            malformed, it is not the peer's turn, or the handshake is complete
            or dead. Except after completion, the state is then dead.
        """
        tokens = self._next_tokens(writing=False)
        message = _as_bytes(message)
        try:
            if len(message) > MAX_MESSAGE_LEN or len(message) < self._overhead(tokens):
                raise NoiseError("handshake message has the wrong length")
            sym = self._symmetric
            pos = 0
            for token in tokens:
                if token == "e":
                    self._re = message[pos : pos + DHLEN]
                    pos += DHLEN
                    sym.mix_hash(self._re)
                    if self._protocol.psk_count:
                        sym.mix_key(self._re)
                elif token == "s":
                    size = DHLEN + (TAGLEN if sym.cipher_state.has_key() else 0)
                    self._rs = sym.decrypt_and_hash(message[pos : pos + size])
                    pos += size
                else:
                    self._mix_token(token)
            payload = sym.decrypt_and_hash(message[pos:])
        except Exception as exc:
            self._dead = True
            if isinstance(exc, NoiseError):
                raise
            raise NoiseError("handshake message could not be processed") from None
        except BaseException:
            self._dead = True
            raise
        self._advance()
        return payload

    # -- internals -----------------------------------------------------------

    def _next_tokens(self, writing: bool) -> _Tokens:
        """Check that a write (or read) is allowed now; return its tokens."""
        if self._dead:
            raise NoiseError("handshake state is dead after an earlier failure")
        if self._result is not None:
            raise NoiseError("handshake is already complete")
        if writing != self.is_my_turn:
            # Out of turn is fatal too: the caller's view of the handshake is
            # out of step with ours, and nothing good comes from continuing.
            self._dead = True
            raise NoiseError("not this side's turn to " + ("write" if writing else "read"))
        return self._messages[self._index]

    def _overhead(self, tokens: _Tokens) -> int:
        """Bytes a message with these tokens adds around its payload."""
        keyed = self._symmetric.cipher_state.has_key()
        size = 0
        for token in tokens:
            if token == "e":
                size += DHLEN
                keyed = keyed or self._protocol.psk_count > 0
            elif token == "s":
                size += DHLEN + (TAGLEN if keyed else 0)
            else:  # DH and psk tokens all call MixKey
                keyed = True
        return size + (TAGLEN if keyed else 0)

    def _mix_token(self, token: str) -> None:
        """Process a DH or psk token; identical for writer and reader."""
        sym = self._symmetric
        if token == "psk":
            sym.mix_key_and_hash(self._psks.pop(0))
            return
        # "es" is DH(initiator's e, responder's s), and so on: map each letter
        # to the local private key or the remote public key depending on role.
        first, second = token[0], token[1]
        if self._initiator:
            local_kind, remote_kind = first, second
        else:
            local_kind, remote_kind = second, first
        private = self._e if local_kind == "e" else self._s
        public = self._re if remote_kind == "e" else self._rs
        if private is None or public is None:
            raise NoiseError(f"token {token!r} used before its keys are known")
        if token == "ss" and self._static_dh_cache is not None:
            # DH(s, rs) is the same in every handshake between two nodes, so
            # the caller may keep it (WireGuard precomputes it per peer too).
            shared = self._static_dh_cache.get(public)
            if shared is None:
                shared = self._static_dh_cache[public] = _dh(private, public)
            sym.mix_key(shared)
            return
        sym.mix_key(_dh(private, public))

    def _advance(self) -> None:
        self._index += 1
        if self._index == len(self._messages):
            self._result = self._symmetric.split()
            self._hash_value = self._symmetric.get_handshake_hash()
            # Handshake secrets are no longer needed.
            self._symmetric._forget_secrets()
            self._e = None
            self._s = None
            self._psks = []
