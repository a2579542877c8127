"""The content messages and their strict binary encoding (``docs/content-wire.md``).

A requester asks a provider for one chunk of a content at a time (REQUEST); the
provider answers with the chunk and its proof (CHUNK) or says why not (REFUSE);
the requester may withdraw a request it no longer needs (CANCEL). Each message
is one whole message on the content stream
(:data:`~stt_proto.constants.CONTENT_STREAM_ID`) of an authenticated session,
both directions on one stream. The session proves who sent what, so nothing
here names a sender; the stream is reliable and ordered, so nothing is
retransmitted by this layer. ``request_id`` is the requester's choice and
pairs answers with requests on one session.

Theory of operation
-------------------
The first byte is the type; integers are big-endian and of fixed size; every
count is bounded and checked before anything is read under it; nothing follows
a message. A CHUNK's data is the rest of the message, so its length needs no
prefix. With one encoding per message, ``decode(data).encode() == data``
for every ``data`` that decodes, which the tests and
``fuzz/fuzz_content_codec.py`` check.

The codec checks sizes only: at most :data:`MAX_PROOF_HASHES` proof hashes of
:data:`HASH_SIZE` bytes and at most :data:`CHUNK_SIZE` bytes of data. Whether a
chunk's size, index and proof fit the content is
:func:`stt_proto.content.tree.verify_chunk`'s business (a :class:`ProofError`,
which drops the provider), not a decoding error.

CHUNK carries up to 256 KiB, so it is the one message built without extra
copies: :func:`decode` keeps the data as a slice of its input (a zero-copy
``memoryview`` when given one), and :func:`encode_chunk_header` lets a sender
hand header and data to a transport that takes a list of buffers.

The decoder raises :class:`~stt_proto.errors.DecodeError` and nothing else for
any bytes-like input; the message classes validate in their constructors and
raise :class:`~stt_proto.errors.EncodeError` (a ``ValueError``), so a message
that exists can always be encoded.

Don't subclass the message classes: the codec dispatches on the exact type.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from ..dht.messages import (
    _U32,
    _U32_MAX,
    _U64_MAX,
    _Checked,
    _member,
    _ranged,
    _Reader,
    _sized,
)
from ..errors import DecodeError, EncodeError
from .tree import CHUNK_SIZE, HASH_SIZE

__all__ = [
    "MessageType",
    "RefuseReason",
    "MAX_PROOF_HASHES",
    "REQUEST_SIZE",
    "CHUNK_HEADER_SIZE",
    "REFUSE_SIZE",
    "CANCEL_SIZE",
    "MAX_MESSAGE_SIZE",
    "Message",
    "Request",
    "Chunk",
    "Refuse",
    "Cancel",
    "ContentMessage",
    "encode_chunk_header",
    "decode",
]


class MessageType(IntEnum):
    """The first byte of every content message."""

    REQUEST = 0x01
    CHUNK = 0x02
    REFUSE = 0x03
    CANCEL = 0x04


class RefuseReason(IntEnum):
    """Why a provider will not send a requested chunk (the reason byte of REFUSE)."""

    NOT_FOUND = 1
    """The provider does not have that content or that chunk."""
    BUSY = 2
    """The requester is over the provider's bound of concurrent requests or of
    bytes in flight for one peer."""
    OUT_OF_RANGE = 3
    """The index is at or past the content's chunk count."""
    STOPPING = 4
    """The content was unpublished, or the provider is shutting down."""


#: Most hashes in one proof. A content has at most 2**32 chunks (the u32 index),
#: so its tree is at most 32 levels deep and a proof never needs more.
MAX_PROOF_HASHES = 32
#: type, request_id, content_id, index.
REQUEST_SIZE = 1 + 4 + HASH_SIZE + 4
#: The fixed part of a CHUNK: type, request_id, length, index, proof_count. The
#: proof hashes and then the data follow.
CHUNK_HEADER_SIZE = 1 + 4 + 8 + 4 + 1
#: type, request_id, reason, retry_after_ms.
REFUSE_SIZE = 1 + 4 + 1 + 4
#: type, request_id.
CANCEL_SIZE = 1 + 4
#: The longest message: a CHUNK of a whole chunk with the longest proof. Anything
#: longer is refused before it is parsed.
MAX_MESSAGE_SIZE = CHUNK_HEADER_SIZE + MAX_PROOF_HASHES * HASH_SIZE + CHUNK_SIZE

_NOUN = "content message"
_CHUNK_FIXED = struct.Struct(">BIQIB")


# -- field checks ----------------------------------------------------------------------------

_u32 = _ranged(_U32_MAX)
_u64 = _ranged(_U64_MAX)
_hash = _sized(HASH_SIZE)


def _proof(value: Any, what: str) -> tuple[bytes, ...]:
    """Any iterable of at most :data:`MAX_PROOF_HASHES` 32-byte bytes-likes, as a
    tuple of ``bytes``."""
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(value, Iterable):
        raise EncodeError(f"{what} must be an iterable of {HASH_SIZE}-byte hashes")
    hashes = tuple(value)
    if len(hashes) > MAX_PROOF_HASHES:
        raise EncodeError(f"{what} of {len(hashes)} hashes, at most {MAX_PROOF_HASHES}")
    return tuple(_hash(h, f"{what}[{i}]") for i, h in enumerate(hashes))


def _bytes_or_view(value: Any) -> bytes | memoryview | None:
    """``value`` as ``bytes`` or as a read-only, one-dimensional view of unsigned
    bytes over the same memory; None if it is neither bytes, a bytearray nor a
    memoryview.

    ``bytes`` and contiguous views are kept without a copy. A ``bytearray`` is
    copied (it could change under a message, and its slices are bytearrays),
    and so is a view that is not one run of memory (slicing by byte offsets and
    ``b"".join`` need one).
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if not isinstance(value, memoryview):
        return None
    if not value.c_contiguous:
        return value.tobytes()
    if value.format != "B" or value.ndim != 1:
        # Another format ('c', 'I', ...) or shape: len(), slices and equality
        # would count items, not bytes.
        try:
            value = value.cast("B")
        except (TypeError, ValueError):
            # A format cast() does not take (a ctypes structure's).
            return value.tobytes()
    return value.toreadonly()


def _payload(value: Any, what: str) -> bytes | memoryview:
    """Chunk data, kept without a copy where :func:`_bytes_or_view` can."""
    data = _bytes_or_view(value)
    if data is None:
        raise EncodeError(f"{what} must be bytes, not {type(value).__name__}")
    if len(data) > CHUNK_SIZE:
        raise EncodeError(f"{what} of {len(data)} bytes, at most {CHUNK_SIZE}")
    return data


# -- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(_Checked):
    """Base of the four content messages; not itself a message. Each message's
    ``encode()`` gives its wire form, and :func:`decode` reads any of them."""

    TYPE: ClassVar[MessageType]

    request_id: int
    """The requester's number for the request (a u32), unique among its open
    requests on one session; every answer carries it back."""

    def __post_init__(self) -> None:
        if type(self) not in _CODES:
            raise TypeError(f"{type(self).__name__} is not a content message type")
        object.__setattr__(self, "request_id", _u32(self.request_id, "request_id"))
        _Checked.__post_init__(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """Send me chunk ``index`` of content ``content_id``. Answered by one CHUNK or
    one REFUSE carrying the same ``request_id``."""

    TYPE = MessageType.REQUEST
    _checks = (("content_id", _hash), ("index", _u32))

    content_id: bytes
    """The content's id, 32 bytes (``stt_proto.content.tree.content_id_of``)."""
    index: int
    """Which chunk, from 0 (a u32)."""

    def encode(self) -> bytes:
        """The wire form (:data:`REQUEST_SIZE` bytes)."""
        return b"".join((bytes((MessageType.REQUEST,)), _U32.pack(self.request_id),
                         self.content_id, _U32.pack(self.index)))

    def refusal(self, reason: RefuseReason, *, retry_after_ms: int = 0) -> Refuse:
        """The REFUSE that answers this request for ``reason``."""
        return Refuse(request_id=self.request_id, reason=reason, retry_after_ms=retry_after_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk(Message):
    """One chunk of a content and the proof that ties it to the content id.

    The codec checks sizes only; the receiver checks the chunk against the id it
    asked for with ``stt_proto.content.tree.verify_chunk(content_id, length,
    index, data, proof)``.
    """

    TYPE = MessageType.CHUNK
    _checks = (("length", _u64), ("index", _u32), ("proof", _proof), ("data", _payload))

    length: int
    """The whole content's length in bytes (a u64): with the content id it fixes
    the chunk count, this chunk's size and the proof's length."""
    index: int
    """Which chunk this is (a u32)."""
    proof: tuple[bytes, ...]
    """The sibling hashes from the chunk's leaf up to the top (bottom-up), each
    32 bytes, at most :data:`MAX_PROOF_HASHES` (any iterable is accepted)."""
    data: bytes | memoryview = field(repr=False, hash=False)
    """The chunk's bytes, at most :data:`CHUNK_SIZE`. ``bytes`` and ``memoryview``
    are kept without a copy (a view is made read-only and of unsigned bytes);
    another bytes-like is copied into ``bytes``. After :func:`decode`: a
    read-only ``memoryview`` slice of the input's memory when the input was a
    (contiguous) ``memoryview``, so the caller must not reuse that buffer while
    the chunk is in use; otherwise a ``bytes`` slice. Left out of ``repr`` (it
    may be 256 KiB) and of the hash (a view of a ``bytearray`` cannot be
    hashed); equality compares it."""

    def encode(self) -> bytes:
        """The wire form. One join: the data, up to 256 KiB, is copied once."""
        return b"".join((self.header(), self.data))

    def header(self) -> bytes:
        """The encoding without the data: send it and then :attr:`data` to a
        transport that takes a list of buffers, and the data is never copied."""
        return _chunk_header(self.request_id, self.length, self.index, self.proof)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse(Message):
    """The provider will not send the chunk asked for under ``request_id``."""

    TYPE = MessageType.REFUSE
    _checks = (("reason", _member(RefuseReason)), ("retry_after_ms", _u32))

    reason: RefuseReason
    """Why (any int that names a :class:`RefuseReason` is accepted)."""
    retry_after_ms: int
    """How long the requester should leave this provider alone before asking it
    for this content again, in milliseconds (a u32); 0 gives no advice."""

    def encode(self) -> bytes:
        """The wire form (:data:`REFUSE_SIZE` bytes)."""
        return b"".join((bytes((MessageType.REFUSE,)), _U32.pack(self.request_id),
                         bytes((self.reason,)), _U32.pack(self.retry_after_ms)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(Message):
    """The requester no longer wants the chunk asked for under ``request_id``; the
    provider drops the request unless it has already sent the chunk, and sends
    nothing in answer."""

    TYPE = MessageType.CANCEL

    def encode(self) -> bytes:
        """The wire form (:data:`CANCEL_SIZE` bytes)."""
        return bytes((MessageType.CANCEL,)) + _U32.pack(self.request_id)


_CODES: dict[type, int] = {cls: int(cls.TYPE) for cls in (Request, Chunk, Refuse, Cancel)}

#: Any of the four messages, as :func:`decode` returns them.
ContentMessage = Request | Chunk | Refuse | Cancel


def _chunk_header(request_id: int, length: int, index: int, proof: tuple[bytes, ...]) -> bytes:
    return _CHUNK_FIXED.pack(MessageType.CHUNK, request_id, length, index,
                             len(proof)) + b"".join(proof)


def encode_chunk_header(request_id: int, length: int, index: int,
                        proof: Iterable[bytes]) -> bytes:
    """The bytes of a CHUNK up to its data: a sender that has the chunk in a
    buffer of its own sends this and then the data, without joining them (the
    data, whose size it checks, is not needed here).

    Raises:
        EncodeError: a field out of range, a hash not 32 bytes, or more than
            :data:`MAX_PROOF_HASHES` of them (a ``ValueError``).
    """
    return _chunk_header(_u32(request_id, "request_id"), _u64(length, "length"),
                         _u32(index, "index"), _proof(proof, "proof"))


# -- decoding ----------------------------------------------------------------------------------


class _ContentReader(_Reader):
    """The DHT's reader, naming content messages in its errors."""

    __slots__ = ()
    noun = _NOUN


def decode(data: bytes | bytearray | memoryview) -> ContentMessage:
    """The message in ``data`` (one message of the content stream), from any peer.

    Strict: the whole input must be exactly one message within every limit of
    this module. A CHUNK's :attr:`Chunk.data` is a read-only ``memoryview``
    slice of ``data`` if ``data`` is a contiguous ``memoryview`` (no copy),
    else a ``bytes`` slice.

    Raises:
        DecodeError: anything wrong with the bytes; never another exception.
        TypeError: ``data`` is not bytes-like (local misuse).
    """
    buffer = _bytes_or_view(data)
    if buffer is None:
        raise TypeError(f"decode() takes bytes, not {type(data).__name__}")
    size = len(buffer)
    if size > MAX_MESSAGE_SIZE:
        raise DecodeError(f"{_NOUN} of {size} bytes, at most {MAX_MESSAGE_SIZE}")
    if not size:
        raise DecodeError(f"empty {_NOUN}")
    code = buffer[0]
    r = _ContentReader(buffer, 1)
    try:
        if code == MessageType.CHUNK:
            message: ContentMessage = _decode_chunk(r)
        elif code == MessageType.REQUEST:
            request_id = r.u32()
            content_id = r.take(HASH_SIZE)
            message = Request(request_id=request_id, content_id=content_id, index=r.u32())
        elif code == MessageType.REFUSE:
            request_id = r.u32()
            reason = r.u8()
            if reason not in _REASONS:
                raise DecodeError(f"unknown refusal reason {reason}")
            message = Refuse(request_id=request_id, reason=reason, retry_after_ms=r.u32())
        elif code == MessageType.CANCEL:
            message = Cancel(request_id=r.u32())
        else:
            raise DecodeError(f"unknown {_NOUN} type 0x{code:02x}")
    except EncodeError as exc:
        # The constructors check what the reads above cannot produce wrong
        # (every field is read at its exact size); kept so that no input can
        # ever surface as anything but a DecodeError.
        raise DecodeError(f"invalid {_NOUN}: {exc}") from None
    r.end()
    return message


def _decode_chunk(r: _ContentReader) -> Chunk:
    request_id = r.u32()
    length = r.u64()
    index = r.u32()
    count = r.u8()
    if count > MAX_PROOF_HASHES:
        raise DecodeError(f"proof of {count} hashes, at most {MAX_PROOF_HASHES}")
    proof = [r.take(HASH_SIZE) for _ in range(count)]
    size = len(r.data) - r.pos
    if size > CHUNK_SIZE:
        raise DecodeError(f"chunk data of {size} bytes, at most {CHUNK_SIZE}")
    # The rest is the data; taking it all leaves nothing for end() to refuse.
    return Chunk(request_id=request_id, length=length, index=index, proof=proof,
                 data=r.take(size))


_REASONS = frozenset(int(reason) for reason in RefuseReason)
