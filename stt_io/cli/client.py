"""``stt send`` and ``stt ping``: the commands that dial a listener.

Both connect to ``--to`` expecting the node ``--peer``, and bound every wait
by ``--timeout``: the handshake, each reply, each send that makes no progress
(the receiver not reading), and the transfer's final answer. A wait that
passes the limit ends the command with ``stt: no ... within N s``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import AsyncIterator

from .._core import NodeBase, Session
from . import args as cli_args
from .args import CommandError
from .backends import Backend
from .progress import Progress
from .transfer import CHUNK, send_file

__all__ = ["add_parsers"]

#: Pause between two pings.
PING_INTERVAL = 0.2


def add_parsers(sub: argparse._SubParsersAction) -> None:
    send = sub.add_parser("send", help="send a file to a listener",
                          description="Send a file to 'stt listen'; the receiver checks its "
                                      "size and BLAKE2b digest before saving it.")
    cli_args.seed_options(send)
    cli_args.peer_options(send)
    send.add_argument("file", help="the file to send (saved under its base name)")
    cli_args.backend_option(send)
    send.set_defaults(command=send_command)

    ping = sub.add_parser("ping", help="round trips to a listener",
                          description="Measure round trips to 'stt listen' on one stream.")
    cli_args.seed_options(ping)
    cli_args.peer_options(ping)
    ping.add_argument("-c", "--count", type=cli_args.positive_int, default=5,
                      help="round trips to measure")
    cli_args.backend_option(ping)
    ping.set_defaults(command=ping_command)


async def _connect(node: NodeBase, args: argparse.Namespace) -> Session:
    try:
        return await node.connect(args.to, args.peer, timeout=args.timeout)
    except ValueError as exc:  # e.g. a peer id that is no X25519 public key
        raise CommandError(f"cannot connect to {args.to[0]}:{args.to[1]}: {exc}") from None


async def _close(session: Session, io: Backend, timeout: float) -> None:
    """Close gracefully, waiting at most ``timeout`` (the work is done: a peer
    that does not acknowledge the close is not an error)."""
    with contextlib.suppress(CommandError):
        await io.within(timeout, session.close(), "close acknowledgement")


async def _file_chunks(path: str, io: Backend) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
            await io.sleep(0)


async def send_command(args: argparse.Namespace, io: Backend) -> int:
    path = args.file
    if not os.path.isfile(path):
        raise CommandError(f"{path}: {'not a file' if os.path.exists(path) else 'no such file'}")
    size = os.path.getsize(path)
    seed = cli_args.network_seed(args)
    identity = cli_args.identity(args.identity)
    name = os.path.basename(path)
    async with io.Node(identity, seed) as node:
        session = await _connect(node, args)
        progress = Progress(size, name)
        try:
            digest = await send_file(session, io, name, _file_chunks(path, io), size,
                                     timeout=args.timeout, progress=progress)
        except BaseException:
            progress.abort()
            raise
        elapsed = progress.finish()
        print(f"sent {size:,} bytes in {elapsed:.2f} s ({size / elapsed / 1e6:.1f} MB/s), "
              f"blake2b {digest[:16]}... verified by the receiver")
        await _close(session, io, args.timeout)
    return 0


async def ping_command(args: argparse.Namespace, io: Backend) -> int:
    seed = cli_args.network_seed(args)
    identity = cli_args.identity(args.identity)
    async with io.Node(identity, seed) as node:
        start = time.perf_counter()
        session = await _connect(node, args)
        print(f"connected in {(time.perf_counter() - start) * 1e3:.2f} ms", flush=True)
        stream = session.open_stream()
        rtts = []
        for i in range(args.count):
            start = time.perf_counter()
            await io.within(args.timeout, stream.send(b"ping %d" % i), f"progress sending ping {i}")
            await io.within(args.timeout, stream.receive(), f"reply to ping {i}")
            rtts.append((time.perf_counter() - start) * 1e3)
            print(f"reply {i}: {rtts[-1]:.3f} ms", flush=True)
            if i + 1 < args.count:
                await io.sleep(PING_INTERVAL)
        print(f"min/avg/max {min(rtts):.3f}/{sum(rtts) / len(rtts):.3f}/{max(rtts):.3f} ms")
        with contextlib.suppress(CommandError):
            await io.within(args.timeout, stream.close(), "stream close")
        await _close(session, io, args.timeout)
    return 0
