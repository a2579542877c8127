"""The ``stt`` command.

* ``stt demo`` starts two nodes on loopback, connects them, sends a generated
  file with a progress bar, verifies its hash and prints the session's
  statistics.
* ``stt keygen`` writes an identity file; ``stt id`` prints a node id.
* ``stt listen`` accepts sessions: streams that start with a file header are
  saved (and verified by hash), any other stream is echoed.
* ``stt send FILE --to HOST:PORT --peer NODE_ID`` sends a file to a listener.
* ``stt ping --to HOST:PORT --peer NODE_ID`` measures round trips.
* ``stt selfcheck`` checks the installed engine's builds.

The network seed comes from ``--seed``, ``--seed-file`` or the ``STT_SEED``
environment variable; there is no default. ``--backend trio`` (before or after
the subcommand) runs the networking commands on the trio adapter instead of the
asyncio one; it needs the optional dependency (``pip install 'stt[trio]'``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time


def _sample_frames(wire) -> list:
    return [
        wire.PaddingFrame(3),
        wire.PingFrame(),
        wire.AckFrame(((900, 1000), (500, 800), (0, 10)), 250),
        wire.ResetStreamFrame(5, 8, 123_456),
        wire.StopSendingFrame(5, 8),
        wire.StreamFrame(1, 1 << 20, b"hello, peer" * 100, True),
        wire.MaxDataFrame(1 << 24),
        wire.MaxStreamDataFrame(1, 1 << 20),
        wire.DataBlockedFrame(1 << 24),
        wire.StreamDataBlockedFrame(1, 1 << 20),
        wire.PathChallengeFrame(b"\x01" * 8),
        wire.PathResponseFrame(b"\x01" * 8),
        wire.CloseFrame(0, "graceful"),
        wire.DatagramFrame(b"datagram"),
        wire.DhtFrame(b"dht message"),
    ]


def _selfcheck(args: argparse.Namespace) -> int:
    import stt_proto

    print(f"stt {stt_proto.__version__} on Python {sys.version.split()[0]}")
    print(f"wire codec loaded: {'compiled (Cython)' if stt_proto.COMPILED else 'pure Python'}")
    builds = {"pure": importlib.import_module("stt_proto._wire_py")}
    try:
        builds["compiled"] = importlib.import_module("stt_proto._wire_c")
    except ImportError:
        print("compiled build: not installed (pure Python only)")
    encodings = {}
    for name, wire in builds.items():
        frames = _sample_frames(wire)
        data = wire.encode_frames(frames)
        decoded = wire.decode_frames_untrusted(data)
        if decoded != frames:
            print(f"FAIL: {name} build does not round-trip its frames")
            return 1
        encodings[name] = data
        print(f"{name:>9} build: {len(frames)} frame types round-trip ({len(data)} bytes)")
    if len(set(encodings.values())) != 1:
        print("FAIL: the builds encode differently")
        return 1
    if len(encodings) == 2:
        print("both builds produce identical bytes")
    wire = stt_proto.wire
    frames = _sample_frames(wire)
    data = wire.encode_frames(frames)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        wire.decode_frames_untrusted(data)
        n += 1
    rate = n * len(frames) / (time.perf_counter() - start)
    print(f"decode throughput (loaded build): {rate:,.0f} frames/s")
    print("selfcheck OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import _commands

    parser = argparse.ArgumentParser(prog="stt", description="STT secure transport")
    _commands.backend_option(parser, default=_commands.BACKENDS[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("selfcheck", help="check the installed engine and its builds")
    check.add_argument("--seconds", type=float, default=0.5, help="time for the throughput figure")
    check.set_defaults(func=_selfcheck)
    _commands.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
