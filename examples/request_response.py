"""Request/response: one short-lived stream per request.

A server node answers every stream it is given: it reads one request message,
sends one response message and closes its side. The client opens a fresh stream
per request, which is cheap (no round trip; the stream id travels with the first
message) and keeps slow requests from holding up fast ones.

Run: python examples/request_response.py [--requests N] [--seed TEXT]
The network seed comes from --seed or STT_SEED; without either, a random seed is
generated for this run (both nodes live in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import stt
from _common import argument_parser, run


async def handle_session(session: stt.Session) -> None:
    """Serve every stream of one session until the peer goes away."""
    requests: set[asyncio.Task] = set()  # keep references: the loop holds tasks weakly
    while True:
        try:
            stream = await session.accept_stream()
        except stt.SessionClosedError:
            return
        task = asyncio.create_task(handle_request(stream))
        requests.add(task)
        task.add_done_callback(requests.discard)


async def handle_request(stream: stt.Stream) -> None:
    try:
        request = await stream.receive()
        name, _, arg = request.decode().partition(" ")
        if name == "upper":
            await stream.send(arg.upper().encode())
        elif name == "reverse":
            await stream.send(arg[::-1].encode())
        else:
            await stream.send(b"error: unknown request " + name.encode())
        await stream.close()
    except stt.STTError as exc:
        print(f"server: request failed: {exc!r}")


async def call(session: stt.Session, request: str) -> str:
    stream = session.open_stream()
    await stream.send(request.encode())
    await stream.close()  # no more requests on this stream
    return (await stream.receive()).decode()


async def main(args: argparse.Namespace) -> int:
    seed = args.seed
    async with stt.Node(shared_seed=seed) as server, stt.Node(shared_seed=seed) as client:
        server.on_session(handle_session)
        print(f"server {server.node_id.hex()[:16]}... listening on {server.address}")
        session = await client.connect(server.address, server.node_id)
        print(f"client connected: session {session.session_id.hex()[:8]}")

        words = ["hello", "secure", "udp", "transport"]
        failures = 0
        started = time.perf_counter()
        for i in range(args.requests):
            word = words[i % len(words)]
            request = f"{'upper' if i % 2 == 0 else 'reverse'} {word}"
            expected = word.upper() if i % 2 == 0 else word[::-1]
            response = await call(session, request)
            ok = response == expected
            failures += not ok
            print(f"  {request!r:22} -> {response!r}{'' if ok else '  MISMATCH'}")
        elapsed = time.perf_counter() - started

        # Requests on separate streams may also run concurrently.
        burst = await asyncio.gather(*(call(session, f"upper r{i}") for i in range(20)))
        failures += burst != [f"R{i}" for i in range(20)]
        print(f"20 concurrent requests answered in order: {burst == [f'R{i}' for i in range(20)]}")

        print(f"{args.requests} sequential requests in {elapsed * 1000:.1f} ms; "
              f"smoothed RTT {session.statistics()['rtt_smoothed'] * 1000:.2f} ms")
        await session.close()
        print(f"session closed: {session.close_reason}")
    if failures:
        print(f"FAILED: {failures} wrong responses")
        return 1
    print("request-response OK")
    return 0


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--requests", type=int, default=8, help="sequential requests")
    run(main, parser)
