"""The asyncio adapter: :class:`Node`, :class:`Session` and :class:`Stream`.

The node reads its socket with ``loop.add_reader`` (batched ``recvmsg``, GRO),
writes with ``sendmsg`` (GSO) and watches writability only while a backlog
waits; its one timer is a ``loop.call_later`` handle. Everything else, and the
theory of operation, is shared with the trio adapter: see :mod:`stt_io._core`.
The engine's clock is ``time.monotonic`` (uvloop's loop clock moves in 1 ms
steps, which would make every loopback RTT sample zero). uvloop works too.
"""

from __future__ import annotations

import asyncio
import socket
from time import monotonic
from typing import Any

from ._core import MAX_QUEUED_DATAGRAMS, NodeBase, Session, Stream, loopback_datagram_size

__all__ = ["Node", "Session", "Stream", "MAX_QUEUED_DATAGRAMS", "loopback_datagram_size"]

Address = tuple


class Node(NodeBase):
    """One STT node on asyncio: an identity, a UDP socket, and its sessions.

    ``await node.start()`` binds and returns ``(host, port)``; ``async with
    Node(...) as node`` starts and stops it. See :class:`stt_io._core.NodeBase`
    for the arguments and the methods both adapters share (``connect``,
    ``accept``, ``on_session``, ``on_session_closed``, ``statistics``).
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
        if not task.cancelled() and task.exception() is not None:
            self._loop.call_exception_handler({
                "message": f"exception in {what}",
                "exception": task.exception(),
                "task": task,
            })

