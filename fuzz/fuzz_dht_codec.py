"""Fuzz harness for the DHT message codec, ``stt_proto.dht.messages`` (atheris).

The first input byte picks the target: even, the rest is decoded as it is; odd,
the rest (read by ``_harness.Ops``) picks one of the genuine messages of
``make_dht_seeds.genuine_messages`` and applies one to four edits to its
encoding (flipped bytes, cuts, insertions, overwrites).

Invariant, for any input:

* ``decode`` returns a message or raises ``DecodeError`` (``UnsupportedVersionError``
  included), never any other exception;
* what it accepts is canonical: ``encode(decode(data)) == data``, so two
  different byte strings never decode to the same message;
* an accepted message agrees with its header: requests have the type's high bit
  clear, answers set, and the transaction id is bytes 2..9;
* ``UnsupportedVersionError`` reports the version byte, and the transaction id
  exactly when the ten header bytes are there;
* memory is bounded by the limits: no contact list longer than ``MAX_CONTACTS``,
  and the input is never longer than ``MAX_MESSAGE_BYTES`` when accepted.

Run: ``python fuzz/fuzz_dht_codec.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import Ops
    from make_dht_seeds import genuine_messages
    from stt_proto.dht import messages as m
    from stt_proto.errors import DecodeError

GENUINE = [m.encode(message) for message in genuine_messages()]


def check(data: bytes) -> None:
    """The invariant above, for one input to ``decode``."""
    try:
        message = m.decode(data)
    except m.UnsupportedVersionError as exc:
        if exc.version != data[0]:
            raise AssertionError(f"version {exc.version} reported for {data[0]}") from None
        expected = data[2:10] if len(data) >= m.HEADER_BYTES else None
        if exc.txid != expected:
            raise AssertionError(f"txid {exc.txid!r} reported for {data!r}") from None
        return
    except DecodeError:
        return
    if len(data) > m.MAX_MESSAGE_BYTES:
        raise AssertionError("accepted a message over MAX_MESSAGE_BYTES")
    again = m.encode(message)
    if again != data:
        raise AssertionError(f"not canonical: {data.hex()} re-encodes as {again.hex()}")
    if message.is_request != (not data[1] & 0x80) or message.txid != data[2:10]:
        raise AssertionError(f"{message!r} disagrees with its header")
    for name in ("contacts", "providers"):
        if len(getattr(message, name, ())) > m.MAX_CONTACTS:
            raise AssertionError(f"{name} over MAX_CONTACTS")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        ops = Ops(data[1:])
        original = GENUINE[ops.byte() % len(GENUINE)]
        check(ops.mutate(original, insert=16, overwrite=4))
    else:
        check(data[1:])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
