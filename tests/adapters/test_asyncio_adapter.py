"""What only the asyncio adapter has: its byte view's ``StreamReader`` and
``StreamWriter`` API, and ``serve`` in asyncio's own terms.

The scenarios both adapters share (including the byte view's round trip, its
end of stream, and ``serve``) are in ``test_adapters.py``. Real UDP sockets on
127.0.0.1; every test has an overall deadline.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from stt_io.asyncio import ByteStream, Node
from stt_io.errors import StreamClosedError, StreamResetError

SEED = b"asyncio adapter test network seed"


def run(fn, timeout: float = 60.0):
    async def bounded():
        return await asyncio.wait_for(fn(), timeout)
    return asyncio.run(bounded())


async def _pair(server, client, **view_options):
    """A stream between the two nodes: the client's byte view and the server's stream."""
    session = await client.connect(server.address, server.node_id, new=True)
    stream = session.open_stream()
    view = stream.as_byte_stream(**view_options)
    view.write(b"!")  # the peer learns about the stream
    await view.drain()
    peer = await (await server.accept()).accept_stream()
    assert await peer.receive() == b"!"
    return view, peer


async def line_service(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Written for asyncio.start_server's (reader, writer): upper-cases each line."""
    async for line in reader:
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_the_view_serves_code_written_for_a_reader_writer_pair():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            async def handle(session):
                stream = await session.accept_stream()
                view = stream.as_byte_stream()
                await line_service(view, view)

            server.on_session(handle)
            session = await client.connect(server.address, server.node_id)
            view = session.open_stream().as_byte_stream()
            assert isinstance(view, ByteStream)
            assert view.get_extra_info("peername") == server.address
            assert view.get_extra_info("peer_id") == server.node_id
            view.writelines([b"first line\nsec", b"ond line\n", b"no newline at the end"])
            view.write_eof()
            await view.drain()
            assert await view.readline() == b"FIRST LINE\n"
            assert await view.readuntil(b"\n") == b"SECOND LINE\n"
            assert not view.at_eof()
            assert await view.read() == b"NO NEWLINE AT THE END"  # read() runs to the end
            assert view.at_eof()
            assert await view.readline() == b""
            view.close()
            await view.wait_closed()

    run(main)


def test_readexactly_and_readuntil_across_message_boundaries_and_at_the_end():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            view, peer = await _pair(server, client)
            # The peer sends messages; the view sees one byte sequence.
            for message in (b"\x00\x05hel", b"lo", b"", b"\x00\x03abc|tail"):
                await peer.send(message)
            await peer.close()
            header = await view.readexactly(2)
            assert await view.readexactly(int.from_bytes(header, "big")) == b"hello"
            header = await view.readexactly(2)
            assert await view.readexactly(int.from_bytes(header, "big")) == b"abc"
            assert await view.readexactly(0) == b""
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await view.readuntil(b"\r\n")
            assert info.value.partial == b"|tail" and info.value.expected is None
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await view.readexactly(1)
            assert info.value.partial == b"" and info.value.expected == 1
            assert view.at_eof()
            assert await view.read(10) == b""

    run(main)


def test_lines_longer_than_the_limit_are_refused_as_streamreader_does():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            view, peer = await _pair(server, client, limit=16)
            await peer.send(b"x" * 40 + b"\nshort\n")
            with pytest.raises(asyncio.LimitOverrunError):
                await view.readuntil(b"\n")
            assert await view.readexactly(4) == b"xxxx"  # readuntil kept the bytes
            with pytest.raises(ValueError, match="limit"):
                await view.readline()  # readline drops what it had of the long line
            await peer.send(b"next\n")
            assert await view.readline() == b"next\n"
            with pytest.raises(ValueError):
                view.stream.as_byte_stream(limit=0)

    run(main)


def test_write_never_waits_and_what_the_buffer_refused_goes_out_without_drain():
    async def main():
        async with Node(shared_seed=SEED, max_send_buffer=64 * 1024,
                        stream_window=64 * 1024) as server, \
                Node(shared_seed=SEED, max_send_buffer=64 * 1024,
                     stream_window=64 * 1024) as client:
            view, peer = await _pair(server, client)
            payload = os.urandom(2 * 1024 * 1024)
            for i in range(0, len(payload), 32 * 1024):
                view.write(payload[i:i + 32 * 1024])  # never waits
            held = view.get_write_buffer_size()
            assert held > len(payload) // 2  # far beyond the 64 KiB send buffer
            view.write_eof()
            # Nobody drains: the held bytes follow as the peer reads.
            received = bytearray()
            while True:
                try:
                    received += await peer.receive()
                except StreamClosedError:
                    break
            assert bytes(received) == payload
            assert view.get_write_buffer_size() == 0
            await view.drain()  # nothing held: at once

    run(main)


def test_drain_waits_for_room_and_several_tasks_may_drain():
    async def main():
        async with Node(shared_seed=SEED, max_send_buffer=64 * 1024,
                        stream_window=64 * 1024) as server, \
                Node(shared_seed=SEED, max_send_buffer=64 * 1024,
                     stream_window=64 * 1024) as client:
            view, peer = await _pair(server, client)
            for _ in range(16):  # the engine takes what fits, the view holds the rest
                view.write(bytes(32 * 1024))
            assert view.get_write_buffer_size() > 0
            drains = [asyncio.ensure_future(view.drain()) for _ in range(2)]
            await asyncio.sleep(0.2)
            assert not any(d.done() for d in drains)  # nobody reads: no room
            got = 0
            while got < 512 * 1024:
                got += len(await peer.receive())
            await asyncio.gather(*drains)
            assert view.get_write_buffer_size() == 0

    run(main)


def test_a_reset_is_a_connection_reset_and_close_wakes_a_blocked_reader():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            view, peer = await _pair(server, client)
            reader = asyncio.ensure_future(view.read(100))
            await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError, match="another task is receiving"):
                await view.read(1)
            await peer.reset(9)
            with pytest.raises(ConnectionResetError) as info:
                await reader
            assert isinstance(info.value.__cause__, StreamResetError)
            assert info.value.__cause__.error_code == 9

            view, peer = await _pair(server, client)
            reader = asyncio.ensure_future(view.readexactly(10))
            await asyncio.sleep(0.05)
            view.write(b"last words")
            view.close()
            assert view.is_closing()
            with pytest.raises(RuntimeError, match="closed"):
                await reader
            await view.wait_closed()
            with pytest.raises(RuntimeError, match="closed"):
                view.write(b"more")
            with pytest.raises(RuntimeError, match="closed"):
                await view.read()
            # What was written before close() arrives, then the end.
            assert await peer.receive() == b"last words"
            with pytest.raises(StreamClosedError):
                await peer.receive()

    run(main)


def test_write_after_write_eof_is_refused():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            view, peer = await _pair(server, client)
            assert view.can_write_eof()
            view.write_eof()
            with pytest.raises(RuntimeError, match="write_eof"):
                view.write(b"late")
            with pytest.raises(StreamClosedError):
                await peer.receive()

    run(main)


def test_serve_reports_handler_errors_to_the_loop_and_ends_with_the_node():
    async def main():
        reported = []
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: reported.append(context))
        async with Node(shared_seed=SEED) as client:
            server = Node(shared_seed=SEED)
            await server.start()

            async def handler(session):
                raise KeyError("handler bug")

            serving = asyncio.ensure_future(server.serve(handler))
            await client.connect(server.address, server.node_id)
            await asyncio.sleep(0.1)
            assert not serving.done()  # the handler's error did not end serving
            await server.stop()
            assert await asyncio.wait_for(serving, 5) is None  # returns once the node stops
        assert [c["message"] for c in reported] == ["exception in an STT session handler"]
        assert isinstance(reported[0]["exception"], KeyError)

    run(main)
