"""The DHT's messages and their strict binary encoding (``docs/dht-wire.md``).

Each message is the whole payload of one DHT frame on an authenticated STT
session. The session proves who sent it, so no message carries the sender's
node id: a provider announced by :class:`AddProvider` is the sender, an answer
comes from the session's peer.

Theory of operation
-------------------
Every message starts with the same ten bytes, in this and every future version::

    version u8 (= 1) | type u8 | transaction id (8 bytes)

Keeping that header fixed across versions lets a node answer a message of a
version it does not know with ``Error(UNSUPPORTED_VERSION)`` under the asker's
transaction id (:class:`UnsupportedVersionError` carries both), and the high
bit of the type byte tells an answer (set) from a request (clear) in every
version, so nobody answers an answer and two versions cannot ping-pong errors.

The body is fixed-size fields and fixed-size length prefixes (u8 or u16,
big-endian), never varints, so every value has exactly one encoding; the few
remaining choices (an optional field's presence byte, an address family, an
IPv4 address written as IPv4-mapped IPv6) have one allowed form each, and the
decoder refuses the others. Together with the refusal of trailing bytes this
makes the codec canonical: ``encode(decode(data)) == data`` for every ``data``
that decodes, which the tests and ``fuzz/fuzz_dht_codec.py`` check.

The decoder raises :class:`~stt_proto.errors.DecodeError` and nothing else for
any input; the message classes validate in their constructors and raise
:class:`~stt_proto.errors.EncodeError` (a ``ValueError``), so a message that
exists can always be encoded, unless it is longer than
:data:`MAX_MESSAGE_BYTES` (a value of 3,072 bytes plus 32 IPv6 contacts does
not fit a DHT frame), which :func:`encode` refuses with ``EncodeError``.

Don't subclass the message classes: the codec dispatches on the exact type.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, ClassVar

from ..errors import DecodeError, EncodeError

__all__ = [
    "VERSION",
    "HEADER_BYTES",
    "TXID_BYTES",
    "KEY_BYTES",
    "SIGNATURE_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_VALUE_BYTES",
    "MAX_CONTACTS",
    "MAX_SALT_BYTES",
    "HOST_CACHE_SIZE",
    "MUTABLE_KEY_LABEL",
    "MUTABLE_SIGNATURE_LABEL",
    "MessageType",
    "StoreStatus",
    "ErrorCode",
    "UnsupportedVersionError",
    "Address",
    "Contact",
    "ImmutableValue",
    "MutableValue",
    "Record",
    "Message",
    "Ping",
    "Pong",
    "FindNode",
    "Nodes",
    "FindValue",
    "ValueFound",
    "Store",
    "StoreResult",
    "AddProvider",
    "GetProviders",
    "Providers",
    "Error",
    "RESPONSE_TYPES",
    "is_request",
    "encode",
    "decode",
    "immutable_key",
    "mutable_key",
    "mutable_signed_bytes",
]

#: The only version this module speaks.
VERSION = 1
#: version, type, transaction id: the same in every version.
HEADER_BYTES = 10
#: Size of a transaction id (random, 64 bits).
TXID_BYTES = 8
#: Size of node ids, keys and Ed25519 public keys.
KEY_BYTES = 32
#: Size of an Ed25519 signature.
SIGNATURE_BYTES = 64
#: Longest message: the session's ``max_dht_message_size`` (docs/protocol.md 7.9).
MAX_MESSAGE_BYTES = 4096
#: Longest value a record may carry. Leaves room in a frame for the record's
#: other fields and some contacts.
MAX_VALUE_BYTES = 3072
#: Most contacts in one list (``Nodes``, ``ValueFound``, ``Providers``): above
#: the largest ``k`` a node may be configured with.
MAX_CONTACTS = 32
#: Longest salt of a mutable value (BEP 44's limit).
MAX_SALT_BYTES = 64
#: IP literals whose parse (and packed forms whose text) are remembered: every
#: contact of every answer goes through them.
HOST_CACHE_SIZE = 4096
#: Domain separation of :func:`mutable_key` (the NUL ends the label).
MUTABLE_KEY_LABEL = b"STT dht mutable key v1\x00"
#: Domain separation of :func:`mutable_signed_bytes`, the label ``stt_proto.identity``
#: asks signers to start with.
MUTABLE_SIGNATURE_LABEL = b"STT dht record v1\x00"

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1

_FAMILY_IPV4 = 4
_FAMILY_IPV6 = 6

_RECORD_NONE = 0
_RECORD_IMMUTABLE = 1
_RECORD_MUTABLE = 2

#: Bit of the type byte set on answers, in every version.
_ANSWER_BIT = 0x80


class MessageType(IntEnum):
    """The type byte. Requests have the high bit clear, answers set."""

    PING = 0x01
    FIND_NODE = 0x02
    FIND_VALUE = 0x03
    STORE = 0x04
    ADD_PROVIDER = 0x05
    GET_PROVIDERS = 0x06
    PONG = 0x81
    NODES = 0x82
    VALUE_FOUND = 0x83
    STORE_RESULT = 0x84  # answers STORE and ADD_PROVIDER
    PROVIDERS = 0x86
    ERROR = 0xFF  # answers any request


class StoreStatus(IntEnum):
    """How a node answered STORE or ADD_PROVIDER."""

    OK = 0
    REFUSED_INVALID = 1
    """The record does not verify against its key (hash or signature)."""
    REFUSED_ROLLBACK = 2
    """The node holds a higher sequence number for this mutable key."""
    REFUSED_CAS = 3
    """``cas`` did not match the sequence number the node holds."""
    REFUSED_FULL = 4
    """A store limit (records, bytes, per-publisher) is reached."""
    REFUSED_TOO_LARGE = 5
    """The value exceeds the node's configured maximum."""


class ErrorCode(IntEnum):
    """Why a request got :class:`Error` instead of its answer."""

    BUSY = 1
    RATE_LIMITED = 2
    MALFORMED = 3
    UNSUPPORTED_VERSION = 4


class UnsupportedVersionError(DecodeError):
    """The message is of a version this node does not speak.

    The header is the same in every version, so the fields below are read from
    it when present; the engine may answer a request
    (``is_request``) with ``Error(txid=txid, code=UNSUPPORTED_VERSION)``.
    """

    def __init__(self, version: int, type_byte: int | None, txid: bytes | None) -> None:
        super().__init__(f"unsupported DHT message version {version}")
        self.version = version
        """The version byte received."""
        self.txid = txid
        """The transaction id, or ``None`` if the message was too short to hold one."""
        self.is_request = type_byte is not None and not type_byte & _ANSWER_BIT
        """Whether the type byte marks a request (an answer must never be answered)."""


# -- addresses ---------------------------------------------------------------------------

Address = tuple[str, int]


@functools.lru_cache(maxsize=HOST_CACHE_SIZE)
def _parse_host(host: str) -> tuple[str, int, bytes] | None:
    """``(canonical text, family, packed)`` of an IP literal, or ``None``.

    IPv4-mapped IPv6 (``::ffff:a.b.c.d``, what a dual-stack socket reports for
    an IPv4 peer) becomes the IPv4 address: one host, one encoding. Zone ids
    cannot travel (they mean something only on the host that chose them), and
    an unspecified address names nobody, so both are refused.
    """
    try:
        ip: Any = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6:
        if ip.scope_id is not None:
            return None
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return None
    return str(ip), (_FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6), ip.packed


@functools.lru_cache(maxsize=HOST_CACHE_SIZE)
def _format_host(family: int, packed: bytes) -> str | None:
    """The canonical text of a packed address read off the wire, or ``None`` if
    the encoder would never have written it (mapped IPv4, unspecified)."""
    ip: Any = (ipaddress.IPv4Address(packed) if family == _FAMILY_IPV4
               else ipaddress.IPv6Address(packed))
    if ip.is_unspecified or (family == _FAMILY_IPV6 and ip.ipv4_mapped is not None):
        return None
    return str(ip)


def _check_address(address: Any, what: str) -> Address:
    if not isinstance(address, tuple) or len(address) != 2:
        raise EncodeError(f"{what} must be a (host, port) tuple, not {address!r}")
    host, port = address
    parsed = _parse_host(host) if isinstance(host, str) else None
    if parsed is None:
        raise EncodeError(f"{what}: {host!r} is not an IP address that can be sent "
                          "(host names, zone ids and unspecified addresses are not)")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 0xFFFF:
        raise EncodeError(f"{what}: port {port!r} is not within 1..65535")
    return parsed[0], int(port)


# -- field checks ------------------------------------------------------------------------


Check = Callable[[Any, str], Any]


def _bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


def _fixed(value: Any, size: int, what: str) -> bytes:
    value = _bytes(value, what)
    if len(value) != size:
        raise EncodeError(f"{what} must be {size} bytes, not {len(value)}")
    return value


def _uint(value: Any, largest: int, what: str, smallest: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not smallest <= value <= largest:
        raise EncodeError(f"{what} must be an int within {smallest}..{largest}, not {value!r}")
    return int(value)


def _enum(enum: type[IntEnum], value: Any, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"{what} must be a {enum.__name__}, not {value!r}")
    try:
        return enum(value)
    except ValueError:
        raise EncodeError(f"{what}: {value!r} is not a {enum.__name__}") from None


def _sized(size: int) -> Check:
    return lambda value, what: _fixed(value, size, what)


def _limited(largest: int) -> Check:
    def check(value: Any, what: str) -> bytes:
        value = _bytes(value, what)
        if len(value) > largest:
            raise EncodeError(f"{what} of {len(value)} bytes, at most {largest}")
        return value
    return check


def _ranged(largest: int, smallest: int = 0) -> Check:
    return lambda value, what: _uint(value, largest, what, smallest)


def _member(enum: type[IntEnum]) -> Check:
    return lambda value, what: _enum(enum, value, what)


def _optional(check: Check) -> Check:
    return lambda value, what: None if value is None else check(value, what)


class _Checked:
    """Validates and normalises the fields of a frozen dataclass on creation,
    as its ``_checks`` table says: ``(field, check(value, field) -> value)``."""

    __slots__ = ()
    _checks: ClassVar[tuple[tuple[str, Check], ...]] = ()

    def __post_init__(self) -> None:
        for name, check in self._checks:
            object.__setattr__(self, name, check(getattr(self, name), name))


# -- records and contacts ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact(_Checked):
    """A node and where to reach it."""

    _checks = (("node_id", _sized(KEY_BYTES)), ("address", _check_address))

    node_id: bytes
    """The node's id (its X25519 public key), 32 bytes."""
    address: Address
    """``(host, port)``: an IP literal in its canonical text (``str(ipaddress)``;
    IPv4-mapped IPv6 becomes IPv4) and a port within 1..65535."""


def _items(value: Any, what: str, kind: type, noun: str, largest: int) -> tuple[Any, ...]:
    """``value`` (any iterable) as a tuple of at most ``largest`` objects of
    exactly the class ``kind``; ``noun`` names them in the errors."""
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(value, Iterable):
        raise EncodeError(f"{what} must be an iterable of {kind.__name__}")
    items = tuple(value)
    if len(items) > largest:
        raise EncodeError(f"{what}: {len(items)} {noun}, at most {largest}")
    for item in items:
        if type(item) is not kind:
            raise EncodeError(f"{what} must hold {kind.__name__} objects, "
                              f"not {type(item).__name__}")
    return items


def _contacts(value: Any, what: str, largest: int = MAX_CONTACTS) -> tuple[Contact, ...]:
    contacts = _items(value, what, Contact, "contacts", largest)
    seen = set()
    for contact in contacts:
        if contact.node_id in seen:
            raise EncodeError(f"{what}: node {contact.node_id.hex()} appears twice")
        seen.add(contact.node_id)
    return contacts


@dataclass(frozen=True, slots=True, kw_only=True)
class ImmutableValue(_Checked):
    """A value stored under its own hash, :func:`immutable_key` of ``value``."""

    _checks = (("value", _limited(MAX_VALUE_BYTES)),)

    value: bytes
    """At most :data:`MAX_VALUE_BYTES`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MutableValue(_Checked):
    """A value signed by its author, stored under :func:`mutable_key` (BEP 44 style).

    The codec checks sizes only; whether the signature verifies, and whether
    the key belongs to the author, is checked by ``stt_proto.dht.records``.
    """

    _checks = (("signing_public_key", _sized(KEY_BYTES)), ("salt", _limited(MAX_SALT_BYTES)),
               ("seq", _ranged(_U64_MAX)), ("value", _limited(MAX_VALUE_BYTES)),
               ("signature", _sized(SIGNATURE_BYTES)))

    signing_public_key: bytes
    """The author's Ed25519 public key, 32 bytes (bound to its node id by
    ``stt_proto.identity.node_id_from_signing_key``)."""
    salt: bytes
    """Chosen by the author so one author can have many values; at most
    :data:`MAX_SALT_BYTES`."""
    seq: int
    """Sequence number, u64: a store keeps the highest and refuses rollbacks."""
    value: bytes
    """At most :data:`MAX_VALUE_BYTES`."""
    signature: bytes
    """Ed25519 signature of :func:`mutable_signed_bytes` ``(salt, seq, value)``, 64 bytes."""


Record = ImmutableValue | MutableValue


def _record(value: Any, what: str) -> Any:
    if type(value) not in (ImmutableValue, MutableValue):
        raise EncodeError(f"{what} must be an ImmutableValue or a MutableValue, not {value!r}")
    return value


# -- key helpers ---------------------------------------------------------------------------


def immutable_key(value: bytes) -> bytes:
    """The key of an immutable value: BLAKE2b-256 of the value, nothing else."""
    return hashlib.blake2b(value, digest_size=32).digest()


def mutable_key(author_node_id: bytes, salt: bytes) -> bytes:
    """The key of the mutable value ``author_node_id`` publishes under ``salt``::

        BLAKE2b-256(MUTABLE_KEY_LABEL || author_node_id (32) || u8 len(salt) || salt)

    The author's *node id* (not its signing key) is hashed, so a getter who
    knows only the node id can compute the key. The fixed-size id comes first
    and the salt is length-prefixed, so no two (author, salt) pairs share an input.

    Raises:
        ValueError: the id is not 32 bytes or the salt exceeds :data:`MAX_SALT_BYTES`.
    """
    author_node_id = bytes(author_node_id)
    salt = bytes(salt)
    if len(author_node_id) != KEY_BYTES:
        raise ValueError(f"author_node_id must be {KEY_BYTES} bytes")
    if len(salt) > MAX_SALT_BYTES:
        raise ValueError(f"salt of {len(salt)} bytes, at most {MAX_SALT_BYTES}")
    return hashlib.blake2b(MUTABLE_KEY_LABEL + author_node_id + bytes((len(salt),)) + salt,
                           digest_size=32).digest()


def mutable_signed_bytes(salt: bytes, seq: int, value: bytes) -> bytes:
    """The exact bytes the author of a :class:`MutableValue` signs::

        MUTABLE_SIGNATURE_LABEL || u8 len(salt) || salt || u64 seq || u16 len(value) || value

    The label keeps a record signature from ever passing for a signature made
    for another purpose with the same identity; the length prefixes keep salt
    and value from trading bytes.

    Raises:
        ValueError: salt, seq or value out of the ranges a record allows.
    """
    salt = bytes(salt)
    value = bytes(value)
    if len(salt) > MAX_SALT_BYTES:
        raise ValueError(f"salt of {len(salt)} bytes, at most {MAX_SALT_BYTES}")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"value of {len(value)} bytes, at most {MAX_VALUE_BYTES}")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _U64_MAX:
        raise ValueError("seq must be an int within 0..2**64-1")
    return b"".join((MUTABLE_SIGNATURE_LABEL, bytes((len(salt),)), salt, _U64.pack(seq),
                     _U16.pack(len(value)), value))


# -- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(_Checked):
    """Base of every DHT message; not itself a message."""

    TYPE: ClassVar[MessageType]
    is_request: ClassVar[bool]
    """True for requests, False for answers (see :data:`RESPONSE_TYPES`)."""

    txid: bytes
    """Transaction id, 8 random bytes; an answer repeats its request's."""

    def __post_init__(self) -> None:
        if type(self) not in _CODES:
            raise TypeError(f"{type(self).__name__} is not a DHT message type")
        object.__setattr__(self, "txid", _fixed(self.txid, TXID_BYTES, "txid"))
        _Checked.__post_init__(self)

    def accepts(self, answer: Message) -> bool:
        """Whether ``answer`` is of a type that answers this request (always
        False for an answer). The transaction id is the RPC layer's to match."""
        return type(answer) in RESPONSE_TYPES.get(type(self), ())


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    """Are you there? Answered by :class:`Pong`."""

    TYPE = MessageType.PING
    is_request = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    """The answer to :class:`Ping`."""

    TYPE = MessageType.PONG
    is_request = False
    _checks = (("observed_address", _check_address),)

    observed_address: Address
    """The asker's address as the responder sees it (how nodes learn their
    public address)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FindNode(Message):
    """The responder's closest contacts to ``target``. Answered by :class:`Nodes`."""

    TYPE = MessageType.FIND_NODE
    is_request = True
    _checks = (("target", _sized(KEY_BYTES)),)

    target: bytes
    """A 32-byte id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Nodes(Message):
    """The answer to :class:`FindNode`."""

    TYPE = MessageType.NODES
    is_request = False
    _checks = (("contacts", _contacts),)

    contacts: tuple[Contact, ...]
    """At most :data:`MAX_CONTACTS`, no node twice (any iterable is accepted)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FindValue(Message):
    """The record stored under ``key``, and closer contacts. Answered by
    :class:`ValueFound`."""

    TYPE = MessageType.FIND_VALUE
    is_request = True
    _checks = (("key", _sized(KEY_BYTES)),)

    key: bytes
    """A 32-byte key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueFound(Message):
    """The answer to :class:`FindValue`: the record if the responder holds one
    (unverified: the getter checks it), and its closest contacts to the key."""

    TYPE = MessageType.VALUE_FOUND
    is_request = False
    _checks = (("record", _optional(_record)), ("contacts", _contacts))

    record: ImmutableValue | MutableValue | None
    contacts: tuple[Contact, ...]
    """As :attr:`Nodes.contacts`. With a large record, fewer contacts fit in
    :data:`MAX_MESSAGE_BYTES`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Store(Message):
    """Keep ``record``. Answered by :class:`StoreResult`."""

    TYPE = MessageType.STORE
    is_request = True
    _checks = (("record", _record), ("cas", _optional(_ranged(_U64_MAX))))

    record: ImmutableValue | MutableValue
    cas: int | None
    """For a mutable record: store only if the held sequence number is this
    (compare-and-swap); ``None`` for no condition. A u64."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreResult(Message):
    """The answer to :class:`Store` and :class:`AddProvider`."""

    TYPE = MessageType.STORE_RESULT
    is_request = False
    _checks = (("status", _member(StoreStatus)),)

    status: StoreStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class AddProvider(Message):
    """Record the sender (proven by the session) as a provider of ``key``, at the
    address the session sees. Answered by :class:`StoreResult`."""

    TYPE = MessageType.ADD_PROVIDER
    is_request = True
    _checks = (("key", _sized(KEY_BYTES)),)

    key: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProviders(Message):
    """Up to ``count`` providers of ``key``, and closer contacts. Answered by
    :class:`Providers`."""

    TYPE = MessageType.GET_PROVIDERS
    is_request = True
    _checks = (("key", _sized(KEY_BYTES)), ("count", _ranged(255, smallest=1)))

    key: bytes
    count: int
    """1..255 (a request for no providers is malformed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Providers(Message):
    """The answer to :class:`GetProviders`."""

    TYPE = MessageType.PROVIDERS
    is_request = False
    _checks = (("providers", _contacts), ("contacts", _contacts))

    providers: tuple[Contact, ...]
    """Nodes that announced themselves as providers of the key."""
    contacts: tuple[Contact, ...]
    """The responder's closest contacts to the key. Each list follows the rules of
    :attr:`Nodes.contacts` on its own; a node may be in both."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """Any request's answer when the responder will not serve it."""

    TYPE = MessageType.ERROR
    is_request = False
    _checks = (("code", _member(ErrorCode)), ("retry_after_ms", _ranged(_U32_MAX)))

    code: ErrorCode
    retry_after_ms: int
    """For ``BUSY`` and ``RATE_LIMITED``: ask again no sooner than this; 0 for
    no advice. A u32."""


_CODES: dict[type, int] = {
    cls: int(cls.TYPE)
    for cls in (Ping, Pong, FindNode, Nodes, FindValue, ValueFound, Store, StoreResult,
                AddProvider, GetProviders, Providers, Error)
}

#: For each request type, the answer types that may answer it.
RESPONSE_TYPES: MappingProxyType[type[Message], tuple[type[Message], ...]] = MappingProxyType({
    Ping: (Pong, Error),
    FindNode: (Nodes, Error),
    FindValue: (ValueFound, Error),
    Store: (StoreResult, Error),
    AddProvider: (StoreResult, Error),
    GetProviders: (Providers, Error),
})


def is_request(message: Message) -> bool:
    """Whether ``message`` is a request (to answer) rather than an answer (to match)."""
    return message.is_request


# -- encoding ------------------------------------------------------------------------------


def _put_contacts(out: bytearray, contacts: tuple[Contact, ...]) -> None:
    out.append(len(contacts))
    for contact in contacts:
        out += contact.node_id
        _put_address(out, contact.address)


def _put_address(out: bytearray, address: Address) -> None:
    host, port = address
    parsed = _parse_host(host)  # canonical already: a cache hit
    if parsed is None:  # only if someone wrote around the frozen dataclass
        raise EncodeError(f"{host!r} is not an IP address")
    out.append(parsed[1])
    out += parsed[2]
    out += _U16.pack(port)


def _put_record(out: bytearray, record: Any) -> None:
    if record is None:
        out.append(_RECORD_NONE)
    elif type(record) is ImmutableValue:
        out.append(_RECORD_IMMUTABLE)
        out += _U16.pack(len(record.value))
        out += record.value
    else:
        out.append(_RECORD_MUTABLE)
        out += record.signing_public_key
        out.append(len(record.salt))
        out += record.salt
        out += _U64.pack(record.seq)
        out += _U16.pack(len(record.value))
        out += record.value
        out += record.signature


def encode(message: Message) -> bytes:
    """The wire form of ``message`` (the payload of one DHT frame).

    Raises:
        EncodeError: ``message`` is not a DHT message, or its encoding exceeds
            :data:`MAX_MESSAGE_BYTES` (a large record with many contacts).
    """
    cls = type(message)
    code = _CODES.get(cls)
    if code is None:
        raise EncodeError(f"{cls.__name__} is not a DHT message type")
    out = bytearray((VERSION, code))
    out += message.txid
    m: Any = message
    if cls is FindNode:
        out += m.target
    elif cls in (FindValue, AddProvider):
        out += m.key
    elif cls is GetProviders:
        out += m.key
        out.append(m.count)
    elif cls is Pong:
        _put_address(out, m.observed_address)
    elif cls is Nodes:
        _put_contacts(out, m.contacts)
    elif cls is ValueFound:
        _put_record(out, m.record)
        _put_contacts(out, m.contacts)
    elif cls is Store:
        _put_record(out, m.record)
        if m.cas is None:
            out.append(0)
        else:
            out.append(1)
            out += _U64.pack(m.cas)
    elif cls is StoreResult:
        out.append(m.status)
    elif cls is Providers:
        _put_contacts(out, m.providers)
        _put_contacts(out, m.contacts)
    elif cls is Error:
        out.append(m.code)
        out += _U32.pack(m.retry_after_ms)
    if len(out) > MAX_MESSAGE_BYTES:
        raise EncodeError(f"{cls.__name__} encodes to {len(out)} bytes, more than a DHT "
                          f"frame holds ({MAX_MESSAGE_BYTES}); send fewer contacts")
    return bytes(out)


# -- decoding ------------------------------------------------------------------------------


def _untrusted_bytes(data: Any, largest: int, noun: str) -> bytes:
    """``data`` as ``bytes`` once it is known to be bytes-like (else ``TypeError``:
    local misuse), not empty and at most ``largest`` bytes (else ``DecodeError``)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode() takes bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > largest:
        raise DecodeError(f"{noun} of {len(data)} bytes, at most {largest}")
    if not data:
        raise DecodeError(f"empty {noun}")
    return data


class _Reader:
    """Reads fields off an untrusted message; every shortfall is a DecodeError.

    ``stt_proto.pubsub.messages`` reads its contacts with a subclass that names
    its own protocol in the errors (``noun``)."""

    __slots__ = ("data", "pos")
    noun: ClassVar[str] = "DHT message"

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def end(self) -> None:
        """The message must end where its last field did."""
        if self.pos != len(self.data):
            raise DecodeError(f"{len(self.data) - self.pos} trailing bytes after the {self.noun}")

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise DecodeError(f"{self.noun} truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError(f"{self.noun} truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def flag(self, what: str) -> bool:
        byte = self.u8()
        if byte > 1:
            raise DecodeError(f"{what} must be 0 or 1, not {byte}")
        return byte == 1

    def blob(self, size: int, largest: int, what: str) -> bytes:
        if size > largest:
            raise DecodeError(f"{what} of {size} bytes, at most {largest}")
        return self.take(size)

    def address(self) -> Address:
        family = self.u8()
        if family == _FAMILY_IPV4:
            packed = self.take(4)
        elif family == _FAMILY_IPV6:
            packed = self.take(16)
        else:
            raise DecodeError(f"unknown address family {family}")
        host = _format_host(family, packed)
        if host is None:
            raise DecodeError("address is unspecified or IPv4-mapped IPv6 (not canonical)")
        port = self.u16()
        if port == 0:
            raise DecodeError("port 0")
        return host, port

    def contacts(self, what: str, most: int = MAX_CONTACTS) -> list[Contact]:
        count = self.u8()
        if count > most:
            raise DecodeError(f"{what}: {count} contacts, at most {most}")
        out = []
        seen = set()
        for _ in range(count):
            node_id = self.take(KEY_BYTES)
            if node_id in seen:
                raise DecodeError(f"{what}: node {node_id.hex()} appears twice")
            seen.add(node_id)
            out.append(Contact(node_id=node_id, address=self.address()))
        return out

    def record(self, optional: bool) -> Any:
        tag = self.u8()
        if tag == _RECORD_IMMUTABLE:
            return ImmutableValue(value=self.blob(self.u16(), MAX_VALUE_BYTES, "value"))
        if tag == _RECORD_MUTABLE:
            key = self.take(KEY_BYTES)
            salt = self.blob(self.u8(), MAX_SALT_BYTES, "salt")
            seq = self.u64()
            value = self.blob(self.u16(), MAX_VALUE_BYTES, "value")
            return MutableValue(signing_public_key=key, salt=salt, seq=seq, value=value,
                                signature=self.take(SIGNATURE_BYTES))
        if tag == _RECORD_NONE:
            if optional:
                return None
            raise DecodeError("record kind 0 (none) where a record is required")
        raise DecodeError(f"unknown record kind {tag}")


def _decode_body(code: int, txid: bytes, r: _Reader) -> Message:
    if code == MessageType.PING:
        return Ping(txid=txid)
    if code == MessageType.PONG:
        return Pong(txid=txid, observed_address=r.address())
    if code == MessageType.FIND_NODE:
        return FindNode(txid=txid, target=r.take(KEY_BYTES))
    if code == MessageType.NODES:
        return Nodes(txid=txid, contacts=r.contacts("contacts"))
    if code == MessageType.FIND_VALUE:
        return FindValue(txid=txid, key=r.take(KEY_BYTES))
    if code == MessageType.VALUE_FOUND:
        record = r.record(optional=True)
        return ValueFound(txid=txid, record=record, contacts=r.contacts("contacts"))
    if code == MessageType.STORE:
        record = r.record(optional=False)
        return Store(txid=txid, record=record, cas=r.u64() if r.flag("cas presence") else None)
    if code == MessageType.STORE_RESULT:
        status = r.u8()
        if status not in _STORE_STATUSES:
            raise DecodeError(f"unknown store status {status}")
        return StoreResult(txid=txid, status=StoreStatus(status))
    if code == MessageType.ADD_PROVIDER:
        return AddProvider(txid=txid, key=r.take(KEY_BYTES))
    if code == MessageType.GET_PROVIDERS:
        key = r.take(KEY_BYTES)
        count = r.u8()
        if count == 0:
            raise DecodeError("GET_PROVIDERS for 0 providers")
        return GetProviders(txid=txid, key=key, count=count)
    if code == MessageType.PROVIDERS:
        providers = r.contacts("providers")
        return Providers(txid=txid, providers=providers, contacts=r.contacts("contacts"))
    if code == MessageType.ERROR:
        error = r.u8()
        if error not in _ERROR_CODES:
            raise DecodeError(f"unknown error code {error}")
        return Error(txid=txid, code=ErrorCode(error), retry_after_ms=r.u32())
    raise DecodeError(f"unknown DHT message type 0x{code:02x}")


_STORE_STATUSES = frozenset(int(s) for s in StoreStatus)
_ERROR_CODES = frozenset(int(c) for c in ErrorCode)


def decode(data: bytes | bytearray | memoryview) -> Message:
    """The message in ``data`` (the payload of one DHT frame), from any peer.

    Strict: the whole input must be exactly one canonical message of version
    :data:`VERSION`, within every limit of this module.

    Raises:
        UnsupportedVersionError: another version (a :class:`DecodeError`).
        DecodeError: anything else wrong with the bytes; never another exception.
        TypeError: ``data`` is not bytes-like (local misuse).
    """
    data = _untrusted_bytes(data, MAX_MESSAGE_BYTES, _Reader.noun)
    if data[0] != VERSION:
        raise UnsupportedVersionError(
            data[0], data[1] if len(data) > 1 else None,
            data[2:HEADER_BYTES] if len(data) >= HEADER_BYTES else None)
    if len(data) < HEADER_BYTES:
        raise DecodeError("DHT message shorter than its header")
    reader = _Reader(data, HEADER_BYTES)
    try:
        message = _decode_body(data[1], data[2:HEADER_BYTES], reader)
    except EncodeError as exc:
        # Every field the reader hands a constructor is already range-checked,
        # so this is a belt for a rule that exists in one place only.
        raise DecodeError(f"invalid DHT message: {exc}") from None
    reader.end()
    return message
