"""Fuzz harness for the content message codec, ``stt_proto.content.messages`` (atheris).

The first input byte picks the target. Bit 0 clear: the rest is decoded as it
is; set: the rest (read by ``_harness.Ops``) picks one of the genuine messages
of ``make_content_seeds.genuine_messages`` (among them the largest CHUNK there
can be) and applies one to four edits to its encoding (flipped bytes, cuts,
insertions, overwrites). Bit 1 set: ``decode`` gets a ``memoryview`` of a
``bytearray`` holding the input (the zero-copy path a receive buffer takes)
instead of ``bytes``.

Invariant, for any input:

* ``decode`` returns a message or raises ``DecodeError``, never any other
  exception, and it gives the same answer for ``bytes`` and for a view;
* what it accepts is canonical: ``decode(data).encode() == data``, so two
  different byte strings never decode to the same message;
* an accepted message agrees with its first byte, the type;
* a CHUNK is within the limits (at most ``MAX_PROOF_HASHES`` hashes of 32
  bytes, at most ``CHUNK_SIZE`` of data); its data is a read-only view of the
  very buffer it came in when decoded from a view, and ``bytes`` otherwise;
  and its header, however built, is its encoding without the data.

Run: ``python fuzz/fuzz_content_codec.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import Ops
    from make_content_seeds import AS_VIEW, MUTATE, genuine_messages
    from stt_proto.content import messages as m
    from stt_proto.content.tree import CHUNK_SIZE, HASH_SIZE
    from stt_proto.errors import DecodeError

GENUINE = [message.encode() for message in genuine_messages()]


def _decode(data: bytes | memoryview) -> m.ContentMessage | None:
    try:
        return m.decode(data)
    except DecodeError:
        return None


def check(data: bytes, as_view: bool) -> None:
    """The invariant above, for one input to ``decode``."""
    buffer = bytearray(data)
    given = memoryview(buffer) if as_view else data
    message = _decode(given)
    other = _decode(data if as_view else memoryview(buffer))
    if message != other:
        raise AssertionError(f"bytes and view disagree on {data.hex()}: {message!r}, {other!r}")
    if message is None:
        return
    again = message.encode()
    if again != data:
        raise AssertionError(f"not canonical: {data.hex()} re-encodes as {again.hex()}")
    if message.TYPE != data[0]:
        raise AssertionError(f"{message!r} disagrees with its type byte {data[0]}")
    if type(message) is m.Chunk:
        if len(message.proof) > m.MAX_PROOF_HASHES:
            raise AssertionError("proof over MAX_PROOF_HASHES")
        if any(type(h) is not bytes or len(h) != HASH_SIZE for h in message.proof):
            raise AssertionError("a proof hash that is not 32 bytes")
        if len(message.data) > CHUNK_SIZE:
            raise AssertionError("data over CHUNK_SIZE")
        if as_view:
            chunk = message.data
            if type(chunk) is not memoryview or not chunk.readonly or chunk.obj is not buffer:
                raise AssertionError("the data of a view is not a read-only view of its buffer")
        elif type(message.data) is not bytes:
            raise AssertionError(f"data of bytes decoded as {type(message.data).__name__}")
        header = m.encode_chunk_header(message.request_id, message.length, message.index,
                                       message.proof)
        if header != message.header() or header + bytes(message.data) != data:
            raise AssertionError("the chunk header is not the encoding up to the data")


def test_one_input(data: bytes) -> None:
    """Target byte bit 0: edit a genuine message as the rest says; bit 1: decode a view."""
    if not data:
        return
    target, rest = data[0], data[1:]
    if target & MUTATE:
        ops = Ops(rest)
        rest = ops.mutate(GENUINE[ops.byte() % len(GENUINE)], insert=16, overwrite=8)
    check(rest, bool(target & AS_VIEW))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
