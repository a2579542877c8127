"""An asyncio node and a trio node, in two processes, over real UDP on 127.0.0.1.

Each direction runs once: a trio client against an asyncio server and an
asyncio client against a trio server (the server is ``interop_peer.py``, whose
docstring describes the tiny protocol). They complete a handshake, then run
request-response, bidirectional streaming and a 100 MiB transfer verified by
hash.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import stt_io.asyncio
import stt_io.trio

SEED = b"interop test network seed"
PEER = Path(__file__).resolve().parents[1] / "helpers" / "interop_peer.py"

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"], ids=["asyncio-client", "trio-client"])
def anyio_backend(request):
    return request.param


@pytest.fixture
def server(anyio_backend):
    """The peer process, on the *other* backend: ``(port, node_id, backend)``."""
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    proc = subprocess.Popen([sys.executable, str(PEER), other, SEED.decode()],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line, "the interop peer did not start"
        yield int(line[0]), bytes.fromhex(line[1]), other
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


async def test_request_response_streaming_and_100_mib(anyio_backend, server):
    port, node_id, other = server
    Node = (stt_io.trio if anyio_backend == "trio" else stt_io.asyncio).Node
    with anyio.fail_after(120):
        async with Node(shared_seed=SEED) as node:
            session = await node.connect(("127.0.0.1", port), node_id)
            assert session.peer_id == node_id

            # request-response
            echo = session.open_stream()
            await echo.send(b"E")
            for i in range(200):
                request = os.urandom(i * 37 % 3000)
                await echo.send(request)
                assert await echo.receive() == request
            await echo.close()
            assert [m async for m in echo] == []

            # bidirectional streaming: both sides send at once
            both = session.open_stream()
            await both.send(b"S" + struct.pack(">I", 500))
            up = [b"up %d " % i * (i % 40) for i in range(400)]
            down = []

            async def produce():
                for message in up:
                    await both.send(message)
                await both.close()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(produce)
                down = [m async for m in both]
            assert down[:-1] == [b"down %d" % i for i in range(500)]
            assert down[-1] == hashlib.blake2b(b"".join(up)).digest()

            # 100 MiB, verified by hash
            size = 100 * 1024 * 1024
            block = os.urandom(1024 * 1024)
            bulk = session.open_stream()
            await bulk.send(b"B" + struct.pack(">Q", size))
            expected = hashlib.blake2b()
            for i in range(size // len(block)):
                chunk = block[i:] + block[:i]  # every MiB differs
                await bulk.send(chunk)
                expected.update(chunk)
            await bulk.close()
            answer = await bulk.receive()
            assert answer[:64] == expected.digest()
            assert struct.unpack(">QQ", answer[64:]) == (size, size)

            await session.close()
            assert session.close_reason == "graceful"
