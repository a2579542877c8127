"""Wire codec: variable-length integers, the DATA packet header, and every frame.

This file is the single source of truth for the codec. It is plain, readable
Python and importable as is (the *pure* build), and the very same file is compiled
by Cython as ``stt_proto._wire_c`` (the *accelerated* build), with the C types in
``_wire_c.pxd``. ``stt_proto._wire`` picks one of the two at import time. Nothing
in this file may depend on being compiled; the one ``import cython`` is guarded,
because Cython is needed to build, never to run.

Theory of operation
-------------------
Encoding goes through a :class:`Writer`, a growing ``bytearray`` with a hard
capacity (the space left in a packet); every ``push_*`` checks its arguments and
raises :class:`~stt_proto.errors.EncodeError` on local misuse. Each frame class has
a ``push(writer)`` method, and :func:`encode_frames` is the convenience wrapper.

Decoding goes through a :class:`Reader`, a cursor over untrusted bytes. Every
``pull_*`` checks the bytes left before touching them, so a truncated or lying input
raises :class:`~stt_proto.errors.DecodeError` and nothing else (no ``IndexError``,
no ``struct.error``). Lengths are compared with what is actually left *before*
anything is allocated, so memory use is bounded by the input size.
:func:`decode_frames_untrusted` turns a decrypted packet payload into frame objects
and rejects unknown frame types, impossible values and trailing garbage.

The byte layouts are specified in ``docs/protocol.md``; section numbers below refer
to that file.
"""

from __future__ import annotations

from .constants import (
    DATA_HEADER_SIZE,
    MAX_ACK_RANGES,
    MAX_CLOSE_REASON_BYTES,
    PATH_DATA_SIZE,
    VARINT_MAX,
    FrameType,
    PacketKind,
)
from .errors import DecodeError, EncodeError

__all__ = [
    "COMPILED",
    "Reader",
    "Writer",
    "varint_size",
    "encode_varint",
    "decode_varint_untrusted",
    "push_data_header",
    "pull_data_header_untrusted",
    "stream_frame_overhead",
    "push_stream_frame",
    "push_ack_frame",
    "Frame",
    "PaddingFrame",
    "PingFrame",
    "AckFrame",
    "ResetStreamFrame",
    "StopSendingFrame",
    "StreamFrame",
    "MaxDataFrame",
    "MaxStreamDataFrame",
    "DataBlockedFrame",
    "StreamDataBlockedFrame",
    "StreamSkipFrame",
    "PathChallengeFrame",
    "PathResponseFrame",
    "CloseFrame",
    "DatagramFrame",
    "DhtFrame",
    "encode_frames",
    "decode_frames_untrusted",
]

try:  # ``cython.compiled`` is a compile-time True in the compiled module.
    import cython

    #: True when this module is the Cython-compiled build.
    COMPILED = bool(cython.compiled)
except ImportError:  # Cython is only a build dependency, not a runtime one.
    COMPILED = False

# Typed module constants (declared ``cdef`` in the .pxd so the compiled build
# compares C integers instead of looking names up in the module dict).
_VARINT_MAX = VARINT_MAX
_MAX_ACK_RANGES = MAX_ACK_RANGES
_MAX_REASON = MAX_CLOSE_REASON_BYTES
_PATH_DATA = PATH_DATA_SIZE
_KIND_DATA = int(PacketKind.DATA)
_FT_PADDING = int(FrameType.PADDING)
_FT_PING = int(FrameType.PING)
_FT_ACK = int(FrameType.ACK)
_FT_RESET_STREAM = int(FrameType.RESET_STREAM)
_FT_STOP_SENDING = int(FrameType.STOP_SENDING)
_FT_STREAM = int(FrameType.STREAM)
_FT_STREAM_FIN = int(FrameType.STREAM_FIN)
_FT_MAX_DATA = int(FrameType.MAX_DATA)
_FT_MAX_STREAM_DATA = int(FrameType.MAX_STREAM_DATA)
_FT_DATA_BLOCKED = int(FrameType.DATA_BLOCKED)
_FT_STREAM_DATA_BLOCKED = int(FrameType.STREAM_DATA_BLOCKED)
_FT_STREAM_SKIP = int(FrameType.STREAM_SKIP)
_FT_PATH_CHALLENGE = int(FrameType.PATH_CHALLENGE)
_FT_PATH_RESPONSE = int(FrameType.PATH_RESPONSE)
_FT_CLOSE = int(FrameType.CLOSE)
_FT_DATAGRAM = int(FrameType.DATAGRAM)
_FT_DHT = int(FrameType.DHT)


# ---------------------------------------------------------------------------
# Variable-length integers (section "Variable-length integers"; RFC 9000 section 16)
# ---------------------------------------------------------------------------


def _as_varint(value: int) -> int:
    """Return ``value`` if a varint can carry it; raise EncodeError otherwise.

    Every encoder runs its integers through here first, so that the compiled
    build can then do the arithmetic in C without overflow.
    """
    if isinstance(value, int) and 0 <= value <= _VARINT_MAX:
        return value
    raise EncodeError(f"varint out of range: {value!r}")


def _varint_len(value: int) -> int:
    """Bytes needed for an already validated varint ``value``."""
    if value <= 0x3F:
        return 1
    if value <= 0x3FFF:
        return 2
    if value <= 0x3FFFFFFF:
        return 4
    return 8


def varint_size(value: int) -> int:
    """Return how many bytes :meth:`Writer.push_varint` uses for ``value``.

    Raises:
        EncodeError: ``value`` is not an integer in ``0 ..= VARINT_MAX``.
    """
    return _varint_len(_as_varint(value))


def encode_varint(value: int) -> bytes:
    """Return the shortest encoding of ``value`` (1, 2, 4 or 8 bytes)."""
    w = Writer(8)
    w.push_varint(value)
    return w.getvalue()


def decode_varint_untrusted(data: bytes) -> int:
    """Decode one varint that must fill ``data`` exactly.

    Raises:
        DecodeError: truncated input or trailing bytes.
    """
    r = Reader(data)
    value = r.pull_varint()
    r.expect_end()
    return value


# ---------------------------------------------------------------------------
# Cursors
# ---------------------------------------------------------------------------


class Writer:
    """Append-only encoder with a hard ``capacity`` in bytes.

    Every ``push_*`` validates its argument first and raises
    :class:`~stt_proto.errors.EncodeError` without writing anything when the value
    is out of range or would overflow the capacity.
    """

    __slots__ = ("_buf", "_capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise EncodeError("capacity must not be negative")
        self._buf = bytearray()
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        """The most bytes this writer accepts."""
        return self._capacity

    def tell(self) -> int:
        """Bytes written so far."""
        return len(self._buf)

    def remaining(self) -> int:
        """Bytes that may still be written."""
        return self._capacity - len(self._buf)

    def getvalue(self) -> bytes:
        """Return a copy of the bytes written so far."""
        return bytes(self._buf)

    def _reserve(self, n: int) -> None:
        if n > self._capacity - len(self._buf):
            raise EncodeError(
                f"{n} bytes do not fit: {self._capacity - len(self._buf)} left"
            )

    def _push_varint_raw(self, value: int) -> None:
        # The two high bits of the first byte give the length (00 = 1, 01 = 2,
        # 10 = 4, 11 = 8 bytes); the rest is the value, big-endian.
        buf = self._buf
        if value <= 0x3F:
            self._reserve(1)
            buf.append(value)
        elif value <= 0x3FFF:
            self._reserve(2)
            buf.append(0x40 | (value >> 8))
            buf.append(value & 0xFF)
        elif value <= 0x3FFFFFFF:
            self._reserve(4)
            buf.append(0x80 | (value >> 24))
            buf.append((value >> 16) & 0xFF)
            buf.append((value >> 8) & 0xFF)
            buf.append(value & 0xFF)
        else:
            self._reserve(8)
            buf += (value | 0xC000000000000000).to_bytes(8, "big")

    def push_uint8(self, value: int) -> None:
        if not isinstance(value, int) or value < 0 or value > 0xFF:
            raise EncodeError(f"uint8 out of range: {value!r}")
        self._reserve(1)
        self._buf.append(value)

    def push_uint32(self, value: int) -> None:
        if not isinstance(value, int) or value < 0 or value > 0xFFFFFFFF:
            raise EncodeError(f"uint32 out of range: {value!r}")
        self._reserve(4)
        self._buf += value.to_bytes(4, "big")

    def push_uint64(self, value: int) -> None:
        if not isinstance(value, int) or value < 0 or value > 0xFFFFFFFFFFFFFFFF:
            raise EncodeError(f"uint64 out of range: {value!r}")
        self._reserve(8)
        self._buf += value.to_bytes(8, "big")

    def push_varint(self, value: int) -> None:
        """Write ``value`` in its shortest varint form (1, 2, 4 or 8 bytes)."""
        self._push_varint_raw(_as_varint(value))

    def push_bytes(self, data: bytes) -> None:
        """Write ``data`` (any bytes-like object) as is."""
        self._reserve(len(data))
        self._buf += data

    def push_zeros(self, n: int) -> None:
        if n < 0:
            raise EncodeError("negative length")
        self._reserve(n)
        self._buf += bytes(n)


class Reader:
    """Cursor over untrusted bytes.

    Every ``pull_*`` first checks that enough bytes are left and raises
    :class:`~stt_proto.errors.DecodeError` otherwise, leaving the cursor where it
    was.
    """

    __slots__ = ("_data", "_pos", "_end")

    def __init__(self, data: bytes, start: int = 0) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if start < 0 or start > len(data):
            raise ValueError("start outside the data")
        self._data = data
        self._pos = start
        self._end = len(data)

    def tell(self) -> int:
        """Offset of the next byte to read."""
        return self._pos

    def remaining(self) -> int:
        """Bytes not read yet."""
        return self._end - self._pos

    def eof(self) -> bool:
        """True when every byte has been read."""
        return self._pos >= self._end

    def expect_end(self) -> None:
        """Raise :class:`DecodeError` if bytes are left (trailing garbage)."""
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")

    def _need(self, n: int) -> None:
        if n > self._end - self._pos:
            raise DecodeError(
                f"truncated: need {n} bytes at offset {self._pos}, "
                f"{self._end - self._pos} left"
            )

    def peek_uint8(self) -> int:
        """Return the next byte without consuming it."""
        self._need(1)
        return self._data[self._pos]

    def skip(self, n: int) -> None:
        """Move past ``n`` bytes."""
        if n < 0:
            raise DecodeError("negative length")
        self._need(n)
        self._pos += n

    def pull_uint8(self) -> int:
        self._need(1)
        value = self._data[self._pos]
        self._pos += 1
        return value

    def pull_uint32(self) -> int:
        self._need(4)
        p = self._pos
        d = self._data
        high = d[p]  # widened to an unsigned C type in the compiled build
        self._pos = p + 4
        return (high << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3]

    def pull_uint64(self) -> int:
        self._need(8)
        p = self._pos
        value = int.from_bytes(self._data[p : p + 8], "big")
        self._pos = p + 8
        return value

    def pull_varint(self) -> int:
        """Read a varint. Non-shortest encodings are accepted (RFC 9000 section 16
        allows them); the value is what counts."""
        self._need(1)
        p = self._pos
        d = self._data
        first = d[p]
        prefix = first >> 6
        if prefix == 0:
            self._pos = p + 1
            return first
        if prefix == 1:
            self._need(2)
            self._pos = p + 2
            return ((first & 0x3F) << 8) | d[p + 1]
        if prefix == 2:
            self._need(4)
            self._pos = p + 4
            return (
                ((first & 0x3F) << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3]
            )
        self._need(8)
        self._pos = p + 8
        return int.from_bytes(d[p : p + 8], "big") & _VARINT_MAX

    def pull_bytes(self, n: int) -> bytes:
        """Read exactly ``n`` bytes; the length is checked before any copy."""
        if n < 0:
            raise DecodeError("negative length")
        self._need(n)
        p = self._pos
        self._pos = p + n
        return self._data[p : p + n]


# ---------------------------------------------------------------------------
# DATA packet header (section "Packets")
# ---------------------------------------------------------------------------


def push_data_header(w: Writer, receiver_index: int, packet_number: int) -> None:
    """Write the 13-byte clear header of a DATA packet.

    It is also the AEAD's associated data, so any change to it in flight makes
    the packet fail authentication.
    """
    w.push_uint8(_KIND_DATA)
    w.push_uint32(receiver_index)
    w.push_uint64(packet_number)


def pull_data_header_untrusted(data: bytes) -> tuple:
    """Parse the clear header of a DATA packet.

    Returns:
        ``(receiver_index, packet_number)``. The sealed payload starts at
        ``DATA_HEADER_SIZE``.

    Raises:
        DecodeError: wrong kind, or too short to hold a header and an AEAD tag.
    """
    if len(data) < DATA_HEADER_SIZE + 16:
        raise DecodeError("datagram too short for a DATA packet")
    r = Reader(data)
    if r.pull_uint8() != _KIND_DATA:
        raise DecodeError("not a DATA packet")
    receiver_index = r.pull_uint32()
    packet_number = r.pull_uint64()
    return (receiver_index, packet_number)


def stream_frame_overhead(stream_id: int, offset: int, length: int) -> int:
    """Bytes a STREAM frame adds on top of its ``length`` bytes of data."""
    return (
        1
        + _varint_len(_as_varint(stream_id))
        + _varint_len(_as_varint(offset))
        + _varint_len(_as_varint(length))
    )


# ---------------------------------------------------------------------------
# Frames (section "Frames")
# ---------------------------------------------------------------------------


class Frame:
    """Base class of the frame value objects.

    Frames compare equal when they have the same class and field values. Their
    constructors do not validate (decoded frames are valid by construction);
    ``push`` validates every field before writing anything, so a frame that does
    not fit or has an out-of-range field leaves the writer unchanged.
    """

    __slots__ = ()
    FIELDS = ()

    def fields(self) -> tuple:
        """The field values in declaration order."""
        return tuple([getattr(self, name) for name in self.FIELDS])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.fields() == other.fields()  # type: ignore[attr-defined]

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = []
        for name in self.FIELDS:
            value = getattr(self, name)
            if isinstance(value, (bytes, bytearray, memoryview)) and len(value) > 16:
                parts.append(f"{name}=<{len(value)} bytes>")
            else:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def push(self, w: Writer) -> None:
        # Every concrete frame overrides this; the base class is never encoded.
        raise TypeError(f"{type(self).__name__} cannot be encoded")

    def encoded_size(self) -> int:
        """Bytes :meth:`push` writes for this frame."""
        w = Writer(1 << 62)
        self.push(w)
        return w.tell()


class PaddingFrame(Frame):
    """``length`` zero bytes. Consecutive PADDING bytes decode as one frame."""

    __slots__ = ("length",)
    FIELDS = ("length",)

    def __init__(self, length: int = 1) -> None:
        self.length = length

    def push(self, w: Writer) -> None:
        if not isinstance(self.length, int) or self.length < 1:
            raise EncodeError("padding length must be at least 1")
        w.push_zeros(self.length)


class PingFrame(Frame):
    """Asks the peer for an acknowledgement; carries nothing."""

    __slots__ = ()
    FIELDS = ()

    def push(self, w: Writer) -> None:
        w._reserve(1)
        w._buf.append(_FT_PING)


class AckFrame(Frame):
    """Acknowledged packet numbers as inclusive ``(first, last)`` ranges, highest
    first, separated by at least one missing packet; ``delay`` is how long (in
    microseconds) the receiver held the largest one before acknowledging it."""

    __slots__ = ("ranges", "delay")
    FIELDS = ("ranges", "delay")

    def __init__(self, ranges: tuple, delay: int = 0) -> None:
        self.ranges = tuple(ranges)
        self.delay = delay

    def push(self, w: Writer) -> None:
        push_ack_frame(w, self.ranges, self.delay)


def push_ack_frame(w: Writer, ranges: tuple, delay: int) -> None:
    """Write an ACK frame for ``ranges`` (see :class:`AckFrame`) without building
    the frame object first. Raises :class:`EncodeError` and writes nothing if
    the ranges are not descending and separated, or do not fit."""
    count = len(ranges)
    if count == 0:
        raise EncodeError("an ACK frame needs at least one range")
    if count - 1 > _MAX_ACK_RANGES:
        raise EncodeError(f"too many ACK ranges: {count}")
    lo = _as_varint(ranges[0][0])
    hi = _as_varint(ranges[0][1])
    if hi < lo:
        raise EncodeError(f"bad ACK range {ranges[0]!r}")
    delay = _as_varint(delay)
    largest = hi
    # Turn the ranges into (gap, length) pairs and size them before writing,
    # so that a failure leaves ``w`` untouched (RFC 9000 section 19.3.1).
    fields = [hi - lo]
    size = 1 + _varint_len(hi) + _varint_len(delay) + _varint_len(count - 1)
    size += _varint_len(hi - lo)
    smallest = lo
    for i in range(1, count):
        lo = _as_varint(ranges[i][0])
        hi = _as_varint(ranges[i][1])
        if hi < lo or hi + 2 > smallest:
            raise EncodeError(f"ACK ranges must descend with gaps: {ranges!r}")
        fields.append(smallest - hi - 2)
        fields.append(hi - lo)
        size += _varint_len(smallest - hi - 2) + _varint_len(hi - lo)
        smallest = lo
    w._reserve(size)
    w._buf.append(_FT_ACK)
    w._push_varint_raw(largest)
    w._push_varint_raw(delay)
    w._push_varint_raw(count - 1)
    for value in fields:
        w._push_varint_raw(value)


class ResetStreamFrame(Frame):
    """The sender abandons a stream; ``final_size`` is how far it had sent."""

    __slots__ = ("stream_id", "error_code", "final_size")
    FIELDS = ("stream_id", "error_code", "final_size")

    def __init__(self, stream_id: int, error_code: int, final_size: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.final_size = final_size

    def push(self, w: Writer) -> None:
        _push_varints(w, _FT_RESET_STREAM, 3, self.stream_id, self.error_code, self.final_size)


class StopSendingFrame(Frame):
    """The receiver asks the peer to stop sending on a stream."""

    __slots__ = ("stream_id", "error_code")
    FIELDS = ("stream_id", "error_code")

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code

    def push(self, w: Writer) -> None:
        _push_varints(w, _FT_STOP_SENDING, 2, self.stream_id, self.error_code, 0)


class StreamFrame(Frame):
    """``data`` at byte ``offset`` of stream ``stream_id``; ``fin`` marks the end.

    ``data`` may be any bytes-like object when encoding (a ``memoryview`` slice of
    a send buffer avoids a copy); decoded frames always hold ``bytes``.
    """

    __slots__ = ("stream_id", "offset", "data", "fin")
    FIELDS = ("stream_id", "offset", "data", "fin")

    def __init__(
        self, stream_id: int, offset: int, data: bytes, fin: bool = False
    ) -> None:
        self.stream_id = stream_id
        self.offset = offset
        self.data = data
        self.fin = bool(fin)

    def push(self, w: Writer) -> None:
        push_stream_frame(w, self.stream_id, self.offset, self.data, self.fin)


def push_stream_frame(
    w: Writer, stream_id: int, offset: int, data: bytes, fin: bool
) -> None:
    """Write a STREAM frame without building the frame object first (the send
    path of a session calls this once per packet)."""
    sid = _as_varint(stream_id)
    off = _as_varint(offset)
    length = len(data)
    if length > _VARINT_MAX - off:
        raise EncodeError("stream offset out of range")
    w._reserve(1 + _varint_len(sid) + _varint_len(off) + _varint_len(length) + length)
    w._buf.append(_FT_STREAM_FIN if fin else _FT_STREAM)
    w._push_varint_raw(sid)
    w._push_varint_raw(off)
    w._push_varint_raw(length)
    w._buf += data


def _push_varints(w: Writer, frame_type: int, count: int, a: int, b: int, c: int) -> None:
    """Write a frame made of its type byte and ``count`` (1 to 3) varints."""
    a = _as_varint(a)
    size = 1 + _varint_len(a)
    if count > 1:
        b = _as_varint(b)
        size += _varint_len(b)
    if count > 2:
        c = _as_varint(c)
        size += _varint_len(c)
    w._reserve(size)
    w._buf.append(frame_type)
    w._push_varint_raw(a)
    if count > 1:
        w._push_varint_raw(b)
    if count > 2:
        w._push_varint_raw(c)


class MaxDataFrame(Frame):
    """Session-wide flow-control limit: the peer may send up to ``maximum`` bytes
    of stream data in total."""

    __slots__ = ("maximum",)
    FIELDS = ("maximum",)

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum

    def push(self, w: Writer) -> None:
        _push_varints(w, _FT_MAX_DATA, 1, self.maximum, 0, 0)


class MaxStreamDataFrame(Frame):
    """Per-stream flow-control limit (an absolute offset)."""

    __slots__ = ("stream_id", "maximum")
    FIELDS = ("stream_id", "maximum")

    def __init__(self, stream_id: int, maximum: int) -> None:
        self.stream_id = stream_id
        self.maximum = maximum

    def push(self, w: Writer) -> None:
        _push_varints(w, _FT_MAX_STREAM_DATA, 2, self.stream_id, self.maximum, 0)


class DataBlockedFrame(Frame):
    """The sender has data to send but the session-wide ``limit`` stops it."""

    __slots__ = ("limit",)
    FIELDS = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def push(self, w: Writer) -> None:
        _push_varints(w, _FT_DATA_BLOCKED, 1, self.limit, 0, 0)


class StreamDataBlockedFrame(Frame):
    """The sender has data for ``stream_id`` but that stream's ``limit`` stops it."""

    __slots__ = ("stream_id", "limit")
    FIELDS = ("stream_id", "limit")

    def __init__(self, stream_id: int, limit: int) -> None:
        self.stream_id = stream_id
        self.limit = limit

    def push(self, w: Writer) -> None:
        _push_varints(w, _FT_STREAM_DATA_BLOCKED, 2, self.stream_id, self.limit, 0)


class StreamSkipFrame(Frame):
    """The sender abandoned the messages in bytes ``offset`` to ``offset +
    length`` of a stream (their deadline passed): the receiver delivers what
    comes before, drops what it holds of these bytes, and goes on with the
    message at ``offset + length``, which is the stream's message number
    ``index`` (counting from 0) -- so the receiver knows how many it never saw."""

    __slots__ = ("stream_id", "offset", "length", "index")
    FIELDS = ("stream_id", "offset", "length", "index")

    def __init__(self, stream_id: int, offset: int, length: int, index: int) -> None:
        self.stream_id = stream_id
        self.offset = offset
        self.length = length
        self.index = index

    def push(self, w: Writer) -> None:
        sid = _as_varint(self.stream_id)
        off = _as_varint(self.offset)
        length = _as_varint(self.length)
        index = _as_varint(self.index)
        if length == 0 or length > _VARINT_MAX - off:
            raise EncodeError("skip length out of range")
        w._reserve(1 + _varint_len(sid) + _varint_len(off) + _varint_len(length)
                   + _varint_len(index))
        w._buf.append(_FT_STREAM_SKIP)
        w._push_varint_raw(sid)
        w._push_varint_raw(off)
        w._push_varint_raw(length)
        w._push_varint_raw(index)


def _push_path(w: Writer, frame_type: int, data: bytes) -> None:
    """Write PATH_CHALLENGE or PATH_RESPONSE: the type and 8 opaque bytes."""
    if len(data) != _PATH_DATA:
        raise EncodeError(f"path data must be {_PATH_DATA} bytes")
    w._reserve(1 + _PATH_DATA)
    w._buf.append(frame_type)
    w._buf += data


class PathChallengeFrame(Frame):
    """Asks the peer to echo ``data`` from its new address (address validation)."""

    __slots__ = ("data",)
    FIELDS = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def push(self, w: Writer) -> None:
        _push_path(w, _FT_PATH_CHALLENGE, self.data)


class PathResponseFrame(Frame):
    """Echo of a PATH_CHALLENGE's ``data``."""

    __slots__ = ("data",)
    FIELDS = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def push(self, w: Writer) -> None:
        _push_path(w, _FT_PATH_RESPONSE, self.data)


def _push_blob(w: Writer, frame_type: int, data: bytes) -> None:
    """Write the type, a varint length and ``data``."""
    length = len(data)
    w._reserve(1 + _varint_len(length) + length)
    w._buf.append(frame_type)
    _push_blob_tail(w, data)


class CloseFrame(Frame):
    """Ends the session: a numeric ``error_code`` (0 = graceful) and a UTF-8
    ``reason`` of at most ``MAX_CLOSE_REASON_BYTES`` bytes."""

    __slots__ = ("error_code", "reason")
    FIELDS = ("error_code", "reason")

    def __init__(self, error_code: int, reason: str = "") -> None:
        self.error_code = error_code
        self.reason = reason

    def push(self, w: Writer) -> None:
        error_code = _as_varint(self.error_code)
        if not isinstance(self.reason, str):
            raise EncodeError("close reason must be a str")
        raw = self.reason.encode("utf-8")
        if len(raw) > _MAX_REASON:
            raise EncodeError(f"close reason longer than {_MAX_REASON} bytes")
        w._reserve(1 + _varint_len(error_code) + _varint_len(len(raw)) + len(raw))
        w._buf.append(_FT_CLOSE)
        w._push_varint_raw(error_code)
        _push_blob_tail(w, raw)


def _push_blob_tail(w: Writer, data: bytes) -> None:
    """Write a varint length and ``data`` (space already reserved)."""
    w._push_varint_raw(len(data))
    w._buf += data


class DatagramFrame(Frame):
    """An unreliable application datagram (never retransmitted)."""

    __slots__ = ("data",)
    FIELDS = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def push(self, w: Writer) -> None:
        _push_blob(w, _FT_DATAGRAM, self.data)


class DhtFrame(Frame):
    """One DHT message (its inner format is defined by the DHT layer)."""

    __slots__ = ("data",)
    FIELDS = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def push(self, w: Writer) -> None:
        _push_blob(w, _FT_DHT, self.data)


def encode_frames(frames, capacity: int = 1 << 62) -> bytes:
    """Encode ``frames`` back to back and return the bytes.

    Raises:
        EncodeError: a frame has an out-of-range field, or the total exceeds
            ``capacity``.
    """
    w = Writer(capacity)
    for frame in frames:
        frame.push(w)
    return w.getvalue()


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def _pull_ack(r: Reader) -> AckFrame:
    largest = r.pull_varint()
    delay = r.pull_varint()
    extra = r.pull_varint()
    first_range = r.pull_varint()
    if extra > _MAX_ACK_RANGES:
        raise DecodeError(f"ACK frame with {extra} ranges (limit {_MAX_ACK_RANGES})")
    # Each further range takes at least two bytes: refuse a count the bytes left
    # cannot hold before building anything.
    if extra * 2 > r.remaining():
        raise DecodeError("ACK range count larger than the frame")
    if first_range > largest:
        raise DecodeError("ACK first range below packet number 0")
    smallest = largest - first_range
    ranges = [(smallest, largest)]
    for _ in range(extra):
        gap = r.pull_varint()
        length = r.pull_varint()
        # RFC 9000 section 19.3.1: the next largest is smallest - gap - 2.
        if gap + 2 > smallest:
            raise DecodeError("ACK gap below packet number 0")
        hi = smallest - gap - 2
        if length > hi:
            raise DecodeError("ACK range below packet number 0")
        smallest = hi - length
        ranges.append((smallest, hi))
    return AckFrame(tuple(ranges), delay)


def _pull_stream(r: Reader, fin: bool) -> StreamFrame:
    stream_id = r.pull_varint()
    offset = r.pull_varint()
    length = r.pull_varint()
    if offset + length > _VARINT_MAX:
        raise DecodeError("STREAM frame beyond the largest offset")
    data = r.pull_bytes(length)
    return StreamFrame(stream_id, offset, data, fin)


def _pull_skip(r: Reader) -> StreamSkipFrame:
    stream_id = r.pull_varint()
    offset = r.pull_varint()
    length = r.pull_varint()
    if length == 0 or offset + length > _VARINT_MAX:
        raise DecodeError("STREAM_SKIP frame empty or beyond the largest offset")
    return StreamSkipFrame(stream_id, offset, length, r.pull_varint())


def _pull_close(r: Reader) -> CloseFrame:
    error_code = r.pull_varint()
    length = r.pull_varint()
    if length > _MAX_REASON:
        raise DecodeError("CLOSE reason too long")
    raw = r.pull_bytes(length)
    try:
        reason = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("CLOSE reason is not UTF-8") from None
    return CloseFrame(error_code, reason)


def decode_frames_untrusted(payload: bytes) -> list:
    """Decode a decrypted packet payload into a list of frames.

    The whole payload must be frames: an unknown frame type, a truncated frame or
    a value out of range rejects the payload as a whole.

    Raises:
        DecodeError: for any malformed input; never any other exception.
    """
    r = Reader(payload)
    frames = []
    while not r.eof():
        frame_type = r.pull_uint8()
        if frame_type == _FT_STREAM or frame_type == _FT_STREAM_FIN:
            frames.append(_pull_stream(r, frame_type == _FT_STREAM_FIN))
        elif frame_type == _FT_ACK:
            frames.append(_pull_ack(r))
        elif frame_type == _FT_PADDING:
            length = 1
            while not r.eof() and r.peek_uint8() == 0:
                r.skip(1)
                length += 1
            frames.append(PaddingFrame(length))
        elif frame_type == _FT_PING:
            frames.append(PingFrame())
        elif frame_type == _FT_MAX_STREAM_DATA:
            stream_id = r.pull_varint()
            frames.append(MaxStreamDataFrame(stream_id, r.pull_varint()))
        elif frame_type == _FT_MAX_DATA:
            frames.append(MaxDataFrame(r.pull_varint()))
        elif frame_type == _FT_RESET_STREAM:
            stream_id = r.pull_varint()
            error_code = r.pull_varint()
            frames.append(ResetStreamFrame(stream_id, error_code, r.pull_varint()))
        elif frame_type == _FT_STOP_SENDING:
            stream_id = r.pull_varint()
            frames.append(StopSendingFrame(stream_id, r.pull_varint()))
        elif frame_type == _FT_DATA_BLOCKED:
            frames.append(DataBlockedFrame(r.pull_varint()))
        elif frame_type == _FT_STREAM_DATA_BLOCKED:
            stream_id = r.pull_varint()
            frames.append(StreamDataBlockedFrame(stream_id, r.pull_varint()))
        elif frame_type == _FT_STREAM_SKIP:
            frames.append(_pull_skip(r))
        elif frame_type == _FT_PATH_CHALLENGE:
            frames.append(PathChallengeFrame(r.pull_bytes(_PATH_DATA)))
        elif frame_type == _FT_PATH_RESPONSE:
            frames.append(PathResponseFrame(r.pull_bytes(_PATH_DATA)))
        elif frame_type == _FT_CLOSE:
            frames.append(_pull_close(r))
        elif frame_type == _FT_DATAGRAM:
            frames.append(DatagramFrame(r.pull_bytes(r.pull_varint())))
        elif frame_type == _FT_DHT:
            frames.append(DhtFrame(r.pull_bytes(r.pull_varint())))
        else:
            raise DecodeError(f"unknown frame type 0x{frame_type:02x}")
    return frames
