"""Keep-alive and session monitoring with ``on_session_closed``.

1. A server runs in a child process. With a short ``keep_alive_interval`` the
   client's idle session stays open (PINGs keep it alive); then the child is
   killed with SIGKILL, so nothing answers any more, and after ``idle_timeout``
   the client's ``on_session_closed`` callback sees reason ``timeout``.
2. A node holding a different network seed is contacted: the handshake does not
   authenticate, ``connect`` raises ``AuthenticationError`` and the callback
   sees reason ``auth_failure``.

Run: python examples/keepalive_monitor.py [--idle-timeout S] [--seed TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time

import stt
from _common import argument_parser, run


async def serve(args: argparse.Namespace) -> None:
    """Child process: an echo server; prints its port and node id, runs until killed."""
    async def echo(session: stt.Session) -> None:
        stream = await session.accept_stream()
        async for message in stream:
            await stream.send(message)

    async with stt.Node(shared_seed=os.environ["STT_SEED"].encode(), idle_timeout=args.idle_timeout,
                        keep_alive_interval=args.idle_timeout / 4) as node:
        node.on_session(echo)
        print(node.address[1], node.node_id.hex(), flush=True)
        await asyncio.Event().wait()


async def monitor(args: argparse.Namespace) -> int:
    seed = args.seed
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--idle-timeout", str(args.idle_timeout),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "STT_SEED": seed.decode()})
    try:
        port, node_id = (await child.stdout.readline()).decode().split()
        async with stt.Node(shared_seed=seed, idle_timeout=args.idle_timeout,
                            keep_alive_interval=args.idle_timeout / 4) as client:
            closed: asyncio.Queue = asyncio.Queue()

            @client.on_session_closed
            def report(session_id: bytes, reason: str) -> None:
                print(f"  on_session_closed: session {session_id.hex()[:8]} reason={reason}")
                closed.put_nowait(reason)

            session = await client.connect(("127.0.0.1", int(port)), bytes.fromhex(node_id))
            stream = session.open_stream()
            await stream.send(b"are you there?")
            print(f"child server (pid {child.pid}) echoed {await stream.receive()!r}")
            sent = session.statistics()["packets_sent"]
            await asyncio.sleep(2 * args.idle_timeout)
            stats = session.statistics()
            print(f"idle for {2 * args.idle_timeout:.1f} s "
                  f"(idle_timeout {args.idle_timeout:.1f} s):"
                  f" open={not session.is_closed()}, packets sent while idle (PINGs, ACKs) "
                  f"{stats['packets_sent'] - sent}")

            child.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            print("killed the child server; waiting for the session to time out")
            reason = await asyncio.wait_for(closed.get(), 10 * args.idle_timeout)
            print(f"detected after {time.monotonic() - killed_at:.2f} s: reason {reason!r}, "
                  f"session.close_reason {session.close_reason!r}")
            timeout_ok = reason == "timeout" == session.close_reason

            other_seed = secrets.token_hex(16).encode()
            async with stt.Node(shared_seed=other_seed) as stranger:
                print("connecting to a node of another network (different seed)")
                try:
                    await client.connect(stranger.address, stranger.node_id, timeout=5)
                    auth_ok = False
                except stt.AuthenticationError as exc:
                    print(f"  connect raised AuthenticationError: {exc}")
                    auth_ok = await asyncio.wait_for(closed.get(), 1) == "auth_failure"
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    ok = timeout_ok and auth_ok
    print("keepalive monitor OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--idle-timeout", type=float, default=2.0, help="seconds (and 1/4 "
                        "of it between keep-alives)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    run(lambda args: serve(args) if args.serve else monitor(args), parser)
