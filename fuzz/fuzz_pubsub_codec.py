"""Fuzz harness for the pub/sub message codec, ``stt_proto.pubsub.messages`` (atheris).

The first input byte picks the target: even, the rest is decoded as it is; odd,
the rest (read by ``_harness.Ops``) picks one of the genuine messages of
``make_pubsub_seeds.genuine_messages`` and applies one to four edits to its
encoding (flipped bytes, cuts, insertions, overwrites).

Invariant, for any input:

* ``decode`` returns a message or raises ``DecodeError``, never any other
  exception;
* what it accepts is canonical: ``encode(decode(data)) == data``, so two
  different byte strings never decode to the same message;
* an accepted message agrees with its header: the type byte is its type's and
  the topic is bytes 2..33;
* memory is bounded by the limits: at most ``MAX_PEER_EXCHANGE`` peers,
  ``MAX_IHAVE_ENTRIES`` entries, ``MAX_DATA_BYTES`` of data, IWANT and GONE
  ranges of at most ``MAX_RANGE``;
* ``verify_publish`` returns a bool for every decoded PUBLISH, and True only
  for the genuine, signed one: no edit of it keeps a valid signature.

Run: ``python fuzz/fuzz_pubsub_codec.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import Ops
    from make_pubsub_seeds import genuine_messages
    from stt_proto.errors import DecodeError
    from stt_proto.pubsub import messages as m

GENUINE = [m.encode(message) for message in genuine_messages()]
SIGNED = frozenset(data for data in GENUINE if data[1] == m.MessageType.PUBLISH)


def check(data: bytes) -> None:
    """The invariant above, for one input to ``decode``."""
    try:
        message = m.decode(data)
    except DecodeError:
        return
    again = m.encode(message)
    if again != data:
        raise AssertionError(f"not canonical: {data.hex()} re-encodes as {again.hex()}")
    if message.TYPE != data[1] or message.topic != data[2:34]:
        raise AssertionError(f"{message!r} disagrees with its header")
    if len(getattr(message, "peers", ())) > m.MAX_PEER_EXCHANGE:
        raise AssertionError("peers over MAX_PEER_EXCHANGE")
    if len(getattr(message, "entries", ())) > m.MAX_IHAVE_ENTRIES:
        raise AssertionError("entries over MAX_IHAVE_ENTRIES")
    if isinstance(message, (m.IWant, m.Gone)) and not 1 <= message.count <= m.MAX_RANGE:
        raise AssertionError(f"range of {message.count} messages")
    if isinstance(message, m.Publish):
        if len(message.data) > m.MAX_DATA_BYTES:
            raise AssertionError("data over MAX_DATA_BYTES")
        verified = m.verify_publish(message)
        if verified is not (data in SIGNED):
            raise AssertionError(f"verify_publish gave {verified!r} for {data.hex()}")


def test_one_input(data: bytes) -> None:
    """Target byte even: decode the rest; odd: edit a genuine message as the rest says."""
    if data[:1] and data[0] & 1:
        ops = Ops(data[1:])
        check(ops.mutate(GENUINE[ops.byte() % len(GENUINE)], insert=16, overwrite=8))
    elif data:
        check(data[1:])


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
