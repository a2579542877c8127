"""The pub/sub messages and their strict binary encoding (``docs/pubsub-wire.md``).

Each message is one whole message on the pub/sub stream of a pooled session
between two subscribers (or a publisher and a subscriber). The session proves
who sent it, so no message names its sender; PUBLISH names its *publisher*, the
author who signed it, which is usually not the peer that forwarded it. The
stream is reliable and ordered, so nothing here carries a transaction id or a
retransmission count.

Theory of operation
-------------------
Every message starts with ``version u8 (= 1) | type u8 | topic (32)``. The body
is fixed-size fields and fixed-size length prefixes, big-endian, never varints,
and the remaining choices have one allowed form each: IHAVE entries are sorted
and unique, IWANT and GONE ranges are non-empty and bounded, a PUBLISH sequence
number starts at 1, and the contacts of PRUNE follow the DHT's rules for
addresses (one encoding per host). Together with the refusal of trailing bytes
this makes the codec canonical: ``encode(decode(data)) == data`` for every
``data`` that decodes, which the tests and ``fuzz/fuzz_pubsub_codec.py`` check.

Contacts and addresses are the DHT's (:class:`~stt_proto.dht.messages.Contact`
and its encoding), so a peer learned from PRUNE can be handed to the DHT and
back without conversion.

PUBLISH carries its publisher's Ed25519 signing key next to the signature, as
DHT mutable records do: the node id fixes the key only up to its sign
(``stt_proto.identity``, "Signing identity"), so the key travels and
:func:`verify_publish` checks that it belongs to the publisher. The codec
checks sizes only; whether the signature verifies is :func:`verify_publish`'s
business, run by every hop before it forwards.

The decoder raises :class:`~stt_proto.errors.DecodeError` and nothing else for
any input; the message classes validate in their constructors and raise
:class:`~stt_proto.errors.EncodeError` (a ``ValueError``), so a message that
exists can always be encoded.

Don't subclass the message classes: the codec dispatches on the exact type.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from ..dht.messages import (
    _U16,
    _U32,
    _U32_MAX,
    _U64,
    _U64_MAX,
    KEY_BYTES,
    SIGNATURE_BYTES,
    Contact,
    _Checked,
    _contacts,
    _items,
    _limited,
    _put_contacts,
    _ranged,
    _Reader,
    _sized,
    _untrusted_bytes,
)
from ..errors import DecodeError, EncodeError
from ..identity import Identity, verify_signature

__all__ = [
    "VERSION",
    "HEADER_BYTES",
    "TOPIC_BYTES",
    "MAX_PEER_EXCHANGE",
    "MAX_DATA_BYTES",
    "MAX_IHAVE_ENTRIES",
    "MAX_RANGE",
    "MAX_TOPIC_NAME_BYTES",
    "PUBLISH_OVERHEAD",
    "MAX_MESSAGE_BYTES",
    "TOPIC_KEY_LABEL",
    "PUBLISH_SIGNATURE_LABEL",
    "MESSAGE_ID_LABEL",
    "MessageType",
    "Contact",
    "IHaveEntry",
    "Message",
    "Subscribe",
    "Unsubscribe",
    "Graft",
    "Prune",
    "Publish",
    "IHave",
    "IWant",
    "Gone",
    "encode",
    "decode",
    "topic_key",
    "publish_signed_bytes",
    "message_id",
    "sign_publish",
    "verify_publish",
]

#: The only version this module speaks.
VERSION = 1
#: version, type.
HEADER_BYTES = 2
#: Size of a topic key (:func:`topic_key`).
TOPIC_BYTES = 32
#: Most peers a PRUNE may suggest instead of the pruning node (peer exchange).
MAX_PEER_EXCHANGE = 16
#: Most data one PUBLISH may carry: the protocol's hard cap. A node's configured
#: maximum (1 MiB by default) is lower; this only bounds what a decoder accepts.
MAX_DATA_BYTES = 16 << 20
#: Most entries in one IHAVE: publisher epochs summarised per message.
MAX_IHAVE_ENTRIES = 256
#: Most sequence numbers one IWANT or GONE may cover (``last - first + 1``).
MAX_RANGE = 1024
#: Longest topic name, in UTF-8 bytes.
MAX_TOPIC_NAME_BYTES = 255
#: Bytes of a PUBLISH besides its data: header, topic, publisher, signing key,
#: epoch, seq, publishing time, data length and signature.
PUBLISH_OVERHEAD = HEADER_BYTES + TOPIC_BYTES + 2 * KEY_BYTES + 8 + 8 + 8 + 4 + SIGNATURE_BYTES
#: Longest message: a PUBLISH of :data:`MAX_DATA_BYTES`. Anything longer is refused
#: before it is parsed.
MAX_MESSAGE_BYTES = PUBLISH_OVERHEAD + MAX_DATA_BYTES
#: Domain separation of :func:`topic_key` (the NUL ends the label).
TOPIC_KEY_LABEL = b"STT pubsub topic v1\x00"
#: Domain separation of :func:`publish_signed_bytes`, the label ``stt_proto.identity``
#: asks signers to start with.
PUBLISH_SIGNATURE_LABEL = b"STT pubsub message v1\x00"
#: Domain separation of :func:`message_id`.
MESSAGE_ID_LABEL = b"STT pubsub message id v1\x00"


class MessageType(IntEnum):
    """The type byte."""

    SUBSCRIBE = 0x01
    UNSUBSCRIBE = 0x02
    GRAFT = 0x03
    PRUNE = 0x04
    PUBLISH = 0x05
    IHAVE = 0x06
    IWANT = 0x07
    GONE = 0x08


# -- field checks ----------------------------------------------------------------------------

_topic = _sized(TOPIC_BYTES)
_node_id = _sized(KEY_BYTES)
_u64 = _ranged(_U64_MAX)
_seq = _ranged(_U64_MAX, smallest=1)


def _peers(value: Any, what: str) -> tuple[Contact, ...]:
    return _contacts(value, what, MAX_PEER_EXCHANGE)


def _entries(value: Any, what: str) -> tuple[IHaveEntry, ...]:
    entries = _items(value, what, IHaveEntry, "entries", MAX_IHAVE_ENTRIES)
    for before, after in zip(entries, entries[1:]):
        # One order, so that one summary has one encoding (and a receiver can
        # merge it with its own in a single pass).
        if (before.publisher, before.epoch) >= (after.publisher, after.epoch):
            raise EncodeError(f"{what} must be sorted by (publisher, epoch) without repeats")
    return entries


# -- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IHaveEntry(_Checked):
    """What the sender holds of one publisher's epoch."""

    _checks = (("publisher", _node_id), ("epoch", _u64), ("high", _u64))

    publisher: bytes
    """The publisher's node id, 32 bytes."""
    epoch: int
    """The publisher's epoch, a u64."""
    high: int
    """The highest sequence number the sender holds of that epoch, a u64; 0 if
    it holds none (it knows of the epoch but kept nothing of it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(_Checked):
    """Base of every pub/sub message; not itself a message."""

    TYPE: ClassVar[MessageType]

    topic: bytes
    """The topic key, 32 bytes (:func:`topic_key` of the topic's name)."""

    def __post_init__(self) -> None:
        if type(self) not in _CODES:
            raise TypeError(f"{type(self).__name__} is not a pub/sub message type")
        object.__setattr__(self, "topic", _topic(self.topic, "topic"))
        _Checked.__post_init__(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Message):
    """The sender subscribes to the topic: send it the topic's gossip."""

    TYPE = MessageType.SUBSCRIBE


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe(Message):
    """The sender left the topic (and with it the mesh, if it was in it)."""

    TYPE = MessageType.UNSUBSCRIBE


@dataclass(frozen=True, slots=True, kw_only=True)
class Graft(Message):
    """The sender added the receiver to its mesh of the topic and asks the same."""

    TYPE = MessageType.GRAFT


@dataclass(frozen=True, slots=True, kw_only=True)
class Prune(Message):
    """The sender removed the receiver from its mesh of the topic."""

    TYPE = MessageType.PRUNE
    _checks = (("backoff_ms", _ranged(_U32_MAX)), ("peers", _peers))

    backoff_ms: int
    """Do not GRAFT the sender again in this topic for this long, a u32."""
    peers: tuple[Contact, ...]
    """Other subscribers the receiver may graft instead (peer exchange): at most
    :data:`MAX_PEER_EXCHANGE`, no node twice (any iterable is accepted)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish(Message):
    """One message of a publisher, signed by it (:func:`sign_publish`).

    The codec checks sizes only: :func:`verify_publish` checks the signature.
    """

    TYPE = MessageType.PUBLISH
    _checks = (("publisher", _node_id), ("signing_public_key", _sized(KEY_BYTES)),
               ("epoch", _u64), ("seq", _seq), ("published_ms", _u64),
               ("data", _limited(MAX_DATA_BYTES)), ("signature", _sized(SIGNATURE_BYTES)))

    publisher: bytes
    """The author's node id, 32 bytes (not the peer that forwarded the message)."""
    signing_public_key: bytes
    """The author's Ed25519 public key, 32 bytes; it must map to :attr:`publisher`
    (``stt_proto.identity.node_id_from_signing_key``)."""
    epoch: int
    """The publisher's epoch (a u64): a restarted publisher starts a later one."""
    seq: int
    """The message's number in its epoch, from 1 up without holes (a u64)."""
    published_ms: int
    """When the publisher published it: its wall clock, in milliseconds since the
    Unix epoch (a u64). Signed, so a forwarder cannot move it; a receiver that
    subscribed while the publisher's epoch was already running owes its
    application the messages published at or after its subscription time (less
    a tolerance for clocks), whichever message or summary it hears of first."""
    data: bytes = field(repr=False)
    """The payload, at most :data:`MAX_DATA_BYTES` (bytes-like; ``bytes`` is kept
    as it is, without a copy). Left out of ``repr``: it may be megabytes."""
    signature: bytes
    """Ed25519 signature of :func:`publish_signed_bytes`, 64 bytes."""

    @property
    def message_id(self) -> bytes:
        """:func:`message_id` of this message (it leaves out the publishing time,
        data and signature: check :func:`verify_publish` before counting an id
        as seen)."""
        return message_id(self.topic, self.publisher, self.epoch, self.seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class IHave(Message):
    """What the sender holds of the topic, per publisher epoch (lazy gossip)."""

    TYPE = MessageType.IHAVE
    _checks = (("entries", _entries),)

    entries: tuple[IHaveEntry, ...]
    """At most :data:`MAX_IHAVE_ENTRIES`, sorted by ``(publisher, epoch)``
    ascending, no pair twice (any iterable in that order is accepted)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Range(Message):
    """Base of the messages about messages ``first..last`` of one publisher epoch."""

    _checks = (("publisher", _node_id), ("epoch", _u64),
               ("first", _seq), ("last", _seq))

    publisher: bytes
    """The publisher's node id, 32 bytes."""
    epoch: int
    """The publisher's epoch, a u64."""
    first: int
    """The first sequence number of the range, at least 1."""
    last: int
    """The last sequence number of the range (inclusive): ``first <= last`` and
    the range holds at most :data:`MAX_RANGE` numbers."""

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        if self.first > self.last:
            raise EncodeError(f"range {self.first}..{self.last} is empty (first after last)")
        if self.last - self.first >= MAX_RANGE:
            raise EncodeError(f"range of {self.last - self.first + 1} messages, "
                              f"at most {MAX_RANGE}")

    @property
    def count(self) -> int:
        """How many sequence numbers the range covers."""
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class IWant(_Range):
    """Send me these messages (lazy repair). Answered by PUBLISH for those the
    receiver holds and GONE for those it no longer does."""

    TYPE = MessageType.IWANT


@dataclass(frozen=True, slots=True, kw_only=True)
class Gone(_Range):
    """The sender no longer holds these messages (its answer to IWANT for them)."""

    TYPE = MessageType.GONE


_CODES: dict[type, int] = {
    cls: int(cls.TYPE)
    for cls in (Subscribe, Unsubscribe, Graft, Prune, Publish, IHave, IWant, Gone)
}


# -- keys, signatures and ids ------------------------------------------------------------------


#: Offsets of a PUBLISH's slot (topic, publisher, epoch, seq), so a receiver can
#: recognise a copy it already has before it decodes the rest.
_SLOT_PUBLISHER = HEADER_BYTES + TOPIC_BYTES
_SLOT_EPOCH = _SLOT_PUBLISHER + 2 * KEY_BYTES
_SLOT_END = _SLOT_EPOCH + 16


def publish_slot(data: bytes) -> tuple[bytes, bytes, int, int] | None:
    """``(topic, publisher, epoch, seq)`` read from an encoded PUBLISH without
    decoding it, or None if ``data`` does not start like one. Unchecked: for
    dropping duplicates cheaply, never for trusting anything."""
    if len(data) < _SLOT_END or data[0] != VERSION or data[1] != MessageType.PUBLISH:
        return None
    epoch, seq = _U64.unpack_from(data, _SLOT_EPOCH)[0], _U64.unpack_from(data, _SLOT_EPOCH + 8)[0]
    return (bytes(data[HEADER_BYTES:_SLOT_PUBLISHER]),
            bytes(data[_SLOT_PUBLISHER:_SLOT_PUBLISHER + KEY_BYTES]), epoch, seq)


def topic_key(name: str) -> bytes:
    """The key of the topic called ``name``: where its subscribers meet in the DHT
    (as providers of the key) and what every message of the topic carries::

        BLAKE2b-256(TOPIC_KEY_LABEL || UTF-8 name)

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: the name is empty, longer than :data:`MAX_TOPIC_NAME_BYTES`
            in UTF-8, or not encodable as UTF-8 (a lone surrogate).
    """
    if not isinstance(name, str):
        raise TypeError(f"a topic name is a str, not {type(name).__name__}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"topic name {name!r} cannot be written as UTF-8") from None
    if not 1 <= len(raw) <= MAX_TOPIC_NAME_BYTES:
        raise ValueError(f"a topic name takes 1..{MAX_TOPIC_NAME_BYTES} bytes of UTF-8, "
                         f"not {len(raw)}")
    return hashlib.blake2b(TOPIC_KEY_LABEL + raw, digest_size=32).digest()


def publish_signed_bytes(topic: bytes, publisher: bytes, epoch: int, seq: int,
                         published_ms: int, data: bytes) -> bytes:
    """The exact bytes the publisher of a :class:`Publish` signs::

        PUBLISH_SIGNATURE_LABEL || topic (32) || publisher (32) || u64 epoch
            || u64 seq || u64 published_ms || u32 len(data) || data

    The label keeps the signature from passing for one made for another purpose
    with the same identity; the topic and publisher bind the message to its
    topic and author, so it cannot be replayed into another topic. The
    publishing time is signed because receivers decide by it which messages
    they are owed: a forwarder that could change it could hide a message from
    a new subscriber or push old ones on it.

    Raises:
        ValueError: a field of the wrong size or out of range (an
            :class:`~stt_proto.errors.EncodeError`).
    """
    data = _limited(MAX_DATA_BYTES)(data, "data")
    return b"".join((PUBLISH_SIGNATURE_LABEL, _topic(topic, "topic"),
                     _node_id(publisher, "publisher"), _U64.pack(_u64(epoch, "epoch")),
                     _U64.pack(_seq(seq, "seq")),
                     _U64.pack(_u64(published_ms, "published_ms")),
                     _U32.pack(len(data)), data))


def message_id(topic: bytes, publisher: bytes, epoch: int, seq: int) -> bytes:
    """The id of a message, what duplicates are recognised by::

        BLAKE2b-256(MESSAGE_ID_LABEL || topic (32) || publisher (32) || u64 epoch || u64 seq)

    A publisher numbers its messages without repeats, so ``(topic, publisher,
    epoch, seq)`` names one message; the publishing time, the data and the
    signature are not part of the id, so a forged copy has the id of the genuine
    one, and only a verified message may mark its id as seen.

    Raises:
        ValueError: a field of the wrong size or out of range.
    """
    return hashlib.blake2b(
        b"".join((MESSAGE_ID_LABEL, _topic(topic, "topic"), _node_id(publisher, "publisher"),
                  _U64.pack(_u64(epoch, "epoch")), _U64.pack(_u64(seq, "seq")))),
        digest_size=32).digest()


def sign_publish(identity: Identity, topic: bytes, epoch: int, seq: int,
                 data: bytes, *, published_ms: int) -> Publish:
    """A :class:`Publish` of ``data`` by ``identity``, signed.

    :param identity: a signing identity (:meth:`Identity.generate`).
    :param topic: the 32-byte topic key (:func:`topic_key`).
    :param epoch: the publisher's epoch, a u64.
    :param seq: the message's number in its epoch, 1..2**64-1.
    :param data: at most :data:`MAX_DATA_BYTES` (the node's configured limit is
        checked by the caller).
    :param published_ms: the publisher's wall clock now, in milliseconds since
        the Unix epoch, a u64 (the caller reads the clock: this module has none).
    :returns: the message; :func:`verify_publish` accepts it.
    :raises ValueError: a field out of range (an :class:`~stt_proto.errors.EncodeError`).
    :raises MissingSigningKeyError: ``identity`` is a legacy X25519-only identity
        (also a ``ValueError``).
    """
    data = _limited(MAX_DATA_BYTES)(data, "data")
    signature = identity.sign(publish_signed_bytes(topic, identity.node_id, epoch, seq,
                                                   published_ms, data))
    return Publish(topic=topic, publisher=identity.node_id,
                   signing_public_key=identity.signing_public_key, epoch=epoch, seq=seq,
                   published_ms=published_ms, data=data, signature=signature)


def verify_publish(message: Any) -> bool:
    """Whether ``message`` is a :class:`Publish` signed by its publisher: its
    signing key maps to :attr:`Publish.publisher` and the signature of
    :func:`publish_signed_bytes` verifies.

    Made for untrusted input: any object (a message whose fields were replaced,
    another type, a subclass) gives ``False``, never an exception.
    """
    if type(message) is not Publish:
        return False
    try:
        signed = publish_signed_bytes(message.topic, message.publisher, message.epoch,
                                      message.seq, message.published_ms, message.data)
    except (AttributeError, TypeError, ValueError, BufferError):
        return False
    return verify_signature(message.publisher, message.signing_public_key, signed,
                            message.signature)


# -- encoding ----------------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The wire form of ``message`` (one message on the pub/sub stream).

    Raises:
        EncodeError: ``message`` is not a pub/sub message.
    """
    cls = type(message)
    code = _CODES.get(cls)
    if code is None:
        raise EncodeError(f"{cls.__name__} is not a pub/sub message type")
    m: Any = message
    if cls is Publish:
        # One join: the data, which may be megabytes, is copied once.
        return b"".join((bytes((VERSION, code)), m.topic, m.publisher, m.signing_public_key,
                         _U64.pack(m.epoch), _U64.pack(m.seq), _U64.pack(m.published_ms),
                         _U32.pack(len(m.data)), m.data, m.signature))
    out = bytearray((VERSION, code))
    out += m.topic
    if cls is Prune:
        out += _U32.pack(m.backoff_ms)
        _put_contacts(out, m.peers)
    elif cls is IHave:
        out += _U16.pack(len(m.entries))
        for entry in m.entries:
            out += entry.publisher
            out += _U64.pack(entry.epoch)
            out += _U64.pack(entry.high)
    elif cls in (IWant, Gone):
        out += m.publisher
        out += _U64.pack(m.epoch)
        out += _U64.pack(m.first)
        out += _U64.pack(m.last)
    return bytes(out)


# -- decoding ----------------------------------------------------------------------------------


class _PubSubReader(_Reader):
    """The DHT's reader (contacts and addresses by its rules), naming pub/sub in
    its errors."""

    __slots__ = ()
    noun = "pub/sub message"


def _decode_body(code: int, topic: bytes, r: _PubSubReader) -> Message:
    if code == MessageType.SUBSCRIBE:
        return Subscribe(topic=topic)
    if code == MessageType.UNSUBSCRIBE:
        return Unsubscribe(topic=topic)
    if code == MessageType.GRAFT:
        return Graft(topic=topic)
    if code == MessageType.PRUNE:
        backoff_ms = r.u32()
        return Prune(topic=topic, backoff_ms=backoff_ms,
                     peers=r.contacts("peers", most=MAX_PEER_EXCHANGE))
    if code == MessageType.PUBLISH:
        publisher = r.take(KEY_BYTES)
        key = r.take(KEY_BYTES)
        epoch = r.u64()
        seq = r.u64()
        published_ms = r.u64()
        data = r.blob(r.u32(), MAX_DATA_BYTES, "data")
        return Publish(topic=topic, publisher=publisher, signing_public_key=key, epoch=epoch,
                       seq=seq, published_ms=published_ms, data=data,
                       signature=r.take(SIGNATURE_BYTES))
    if code == MessageType.IHAVE:
        count = r.u16()
        if count > MAX_IHAVE_ENTRIES:
            raise DecodeError(f"IHAVE of {count} entries, at most {MAX_IHAVE_ENTRIES}")
        # The constructor refuses entries out of order (wrapped by decode).
        entries = [IHaveEntry(publisher=r.take(KEY_BYTES), epoch=r.u64(), high=r.u64())
                   for _ in range(count)]
        return IHave(topic=topic, entries=entries)
    cls = IWant if code == MessageType.IWANT else Gone
    publisher = r.take(KEY_BYTES)
    epoch = r.u64()
    first = r.u64()
    return cls(topic=topic, publisher=publisher, epoch=epoch, first=first, last=r.u64())


def decode(data: bytes | bytearray | memoryview) -> Message:
    """The message in ``data`` (one message of the pub/sub stream), from any peer.

    Strict: the whole input must be exactly one canonical message of version
    :data:`VERSION`, within every limit of this module.

    Raises:
        DecodeError: anything wrong with the bytes (another version included);
            never another exception.
        TypeError: ``data`` is not bytes-like (local misuse).
    """
    data = _untrusted_bytes(data, MAX_MESSAGE_BYTES, _PubSubReader.noun)
    if data[0] != VERSION:
        raise DecodeError(f"unsupported pub/sub message version {data[0]} (this node speaks "
                          f"{VERSION})")
    if len(data) < HEADER_BYTES:
        raise DecodeError("pub/sub message shorter than its header")
    code = data[1]
    if code not in _TYPES:
        raise DecodeError(f"unknown pub/sub message type 0x{code:02x}")
    reader = _PubSubReader(data, HEADER_BYTES)
    try:
        message = _decode_body(code, reader.take(TOPIC_BYTES), reader)
    except EncodeError as exc:
        # The rules that tie fields together (IHAVE order, IWANT ranges, seq
        # from 1) live in the constructors only, so they are reported from there.
        raise DecodeError(f"invalid pub/sub message: {exc}") from None
    reader.end()
    return message


_TYPES = frozenset(int(t) for t in MessageType)
