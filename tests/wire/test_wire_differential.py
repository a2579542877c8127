"""Differential tests: the compiled and pure builds must agree on everything.

For arbitrary bytes both decoders give the same frames or the same exception
type; for arbitrary (also invalid) field values both encoders give the same bytes
or the same exception type. Parser differentials are a classic source of security
bugs (one build accepting what the other rejects), hence these tests.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ..helpers.wire_strategies import build, frame_key, frame_specs


def _decode_outcome(wire, data: bytes):
    try:
        return ("ok", [frame_key(f) for f in wire.decode_frames_untrusted(data)])
    except Exception as exc:  # the type is what is compared
        return ("error", type(exc))


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("error", type(exc))


@settings(max_examples=500)
@given(st.binary(max_size=200))
@example(b"\x02\x00\x00\x40\x80\x00")
@example(b"\x08" + b"\xff" * 9)
@example(b"\x1c\x00\x02\xff\xfe")
def test_arbitrary_bytes_decode_identically(both_builds, data):
    pure, compiled = both_builds
    assert _decode_outcome(pure, data) == _decode_outcome(compiled, data)


@settings(max_examples=300)
@given(st.lists(frame_specs, min_size=1, max_size=6), st.data())
def test_valid_encodings_and_their_mutations_agree(both_builds, specs, data):
    pure, compiled = both_builds
    encoded = pure.encode_frames([build(pure, s) for s in specs])
    assert compiled.encode_frames([build(compiled, s) for s in specs]) == encoded
    # truncate, flip a bit, or splice random bytes, then compare the decoders
    mutated = bytearray(encoded)
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        del mutated[data.draw(st.integers(0, len(mutated) - 1)):]
    elif choice == 1:
        i = data.draw(st.integers(0, len(mutated) - 1))
        mutated[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        i = data.draw(st.integers(0, len(mutated)))
        mutated[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    assert _decode_outcome(pure, bytes(mutated)) == _decode_outcome(compiled, bytes(mutated))


any_int = st.one_of(st.integers(-(2**65), 2**65), st.integers(-2, 70), st.sampled_from(
    [2**62 - 1, 2**62, 2**64 - 1, 2**64, -1]))


@settings(max_examples=300)
@given(
    st.sampled_from(["ResetStreamFrame", "MaxStreamDataFrame", "StopSendingFrame",
                     "MaxDataFrame", "StreamFrame", "AckFrame", "CloseFrame", "PaddingFrame"]),
    st.lists(any_int, min_size=3, max_size=3),
    st.binary(max_size=20),
)
def test_invalid_field_values_fail_identically(both_builds, name, ints, blob):
    pure, compiled = both_builds
    args = {
        "ResetStreamFrame": tuple(ints),
        "MaxStreamDataFrame": tuple(ints[:2]),
        "StopSendingFrame": tuple(ints[:2]),
        "MaxDataFrame": tuple(ints[:1]),
        "StreamFrame": (ints[0], ints[1], blob, ints[2] % 2 == 0),
        "AckFrame": (((ints[0], ints[1]), (ints[2], ints[2])), 0),
        "CloseFrame": (ints[0], blob.decode("latin-1")),
        "PaddingFrame": (ints[0] % 300 - 10,),
    }[name]
    results = []
    for wire in (pure, compiled):
        results.append(_outcome(lambda: wire.encode_frames([getattr(wire, name)(*args)])))
    assert results[0] == results[1]


@given(st.binary(max_size=12))
@example(b"\x04\xde\xad\xbe\xef\xff\xff\xff\xff\xff\xff\xff\xff")
@example(b"\xc0\xff\xff\xff\xff\xff\xff\xff")
def test_varint_and_header_decoding_agree(both_builds, data):
    pure, compiled = both_builds
    assert _outcome(pure.decode_varint_untrusted, data) == _outcome(
        compiled.decode_varint_untrusted, data
    )
    if data[:1] == b"\x04":  # make DATA headers common, not one input in 256
        data = data[:13]
    padded = data + bytes(20)
    assert _outcome(pure.pull_data_header_untrusted, padded) == _outcome(
        compiled.pull_data_header_untrusted, padded
    )


def test_the_builds_are_really_different_modules(both_builds):
    pure, compiled = both_builds
    assert pure.COMPILED is False
    assert compiled.COMPILED is True
    assert pure.StreamFrame is not compiled.StreamFrame
