#!/usr/bin/env python3
"""Write the seed corpora of the engine harnesses: ``fuzz/corpus/{endpoint,session,handshake}``.

Usage: ``python fuzz/make_seeds.py``. The seeds are deterministic (seeded keys),
small, and each is a meaningful starting point: a message on a stream, a valid
INITIATION and DATA packet, a RESPONSE, transport parameters. They are written in
the op format the harnesses read (``_harness.Ops``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import ManualInitiator, make_endpoint, pack_blob  # noqa: E402
from stt_proto import _wire_py as frames  # noqa: E402
from stt_proto.handshake import TransportParameters  # noqa: E402


def message(stream_id: int, data: bytes, fin: bool = False, offset: int = 0):
    """A STREAM frame carrying one whole message (mode byte, length, data)."""
    body = b"\x00" + frames.encode_varint(len(data)) + data if offset == 0 else data
    return frames.StreamFrame(stream_id, offset, body, fin)


def session_seeds() -> dict[str, bytes]:
    hello = frames.encode_frames([message(0, b"hello", fin=True)])
    two = frames.encode_frames([message(1, b"one"), message(3, b"two", fin=True),
                                frames.DatagramFrame(b"dgram")])
    control = frames.encode_frames([
        frames.MaxDataFrame(1 << 20), frames.MaxStreamDataFrame(0, 4096),
        frames.StopSendingFrame(2, 0), frames.ResetStreamFrame(4, 1, 0), frames.PingFrame()])
    close = frames.encode_frames([frames.CloseFrame(0, "bye")])
    return {
        # auto_credit byte, then ops: 0 = raw payload blob, 3 = time, 4 = gap,
        # 5 = replay, 6 = application command.
        "message": b"\x00" + b"\x00" + pack_blob(hello),
        "messages_no_credit": b"\x01" + b"\x00" + pack_blob(two) + b"\x03\x40",
        "control": b"\x00" + b"\x06\x00\x00\x05hello" + b"\x00" + pack_blob(control),
        "reorder": b"\x00\x04\x03" + b"\x00" + pack_blob(hello) + b"\x05\x00\x03\xff",
        "close": b"\x00" + b"\x00" + pack_blob(hello) + b"\x00" + pack_blob(close) + b"\x05\x01",
        # structured: op 1, one frame, STREAM with a u16 offset.
        "structured": b"\x00\x01\x00\x00\xc0\x00\x00\x05\x00\x03abc" + b"\x01\x00\x09\x00",
    }


def endpoint_seeds() -> dict[str, bytes]:
    # ops: 0 raw, 1 mutate, 2 forge DATA, 3 forge INITIATION, 4 time, 5 connect,
    # 6 replay, 7 close an extra session, 8 application traffic.
    responder = make_endpoint(2)
    initiation = ManualInitiator(responder, seed=5).initiation
    return {
        "raw_initiation": b"\x00\x01" + pack_blob(initiation),
        "mutate": b"\x08\x00\x01\x00\x02\x00\x10\x01" + b"\x06\x01\x00",
        "forge_data": b"\x02\x02\x00" + bytes(8) + pack_blob(bytes(40)),
        "forge_initiation": b"\x03\x01\x01" + pack_blob(bytes(220)),
        "connects": b"\x05\x00\x05\x01\x05\x02\x04\x80\x07\x00",
        "traffic": b"\x08\x00\x08\x01\x04\x20\x06\x03\x00",
    }


def handshake_seeds() -> dict[str, bytes]:
    params = TransportParameters(rekey_index=7).encode()
    return {
        # first byte picks the target; the rest is the message or the mutation.
        "initiation_parse": b"\x00" + ManualInitiator(make_endpoint(2), seed=5).initiation,
        "params": b"\x03" + params,
        "mutate_initiation": b"\x04\x00\x10\x01",
        "mutate_response": b"\x05\x00\x20\x80",
        "noise_read": b"\x06" + bytes(100),
        "mutate_initiation_chacha": b"\x84\x00\x01\x00\x00",
        "mutate_cookie": b"\x08\x00\x00\x11\x02",
        "out_of_turn": b"\x09\x01" + bytes(48),
        "forged_initiation": b"\x0a" + bytes(64),
    }


def main() -> None:
    for name, seeds in (("session", session_seeds()), ("endpoint", endpoint_seeds()),
                        ("handshake", handshake_seeds())):
        folder = HERE / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for seed_name, data in seeds.items():
            (folder / seed_name).write_bytes(data)
        print(f"{name}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
