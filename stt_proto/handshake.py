"""Handshake packets: layouts, MACs, cookies and transport parameters.

Theory of operation
-------------------
A session starts with one round trip of Noise ``IKpsk2`` (``docs/protocol.md``
section 6). The initiator knows the responder's node id (its static public key)
and sends an INITIATION; the responder answers with a RESPONSE; the initiator's
first DATA packet confirms the keys to the responder.

Around the Noise messages sit WireGuard-style denial-of-service defences:

* ``mac1`` is a keyed BLAKE2s over the packet, keyed by a hash of the
  *receiver's* public key. A sender that does not know whom it is talking to
  cannot produce it, so the responder drops such packets after one hash, with no
  Diffie-Hellman work and no state.
* ``mac2`` is keyed by a *cookie*: a short-lived MAC of the sender's address
  under a secret that rotates. When the responder is under load it answers an
  INITIATION without a valid ``mac2`` with a COOKIE_REPLY (smaller than the
  INITIATION) and does nothing else; the initiator echoes the cookie, proving it
  receives packets at its claimed address, before any DH work is spent on it.

This module holds the byte layouts and these pure functions; the state machine
that uses them is :mod:`stt_proto.endpoint`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import _wire as wire
from .constants import PacketKind
from .errors import DecodeError, EncodeError

__all__ = [
    "PROLOGUE",
    "SUITES",
    "SUITE_BY_CIPHER",
    "MAC_SIZE",
    "MIN_INITIATION_SIZE",
    "MAX_HANDSHAKE_SIZE",
    "COOKIE_REPLY_SIZE",
    "Initiation",
    "Response",
    "CookieReply",
    "TransportParameters",
    "mac1_key",
    "cookie_key",
    "mac",
    "encode_initiation",
    "parse_initiation_untrusted",
    "encode_response",
    "parse_response_untrusted",
    "encode_cookie_reply",
    "parse_cookie_reply_untrusted",
    "seal_cookie",
    "open_cookie",
]

#: Noise prologue: binds the protocol name and version into every handshake, so
#: nodes of different protocol versions can never complete one.
PROLOGUE = b"STT protocol version 1"

#: Cipher suites, by the byte that names them in an INITIATION.
SUITES = {
    0x01: "Noise_IKpsk2_25519_AESGCM_BLAKE2s",
    0x02: "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s",
}
SUITE_BY_CIPHER = {"AESGCM": 0x01, "ChaChaPoly": 0x02}

MAC_SIZE = 16
_KEY_SIZE = 32
_NOISE_E = 32
_NOISE_S = 32 + 16
_TAG = 16
_COOKIE_NONCE = 12

#: An INITIATION is padded to at least this many bytes, and a responder drops
#: smaller ones without looking further. It makes every answer (RESPONSE or
#: COOKIE_REPLY) smaller than the INITIATION that caused it, so the responder
#: can never be used to amplify traffic towards a spoofed address.
MIN_INITIATION_SIZE = 256
#: Largest handshake packet accepted (transport parameters are small).
MAX_HANDSHAKE_SIZE = 1200
#: kind, receiver index, nonce, sealed 16-byte cookie.
COOKIE_REPLY_SIZE = 1 + 4 + _COOKIE_NONCE + MAC_SIZE + _TAG

_LABEL_MAC1 = b"stt-mac1--------"
_LABEL_COOKIE = b"stt-cookie------"

# kind, suite, sender index
_INIT_HEAD = struct.Struct(">BBI")
# kind, sender index, receiver index
_RESP_HEAD = struct.Struct(">BII")
_COOKIE_HEAD = struct.Struct(">BI")


def mac1_key(public_key: bytes) -> bytes:
    """Key for ``mac1`` of packets sent *to* the owner of ``public_key``."""
    return hashlib.blake2s(_LABEL_MAC1 + public_key).digest()


def cookie_key(public_key: bytes) -> bytes:
    """Key that seals the cookies the owner of ``public_key`` hands out."""
    return hashlib.blake2s(_LABEL_COOKIE + public_key).digest()


def mac(key: bytes, data: bytes) -> bytes:
    """16-byte keyed BLAKE2s of ``data`` (a MAC, not a home-made primitive:
    BLAKE2 has a keyed mode by design)."""
    return hashlib.blake2s(data, key=key, digest_size=MAC_SIZE).digest()


def seal_cookie(key: bytes, nonce: bytes, cookie: bytes, mac1: bytes) -> bytes:
    """Encrypt ``cookie`` for the initiator; the associated data is the ``mac1``
    of the INITIATION being answered, so a reply only fits that one packet."""
    return ChaCha20Poly1305(key).encrypt(nonce, cookie, mac1)


def open_cookie(key: bytes, nonce: bytes, sealed: bytes, mac1: bytes) -> bytes | None:
    """Decrypt a sealed cookie; ``None`` if it does not authenticate."""
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, sealed, mac1)
    except InvalidTag:
        return None


# ---------------------------------------------------------------------------
# Transport parameters (docs/protocol.md section 6.4)
# ---------------------------------------------------------------------------

_PARAM_IDLE_TIMEOUT_MS = 0x01
_PARAM_MAX_DATAGRAM_SIZE = 0x02
_PARAM_INITIAL_MAX_DATA = 0x03
_PARAM_INITIAL_MAX_STREAM_DATA = 0x04
_PARAM_INITIAL_MAX_STREAMS = 0x05
_PARAM_REKEY_INDEX = 0x06
#: Bytes, not a varint: a DHT message carried by the handshake (6.9).
_PARAM_EARLY_DHT = 0x07
_PARAM_PADDING = 0x3F
_MAX_PARAMS = 32

_PARAM_NAMES = {
    _PARAM_IDLE_TIMEOUT_MS: "idle_timeout_ms",
    _PARAM_MAX_DATAGRAM_SIZE: "max_datagram_size",
    _PARAM_INITIAL_MAX_DATA: "initial_max_data",
    _PARAM_INITIAL_MAX_STREAM_DATA: "initial_max_stream_data",
    _PARAM_INITIAL_MAX_STREAMS: "initial_max_streams",
    _PARAM_REKEY_INDEX: "rekey_index",
}
#: Every INITIATION and RESPONSE carries these (docs/protocol.md section 6.4):
#: a wrong guess of the peer's datagram size or credit would black-hole packets
#: or break its flow-control limits, so no value is ever assumed for them.
_REQUIRED_PARAMS = (
    _PARAM_IDLE_TIMEOUT_MS,
    _PARAM_MAX_DATAGRAM_SIZE,
    _PARAM_INITIAL_MAX_DATA,
    _PARAM_INITIAL_MAX_STREAM_DATA,
    _PARAM_INITIAL_MAX_STREAMS,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportParameters:
    """Limits each side announces in its handshake payload.

    The defaults below serve only to build this side's own parameters: a peer's
    are decoded by :meth:`decode_untrusted`, which requires every one but
    ``rekey_index`` and never falls back on a default (docs/protocol.md 6.4).
    """

    idle_timeout_ms: int = 30_000
    """The sender closes a session that is silent for this long."""
    max_datagram_size: int = 1452
    """Largest UDP payload the sender accepts."""
    initial_max_data: int = 1 << 20
    """Session-wide flow-control credit granted at the start."""
    initial_max_stream_data: int = 1 << 18
    """Per-stream flow-control credit granted at the start."""
    initial_max_streams: int = 1024
    """Streams the peer may open at the start."""
    rekey_index: int | None = None
    """Set in a rekey INITIATION: the receiver's index of the session whose keys
    are being replaced. Absent in a handshake that starts a new session."""
    early_dht: bytes | None = None
    """A DHT message carried by the handshake (docs/protocol.md 6.9): in an
    INITIATION, a request; in a RESPONSE, its answer. Absent when none."""

    def encode(self, pad_to: int = 0) -> bytes:
        """Encode as ``(id, length, value)`` triples of varints; optionally add
        a PADDING parameter so the result is at least ``pad_to`` bytes."""
        w = wire.Writer(MAX_HANDSHAKE_SIZE)
        items = [
            (_PARAM_IDLE_TIMEOUT_MS, self.idle_timeout_ms),
            (_PARAM_MAX_DATAGRAM_SIZE, self.max_datagram_size),
            (_PARAM_INITIAL_MAX_DATA, self.initial_max_data),
            (_PARAM_INITIAL_MAX_STREAM_DATA, self.initial_max_stream_data),
            (_PARAM_INITIAL_MAX_STREAMS, self.initial_max_streams),
        ]
        if self.rekey_index is not None:
            items.append((_PARAM_REKEY_INDEX, self.rekey_index))
        for param_id, value in items:
            w.push_varint(param_id)
            w.push_varint(wire.varint_size(value))
            w.push_varint(value)
        if self.early_dht is not None:
            w.push_varint(_PARAM_EARLY_DHT)
            w.push_varint(len(self.early_dht))
            w.push_bytes(self.early_dht)
        missing = pad_to - w.tell()
        if missing > 0:
            # id (1 byte) + length varint + zeros; size the length field first
            body = max(0, missing - 2)
            if wire.varint_size(body) == 2:
                body = max(0, body - 1)
            w.push_varint(_PARAM_PADDING)
            w.push_varint(body)
            w.push_zeros(body)
        return w.getvalue()

    @classmethod
    def decode_untrusted(cls, data: bytes) -> TransportParameters:
        """Decode parameters from an authenticated handshake payload
        (``docs/protocol.md`` section 6.4).

        Unknown ids are skipped (so later versions can add parameters), and so
        is the content of PADDING.

        Args:
            data: the decrypted Noise payload of an INITIATION or a RESPONSE.

        Returns:
            The parameters; ``rekey_index`` is ``None`` when absent.

        Raises:
            DecodeError: a parameter other than ``rekey_index`` is missing, an id
                is repeated, there are more than 32 parameters, a triple is
                truncated, an integer does not fill its length exactly, or a
                value is out of range. The caller then fails the handshake as
                section 6.4 says (the responder silently, the initiator by
                failing the connect).
        """
        r = wire.Reader(data)
        seen: set[int] = set()
        values: dict[str, Any] = {}
        names = _PARAM_NAMES
        while not r.eof():
            param_id = r.pull_varint()
            length = r.pull_varint()
            body = r.pull_bytes(length)
            if param_id in seen:
                raise DecodeError(f"duplicate transport parameter 0x{param_id:x}")
            seen.add(param_id)
            if len(seen) > _MAX_PARAMS:
                raise DecodeError("too many transport parameters")
            if param_id == _PARAM_EARLY_DHT:
                values["early_dht"] = bytes(body)
                continue
            name = names.get(param_id)
            if name is None:
                continue
            value = wire.decode_varint_untrusted(body)
            values[name] = value
        missing = [names[p] for p in _REQUIRED_PARAMS if p not in seen]
        if missing:
            raise DecodeError(f"missing transport parameters: {', '.join(missing)}")
        if "max_datagram_size" in values and not 1200 <= values["max_datagram_size"] <= 65527:
            raise DecodeError("max_datagram_size outside 1200..65527")
        if "rekey_index" in values and values["rekey_index"] > 0xFFFFFFFF:
            raise DecodeError("rekey_index out of range")
        return cls(**values)


# ---------------------------------------------------------------------------
# Packet layouts (docs/protocol.md section 6.1 - 6.3)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Initiation:
    suite: int
    sender_index: int
    noise: bytes
    """The Noise message: ephemeral, encrypted static, encrypted payload."""
    mac1: bytes
    mac2: bytes
    body_for_mac1: bytes
    """The packet up to ``mac1`` (what ``mac1`` covers)."""
    body_for_mac2: bytes
    """The packet up to ``mac2``."""


@dataclass(frozen=True, slots=True)
class Response:
    sender_index: int
    receiver_index: int
    noise: bytes
    mac1: bytes
    mac2: bytes
    body_for_mac1: bytes
    body_for_mac2: bytes


@dataclass(frozen=True, slots=True)
class CookieReply:
    receiver_index: int
    nonce: bytes
    sealed_cookie: bytes


def _split_macs(data: bytes, head: int) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """Split ``head | noise | mac1 | mac2`` into the Noise message, both MACs and
    the two prefixes the MACs cover."""
    end2 = len(data) - MAC_SIZE
    end1 = end2 - MAC_SIZE
    return data[head:end1], data[end1:end2], data[end2:], data[:end1], data[:end2]


def _with_macs(body: bytes, mac1_k: bytes, cookie: bytes | None) -> tuple[bytes, bytes]:
    m1 = mac(mac1_k, body)
    m2 = mac(cookie, body + m1) if cookie is not None else bytes(MAC_SIZE)
    return body + m1 + m2, m1


def encode_initiation(
    suite: int, sender_index: int, noise: bytes, receiver_public: bytes, cookie: bytes | None
) -> tuple[bytes, bytes]:
    """Build an INITIATION; returns ``(packet, mac1)`` (the initiator keeps
    ``mac1`` to open a COOKIE_REPLY)."""
    if suite not in SUITES:
        raise EncodeError(f"unknown suite {suite}")
    body = _INIT_HEAD.pack(int(PacketKind.INITIATION), suite, sender_index) + noise
    return _with_macs(body, mac1_key(receiver_public), cookie)


def parse_initiation_untrusted(data: bytes) -> Initiation:
    """Split an INITIATION into its fields (no cryptography yet).

    Raises:
        DecodeError: wrong kind or size, or unknown suite.
    """
    if not MIN_INITIATION_SIZE <= len(data) <= MAX_HANDSHAKE_SIZE:
        raise DecodeError("INITIATION size out of bounds")
    kind, suite, sender_index = _INIT_HEAD.unpack_from(data)
    if kind != PacketKind.INITIATION:
        raise DecodeError("not an INITIATION")
    if suite not in SUITES:
        raise DecodeError("unknown cipher suite")
    noise, mac1_value, mac2_value, body1, body2 = _split_macs(data, _INIT_HEAD.size)
    return Initiation(suite, sender_index, noise, mac1_value, mac2_value, body1, body2)


def encode_response(
    sender_index: int, receiver_index: int, noise: bytes, receiver_public: bytes,
    cookie: bytes | None = None,
) -> bytes:
    """Build a RESPONSE (``mac1`` keyed by the initiator's public key)."""
    body = _RESP_HEAD.pack(int(PacketKind.RESPONSE), sender_index, receiver_index) + noise
    return _with_macs(body, mac1_key(receiver_public), cookie)[0]


def parse_response_untrusted(data: bytes) -> Response:
    """Split a RESPONSE into its fields.

    Raises:
        DecodeError: wrong kind or size.
    """
    if not _RESP_HEAD.size + _NOISE_E + _TAG + 2 * MAC_SIZE <= len(data) <= MAX_HANDSHAKE_SIZE:
        raise DecodeError("RESPONSE size out of bounds")
    kind, sender_index, receiver_index = _RESP_HEAD.unpack_from(data)
    if kind != PacketKind.RESPONSE:
        raise DecodeError("not a RESPONSE")
    noise, mac1_value, mac2_value, body1, body2 = _split_macs(data, _RESP_HEAD.size)
    return Response(sender_index, receiver_index, noise, mac1_value, mac2_value, body1, body2)


def encode_cookie_reply(receiver_index: int, nonce: bytes, sealed_cookie: bytes) -> bytes:
    """Build a COOKIE_REPLY."""
    if len(nonce) != _COOKIE_NONCE or len(sealed_cookie) != MAC_SIZE + _TAG:
        raise EncodeError("bad cookie reply fields")
    return _COOKIE_HEAD.pack(int(PacketKind.COOKIE_REPLY), receiver_index) + nonce + sealed_cookie


def parse_cookie_reply_untrusted(data: bytes) -> CookieReply:
    """Split a COOKIE_REPLY into its fields.

    Raises:
        DecodeError: wrong kind or size.
    """
    if len(data) != COOKIE_REPLY_SIZE:
        raise DecodeError("COOKIE_REPLY has the wrong size")
    kind, receiver_index = _COOKIE_HEAD.unpack_from(data)
    if kind != PacketKind.COOKIE_REPLY:
        raise DecodeError("not a COOKIE_REPLY")
    head = _COOKIE_HEAD.size
    return CookieReply(
        receiver_index=receiver_index,
        nonce=data[head : head + _COOKIE_NONCE],
        sealed_cookie=data[head + _COOKIE_NONCE :],
    )


def macs_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison, so a MAC cannot be guessed byte by byte."""
    return hmac.compare_digest(a, b)
