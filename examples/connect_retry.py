"""Connecting with exponential-backoff retry to a server that starts late.

The server's identity and port are known in advance (as they would be from a
config file), but its node starts only after ``--delay`` seconds. Meanwhile each
connect attempt fails fast: ``ConnectionRefusedError`` when the OS reports that
nothing listens on the port, ``ConnectionTimeoutError`` when the packets vanish
without an answer. The client retries with exponential backoff plus jitter until
the server answers or the overall deadline passes.

Run: python examples/connect_retry.py [--delay SECONDS] [--seed TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import time

import stt
from _common import argument_parser, run


async def connect_with_retry(node: stt.Node, address, peer_id: bytes, *, attempt_timeout=0.5,
                             initial_backoff=0.1, max_backoff=2.0, deadline=30.0) -> stt.Session:
    """``node.connect`` until it succeeds; backoff doubles after each failure."""
    backoff = initial_backoff
    give_up_at = time.monotonic() + deadline
    for attempt in range(1, 1_000_000):
        try:
            return await node.connect(address, peer_id, timeout=attempt_timeout)
        except (ConnectionRefusedError, stt.ConnectionTimeoutError) as exc:
            if time.monotonic() + backoff > give_up_at:
                raise
            wait = backoff * random.uniform(0.8, 1.2)  # jitter: clients do not retry in lockstep
            print(f"  attempt {attempt}: {type(exc).__name__}; retrying in {wait:.2f} s")
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, max_backoff)
    raise AssertionError("unreachable")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_server_late(identity: stt.Identity, seed: bytes, port: int,
                            delay: float) -> stt.Node:
    await asyncio.sleep(delay)
    node = stt.Node(identity=identity, shared_seed=seed, port=port)
    await node.start()
    print(f"server: started on port {port} after {delay:.1f} s")
    return node


async def main(args: argparse.Namespace) -> int:
    seed = args.seed
    server_identity = stt.Identity.generate()
    port = free_udp_port()
    server_task = asyncio.create_task(start_server_late(server_identity, seed, port, args.delay))
    async with stt.Node(shared_seed=seed) as client:
        print(f"client: connecting to 127.0.0.1:{port} (server not up yet)")
        started = time.monotonic()
        try:
            session = await connect_with_retry(client, ("127.0.0.1", port), server_identity.node_id)
        except (ConnectionRefusedError, stt.ConnectionTimeoutError) as exc:
            print(f"FAILED: gave up: {exc!r}")
            return 1
        print(f"client: connected after {time.monotonic() - started:.2f} s, "
              f"peer {session.peer_id.hex()[:16]}...")
        stream = session.open_stream()
        await stream.send(b"ping")
        server = await server_task
        peer = await server.accept()
        print(f"server: got {await (await peer.accept_stream()).receive()!r}")
        await session.close()
        await server.stop()
    print("connect retry OK")
    return 0


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds before the server starts")
    run(main, parser)
