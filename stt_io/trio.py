"""The trio adapter: :class:`Node`, :class:`Session` and :class:`Stream`.

The same classes, methods, errors, close reasons and defaults as
:mod:`stt_io.asyncio` (the shared logic is :mod:`stt_io._core`), in trio's
idioms:

* ``async with Node(...) as node`` binds the socket and runs the node's tasks
  (socket reader, timer, writer while a backlog waits, session handlers) in a
  nursery the node owns. Leaving the block stops the node; the block itself is
  never cancelled by the node, and no ``ExceptionGroup`` from the node's
  nursery reaches the caller: a handler's exception is logged (logger
  ``stt``) and the node carries on.
  ``await node.start()`` / ``await node.stop()`` do the same without a block
  (the node's nursery then lives in a trio system task).
* ``await nursery.start(node.serve, handler)`` serves inbound sessions, one
  ``handler(session)`` task each in ``serve``'s own nursery, until cancelled;
  ``task_status.started()`` reports the node's address.
* Every blocking method is a checkpoint and can be wrapped in
  ``trio.move_on_after``/``fail_after``. Cancelling ``Stream.receive`` loses no
  message; cancelling ``Stream.send`` before it returns means the message was
  not queued, or was queued whole.
* Concurrent ``send`` calls on one stream go in call order (a FIFO lock).
* :meth:`Stream.as_byte_stream` returns a ``trio.abc.HalfCloseableStream`` view
  of a stream, for code written for trio streams.

Queues are bounded as in the asyncio adapter (see :mod:`stt_io._core`): by
flow control for messages, by ``max_streams`` and ``max_sessions`` for what
waits to be accepted.

The engine's clock is ``trio.current_time()``, so ``trio.testing.MockClock``
drives timeouts, keep-alives and retransmissions in tests.
"""

from __future__ import annotations

import math
import operator
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._arguments import check_handler
from ._bytestream import ByteStreamBase
from ._core import (
    MAX_QUEUED_DATAGRAMS,
    NodeBase,
    Session,
    loopback_datagram_size,
    run_handler,
)
from ._core import Stream as _CoreStream
from ._dht import DHTNode, KademliaDHTBase
from ._content import ContentDistributionBase
from ._pubsub import PubSubManagerBase, Subscription, TopicGap, TopicMessage
from .errors import NodeStoppedError

__all__ = ["Node", "Session", "Stream", "ByteStream", "KademliaDHT", "DHTNode",
           "PubSubManager", "ContentDistribution", "Subscription", "TopicMessage", "TopicGap",
           "MAX_QUEUED_DATAGRAMS",
           "loopback_datagram_size"]

Address = tuple

#: How long the writer backs off when the device queue is full (ENOBUFS).
_BACKLOG_RETRY = 0.001


class _Signal:
    """A clearable "look again" event: ``wait`` parks until the next ``set``."""

    __slots__ = ("_lot",)

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()

    def set(self) -> None:
        if self._lot:
            self._lot.unpark_all()

    def clear(self) -> None:
        pass  # waiting always starts afresh: park() waits for the next set()

    async def wait(self) -> None:
        await self._lot.park()


class Stream(_CoreStream):
    __doc__ = _CoreStream.__doc__

    def as_byte_stream(self) -> ByteStream:
        """This stream as a ``trio.abc.HalfCloseableStream``: ``send_all`` sends
        bytes (the peer receives them in chunks, not as messages), ``send_eof``
        ends this side, ``receive_some`` returns ``b""`` at the peer's end."""
        return ByteStream(self)


class Node(NodeBase):
    """One STT node on trio: an identity, a UDP socket, and its sessions.

    See :class:`stt_io._core.NodeBase` for the arguments and the methods both
    adapters share (``connect``, ``accept``, ``on_session``,
    ``on_session_closed``, ``statistics``, ``identity``); :meth:`serve` is
    trio's own.
    """

    _stream_class = Stream

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nursery: trio.Nursery | None = None  # the node's own tasks
        self._scope: trio.CancelScope | None = None
        self._runner_done: trio.Event | None = None
        self._outer: Any = None  # the caller's nursery context (async with)
        self._timer_scope: trio.CancelScope | None = None
        self._timer_deadline = math.inf
        self._writer_active = False

    __init__.__doc__ = NodeBase.__init__.__doc__

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> Address:
        """Bind the socket and start serving; returns the bound ``(host, port)``.
        The node's tasks run in a trio system task until :meth:`stop` (prefer
        ``async with Node(...)``, which keeps them in the caller's task tree)."""
        if self._running:
            return self.address
        address = self._open()
        self._runner_done = trio.Event()
        ready = trio.Event()
        trio.lowlevel.spawn_system_task(self._run, ready, name=f"stt node {address}")
        try:
            await ready.wait()
        except BaseException:  # cancelled while starting: leave nothing behind
            await self.stop()
            raise
        return address

    async def __aenter__(self) -> Node:
        if self._running:
            raise RuntimeError("this node is already running")
        self._open()
        self._runner_done = trio.Event()
        ready = trio.Event()
        outer = trio.open_nursery()
        nursery = await outer.__aenter__()
        nursery.start_soon(self._run, ready, name=f"stt node {self._sock.address}")
        self._outer = outer
        try:
            await ready.wait()
        except BaseException:  # cancelled while starting: leave nothing behind
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> bool:
        with trio.CancelScope(shield=True):
            await self.stop()
        outer, self._outer = self._outer, None
        if outer is not None:
            # Only the node's runner lived there and it has finished: this
            # returns at once, and never with an exception of ours.
            await outer.__aexit__(None, None, None)
        return False

    async def stop(self) -> None:  # documented in NodeBase
        if not self._begin_stop():
            return
        if self._scope is not None:
            self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._runner_done.wait()
        self._sock.close()

    async def _run(self, ready: trio.Event) -> None:
        """The node's nursery: reader, timer, writer and handler tasks. Nothing
        escapes it: the tasks it runs log their exceptions instead of raising."""
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._guard, self._read_loop(), "the socket reader")
                    nursery.start_soon(self._guard, self._timer_loop(), "the timer")
                    ready.set()
        except BaseException as exc:  # noqa: BLE001 - see _guard
            if not isinstance(exc, trio.Cancelled):
                self._report("the node's nursery", exc)
        finally:
            self._nursery = None
            ready.set()
            self._runner_done.set()

    async def _guard(self, coro: Awaitable[Any], what: str) -> None:
        try:
            await coro
        except Exception as exc:  # noqa: BLE001 - logged: one task must not kill the node
            self._report(what, exc)

    # The node's own loops are protected from Ctrl-C: trio then raises
    # KeyboardInterrupt in the program's main task, which can handle it,
    # instead of in the middle of a send here, where it would end the node's
    # nursery and never reach the program.
    @trio.lowlevel.enable_ki_protection
    async def _read_loop(self) -> None:
        wait_readable = trio.lowlevel.wait_readable
        while True:
            sock = self._sock
            try:
                await wait_readable(sock.fileno())
            except trio.ClosedResourceError:
                if self._sock is not sock:
                    continue  # rebound: watch the new socket
                raise
            self._on_readable()

    async def _sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def _socket_replaced(self, old: Any) -> None:
        # Wakes the reader (and a writer) waiting on the old socket before it
        # is closed; they go on with the new one.
        trio.lowlevel.notify_closing(old.fileno())
        if self._backlog:
            self._watch_writable()  # nothing if the writer runs: it goes on itself

    @trio.lowlevel.enable_ki_protection
    async def _timer_loop(self) -> None:
        while True:
            scope = self._timer_scope = trio.CancelScope(deadline=self._timer_deadline)
            with scope:
                await trio.sleep_forever()
            self._timer_scope = None
            self._timer_deadline = math.inf
            self._on_timer()

    async def _write_loop(self) -> None:
        try:
            while True:
                sock = self._sock
                try:
                    await trio.lowlevel.wait_writable(sock.fileno())
                except trio.ClosedResourceError:
                    if self._sock is not sock:
                        continue  # rebound: what waits goes out of the new socket
                    raise
                if not self._on_writable():
                    return
        finally:
            self._writer_active = False

    async def _retry_backlog(self) -> None:
        await trio.sleep(_BACKLOG_RETRY)
        if self._running and self._backlog:
            self._watch_writable()

    # ------------------------------------------------------------------ serving

    async def serve(self, handler: Callable[[Session], Awaitable[Any]], *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run ``handler(session)`` for every inbound session, each as a task in
        this call's nursery, until cancelled or the node stops (then it
        returns). Meant for ``await nursery.start(node.serve, handler)``:
        ``task_status.started()`` reports the node's ``(host, port)``. A
        handler's exception is logged (logger ``stt``) and does not stop
        serving. Cancelling ``serve`` cancels its handler tasks and leaves the
        node running.

        Raises:
            NodeStoppedError: the node is not running.
            RuntimeError: ``on_session`` handlers are registered.
            TypeError: ``handler`` is not callable.
        """
        self._check_running()
        check_handler(handler, "the session handler")
        if self._session_handlers:
            raise RuntimeError("serve() takes the sessions on_session() handlers would get: "
                               "use one or the other")
        task_status.started(self.address)
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    session = await self.accept()
                except NodeStoppedError:
                    nursery.cancel_scope.cancel()
                    return
                nursery.start_soon(self._guard, run_handler(handler, session),
                                   "an STT session handler")

    # ------------------------------------------------------------------ backend hooks

    def _clock(self) -> float:
        return trio.current_time()

    def _open(self) -> Address:
        # The run's clock, bound once: trio.current_time() looks it up per call.
        self._clock = trio.lowlevel.current_clock().current_time
        return super()._open()

    def _new_signal(self) -> _Signal:
        return _Signal()

    async def _cancel_point(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()

    async def _schedule_point(self) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _resolve(self, host: str, port: int) -> Address:
        infos = await trio.socket.getaddrinfo(host, port, family=self._sock.family,
                                              type=socket.SOCK_DGRAM)
        return (infos[0][4][0], infos[0][4][1])

    def _set_timer(self, at: float | None) -> None:
        self._timer_deadline = math.inf if at is None else at
        if self._timer_scope is not None:
            self._timer_scope.deadline = self._timer_deadline

    def _watch_writable(self) -> None:
        if not self._writer_active and self._nursery is not None:
            self._writer_active = True
            self._nursery.start_soon(self._guard, self._write_loop(), "the socket writer")

    def _retry_backlog_later(self) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._guard, self._retry_backlog(), "the socket writer")

    def _spawn(self, coro: Awaitable[Any], what: str) -> None:
        if self._nursery is None:
            coro.close()
            return
        self._nursery.start_soon(self._guard, coro, what)


class ByteStream(ByteStreamBase, trio.abc.HalfCloseableStream):
    """A :class:`Stream` seen as a ``trio.abc.HalfCloseableStream``.

    ``send_all`` sends the bytes on the stream (byte mode: the peer's
    ``receive`` gets them in chunks of any size, in order); ``receive_some``
    returns at most ``max_bytes`` of what arrived (messages from a peer that
    sends messages are returned as bytes, split as needed) and ``b""`` once the
    peer ended its side; ``send_eof`` ends this side; ``aclose`` ends this side
    and stops reading. A reset by the peer or a closed session raises
    ``trio.BrokenResourceError``; any use after ``aclose`` raises
    ``trio.ClosedResourceError``. Two tasks may not send (or receive) at once:
    the second gets ``trio.BusyResourceError``. The logic is shared with the
    asyncio view: see :mod:`stt_io._bytestream`.
    """

    _closed_error = trio.ClosedResourceError
    _broken_error = trio.BrokenResourceError
    _busy_error = trio.BusyResourceError
    _eof_sent_error = trio.ClosedResourceError

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._begin_send()
        try:
            await self._send_all(bytes(data))
        finally:
            self._end_send()

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the stream's send buffer has room (or it can no longer
        send: then ``send_all`` will raise)."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_closed()
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            await self._wait_send_room()
        finally:
            self._end_send()

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_closed()
        await trio.lowlevel.checkpoint()
        self._send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for 1.5
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        self._begin_receive()
        try:
            await trio.lowlevel.checkpoint()
            while not self._buffered:
                self._check_closed()
                if not await self._fill():
                    return b""
            return self._take(max_bytes)
        finally:
            self._end_receive()

    async def aclose(self) -> None:
        """End this side (what was sent is still delivered) and stop reading
        (the peer's next sends fail with ``StreamResetError``, or
        ``BrokenResourceError`` on its byte view). A ``send_all`` or
        ``receive_some`` blocked in another task raises
        ``trio.ClosedResourceError``."""
        self._close()
        await trio.lowlevel.checkpoint()


class KademliaDHT(KademliaDHTBase):
    __doc__ = KademliaDHTBase.__doc__

    _node_class = Node


class PubSubManager(PubSubManagerBase):
    __doc__ = PubSubManagerBase.__doc__


class ContentDistribution(ContentDistributionBase):
    __doc__ = ContentDistributionBase.__doc__

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)
