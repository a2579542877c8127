"""The other process of ``test_interop.py``: an STT node on the backend named
on the command line, serving the interop protocol until killed.

Usage: ``python tests/interop_peer.py asyncio|trio SEED``; prints ``PORT NODE_ID``.

The first message of each stream the client opens says what the stream is for:

* ``E``: echo every message back, then end the stream when the client does;
* ``B`` + 8-byte length: bulk; hash (BLAKE2b) what arrives, and when the client
  ends its side answer with the digest and the byte count, then end;
* ``S`` + 4-byte count: bidirectional; send ``count`` messages ``down <i>``
  while receiving the client's messages, then one last message with the
  digest of everything received, then end.
"""

from __future__ import annotations

import hashlib
import struct
import sys

import anyio


async def serve_stream(stream) -> None:
    from stt_io.errors import STTError
    try:
        header = await stream.receive()
        kind = header[:1]
        if kind == b"E":
            async for message in stream:
                await stream.send(message)
        elif kind == b"B":
            (expected,) = struct.unpack(">Q", header[1:9])
            digest, total = hashlib.blake2b(), 0
            async for chunk in stream:
                digest.update(chunk)
                total += len(chunk)
            await stream.send(digest.digest() + struct.pack(">QQ", total, expected))
        elif kind == b"S":
            (count,) = struct.unpack(">I", header[1:5])
            digest = hashlib.blake2b()

            async def produce() -> None:
                for i in range(count):
                    await stream.send(b"down %d" % i)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(produce)
                async for message in stream:
                    digest.update(message)
            await stream.send(digest.digest())
        await stream.close()
    except STTError:
        pass


async def main(backend: str, seed: bytes) -> None:
    if backend == "trio":
        from stt_io.trio import Node
    else:
        from stt_io.asyncio import Node
    async with Node(shared_seed=seed) as node:
        async with anyio.create_task_group() as tasks:
            @node.on_session
            async def handle(session) -> None:
                from stt_io.errors import STTError
                while True:
                    try:
                        stream = await session.accept_stream()
                    except STTError:
                        return
                    tasks.start_soon(serve_stream, stream)

            print(node.address[1], node.node_id.hex(), flush=True)
            await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2].encode(), backend=sys.argv[1])
