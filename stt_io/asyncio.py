"""The asyncio adapter: :class:`Node`, :class:`Session` and :class:`Stream`.

The node reads its socket with ``loop.add_reader`` (batched ``recvmsg``, GRO),
writes with ``sendmsg`` (GSO) and watches writability only while a backlog
waits; its one timer is a ``loop.call_later`` handle. Everything else, and the
theory of operation, is shared with the trio adapter: see :mod:`stt_io._core`.
The engine's clock is ``time.monotonic`` (uvloop's loop clock moves in 1 ms
steps, which would make every loopback RTT sample zero). uvloop works too.

Besides the API both adapters share, ``await node.serve(handler)`` runs a
handler task per inbound session until the node stops, and
``stream.as_byte_stream()`` returns a :class:`ByteStream`: the stream as bytes,
with the methods of an asyncio ``StreamReader``/``StreamWriter`` pair.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from ._arguments import check_handler
from ._bytestream import ByteStreamBase
from ._core import MAX_QUEUED_DATAGRAMS, NodeBase, Session, loopback_datagram_size, run_handler
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

#: What ``ByteStream.readline`` and ``readuntil`` search before giving up
#: (asyncio's own ``StreamReader`` default).
_DEFAULT_LIMIT = 2**16


class Stream(_CoreStream):
    __doc__ = _CoreStream.__doc__

    def as_byte_stream(self, *, limit: int = _DEFAULT_LIMIT) -> ByteStream:
        """This stream as bytes, in the shape of an asyncio
        ``StreamReader``/``StreamWriter`` pair in one object: ``read``,
        ``readexactly``, ``readuntil``, ``readline``, ``at_eof``, ``write``,
        ``drain``, ``write_eof``, ``close``, ``wait_closed``. Pass it as both
        the reader and the writer. The peer receives the written bytes in
        chunks of any size, not as messages.

        Args:
            limit: how far ``readline``/``readuntil`` search for the separator.

        Returns:
            The view (one per call; use one view per stream).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return ByteStream(self, limit=limit)


class Node(NodeBase):
    """One STT node on asyncio: an identity, a UDP socket, and its sessions.

    ``await node.start()`` binds and returns ``(host, port)``; ``async with
    Node(...) as node`` starts and stops it. See :class:`stt_io._core.NodeBase`
    for the arguments and the methods both adapters share (``connect``,
    ``accept``, ``on_session``, ``on_session_closed``, ``statistics``,
    ``identity``); :meth:`serve` is asyncio's own.
    """

    _stream_class = Stream

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._writing = False
        self._flush_pending = False

    __init__.__doc__ = NodeBase.__init__.__doc__

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> Address:
        """Bind the socket and start serving; returns the bound ``(host, port)``."""
        if self._running:
            return self.address
        self._loop = asyncio.get_running_loop()
        address = self._open()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        return address

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:  # documented in NodeBase
        if not self._begin_stop():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop, sock = self._loop, self._sock
        loop.remove_reader(sock.fileno())
        if self._writing:
            loop.remove_writer(sock.fileno())
            self._writing = False
        sock.close()
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:  # if this wait is cancelled in turn, the tasks still end
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ serving

    async def serve(self, handler: Callable[[Session], Awaitable[Any]], *,
                    task_status: Any = None) -> None:
        """Run ``handler(session)`` as a task for every inbound session until
        the node stops (then this returns) or this call is cancelled.

        A handler's exception is passed to the loop's exception handler (as
        for ``on_session`` handlers: logged by default) and serving goes on.
        When ``serve`` ends, either way, it cancels the handler tasks it
        started and waits for them. Cancelling ``serve`` leaves the node
        running; inbound sessions then queue for :meth:`accept`.

        Args:
            handler: an async function taking the :class:`Session`.
            task_status: for ``anyio``'s ``TaskGroup.start``: its
                ``started()`` is called with the node's ``(host, port)`` once
                serving.

        Raises:
            NodeStoppedError: the node is not running.
            RuntimeError: ``on_session`` handlers are registered (they take
                the inbound sessions ``serve`` would get).
            TypeError: ``handler`` is not callable.
        """
        self._check_running()
        check_handler(handler, "the session handler")
        if self._session_handlers:
            raise RuntimeError("serve() takes the sessions on_session() handlers would get: "
                               "use one or the other")
        if task_status is not None:
            task_status.started(self.address)
        tasks: set[asyncio.Task] = set()
        try:
            while True:
                try:
                    session = await self.accept()
                except NodeStoppedError:
                    return
                task = asyncio.ensure_future(run_handler(handler, session))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(self._report_handler)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:  # if this wait is cancelled in turn, the tasks still end
                await asyncio.gather(*tasks, return_exceptions=True)

    def _report_handler(self, task: asyncio.Task) -> None:
        self._task_done(task, "an STT session handler")

    # ------------------------------------------------------------------ backend hooks

    def _clock(self) -> float:
        return monotonic()

    def _new_signal(self) -> asyncio.Event:
        return asyncio.Event()

    async def _resolve(self, host: str, port: int) -> Address:
        infos = await self._loop.getaddrinfo(host, port, family=self._sock.family,
                                             type=socket.SOCK_DGRAM)
        return (infos[0][4][0], infos[0][4][1])

    def _set_timer(self, at: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at is not None:
            delay = at - monotonic()
            self._timer = self._loop.call_later(delay if delay > 0 else 0, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        self._on_timer()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _socket_replaced(self, old: Any) -> None:
        loop = self._loop
        loop.remove_reader(old.fileno())
        if self._writing:
            loop.remove_writer(old.fileno())
            self._writing = False
        loop.add_reader(self._sock.fileno(), self._on_readable)
        if self._backlog:
            self._watch_writable()

    def _watch_writable(self) -> None:
        if not self._writing and self._running:
            self._loop.add_writer(self._sock.fileno(), self._writable_ready)
            self._writing = True

    def _writable_ready(self) -> None:
        if not self._on_writable() and self._writing:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False

    def _retry_backlog_later(self) -> None:
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False
        self._loop.call_later(0.001, self._retry_backlog)

    def _retry_backlog(self) -> None:
        if self._running and self._backlog:
            self._watch_writable()

    def _flush_soon(self) -> None:
        # Credit returned by receive(): a reader that answers at once (a
        # request/response loop) sends it with its answer, in one packet.
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_pending = False
        self._flush()

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, what))

    def _task_done(self, task: asyncio.Task, what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._loop is not None:
            self._loop.call_exception_handler({
                "message": f"exception in {what}",
                "exception": task.exception(),
                "task": task,
            })



class ByteStream(ByteStreamBase):
    """A :class:`Stream` seen as bytes, in asyncio's idiom: one object with the
    methods of a ``StreamReader`` and of a ``StreamWriter``, for code written
    against ``asyncio.open_connection``'s pair (pass it as both).

    Reading: ``read(n)``, ``readexactly(n)``, ``readuntil(sep)``, ``readline()``
    and ``async for line in view`` behave as ``StreamReader``'s do, with the
    peer's end of the stream as EOF (``read`` returns ``b""``,
    ``readexactly`` raises ``asyncio.IncompleteReadError``). Messages from a
    peer that sends messages arrive as bytes, in order.

    Writing: ``write(data)`` never waits: what the stream's send buffer
    refuses is held and sent as room frees up, and ``await drain()`` waits
    until nothing is held (use it after writes, as with a ``StreamWriter``;
    :meth:`get_write_buffer_size` says how much is held). ``write_eof()`` ends
    this side after the held bytes. ``close()`` does the same and stops
    reading (the peer is asked to stop sending); ``await wait_closed()`` then
    waits until the held bytes and the end were handed to the session, which
    delivers them as long as it lives.

    Errors: a reset by the peer (or a peer that stopped reading), a closed
    session or a stopped node raise ``ConnectionResetError``, chained from the
    STT error that says why. Local misuse raises ``RuntimeError``: any use
    after ``close()`` (also a read or drain blocked in another task when it is
    called), a write after ``write_eof()``, two tasks reading at once. The
    logic is shared with the trio view: see :mod:`stt_io._bytestream`.
    """

    _closed_error = RuntimeError
    _broken_error = ConnectionResetError
    _busy_error = RuntimeError
    _eof_sent_error = RuntimeError

    def __init__(self, stream: Stream, *, limit: int = _DEFAULT_LIMIT) -> None:
        super().__init__(stream)
        self._limit = limit

    # ------------------------------------------------------------------ reading

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (waiting for at least one), or everything until
        the peer's end when ``n`` is negative; ``b""`` at the end."""
        if n == 0:
            return b""
        self._begin_receive()
        try:
            if n < 0:
                while await self._fill():
                    pass
                return self._take(self._buffered)
            while not self._buffered:
                if not await self._fill():
                    return b""
            return self._take(n)
        finally:
            self._end_receive()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes.

        Raises:
            asyncio.IncompleteReadError: the peer ended its side first (its
                ``partial`` holds what came; it is consumed).
            ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        self._begin_receive()
        try:
            while self._buffered < n:
                if not await self._fill():
                    partial = self._take(self._buffered)
                    raise asyncio.IncompleteReadError(partial, n)
            return self._take(n)
        finally:
            self._end_receive()

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The bytes up to and including ``separator``.

        Raises:
            asyncio.IncompleteReadError: the peer ended its side before the
                separator (``partial`` holds the rest, which is consumed).
            asyncio.LimitOverrunError: no separator within the view's
                ``limit`` (the bytes stay buffered).
        """
        if not separator:
            raise ValueError("separator should be at least one-byte string")
        self._begin_receive()
        try:
            # StreamReader.readuntil's search: a separator that starts past
            # the limit counts as not found.
            size = len(separator)
            offset = 0
            while True:
                if self._buffered - offset >= size:
                    end = self._find(separator, offset, self._limit + size)
                    if end >= 0:
                        return self._take(end)
                    offset = self._buffered + 1 - size
                    if offset > self._limit:
                        raise asyncio.LimitOverrunError(
                            "Separator is not found, and chunk exceed the limit", offset)
                if not await self._fill():
                    raise asyncio.IncompleteReadError(self._take(self._buffered), None)
        finally:
            self._end_receive()

    async def readline(self) -> bytes:
        """One line, ``b"\n"`` included; at the peer's end, what is left
        (``b""`` when nothing is).

        Raises:
            ValueError: a line longer than the view's ``limit`` (the buffered
                part of it is dropped, as ``StreamReader.readline`` does).
        """
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            self._take(self._buffered)
            raise ValueError(exc.args[0]) from None

    def at_eof(self) -> bool:
        """Whether the peer ended its side and every byte was read."""
        return self._input_at_eof()

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending; never waits (see :meth:`drain`)."""
        self._write(bytes(data))

    def writelines(self, data: Any) -> None:
        """:meth:`write` each item of ``data``."""
        for item in data:
            self.write(item)

    async def drain(self) -> None:
        """Wait until every written byte was accepted by the stream's send
        buffer (a full buffer empties as the peer reads and acknowledges).
        Several tasks may wait at once."""
        await self._drain()

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet accepted by the stream's send buffer."""
        return self._held_size()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """End this side once the written bytes are out: the peer reads them,
        then EOF."""
        self._check_closed()
        self._send_eof()

    def is_closing(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """End this side after the written bytes and stop reading. Closing
        twice does nothing."""
        self._close()

    async def wait_closed(self) -> None:
        """Wait until the written bytes and the end of this side were handed
        to the session (after :meth:`close`).

        Raises:
            ConnectionResetError: they could not be (the stream broke).
        """
        await self._drain()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"`` (the peer's address), ``"peer_id"``, ``"session"``
        or ``"stream"``; ``default`` for anything else."""
        stream = self.stream
        if name == "peername":
            return stream.session.peer_address
        if name == "peer_id":
            return stream.session.peer_id
        if name == "session":
            return stream.session
        if name == "stream":
            return stream
        return default


class KademliaDHT(KademliaDHTBase):
    __doc__ = KademliaDHTBase.__doc__

    _node_class = Node


class PubSubManager(PubSubManagerBase):
    __doc__ = PubSubManagerBase.__doc__


class ContentDistribution(ContentDistributionBase):
    __doc__ = ContentDistributionBase.__doc__

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)
