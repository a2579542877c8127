"""What only the trio adapter has: its idioms, cancellation, virtual time.

The scenarios both adapters share are in ``test_adapters.py``. Here: serving
with ``nursery.start``, no ``ExceptionGroup`` ever reaching the caller,
cancellation-safe ``receive``, the FIFO send lock, the ``HalfCloseableStream``
view (checked with trio's own conformance tests), and timeouts driven by
``trio.testing.MockClock`` over real sockets.
"""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from stt_io.errors import ConnectionTimeoutError, SessionClosedError, STTError
from stt_io.trio import ByteStream, Node
from stt_proto.identity import Identity

from ..helpers.echo import echo_session as echo

SEED = b"trio adapter test network seed"


def run(fn, *args, clock=None, timeout: float = 60.0):
    async def bounded():
        with trio.fail_after(timeout):
            return await fn(*args)
    return trio.run(bounded, clock=clock)


def test_no_exception_group_reaches_the_caller():
    async def main():
        with pytest.raises(KeyError) as info:  # exactly the body's exception
            async with Node(shared_seed=SEED) as node:
                node.on_session(lambda session: _raise())
                raise KeyError("from the body")
        assert type(info.value) is KeyError
        # Cancelled from outside while serving: a plain cancellation, no group.
        with trio.move_on_after(0.2) as scope:
            async with Node(shared_seed=SEED) as node:
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.serve, echo)
                    await trio.sleep_forever()
        assert scope.cancelled_caught

    run(main)


async def _raise():
    raise RuntimeError("never reached: no session is made")


def test_a_cancelled_receive_loses_no_message():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            inbound = trio.Event()
            box = []

            @server.on_session
            async def keep(session):
                box.append(session)
                inbound.set()

            session = await client.connect(server.address, server.node_id)
            await inbound.wait()
            stream = session.open_stream()
            sent = [b"message %d" % i for i in range(300)]

            async def produce():
                for i, message in enumerate(sent):
                    await stream.send(message)
                    if i % 7 == 0:
                        await trio.sleep(0.001)
                await stream.close()

            received, cancelled, attempt = [], 0, 0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                peer_stream = await box[0].accept_stream()
                while True:
                    # Deadlines that often expire while receive() waits, and
                    # some that are already past when it starts.
                    attempt += 1
                    with trio.move_on_after(0.0005 if attempt % 3 else 0) as scope:
                        try:
                            received.append(await peer_stream.receive())
                        except STTError:
                            break
                    cancelled += scope.cancelled_caught
            assert received == sent
            assert cancelled > 0

    run(main)


def test_concurrent_senders_keep_their_order():
    async def main():
        # A small send buffer and no reader: the first send blocks holding the
        # lock, the others queue behind it in the order they called send().
        async with Node(shared_seed=SEED) as server, \
                Node(shared_seed=SEED, max_send_buffer=64 * 1024, stream_window=64 * 1024) \
                as client:
            box = []
            server.on_session(lambda session: _keep(box, session))
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            big = b"B" * (200 * 1024)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send, big)
                await trio.testing.wait_all_tasks_blocked()
                for i in range(5):
                    nursery.start_soon(stream.send, b"small %d" % i)
                    await trio.testing.wait_all_tasks_blocked()
                while not box:
                    await trio.sleep(0.01)
                peer_stream = await box[0].accept_stream()
                got = [await peer_stream.receive() for _ in range(6)]
            assert got == [big] + [b"small %d" % i for i in range(5)]

    run(main)


async def _keep(box, session):
    box.append(session)


def test_the_byte_stream_view_conforms_to_trio_half_closeable_stream():
    async def main():
        nodes = []

        async def pair():
            server, client = Node(shared_seed=SEED), Node(shared_seed=SEED)
            for node in (server, client):
                await node.start()
                nodes.append(node)
            session = await client.connect(server.address, server.node_id)
            view = session.open_stream().as_byte_stream()
            await view.send_all(b"!")  # the peer learns about the stream
            inbound = await server.accept()
            peer_view = (await inbound.accept_stream()).as_byte_stream()
            assert await peer_view.receive_some() == b"!"
            return view, peer_view

        try:
            await trio.testing.check_half_closeable_stream(pair, None)
        finally:
            for node in nodes:
                await node.stop()

    run(main, timeout=120)


def test_byte_stream_sees_a_reset_as_broken():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            await stream.send(b"x")
            peer = await (await server.accept()).accept_stream()
            view = peer.as_byte_stream()
            assert isinstance(view, ByteStream)
            assert await view.receive_some() == b"x"
            await stream.reset(7)
            with pytest.raises(trio.BrokenResourceError):
                await view.receive_some()
            await view.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await view.receive_some()

    run(main)


# -- virtual time: MockClock drives the engine's timers over real sockets ----------------


def test_connect_timeout_runs_on_virtual_time():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            start = trio.current_time()
            with pytest.raises(ConnectionTimeoutError):
                await client.connect(server.address, Identity.generate().node_id, timeout=30)
            assert 30 <= trio.current_time() - start < 31

    wall = time.monotonic()
    run(main, clock=trio.testing.MockClock(autojump_threshold=0.01))
    assert time.monotonic() - wall < 20  # 30 virtual seconds did not take 30 real ones


def test_keep_alive_holds_an_idle_session_and_a_dead_peer_times_out():
    async def main():
        async with Node(shared_seed=SEED, idle_timeout=5.0, keep_alive_interval=1.0) as server, \
                Node(shared_seed=SEED, idle_timeout=5.0, keep_alive_interval=1.0) as client:
            closed = []
            client.on_session_closed(lambda sid, reason: closed.append((reason, trio.current_time())))
            session = await client.connect(server.address, server.node_id)
            await trio.sleep(60)  # twelve idle timeouts: keep-alives hold it open
            assert not session.is_closed() and closed == []
            # The server dies without a word: its tasks stop, its socket stays.
            server._scope.cancel()
            died = trio.current_time()
            with pytest.raises(SessionClosedError) as info:
                await session.accept_stream()
            assert info.value.reason == "timeout"
            assert closed[0][0] == "timeout"
            assert 4.0 <= closed[0][1] - died <= 6.5

    # The deadline of run() is virtual time here too.
    run(main, clock=trio.testing.MockClock(autojump_threshold=0.01), timeout=600)


def test_every_await_honours_trio_timeouts():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            with trio.move_on_after(0.2) as scope:
                await server.accept()
            assert scope.cancelled_caught
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            with trio.move_on_after(0.2) as scope:
                await stream.receive()
            assert scope.cancelled_caught
            with pytest.raises(trio.TooSlowError):
                with trio.fail_after(0.2):
                    await session.accept_stream()
            with trio.move_on_after(0.2) as scope:
                await session.receive_datagram()
            assert scope.cancelled_caught

    run(main)


def test_every_async_method_is_a_cancellation_point_that_changes_nothing():
    async def main():
        async with Node(shared_seed=SEED) as server, Node(shared_seed=SEED) as client:
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            await stream.send(b"first")
            inbound = await server.accept()
            peer = await inbound.accept_stream()
            await peer.send(b"waiting")
            await trio.sleep(0.1)  # "waiting" is queued on our side
            calls = [lambda: stream.send(b"cancelled"), stream.receive, stream.close,
                     lambda: stream.reset(1), session.accept_stream, session.receive_datagram,
                     server.accept, session.close]
            for call in calls:
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await call()
                assert scope.cancelled_caught, call
            assert not stream.is_closed() and not session.is_closed()
            assert await stream.receive() == b"waiting"  # nothing was taken
            await stream.send(b"second")
            assert await peer.receive() == b"first"
            assert await peer.receive() == b"second"  # nothing was sent

    run(main)


def test_wait_send_all_might_not_block_waits_for_room():
    async def main():
        async with Node(shared_seed=SEED) as server, \
                Node(shared_seed=SEED, max_send_buffer=64 * 1024, stream_window=64 * 1024) \
                as client:
            session = await client.connect(server.address, server.node_id)
            view = session.open_stream().as_byte_stream()
            await view.wait_send_all_might_not_block()  # empty buffer: at once
            await view.send_all(b"x" * (200 * 1024))  # past the window and the buffer
            with trio.move_on_after(0.3) as scope:
                await view.wait_send_all_might_not_block()
            assert scope.cancelled_caught  # full, and nobody reads
            peer = (await (await server.accept()).accept_stream()).as_byte_stream()
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    async def drain():
                        got = 0
                        while got < 200 * 1024:
                            got += len(await peer.receive_some())
                    nursery.start_soon(drain)
                    await view.wait_send_all_might_not_block()  # room again

    run(main)


def test_serve_and_on_session_handlers_exclude_each_other():
    async def main():
        async with Node(shared_seed=SEED) as node:
            node.on_session(echo)
            async with trio.open_nursery() as nursery:
                with pytest.raises(RuntimeError):
                    await nursery.start(node.serve, echo)

    run(main)
