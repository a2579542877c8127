"""The byte views of both adapters behind one set of calls, for the scenario suite.

``stream.as_byte_stream()`` is a ``trio.abc.HalfCloseableStream`` on trio and a
``StreamReader``/``StreamWriter`` look-alike on asyncio; these helpers speak
each one's own API, so a scenario runs unchanged on both.
"""

from __future__ import annotations

import stt_io.asyncio


def is_asyncio(view) -> bool:
    return isinstance(view, stt_io.asyncio.ByteStream)


async def send_all(view, data: bytes) -> None:
    if is_asyncio(view):
        view.write(data)
        await view.drain()
    else:
        await view.send_all(data)


async def send_eof(view) -> None:
    if is_asyncio(view):
        view.write_eof()
        await view.drain()
    else:
        await view.send_eof()


async def receive_some(view, max_bytes: int = 65536) -> bytes:
    """Up to ``max_bytes``; ``b""`` at the peer's end."""
    if is_asyncio(view):
        return await view.read(max_bytes)
    return await view.receive_some(max_bytes)


async def receive_all(view) -> bytes:
    """Everything until the peer's end."""
    received = bytearray()
    while chunk := await receive_some(view):
        received += chunk
    return bytes(received)


async def aclose(view) -> None:
    if is_asyncio(view):
        view.close()
        await view.wait_closed()
    else:
        await view.aclose()


def broken_error(view) -> type[Exception]:
    """What the view raises once its stream broke (reset, session closed)."""
    if is_asyncio(view):
        return ConnectionResetError
    import trio
    return trio.BrokenResourceError


def closed_error(view) -> type[Exception]:
    """What the view raises when used after its own close."""
    if is_asyncio(view):
        return RuntimeError
    import trio
    return trio.ClosedResourceError


async def echo_bytes(view) -> None:
    """Send back everything received, then end this side at the peer's end."""
    while data := await receive_some(view):
        await send_all(view, data)
    await send_eof(view)
