"""Echo handlers shared by the adapter tests; they run on asyncio and on trio (anyio)."""

from __future__ import annotations

import anyio

from stt_io.errors import STTError


async def echo_stream(stream) -> None:
    try:
        async for message in stream:
            await stream.send(message)
        await stream.close()
    except STTError:
        pass


def echo_server(node) -> None:
    """Answer every message on every stream of every inbound session with itself."""
    node.on_session(echo_session)


async def echo_session(session) -> None:
    """Echo every stream of ``session`` until it closes (a ``serve`` handler)."""
    async with anyio.create_task_group() as tasks:
        while True:
            try:
                stream = await session.accept_stream()
            except STTError:
                break
            tasks.start_soon(echo_stream, stream)
