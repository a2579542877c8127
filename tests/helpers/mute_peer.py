"""A peer for ``tests/cli`` that never answers: it accepts every session and
reads every stream to its end, and sends nothing back.

Usage: ``python tests/helpers/mute_peer.py SEED``; prints ``PORT NODE_ID``,
then runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

import stt


async def drain(stream: stt.Stream) -> None:
    try:
        async for _ in stream:
            pass
    except stt.STTError:
        pass


async def serve(session: stt.Session) -> None:
    tasks = set()
    while True:
        try:
            stream = await session.accept_stream()
        except stt.STTError:
            return
        task = asyncio.ensure_future(drain(stream))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main(seed: bytes) -> None:
    async with stt.Node(shared_seed=seed) as node:
        node.on_session(serve)
        print(node.address[1], node.node_id.hex(), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].encode()))
