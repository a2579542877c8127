"""``stt demo``: two nodes on loopback connect, send a file, verify it."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import AsyncIterator

from . import args as cli_args
from .backends import Backend
from .listen import serve_session
from .progress import Progress
from .transfer import CHUNK, send_file

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="two nodes on loopback: connect, send a file, verify",
                          description="Start two nodes on loopback, connect them, send a "
                                      "generated file, verify its digest and print the "
                                      "session's statistics.")
    demo.add_argument("--mib", type=cli_args.positive_int, default=64,
                      help="size of the generated file, in MiB")
    cli_args.backend_option(demo)
    demo.set_defaults(command=demo_command)


async def _generated(size: int) -> AsyncIterator[bytes]:
    block = os.urandom(CHUNK)
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        yield block[:n]
        sent += n


async def demo_command(args: argparse.Namespace, io: Backend) -> int:
    # The demo makes up a seed for its own two nodes; real networks pass one in.
    seed = os.urandom(32)
    size = args.mib * 1024 * 1024
    async with io.Node(shared_seed=seed) as server, io.Node(shared_seed=seed) as client:
        print(f"backend {io.name} ({io.Node.__module__})")
        print(f"server {server.address[0]}:{server.address[1]} "
              f"node id {server.node_id.hex()[:16]}...")
        print(f"client {client.address[0]}:{client.address[1]} "
              f"node id {client.node_id.hex()[:16]}...")
        server.on_session(lambda session: serve_session(session, None, log=lambda m: None))
        start = time.perf_counter()
        session = await client.connect(server.address, server.node_id)
        print(f"session established in {(time.perf_counter() - start) * 1e3:.2f} ms "
              f"(Noise IKpsk2; the server's node id is authenticated)")
        progress = Progress(size, f"sending {args.mib} MiB")
        try:
            digest = await send_file(session, io, "demo.bin", _generated(size), size,
                                     progress=progress)
        except BaseException:
            progress.abort()
            raise
        elapsed = progress.finish()
        print(f"hash verified by the receiver: blake2b {digest[:32]}...")
        print(f"throughput {size / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s)")
        stats = session.statistics()
        rtt_min = stats["rtt_min"]
        print("session statistics:")
        for label, value in [
            ("rtt smoothed / min", f"{stats['rtt_smoothed'] * 1e3:.3f} ms / "
                                   f"{(rtt_min or 0) * 1e3:.3f} ms"),
            ("congestion control", f"{stats['congestion_control']}, window "
                                   f"{stats['congestion_window']:,} bytes"),
            ("packets sent / received", f"{stats['packets_sent']:,} / "
                                        f"{stats['packets_received']:,}"),
            ("bytes sent / received", f"{stats['bytes_sent']:,} / {stats['bytes_received']:,}"),
            ("packets lost / bytes retransmitted", f"{stats['packets_lost']:,} / "
                                                   f"{stats['bytes_retransmitted']:,}"),
            ("streams open", f"{stats['streams_open']}"),
        ]:
            print(f"  {label:<36} {value}")
        await session.close()
        print(f"session closed: {session.close_reason}")
    print("demo OK")
    return 0
