"""Hypothesis strategies for frames, independent of the build under test.

A strategy draws a *spec* ``(class_name, args)``; ``build(wire, spec)`` turns it
into a frame of the given wire module, so one drawn example can be encoded by both
builds.
"""

from __future__ import annotations

from hypothesis import strategies as st

from stt_proto.constants import MAX_ACK_RANGES, MAX_CLOSE_REASON_BYTES, VARINT_MAX

varints = st.one_of(
    st.integers(0, 0x3F),
    st.integers(0x40, 0x3FFF),
    st.integers(0x4000, 0x3FFFFFFF),
    st.integers(0x40000000, VARINT_MAX),
    st.sampled_from([0, 0x3F, 0x40, 0x3FFF, 0x4000, 0x3FFFFFFF, 0x40000000, VARINT_MAX]),
)
small_bytes = st.binary(max_size=64)
payload_bytes = st.one_of(st.binary(max_size=64), st.binary(min_size=1000, max_size=1400))


@st.composite
def ack_ranges(draw) -> tuple:
    """Descending, separated inclusive ranges, as a receiver would report them."""
    count = draw(st.integers(1, 12))
    top = draw(st.one_of(st.integers(0, 5000), st.integers(0, VARINT_MAX)))
    ranges = []
    hi = top
    for _ in range(count):
        length = draw(st.integers(0, min(hi, 300)))
        lo = hi - length
        ranges.append((lo, hi))
        gap = draw(st.integers(0, 300))
        if lo < gap + 2:
            break
        hi = lo - gap - 2
    return tuple(ranges)


@st.composite
def stream_args(draw) -> tuple:
    data = draw(payload_bytes)
    offset = draw(st.integers(0, VARINT_MAX - len(data)))
    return (draw(varints), offset, data, draw(st.booleans()))


@st.composite
def skip_args(draw) -> tuple:
    length = draw(st.integers(1, VARINT_MAX))
    offset = draw(st.integers(0, VARINT_MAX - length))
    return (draw(varints), offset, length, draw(varints))


reasons = st.text(max_size=40).filter(lambda s: len(s.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES)

frame_specs = st.one_of(
    st.tuples(st.just("PaddingFrame"), st.tuples(st.integers(1, 200))),
    st.tuples(st.just("PingFrame"), st.just(())),
    st.tuples(st.just("AckFrame"), st.tuples(ack_ranges(), varints)),
    st.tuples(st.just("ResetStreamFrame"), st.tuples(varints, varints, varints)),
    st.tuples(st.just("StopSendingFrame"), st.tuples(varints, varints)),
    st.tuples(st.just("StreamFrame"), stream_args()),
    st.tuples(st.just("MaxDataFrame"), st.tuples(varints)),
    st.tuples(st.just("MaxStreamDataFrame"), st.tuples(varints, varints)),
    st.tuples(st.just("DataBlockedFrame"), st.tuples(varints)),
    st.tuples(st.just("StreamDataBlockedFrame"), st.tuples(varints, varints)),
    st.tuples(st.just("StreamSkipFrame"), skip_args()),
    st.tuples(st.just("PathChallengeFrame"), st.tuples(st.binary(min_size=8, max_size=8))),
    st.tuples(st.just("PathResponseFrame"), st.tuples(st.binary(min_size=8, max_size=8))),
    st.tuples(st.just("CloseFrame"), st.tuples(varints, reasons)),
    st.tuples(st.just("DatagramFrame"), st.tuples(payload_bytes)),
    st.tuples(st.just("DhtFrame"), st.tuples(payload_bytes)),
)


def build(wire, spec):
    name, args = spec
    return getattr(wire, name)(*args)


def frame_key(frame) -> tuple:
    """Build-independent identity of a frame: class name and field values."""
    return (type(frame).__name__, frame.fields())


def normalize(frames: list) -> list:
    """Merge adjacent PADDING frames, as a decoder does."""
    out: list = []
    for f in frames:
        if out and out[-1][0] == "PaddingFrame" and f[0] == "PaddingFrame":
            out[-1] = ("PaddingFrame", (out[-1][1][0] + f[1][0],))
        else:
            out.append(f)
    return out


__all__ = ["frame_specs", "build", "frame_key", "normalize", "varints", "ack_ranges",
           "MAX_ACK_RANGES"]
