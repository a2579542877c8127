"""Fuzz harness for the wire codec (atheris; bytes in, as AFL/libFuzzer style).

Invariant, for any input bytes:

* ``decode_frames_untrusted`` either returns frames or raises ``DecodeError``;
  never any other exception, in either build;
* the compiled and the pure-Python builds give the same frames or the same
  exception type (no parser differential);
* decoded frames are valid values: they re-encode, and the re-encoding decodes to
  the same frames;
* the number of frames never exceeds the number of input bytes (memory is
  bounded by the input);
* the same holds for the DATA packet header and standalone varints.

Run: ``python fuzz/fuzz_wire.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from stt_proto import _wire_py as pure
    from stt_proto.errors import DecodeError

try:
    from stt_proto import _wire_c as compiled
except ImportError:  # pure-only install: still fuzz the pure decoder
    compiled = None


def _decode(wire, data: bytes):
    try:
        frames = wire.decode_frames_untrusted(data)
    except DecodeError:
        return None
    return frames


def _key(frames):
    return [(type(f).__name__, f.fields()) for f in frames]


def _same_outcome(fn_pure, fn_compiled, data: bytes) -> None:
    outcomes = []
    for fn in (fn_pure, fn_compiled):
        try:
            outcomes.append(("ok", fn(data)))
        except DecodeError:
            outcomes.append(("error", DecodeError))
    if outcomes[0] != outcomes[1]:
        raise AssertionError(f"builds disagree: {outcomes!r}")


def test_one_input(data: bytes) -> None:
    frames = _decode(pure, data)
    if frames is not None:
        if len(frames) > len(data):
            raise AssertionError("more frames than input bytes")
        again = pure.decode_frames_untrusted(pure.encode_frames(frames))
        if _key(again) != _key(frames):
            raise AssertionError("decoded frames do not survive a re-encoding")
    if compiled is not None:
        other = _decode(compiled, data)
        if (frames is None) != (other is None) or (
            frames is not None and _key(frames) != _key(other)
        ):
            raise AssertionError(f"builds disagree on {data!r}")
        _same_outcome(
            pure.pull_data_header_untrusted, compiled.pull_data_header_untrusted, data
        )
        _same_outcome(pure.decode_varint_untrusted, compiled.decode_varint_untrusted, data[:9])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
