"""The commands that run no node: ``keygen``, ``id`` and ``selfcheck``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from stt_proto.identity import Identity

from ..keys import save_identity
from . import args as cli_args
from .args import CommandError, UsageError

__all__ = ["add_parsers", "DEFAULT_IDENTITY"]

#: Where ``keygen`` writes and ``id`` reads when no file is named.
DEFAULT_IDENTITY = "stt-identity.key"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("selfcheck", help="check the installed engine and its builds",
                           description="Check that the compiled and pure builds of the wire "
                                       "codec agree, and measure decoding throughput.")
    check.add_argument("--seconds", type=cli_args.seconds, default=0.5,
                       help="time spent measuring the throughput")
    check.set_defaults(command=selfcheck_command)

    keygen = sub.add_parser("keygen", help="create an identity file (mode 0600)",
                            description="Create an identity (a key pair) in a file readable "
                                        "by its owner only; print its node id on stdout and "
                                        "where it went on stderr.")
    keygen.add_argument("--out", default=DEFAULT_IDENTITY, metavar="FILE",
                        help="where to write it")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")
    keygen.set_defaults(command=keygen_command)

    ident = sub.add_parser("id", help="print the node id of an identity file",
                           description="Print the node id (public key) of an identity file.")
    ident.add_argument("file", nargs="?", metavar="FILE",
                       help=f"the identity file (default: --identity, or {DEFAULT_IDENTITY})")
    ident.add_argument("--identity", metavar="FILE",
                       help=f"the identity file, as an option (default: {DEFAULT_IDENTITY})")
    ident.set_defaults(command=id_command)


def keygen_command(args: argparse.Namespace) -> int:
    identity = Identity.generate()
    try:
        save_identity(identity, args.out, overwrite=args.force)
    except FileExistsError:
        raise CommandError(f"--out {args.out}: exists (use --force to replace it)") from None
    except OSError as exc:
        raise CommandError(f"--out {args.out}: {exc.strerror or exc}") from None
    print(identity.node_id.hex())
    print(f"stt: wrote {os.path.abspath(args.out)} (mode 0600)", file=sys.stderr)
    return 0


def id_command(args: argparse.Namespace) -> int:
    if args.file is not None and args.identity is not None and args.file != args.identity:
        raise UsageError("id: give the identity file once (FILE or --identity)")
    path = args.file or args.identity or DEFAULT_IDENTITY
    identity = cli_args.identity(path, option="id")
    print(identity.node_id.hex())
    return 0


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


def selfcheck_command(args: argparse.Namespace) -> int:
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
