"""One end of a paced transfer, for the namespace test of a host whose address
changes (``tests/hosts/test_roaming_hosts.py``); run as a script in a host.

``receiver BACKEND``: binds 0.0.0.0, prints ``ready HOST:PORT NODE_ID``, accepts
one session and reads one stream to its end, then prints ``got BYTES SHA256
PEER_HOST`` (the address the session sends to at the end) and exits.

``sender BACKEND HOST:PORT NODE_ID CHUNKS INTERVAL``: connects, sends CHUNKS
chunks of 64 KiB, one every INTERVAL seconds, printing ``sent I`` after each
tenth, then ``done BYTES SHA256`` once the receiver has everything.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys

SEED = b"roaming hosts test network seed"
CHUNK = 64 * 1024


async def receiver(stt, sleep) -> None:
    async with stt.Node(shared_seed=SEED, host="0.0.0.0", port=0) as node:
        print(f"ready {node.address[0]}:{node.address[1]} {node.node_id.hex()}", flush=True)
        session = await node.accept()
        stream = await session.accept_stream()
        digest, total = hashlib.sha256(), 0
        async for data in stream:
            digest.update(data)
            total += len(data)
        await stream.close()
        print(f"got {total} {digest.hexdigest()} {session.peer_address[0]}", flush=True)
        stats = node.statistics()
        print("paths " + " ".join(f"{k}={v}" for k, v in stats.items() if "path" in k),
              flush=True)
        await sleep(0.5)  # our FIN and last ACKs leave before the node stops


async def sender(stt, sleep, address: str, node_id: str, chunks: int, interval: float) -> None:
    host, port = address.rsplit(":", 1)
    async with stt.Node(shared_seed=SEED, host="0.0.0.0", port=0) as node:
        session = await node.connect((host, int(port)), bytes.fromhex(node_id))
        stream = session.open_stream()
        digest, data = hashlib.sha256(), os.urandom(CHUNK)
        for i in range(chunks):
            await stream.send(data)
            digest.update(data)
            if i % 10 == 9:
                print(f"sent {i + 1}", flush=True)
            await sleep(interval)
        await stream.close()
        async for _ in stream:  # the receiver's FIN: it has everything
            pass
        print(f"done {chunks * CHUNK} {digest.hexdigest()}", flush=True)


def main(argv: list[str]) -> None:
    role, backend = argv[0], argv[1]
    stt = importlib.import_module(f"stt_io.{backend}")
    if backend == "trio":
        import trio
        run, sleep = trio.run, trio.sleep
    else:
        import asyncio
        run, sleep = asyncio.run, asyncio.sleep
    if role == "receiver":
        if backend == "trio":
            run(receiver, stt, sleep)
        else:
            run(receiver(stt, sleep))
    else:
        args = (stt, sleep, argv[2], argv[3], int(argv[4]), float(argv[5]))
        if backend == "trio":
            run(sender, *args)
        else:
            run(sender(*args))


if __name__ == "__main__":
    main(sys.argv[1:])
