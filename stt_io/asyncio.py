"""The asyncio adapter: :class:`Node`, :class:`Session` and :class:`Stream`.

Theory of operation
-------------------
A :class:`Node` owns one UDP socket (:class:`stt_io._udp.DatagramSocket`,
read with ``loop.add_reader`` in batches) and one sans-I/O
:class:`~stt_proto.endpoint.Endpoint`. Everything that is protocol logic lives in
the engine; the node only moves bytes and time:

* when the socket is readable it hands every waiting datagram to the engine;
* after every input (datagrams, a timer, a command from the application) it
  *flushes*: sends what ``datagrams_to_send`` returns, dispatches events to the
  session and stream objects, and re-arms its single timer at ``get_timer()``
  (only when that deadline moved earlier: a timer that fires early just
  re-arms);
* ICMP errors the socket reports (port unreachable) fail a pending
  :meth:`Node.connect` to that address at once with ``ConnectionRefusedError``.

Every method that queues data flushes before it returns: a ``send`` that
returns has put its packets on the wire (or in the socket's backlog when the
kernel buffer is full, which is drained as soon as the socket is writable).

Flow control reaches the application: the engine runs with ``auto_credit``
off, and a stream returns credit to the peer only when :meth:`Stream.receive`
hands a message over. A slow reader therefore slows the sender down instead of
filling memory, and :meth:`Stream.send` waits while the stream's send buffer is
full.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from time import monotonic as _monotonic
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from stt_proto import events as ev
from stt_proto.config import EndpointConfig
from stt_proto.endpoint import Endpoint
from stt_proto.errors import SendBufferFullError
from stt_proto.events import CloseReason
from stt_proto.identity import Identity

from ._udp import DatagramSocket
from .errors import (
    AuthenticationError,
    ConnectionTimeoutError,
    NodeStoppedError,
    SessionClosedError,
    StreamClosedError,
    StreamResetError,
)

__all__ = ["Node", "Session", "Stream"]

Address = tuple

#: Unreliable datagrams kept per session for :meth:`Session.receive_datagram`.
MAX_QUEUED_DATAGRAMS = 1024


def loopback_datagram_size(address: Address) -> int | None:
    """The path size the node uses by default: a loopback path carries whole
    64 KiB datagrams (its MTU is 65,536; TCP's loopback MSS reflects the same),
    any other path the configured ``max_datagram_size``."""
    try:
        loopback = ipaddress.ip_address(address[0].split("%")[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return None
    return 65507 if loopback else None


def _close_error(reason: str, code: int, message: str) -> Exception:
    if reason == CloseReason.TIMEOUT:
        return ConnectionTimeoutError(message or "timed out")
    if reason == CloseReason.AUTH_FAILURE:
        return AuthenticationError(message or "handshake did not authenticate")
    return SessionClosedError(message or f"session closed ({reason})", reason=reason,
                              error_code=code)


class Node:
    """One STT node: an identity, a UDP socket, and its sessions.

    Args:
        identity: this node's key pair (``stt_proto.identity.Identity``); a new
            one is generated when ``None``.
        shared_seed: the network's secret seed (required; never defaulted).
        host, port: where to bind (``port=0`` picks a free port).
        **config: any :class:`~stt_proto.config.EndpointConfig` field, e.g.
            ``idle_timeout=30.0`` or ``max_frame_size=...``.
    """

    def __init__(self, identity: Identity | None = None, shared_seed: bytes | None = None,
                 host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        if shared_seed is None:
            raise ValueError("shared_seed is required: nodes of one network share a secret seed")
        if "auto_credit" in config:
            raise ValueError("auto_credit is managed by the adapter")
        self._identity = identity if identity is not None else Identity.generate()
        config.setdefault("path_max_datagram_size", loopback_datagram_size)
        self._config = EndpointConfig(identity=self._identity, shared_seed=shared_seed,
                                      auto_credit=False, **config)
        self._endpoint = Endpoint(self._config)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: DatagramSocket | None = None
        self._running = False
        self._stopped = False
        self._sessions: dict[bytes, Session] = {}
        self._connects: dict[bytes, tuple[asyncio.Future, Address]] = {}
        self._accept: asyncio.Queue[Session | None] | None = None
        self._session_handlers: list[Callable[[Session], Awaitable[Any]]] = []
        self._closed_callbacks: list[Callable[[bytes, str], Any]] = []
        self._tasks: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._writing = False
        self._flushing = False
        self._flush_pending = False
        self._again = False
        self._now_value = 0.0

    # ------------------------------------------------------------------ properties

    @property
    def node_id(self) -> bytes:
        """This node's id: its 32-byte public key."""
        return self._identity.node_id

    @property
    def address(self) -> Address:
        """The ``(host, port)`` the socket is bound to (after :meth:`start`)."""
        if self._sock is None:
            raise NodeStoppedError("node not started")
        return self._sock.address

    @property
    def endpoint(self) -> Endpoint:
        """The sans-I/O engine (for statistics and advanced use)."""
        return self._endpoint

    def statistics(self) -> dict[str, Any]:
        """The engine's counters plus the socket's."""
        stats = dict(self._endpoint.statistics())
        if self._sock is not None:
            stats.update({f"socket_{k}": v for k, v in self._sock.statistics().items()})
        return stats

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> Address:
        """Bind the socket and start serving; returns the bound ``(host, port)``."""
        if self._running:
            return self.address
        if self._stopped:
            raise NodeStoppedError("a stopped node cannot start again")
        self._loop = asyncio.get_running_loop()
        self._sock = DatagramSocket(self._host, self._port)
        self._accept = asyncio.Queue()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._running = True
        return self._sock.address

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Close every session (the peers are told), cancel the node's tasks and
        close the socket. Pending calls fail with :class:`NodeStoppedError` or
        :class:`SessionClosedError`."""
        if not self._running:
            self._stopped = True
            return
        now = self._now()
        for session_id in list(self._sessions):
            self._endpoint.close(session_id, now=now, flush=False)
        for session_id in list(self._connects):
            self._endpoint.close(session_id, now=now)
        self._flush()
        self._running = False
        self._stopped = True
        for future, _ in self._connects.values():
            if not future.done():
                future.set_exception(NodeStoppedError("node stopped"))
        self._connects.clear()
        for session in list(self._sessions.values()):
            session._on_closed(CloseReason.GRACEFUL, 0, "node stopped")
        self._sessions.clear()
        if self._accept is not None:
            self._accept.put_nowait(None)
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = self._loop
        sock = self._sock
        if loop is not None and sock is not None:
            loop.remove_reader(sock.fileno())
            if self._writing:
                loop.remove_writer(sock.fileno())
                self._writing = False
            sock.close()

    def _check_running(self) -> None:
        if not self._running:
            raise NodeStoppedError("node is not running (call start() first)")

    # ------------------------------------------------------------------ sessions

    async def connect(self, peer_addr: Address, peer_id: bytes, timeout: float = 10.0) -> Session:
        """Open a session with the node ``peer_id`` at ``peer_addr``.

        Raises:
            ConnectionTimeoutError: no answer before ``timeout`` (also a wrong
                ``peer_id``: the peer stays silent).
            AuthenticationError: the peer holds another network seed.
            ConnectionRefusedError: the OS reports that nothing listens there.
        """
        self._check_running()
        host, port = peer_addr[0], peer_addr[1]
        infos = await self._loop.getaddrinfo(host, port, family=self._sock.family,
                                             type=socket.SOCK_DGRAM)
        address = (infos[0][4][0], infos[0][4][1])
        session_id = self._endpoint.connect(address, peer_id, now=self._now(), timeout=timeout)
        future = self._loop.create_future()
        self._connects[session_id] = (future, address)
        self._flush()
        try:
            return await future
        except asyncio.CancelledError:
            if self._running and session_id in self._connects:
                self._connects.pop(session_id, None)
                self._endpoint.close(session_id, now=self._now())
                self._flush()
            raise

    async def accept(self) -> Session:
        """The next session a peer opened (when no :meth:`on_session` handler is
        registered, inbound sessions queue here)."""
        self._check_running()
        session = await self._accept.get()
        if session is None:
            self._accept.put_nowait(None)  # wake every other waiter too
            raise NodeStoppedError("node stopped")
        return session

    def on_session(self, handler: Callable[[Session], Awaitable[Any]]) -> Callable:
        """Run ``handler(session)`` as a task for every inbound session (instead
        of queueing it for :meth:`accept`). Usable as a decorator."""
        self._session_handlers.append(handler)
        return handler

    def on_session_closed(self, callback: Callable[[bytes, str], Any]) -> Callable:
        """Call ``callback(session_id, reason)`` when any session (or connect
        attempt) ends; a coroutine function runs as a task. Usable as a decorator."""
        self._closed_callbacks.append(callback)
        return callback

    # ------------------------------------------------------------------ I/O plumbing

    def _now(self) -> float:
        # time.monotonic, not loop.time(): uvloop's clock moves in 1 ms steps,
        # which would make every loopback RTT sample zero.
        now = _monotonic()
        if now > self._now_value:
            self._now_value = now
        return self._now_value

    def _on_readable(self) -> None:
        sock = self._sock
        endpoint = self._endpoint
        now = self._now()
        for data, address in sock.receive():
            endpoint.receive_datagram(data, address, now)
        for address, exc in sock.take_errors():
            self._refuse(address, exc, now)
        self._flush()

    def _refuse(self, address: Address, exc: OSError, now: float) -> None:
        # The engine fails the connects to that address (reported as "error");
        # their callers get the OS's own exception.
        reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        for session_id in self._endpoint.address_unreachable(address, now=now, reason=reason):
            entry = self._connects.pop(session_id, None)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(exc)

    def _on_writable(self) -> None:
        backlog = self._backlog
        sent = self._sock.send(list(backlog))
        for _ in range(sent):
            backlog.popleft()
        if (not backlog or not sent) and self._writing:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False
        if backlog and not sent:
            # Writable yet nothing went (ENOBUFS: the device queue is full):
            # back off briefly instead of spinning on writability.
            self._loop.call_later(0.001, self._retry_backlog)

    def _retry_backlog(self) -> None:
        if self._running and self._backlog and not self._writing:
            self._loop.add_writer(self._sock.fileno(), self._on_writable)
            self._writing = True

    def _send(self, datagrams: list[tuple[bytes, Address]]) -> None:
        if self._backlog:
            self._backlog.extend(datagrams)
            return
        sent = self._sock.send(datagrams)
        if sent < len(datagrams):
            self._backlog.extend(datagrams[sent:])
            if not self._writing:
                self._loop.add_writer(self._sock.fileno(), self._on_writable)
                self._writing = True

    def _flush_soon(self) -> None:
        """Flush once the current callback or task step is over. For credit
        returned by :meth:`Stream.receive`: a reader that answers at once (a
        request/response loop) sends the credit with its answer, in one packet
        and one flush."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_pending = False
        self._flush()

    def _flush(self) -> None:
        """Send, dispatch events, re-arm the timer. Re-entrant calls (from event
        handlers) fold into the running one."""
        if self._sock is None or self._sock.fileno() < 0:
            return
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        endpoint = self._endpoint
        try:
            while True:
                self._again = False
                now = self._now()
                while True:
                    out = endpoint.datagrams_to_send(now)
                    if out:
                        self._send(out)
                    event = endpoint.next_event()
                    if event is None:
                        break
                    self._dispatch(event)
                if not self._again:
                    break
            self._arm_timer()
        finally:
            self._flushing = False

    def _arm_timer(self) -> None:
        # Re-armed only when the deadline moves earlier: a timer armed before
        # the deadline (or with no deadline left) fires once, finds little or
        # nothing due, and re-arms. Deadlines move later on almost every packet
        # (PTO, ACK delay), and a spurious wake-up is cheaper than a cancel and
        # a new timer each time.
        at = self._endpoint.get_timer()
        if self._timer is not None:
            if at is None or at >= self._timer_at:
                return
            self._timer.cancel()
            self._timer = None
        elif at is None:
            return
        self._timer_at = at
        if self._running:
            delay = at - _monotonic()
            self._timer = self._loop.call_later(delay if delay > 0 else 0, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at = self._timer_at
        self._timer_at = None
        now = self._now()
        if at is not None and at > now:
            now = self._now_value = at  # the loop fired a hair early
        self._endpoint.handle_timer(now)
        self._flush()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._loop.call_exception_handler({
                "message": "exception in an STT session handler",
                "exception": task.exception(),
                "task": task,
            })

    # ------------------------------------------------------------------ events

    def _dispatch(self, event: ev.Event) -> None:
        kind = type(event)
        if kind in _STREAM_EVENTS:
            session = self._sessions.get(event.session_id)
            if session is not None:
                session._on_stream_event(event)
            return
        if kind is ev.SessionEstablished:
            self._on_established(event)
        elif kind is ev.SessionClosed:
            self._on_session_closed(event)
        elif kind is ev.DatagramReceived:
            session = self._sessions.get(event.session_id)
            if session is not None:
                session._on_datagram(event.data)

    def _on_established(self, event: ev.SessionEstablished) -> None:
        session = Session(self, event.session_id, event.peer_id, event.initiator)
        self._sessions[event.session_id] = session
        if event.initiator:
            entry = self._connects.pop(event.session_id, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(session)
            else:  # the caller gave up meanwhile
                self._endpoint.close(event.session_id, now=self._now())
            return
        if self._session_handlers:
            for handler in self._session_handlers:
                self._spawn(handler(session))
        else:
            self._accept.put_nowait(session)

    def _on_session_closed(self, event: ev.SessionClosed) -> None:
        entry = self._connects.pop(event.session_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(_close_error(event.reason, event.error_code, event.message))
        session = self._sessions.pop(event.session_id, None)
        if session is not None:
            session._on_closed(event.reason, event.error_code, event.message)
        for callback in self._closed_callbacks:
            result = callback(event.session_id, event.reason)
            if asyncio.iscoroutine(result):
                self._spawn(result)


_STREAM_EVENTS = frozenset({
    ev.StreamOpened, ev.MessageReceived, ev.StreamDataReceived, ev.StreamEnded,
    ev.StreamReset, ev.StreamStopped, ev.StreamWritable, ev.StreamClosed,
})


class Session:
    """An authenticated, encrypted session with one peer. Get one from
    :meth:`Node.connect`, :meth:`Node.accept` or an :meth:`Node.on_session`
    handler."""

    def __init__(self, node: Node, session_id: bytes, peer_id: bytes, initiator: bool) -> None:
        self._node = node
        self.session_id = session_id
        """Local handle of the session (16 bytes)."""
        self.peer_id = peer_id
        """The peer's node id (authenticated by the handshake)."""
        self.initiator = initiator
        self._streams: dict[int, Stream] = {}
        self._incoming: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._datagrams: deque[bytes] = deque()
        self._datagram_event = asyncio.Event()
        self._closed: SessionClosedError | None = None
        self._closed_event = asyncio.Event()
        #: Where the peer was last seen, kept for after the session is gone.
        self._last_address: Address = node._endpoint.session_info(session_id)["peer_address"]

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Session {self.session_id.hex()[:8]} peer={self.peer_id.hex()[:8]} {state}>"

    @property
    def peer_address(self) -> Address:
        """Where the peer's packets come from now (it may move)."""
        if self._closed is None:
            try:
                return self._node._endpoint.session_info(self.session_id)["peer_address"]
            except KeyError:
                pass
        return self._last_address

    # ------------------------------------------------------------------ streams

    def open_stream(self, stream_id: int | None = None, *,
                    max_frame_size: int | None = None) -> Stream:
        """Open a stream (an allocated id when ``stream_id`` is ``None``) and
        return its handle. Nothing is sent until the first message."""
        self._check_open()
        node = self._node
        stream_id = node._endpoint.open_stream(self.session_id, stream_id,
                                               max_frame_size=max_frame_size, now=node._now())
        return self._stream(stream_id)

    def get_stream(self, stream_id: int, *, max_frame_size: int | None = None) -> Stream:
        """The handle for ``stream_id``, usable before the peer sends on it (also
        for a stream the peer opened: ``max_frame_size`` then changes its limit)."""
        stream = self._streams.get(stream_id)
        if stream is not None and max_frame_size is None:
            return stream
        return self.open_stream(stream_id, max_frame_size=max_frame_size)

    @property
    def max_datagram_payload(self) -> int:
        """The largest ``data`` :meth:`send_datagram` accepts."""
        self._check_open()
        return self._node._endpoint.max_datagram_payload(self.session_id)

    async def accept_stream(self) -> Stream:
        """The next stream the peer opened."""
        self._check_open()
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)
            raise self._closed
        return stream

    def _stream(self, stream_id: int) -> Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._streams[stream_id] = Stream(self, stream_id)
        return stream

    # ------------------------------------------------------------------ datagrams

    def send_datagram(self, data: bytes) -> None:
        """Send ``data`` as one unreliable datagram (may be lost, never split)."""
        self._check_open()
        node = self._node
        node._endpoint.send_datagram(self.session_id, data, now=node._now())
        node._flush()

    async def receive_datagram(self) -> bytes:
        """The next unreliable datagram from the peer."""
        while not self._datagrams:
            self._check_open()
            self._datagram_event.clear()
            await self._datagram_event.wait()
        return self._datagrams.popleft()

    def _on_datagram(self, data: bytes) -> None:
        if len(self._datagrams) >= MAX_QUEUED_DATAGRAMS:
            self._datagrams.popleft()
        self._datagrams.append(data)
        self._datagram_event.set()

    # ------------------------------------------------------------------ life cycle

    async def close(self) -> None:
        """Close the session gracefully: queued stream data is delivered first
        (for at most ``close_flush_timeout``), then the peer is told. Returns
        once the session is closed."""
        node = self._node
        if self._closed is None and node._running:
            node._endpoint.close(self.session_id, now=node._now())
            node._flush()
        await self._closed_event.wait()

    def is_closed(self) -> bool:
        return self._closed is not None

    @property
    def close_reason(self) -> str | None:
        """``graceful``, ``timeout``, ``auth_failure`` or ``error`` once closed."""
        return None if self._closed is None else self._closed.reason

    def statistics(self) -> dict[str, Any]:
        """RTT, congestion window, bytes and packets sent/received/lost/
        retransmitted, streams open (see ``Endpoint.session_statistics``)."""
        self._check_open()
        return self._node._endpoint.session_statistics(self.session_id)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
        if not self._node._running:
            raise NodeStoppedError("node stopped")

    def _on_closed(self, reason: str, code: int, message: str) -> None:
        if self._closed is not None:
            return
        try:
            self._last_address = self._node._endpoint.session_info(self.session_id)["peer_address"]
        except KeyError:
            pass
        self._closed = SessionClosedError(message or f"session closed ({reason})",
                                          reason=reason, error_code=code)
        self._closed_event.set()
        self._datagram_event.set()
        self._incoming.put_nowait(None)
        for stream in self._streams.values():
            stream._wake()

    # ------------------------------------------------------------------ stream events

    def _on_stream_event(self, event: ev.Event) -> None:
        kind = type(event)
        if kind is ev.StreamOpened:
            self._incoming.put_nowait(self._stream(event.stream_id))
            return
        stream = self._streams.get(event.stream_id)
        if stream is None:
            stream = self._stream(event.stream_id)
        if kind is ev.MessageReceived or kind is ev.StreamDataReceived:
            stream._messages.append((event.data, event.flow_controlled_length))
            stream._readable.set()
        elif kind is ev.StreamEnded:
            stream._ended = True
            if event.flow_controlled_length:
                node = self._node
                node._endpoint.stream_consumed(self.session_id, event.stream_id,
                                               event.flow_controlled_length, now=node._now())
            stream._readable.set()
        elif kind is ev.StreamReset:
            stream._reset_code = event.error_code
            stream._messages.clear()
            stream._readable.set()
        elif kind is ev.StreamStopped:
            stream._stopped_code = event.error_code
            stream._writable.set()
        elif kind is ev.StreamWritable:
            stream._writable.set()
        elif kind is ev.StreamClosed:
            stream._finished = True
            self._streams.pop(event.stream_id, None)
            stream._wake()


class Stream:
    """A reliable, ordered stream of messages within a session.

    ``await send(data)`` delivers ``data`` to the peer as one message: each
    :meth:`receive` there returns one whole message, in order, exactly once.
    """

    def __init__(self, session: Session, stream_id: int) -> None:
        self.session = session
        self.stream_id = stream_id
        self._messages: deque[tuple[bytes, int]] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._ended = False
        self._reset_code: int | None = None
        self._stopped_code: int | None = None
        self._local_closed = False
        self._finished = False

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} of {self.session!r}>"

    def _wake(self) -> None:
        self._readable.set()
        self._writable.set()

    async def send(self, data: bytes) -> None:
        """Send one message; waits while the stream's send buffer is full.

        Raises:
            StreamClosedError: this side was closed, or the peer asked it to stop.
            MessageTooLargeError: ``data`` exceeds the stream's ``max_frame_size``.
            SessionClosedError: the session is closed.
        """
        session = self.session
        node = session._node
        async with self._send_lock:  # FIFO: concurrent senders keep their order
            while True:
                session._check_open()
                if self._stopped_code is not None:
                    raise StreamResetError(
                        f"the peer stopped stream {self.stream_id} "
                        f"(code {self._stopped_code})", error_code=self._stopped_code)
                try:
                    node._endpoint.send_message(session.session_id, self.stream_id, data,
                                                now=node._now())
                except SendBufferFullError:
                    self._writable.clear()
                    await self._writable.wait()
                    continue
                node._flush()
                return

    async def receive(self) -> bytes:
        """The next message. Cancelling a pending ``receive`` loses nothing.

        Raises:
            StreamClosedError: the peer ended its side and every message was
                received (``async for`` stops here instead).
            StreamResetError: the peer reset its side (``error_code`` says why).
            SessionClosedError: the session closed.
        """
        session = self.session
        while True:
            if self._messages:
                data, length = self._messages.popleft()
                node = session._node
                if session._closed is None and node._running:
                    node._endpoint.stream_consumed(session.session_id, self.stream_id,
                                                   length, now=node._now())
                    node._flush_soon()
                return data
            if self._reset_code is not None:
                raise StreamResetError(f"stream {self.stream_id} was reset "
                                       f"(code {self._reset_code})", error_code=self._reset_code)
            if self._ended:
                raise StreamClosedError(f"stream {self.stream_id} ended")
            session._check_open()
            self._readable.clear()
            await self._readable.wait()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except StreamResetError:
            raise
        except StreamClosedError:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """End this side of the stream (the peer's ``receive`` ends after the
        messages already sent). Closing twice does nothing."""
        if self._local_closed or self.session._closed is not None:
            self._local_closed = True
            return
        async with self._send_lock:
            self._local_closed = True
            node = self.session._node
            node._endpoint.end_stream(self.session.session_id, self.stream_id, now=node._now())
            node._flush()

    def is_closed(self) -> bool:
        """Whether this side can no longer send (closed, stopped by the peer, or
        the session closed)."""
        return (self._local_closed or self._stopped_code is not None or self._finished
                or self.session._closed is not None)

    async def reset(self, error_code: int = 0) -> None:
        """Abandon this side: unsent data is dropped, the peer sees a reset."""
        node = self.session._node
        self.session._check_open()
        self._local_closed = True
        node._endpoint.reset_stream(self.session.session_id, self.stream_id, error_code,
                                    now=node._now())
        node._flush()
