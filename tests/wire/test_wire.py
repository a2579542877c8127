"""Wire codec tests, run against both builds through the ``wire`` fixture."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.constants import (
    DATA_HEADER_SIZE,
    MAX_ACK_RANGES,
    MAX_CLOSE_REASON_BYTES,
    VARINT_MAX,
    FrameType,
)
from stt_proto.errors import DecodeError, EncodeError

from ..helpers.wire_strategies import build, frame_key, frame_specs, normalize, varints

# --- variable-length integers -------------------------------------------------

# RFC 9000 appendix A.1 gives these sample encodings (the last is non-shortest).
RFC_SAMPLES = [
    ("c2197c5eff14e88c", 151_288_809_941_952_652),
    ("9d7f3e7d", 494_878_333),
    ("7bbd", 15_293),
    ("25", 37),
    ("4025", 37),
]


@pytest.mark.parametrize("hex_bytes, value", RFC_SAMPLES)
def test_varint_rfc_samples_decode(wire, hex_bytes, value):
    assert wire.decode_varint_untrusted(bytes.fromhex(hex_bytes)) == value


def test_varint_shortest_encoding(wire):
    assert wire.encode_varint(37).hex() == "25"
    assert wire.encode_varint(15_293).hex() == "7bbd"
    assert wire.encode_varint(494_878_333).hex() == "9d7f3e7d"
    assert wire.encode_varint(151_288_809_941_952_652).hex() == "c2197c5eff14e88c"


@pytest.mark.parametrize(
    "value, size",
    [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4), (2**30, 8),
     (VARINT_MAX, 8)],
)
def test_varint_size_boundaries(wire, value, size):
    assert wire.varint_size(value) == size
    assert len(wire.encode_varint(value)) == size
    assert wire.decode_varint_untrusted(wire.encode_varint(value)) == value


@pytest.mark.parametrize("value", [-1, VARINT_MAX + 1, 2**64, -(2**70), 1.5, "1", None])
def test_varint_out_of_range_is_encode_error(wire, value):
    with pytest.raises(EncodeError):
        wire.encode_varint(value)
    with pytest.raises(EncodeError):
        wire.varint_size(value)


@given(varints)
def test_varint_round_trip(wire, value):
    assert wire.decode_varint_untrusted(wire.encode_varint(value)) == value


@pytest.mark.parametrize("data", [b"", b"\x40", b"\x80\x00\x00", b"\xc0" + bytes(6)])
def test_varint_truncated(wire, data):
    with pytest.raises(DecodeError):
        wire.decode_varint_untrusted(data)


def test_varint_trailing_bytes(wire):
    with pytest.raises(DecodeError, match="trailing"):
        wire.decode_varint_untrusted(b"\x25\x00")


# --- frames: round trips --------------------------------------------------------


@given(frame_specs)
def test_every_frame_round_trips(wire, spec):
    frame = build(wire, spec)
    data = wire.encode_frames([frame])
    assert frame.encoded_size() == len(data)
    (decoded,) = wire.decode_frames_untrusted(data)
    assert decoded == frame
    assert frame_key(decoded) == frame_key(frame)
    assert wire.encode_frames([decoded]) == data


@given(st.lists(frame_specs, max_size=8))
def test_frame_sequences_round_trip(wire, specs):
    frames = [build(wire, s) for s in specs]
    data = wire.encode_frames(frames)
    decoded = wire.decode_frames_untrusted(data)
    assert [frame_key(f) for f in decoded] == normalize([frame_key(f) for f in frames])


def test_every_frame_type_is_covered(wire):
    """Each FrameType value has a class the strategies exercise."""
    seen = set()
    samples = [
        wire.PaddingFrame(1), wire.PingFrame(), wire.AckFrame(((0, 0),), 0),
        wire.ResetStreamFrame(1, 2, 3), wire.StopSendingFrame(1, 2),
        wire.StreamFrame(1, 0, b"x"), wire.StreamFrame(1, 0, b"x", True),
        wire.MaxDataFrame(1), wire.MaxStreamDataFrame(1, 2),
        wire.DataBlockedFrame(1), wire.StreamDataBlockedFrame(1, 2),
        wire.StreamSkipFrame(1, 2, 3, 4),
        wire.PathChallengeFrame(bytes(8)), wire.PathResponseFrame(bytes(8)),
        wire.CloseFrame(0, ""), wire.DatagramFrame(b""), wire.DhtFrame(b""),
    ]
    for frame in samples:
        seen.add(wire.encode_frames([frame])[0])
    assert seen == {int(t) for t in FrameType}


def test_stream_skip_frame_layout_and_bounds(wire):
    data = wire.encode_frames([wire.StreamSkipFrame(5, 1000, 3, 7)])
    # type 0x16, id 5, offset 1000 (2-byte varint), length 3, next message 7
    assert data == bytes([0x16, 5, 0x43, 0xE8, 3, 7])
    with pytest.raises(DecodeError):
        wire.decode_frames_untrusted(bytes([0x16, 5, 0, 0, 7]))  # nothing skipped
    beyond = bytes([0x16, 5]) + wire.encode_varint(VARINT_MAX) + bytes([1, 7])
    with pytest.raises(DecodeError):
        wire.decode_frames_untrusted(beyond)
    with pytest.raises(EncodeError):
        wire.encode_frames([wire.StreamSkipFrame(5, 0, 0, 7)])


def test_stream_frame_layout(wire):
    data = wire.encode_frames([wire.StreamFrame(5, 1000, b"abc", True)])
    # type 0x09 (STREAM with FIN), id 5, offset 1000 (2-byte varint), length 3, data
    assert data == bytes([0x09, 0x05, 0x43, 0xE8, 0x03]) + b"abc"
    assert wire.stream_frame_overhead(5, 1000, 3) == 5


def test_ack_frame_layout(wire):
    frame = wire.AckFrame(((8, 10), (2, 5)), 7)
    # largest 10, delay 7, one extra range, first range 2, gap 8-5-2=1, length 3
    assert wire.encode_frames([frame]) == bytes([0x02, 10, 7, 1, 2, 1, 3])


def test_padding_runs_merge(wire):
    assert [f.fields() for f in wire.decode_frames_untrusted(bytes(5))] == [(5,)]
    frames = wire.decode_frames_untrusted(b"\x00\x00\x01\x00")
    assert [type(f).__name__ for f in frames] == ["PaddingFrame", "PingFrame", "PaddingFrame"]


def test_empty_payload_decodes_to_no_frames(wire):
    assert wire.decode_frames_untrusted(b"") == []


def test_decoder_accepts_bytes_like(wire):
    data = wire.encode_frames([wire.PingFrame(), wire.MaxDataFrame(99)])
    assert wire.decode_frames_untrusted(bytearray(data)) == wire.decode_frames_untrusted(data)


def test_stream_frame_accepts_memoryview_data(wire):
    buf = memoryview(b"0123456789")
    data = wire.encode_frames([wire.StreamFrame(1, 0, buf[2:5])])
    (frame,) = wire.decode_frames_untrusted(data)
    assert frame.data == b"234" and type(frame.data) is bytes


# --- frames: rejection of malformed input ----------------------------------------


def _valid(wire, data: bytes) -> None:
    """Decoded frames must be valid values: they re-encode, and decode the same."""
    frames = wire.decode_frames_untrusted(data)
    again = wire.decode_frames_untrusted(wire.encode_frames(frames))
    assert [frame_key(f) for f in again] == [frame_key(f) for f in frames]


@settings(max_examples=60)
@given(frame_specs)
def test_every_truncation_is_rejected_or_valid(wire, spec):
    data = wire.encode_frames([build(wire, spec)])
    for end in range(len(data)):
        try:
            _valid(wire, data[:end])
        except DecodeError:
            pass


@settings(max_examples=40)
@given(frame_specs)
def test_every_bit_flip_is_rejected_or_valid(wire, spec):
    data = wire.encode_frames([build(wire, spec)])
    limit = min(len(data), 48)  # the header bytes matter; payload bits are opaque
    for i in range(limit):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[i] ^= 1 << bit
            try:
                _valid(wire, bytes(mutated))
            except DecodeError:
                pass


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x03", "unknown frame type"),
        (b"\x12\x05", "unknown frame type"),  # once MAX_STREAMS (protocol 7.2)
        (b"\xff", "unknown frame type"),
        (b"\x40\x01", "unknown frame type"),  # types are one byte, never varints
        (b"\x01\x07", "unknown frame type"),
        (b"\x08\x01\x00\x05abc", "truncated"),
        (b"\x1a\x01\x02", "truncated"),
    ],
)
def test_malformed_frames_are_rejected(wire, data, message):
    with pytest.raises(DecodeError, match=message):
        wire.decode_frames_untrusted(data)


def test_trailing_garbage_after_frames_is_rejected(wire):
    data = wire.encode_frames([wire.PingFrame()]) + b"\x7f"
    with pytest.raises(DecodeError):
        wire.decode_frames_untrusted(data)


def test_stream_beyond_largest_offset_is_rejected(wire):
    offset = wire.encode_varint(VARINT_MAX)
    with pytest.raises(DecodeError, match="largest offset"):
        wire.decode_frames_untrusted(b"\x08\x01" + offset + b"\x01x")
    with pytest.raises(EncodeError):
        wire.encode_frames([wire.StreamFrame(1, VARINT_MAX, b"x")])


def test_huge_length_is_rejected_without_allocating(wire):
    # A DATAGRAM claiming 2**62-1 bytes must fail on the length check, not by
    # trying to build a huge object.
    data = b"\x30" + wire.encode_varint(VARINT_MAX) + b"abc"
    with pytest.raises(DecodeError, match="truncated"):
        wire.decode_frames_untrusted(data)


def test_ack_range_limits(wire):
    too_many = b"\x02\x00\x00" + wire.encode_varint(MAX_ACK_RANGES + 1) + b"\x00"
    with pytest.raises(DecodeError, match="ranges"):
        wire.decode_frames_untrusted(too_many + b"\x00\x00" * (MAX_ACK_RANGES + 1))
    # a count the remaining bytes cannot hold is refused before any work
    with pytest.raises(DecodeError, match="larger than the frame"):
        wire.decode_frames_untrusted(b"\x02\x24\x00\x40\x80\x00")
    # first range reaching below packet 0
    with pytest.raises(DecodeError, match="below packet number 0"):
        wire.decode_frames_untrusted(b"\x02\x05\x00\x00\x06")
    # gap reaching below packet 0: largest 5, first range 0 -> smallest 5, gap 4
    with pytest.raises(DecodeError, match="below packet number 0"):
        wire.decode_frames_untrusted(b"\x02\x05\x00\x01\x00\x04\x00")
    ranges = tuple((10 * i, 10 * i) for i in range(MAX_ACK_RANGES + 1, -1, -1))
    with pytest.raises(EncodeError, match="too many"):
        wire.encode_frames([wire.AckFrame(ranges, 0)])
    ok = ranges[1:]
    assert len(wire.decode_frames_untrusted(wire.encode_frames([wire.AckFrame(ok, 0)]))) == 1


@pytest.mark.parametrize(
    "ranges",
    [(), ((5, 4),), ((5, 9), (3, 4)), ((5, 9), (4, 3)), ((5, 9), (6, 7)), ((-1, 2),)],
)
def test_ack_encoder_rejects_bad_ranges(wire, ranges):
    w = wire.Writer(100)
    with pytest.raises(EncodeError):
        wire.AckFrame(ranges, 0).push(w)
    assert w.tell() == 0


def test_close_reason_rules(wire):
    with pytest.raises(DecodeError, match="UTF-8"):
        wire.decode_frames_untrusted(b"\x1c\x00\x02\xff\xfe")
    too_long = wire.encode_varint(MAX_CLOSE_REASON_BYTES + 1)
    with pytest.raises(DecodeError, match="too long"):
        wire.decode_frames_untrusted(b"\x1c\x00" + too_long + b"x" * (MAX_CLOSE_REASON_BYTES + 1))
    with pytest.raises(EncodeError):
        wire.encode_frames([wire.CloseFrame(0, "x" * (MAX_CLOSE_REASON_BYTES + 1))])
    text = "é" * (MAX_CLOSE_REASON_BYTES // 2)
    (frame,) = wire.decode_frames_untrusted(wire.encode_frames([wire.CloseFrame(9, text)]))
    assert frame.reason == text and frame.error_code == 9


def test_path_frames_need_exactly_eight_bytes(wire):
    with pytest.raises(EncodeError):
        wire.encode_frames([wire.PathChallengeFrame(b"short")])
    with pytest.raises(DecodeError):
        wire.decode_frames_untrusted(b"\x1b" + bytes(7))


# --- writer --------------------------------------------------------------------------


@given(frame_specs)
def test_a_frame_that_does_not_fit_writes_nothing(wire, spec):
    frame = build(wire, spec)
    size = frame.encoded_size()
    w = wire.Writer(size - 1 + 3)
    w.push_bytes(b"abc")
    with pytest.raises(EncodeError):
        frame.push(w)
    assert w.getvalue() == b"abc"
    exact = wire.Writer(size)
    frame.push(exact)
    assert exact.remaining() == 0


@pytest.mark.parametrize(
    "frame_args",
    [
        ("StreamFrame", (-1, 0, b"")),
        ("StreamFrame", (1, -5, b"")),
        ("ResetStreamFrame", (1, VARINT_MAX + 1, 0)),
        ("MaxDataFrame", (-3,)),
        ("PaddingFrame", (0,)),
        ("CloseFrame", (0, b"bytes not str")),
    ],
)
def test_out_of_range_fields_are_encode_errors(wire, frame_args):
    name, args = frame_args
    w = wire.Writer(100)
    with pytest.raises(EncodeError):
        getattr(wire, name)(*args).push(w)
    assert w.tell() == 0


def test_fixed_width_pushes(wire):
    w = wire.Writer(13)
    w.push_uint8(0xAB)
    w.push_uint32(0xDEADBEEF)
    w.push_uint64(2**64 - 1)
    assert w.getvalue() == bytes.fromhex("abdeadbeef") + b"\xff" * 8
    for method, bad in (("push_uint8", 256), ("push_uint32", 2**32), ("push_uint64", -1)):
        with pytest.raises(EncodeError):
            getattr(wire.Writer(8), method)(bad)


def test_reader_primitives(wire):
    r = wire.Reader(bytes.fromhex("abdeadbeef") + bytes(range(8)) + b"\x40\x25xyz")
    assert r.peek_uint8() == 0xAB
    assert r.pull_uint8() == 0xAB
    assert r.pull_uint32() == 0xDEADBEEF
    assert r.pull_uint64() == 0x0001020304050607
    assert r.pull_varint() == 37
    assert r.remaining() == 3
    with pytest.raises(DecodeError):
        r.pull_bytes(4)
    assert r.tell() == 15  # a failed pull leaves the cursor in place
    assert r.pull_bytes(3) == b"xyz"
    assert r.eof()
    r.expect_end()
    for pull in (r.pull_uint8, r.pull_uint32, r.pull_uint64, r.pull_varint, r.peek_uint8):
        with pytest.raises(DecodeError):
            pull()


# --- packet header ---------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_data_header_round_trip(wire, index, number):
    w = wire.Writer(64)
    wire.push_data_header(w, index, number)
    header = w.getvalue()
    assert len(header) == DATA_HEADER_SIZE
    assert header[0] == 0x04
    assert wire.pull_data_header_untrusted(header + bytes(16)) == (index, number)


def test_data_header_rejections(wire):
    with pytest.raises(DecodeError, match="too short"):
        wire.pull_data_header_untrusted(bytes(DATA_HEADER_SIZE + 15))
    with pytest.raises(DecodeError, match="not a DATA"):
        wire.pull_data_header_untrusted(b"\x01" + bytes(40))
    with pytest.raises(EncodeError):
        wire.push_data_header(wire.Writer(64), 2**32, 0)


# --- value objects -------------------------------------------------------------------------


def test_frames_compare_by_value_and_repr_is_short(wire):
    a = wire.StreamFrame(1, 0, b"x" * 1000)
    assert a == wire.StreamFrame(1, 0, b"x" * 1000)
    assert a != wire.StreamFrame(1, 0, b"x" * 999)
    assert a != wire.DatagramFrame(b"x" * 1000)
    assert repr(a) == "StreamFrame(stream_id=1, offset=0, data=<1000 bytes>, fin=False)"
    assert repr(wire.PingFrame()) == "PingFrame()"
    with pytest.raises(TypeError):
        hash(a)


def test_base_frame_cannot_be_encoded(wire):
    with pytest.raises(TypeError):
        wire.Frame().push(wire.Writer(10))
