"""Bidirectional streaming: both sides send and receive on one stream at once.

The client streams sensor readings up; the server streams a running average back
down while the readings are still arriving, and also pushes its own status
messages on the same stream. Each direction is closed independently: the
client's ``close()`` ends the upload, after which the server finishes its replies
and closes its side, which ends the client's ``async for``.

Run: python examples/bidirectional_streaming.py [--count N] [--seed TEXT]
"""

from __future__ import annotations

import argparse
import asyncio

import stt
from _common import argument_parser, run


async def serve(session: stt.Session) -> None:
    stream = await session.accept_stream()
    total = count = 0
    async for message in stream:  # ends when the client closes its side
        total += int(message.split()[1])
        count += 1
        await stream.send(b"avg %d %.2f" % (count, total / count))
        if count % 10 == 0:
            await stream.send(b"status %d readings so far" % count)
    await stream.send(b"done %d" % count)
    await stream.close()


async def upload(stream: stt.Stream, count: int) -> None:
    for i in range(count):
        await stream.send(b"reading %d" % i)
        await asyncio.sleep(0.005)  # a sensor does not produce all at once
    await stream.close()
    print(f"client: sent {count} readings and closed its side")


async def download(stream: stt.Stream) -> list[bytes]:
    replies = []
    async for message in stream:
        replies.append(message)
        if not message.startswith(b"avg") or len(replies) <= 3:
            print(f"client: <- {message.decode()}")
    return replies


async def main(args: argparse.Namespace) -> int:
    seed = args.seed
    async with stt.Node(shared_seed=seed) as server, stt.Node(shared_seed=seed) as client:
        server.on_session(serve)
        session = await client.connect(server.address, server.node_id)
        stream = session.open_stream()
        _, replies = await asyncio.gather(upload(stream, args.count), download(stream))

    averages = [m for m in replies if m.startswith(b"avg")]
    expected_last = b"avg %d %.2f" % (args.count, (args.count - 1) / 2)
    ok = (len(averages) == args.count and averages[-1] == expected_last
          and replies[-1] == b"done %d" % args.count)
    print(f"client: received {len(averages)} averages and "
          f"{len(replies) - len(averages) - 1} status messages; last: {averages[-1].decode()}")
    print("bidirectional streaming OK" if ok else "FAILED: unexpected replies")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--count", type=int, default=50, help="readings to stream")
    run(main, parser)
