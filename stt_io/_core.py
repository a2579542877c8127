"""What the asyncio and trio adapters share: everything but waiting.

Theory of operation
-------------------
A node owns one UDP socket (:class:`stt_io._udp.DatagramSocket`) and one sans-I/O
:class:`~stt_proto.endpoint.Endpoint`. Everything that is protocol logic lives in
the engine; the node only moves bytes and time:

* when the socket is readable it hands every waiting datagram to the engine;
* after every input (datagrams, a timer, a command from the application) it
  *flushes*: sends what ``datagrams_to_send`` returns, dispatches events to the
  session and stream objects, and re-arms its single timer at ``get_timer()``
  (only when that deadline moved earlier: a timer that fires early re-arms);
* ICMP errors the socket reports (port unreachable) fail a pending connect to
  that address at once with ``ConnectionRefusedError``.

Every method that queues data flushes before it returns: a ``send`` that
returns has put its packets on the wire (or in the socket's backlog when the
kernel buffer is full, which is drained as soon as the socket is writable).

Flow control reaches the application: the engine runs with ``auto_credit``
off, and a stream returns credit to the peer only when ``receive`` hands a
message over. A slow reader therefore slows the sender down instead of filling
memory, and ``send`` waits while the stream's send buffer is full. That is also
what bounds the adapter's own queues: messages waiting for ``receive`` are
bounded by the stream and session windows, streams waiting for
``accept_stream`` by ``max_streams``, sessions waiting for ``accept`` by
``max_sessions``, unread unreliable datagrams by :data:`MAX_QUEUED_DATAGRAMS`
and :data:`MAX_QUEUED_DATAGRAM_BYTES` per session (the oldest are dropped).

This module is backend-free. :class:`NodeBase` leaves to its subclass (the
asyncio or the trio ``Node``) the clock, the socket watching, the timer, task
spawning and name resolution; everything that waits does so on a
:class:`Signal` the subclass provides (the send lock, :class:`FifoLock`, is
built on signals too). Waiting is always
"check the condition, then wait for the signal, then check again", so a waiter
that is cancelled loses nothing: a message leaves its queue only in the
synchronous step that returns it.
"""

from __future__ import annotations

import abc
import functools
import ipaddress
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from stt_proto import events as ev
from stt_proto.config import EndpointConfig
from stt_proto.constants import FIRST_OVERLAY_STREAM_ID
from stt_proto.deadlines import check_deadline
from stt_proto.endpoint import Endpoint
from stt_proto.errors import SendBufferFullError
from stt_proto.events import CloseReason
from stt_proto.identity import Identity
from stt_proto.overlay import OverlayHost

from ._arguments import (
    check_bind,
    check_handler,
    check_identity,
    check_peer_address,
    check_peer_id,
    check_seed,
    check_timeout,
)
from ._udp import DatagramSocket
from .errors import (
    AuthenticationError,
    ConnectionTimeoutError,
    NodeStoppedError,
    SessionClosedError,
    StreamClosedError,
    StreamResetError,
    STTError,
)

__all__ = ["NodeBase", "Session", "Stream", "Signal", "FifoLock", "run_handler",
           "MAX_QUEUED_DATAGRAMS", "MAX_QUEUED_DATAGRAM_BYTES", "loopback_datagram_size"]

Address = tuple

logger = logging.getLogger("stt")

#: Unreliable datagrams kept per session for ``Session.receive_datagram``.
MAX_QUEUED_DATAGRAMS = 1024
#: ... and at most this many bytes of them (loopback datagrams reach 64 KiB).
MAX_QUEUED_DATAGRAM_BYTES = 4 * 1024 * 1024


class Signal(Protocol):
    """"Something changed, look again": what every waiter here waits on.

    ``set()`` wakes every task blocked in ``wait()``; ``clear()`` is called
    right before ``wait()`` (after the condition was checked, with no await in
    between), so a ``set()`` is never missed.
    """

    def set(self) -> None: ...

    def clear(self) -> None: ...

    async def wait(self) -> Any: ...


@functools.lru_cache(maxsize=1024)
def _parse_host(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, or ``None`` for a name (parsing costs more
    than a handshake's worth of Python calls, and hosts repeat)."""
    try:
        return ipaddress.ip_address(host)
    except (ValueError, TypeError):
        return None


def loopback_datagram_size(address: Address) -> int | None:
    """The path size the node uses by default: a loopback path carries whole
    64 KiB datagrams (its MTU is 65,536; TCP's loopback MSS reflects the same),
    any other path the configured ``max_datagram_size``."""
    try:
        ip = _parse_host(address[0].split("%")[0])
    except (AttributeError, TypeError, IndexError):
        return None
    return 65507 if ip is not None and ip.is_loopback else None


def close_error(reason: str, code: int, message: str) -> Exception:
    """The exception a failed connect raises for a close ``reason``."""
    if reason == CloseReason.TIMEOUT:
        return ConnectionTimeoutError(message or "timed out")
    if reason == CloseReason.AUTH_FAILURE:
        return AuthenticationError(message or "handshake did not authenticate")
    return SessionClosedError(message or f"session closed ({reason})", reason=reason,
                              error_code=code)


class _Connect:
    """A pending connect: its outcome, set once, and the signal its caller waits on."""

    __slots__ = ("signal", "session", "error")

    def __init__(self, signal: Signal) -> None:
        self.signal = signal
        self.session: Session | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.session is not None or self.error is not None

    def resolve(self, session: Session | None = None, error: BaseException | None = None) -> None:
        if not self.done:
            self.session, self.error = session, error
            self.signal.set()


class FifoLock:
    """A lock that serves its waiters in the order they came, on either backend.

    Releasing hands the lock straight to the oldest waiter, so it stays held
    while anyone waits: :meth:`try_acquire` succeeding means nobody is queued
    and taking it jumps no queue. Acquiring a free lock does not yield (callers
    place their own checkpoints); a waiter cancelled after the hand-over passes
    the lock on.
    """

    __slots__ = ("_held", "_waiters", "_new_signal")

    def __init__(self, new_signal: Callable[[], Signal]) -> None:
        self._held = False
        self._waiters: deque[list] = deque()
        self._new_signal = new_signal

    def locked(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        if not self._held:
            self._held = True
            return
        entry = [self._new_signal(), False]  # [signal, handed over]
        self._waiters.append(entry)
        try:
            while not entry[1]:
                entry[0].clear()
                await entry[0].wait()
        except BaseException:
            if entry[1]:
                self.release()
            else:
                self._waiters.remove(entry)
            raise

    def release(self) -> None:
        if self._waiters:
            entry = self._waiters.popleft()
            entry[1] = True
            entry[0].set()
        else:
            self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class NodeBase(abc.ABC):
    """One STT node: an identity, a UDP socket, and its sessions.

    Args:
        identity: this node's key pair (``stt_proto.identity.Identity``); a new
            one is generated when ``None``.
        shared_seed: the network's secret seed (required; never defaulted).
        host, port: where to bind (``port=0`` picks a free port).
        **config: any :class:`~stt_proto.config.EndpointConfig` field, e.g.
            ``idle_timeout=30.0`` or ``max_frame_size=...``.

    Raises:
        TypeError: an argument of the wrong kind (a ``str`` seed, raw bytes as
            ``identity``, a ``str`` port); the message says what to pass.
        ValueError: a missing seed, a port outside 0..65535, a host with a
            port in it (``"127.0.0.1:4000"``), or an invalid config value.
    """

    _stream_class: type[Stream]

    def __init__(self, identity: Identity | None = None, shared_seed: bytes | None = None,
                 host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        check_seed(shared_seed)
        identity = check_identity(identity)
        host, port = check_bind(host, port)
        if "auto_credit" in config:
            raise ValueError("auto_credit is managed by the adapter")
        self._identity = identity if identity is not None else Identity.generate()
        config.setdefault("path_max_datagram_size", loopback_datagram_size)
        self._config = EndpointConfig(identity=self._identity, shared_seed=shared_seed,
                                      auto_credit=False, **config)
        self._endpoint = Endpoint(self._config)
        # The adapter drives the composing object; commands stay on the endpoint.
        self._engine = OverlayHost(self._endpoint)
        self._overlay_handlers: dict[type, Callable[[Any], None]] = {}
        # Sessions the application has not been given yet: those the pool opened
        # for an overlay, and, while an overlay is attached, inbound ones (most
        # are other members' DHT traffic). Each is handed over when the peer
        # opens a stream or sends a datagram on it, or through dht.connect.
        self._unclaimed: set[bytes] = set()
        # Called (no arguments) when the node stops: overlays fail their waiters.
        self._stop_callbacks: list[Callable[[], None]] = []
        # Called (no arguments) at the end of every flush, after the events were
        # dispatched: an overlay's waiters look whether their condition now holds.
        self._flush_callbacks: list[Callable[[], None]] = []
        self._host = host
        self._port = port
        self._sock: DatagramSocket | None = None
        self._running = False
        self._stopped = False
        self._sessions: dict[bytes, Session] = {}
        self._connects: dict[bytes, _Connect] = {}
        self._accepted: deque[Session] = deque()
        self._accept_signal: Signal | None = None
        self._session_handlers: list[Callable[[Session], Awaitable[Any]]] = []
        self._closed_callbacks: list[Callable[[bytes, str], Any]] = []
        # Connects under way without new=True, by peer: another connect to the
        # same peer waits for it (one session per peer).
        self._connecting_to: dict[bytes, _Connect] = {}
        self._reuses = 0   # connects answered with a live session
        self._merged = 0   # simultaneous opens resolved to the peer's session
        self._suspended_callbacks: list[Callable[[bytes], Any]] = []
        self._resumed_callbacks: list[Callable[[bytes, float], Any]] = []
        self._timer_at: float | None = None
        self._timer_armed = False
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._flushing = False
        self._again = False
        self._now_value = 0.0

    # ------------------------------------------------------------------ backend hooks

    @abc.abstractmethod
    def _clock(self) -> float:
        """The backend's monotonic clock, in seconds."""

    @abc.abstractmethod
    def _new_signal(self) -> Signal:
        """A new :class:`Signal` of the backend."""

    @abc.abstractmethod
    def _set_timer(self, at: float | None) -> None:
        """Make :meth:`_on_timer` run at ``at`` (replacing the armed time), or
        never when ``None``."""

    @abc.abstractmethod
    def _watch_writable(self) -> None:
        """Call :meth:`_on_writable` once the socket is writable."""

    @abc.abstractmethod
    def _retry_backlog_later(self) -> None:
        """Call :meth:`_on_writable` again shortly (the device queue was full)."""

    @abc.abstractmethod
    def _spawn(self, coro: Awaitable[Any], what: str) -> None:
        """Run ``coro`` as a task of the node; its exception is logged, never raised."""

    @abc.abstractmethod
    async def _sleep(self, seconds: float) -> None:
        """The backend's sleep."""

    def _flush_soon(self) -> None:
        """Flush once the current step is over (or now, if the backend cannot defer)."""
        self._flush()

    async def _cancel_point(self) -> None:
        """Awaited first by every blocking method, before it changes anything:
        on trio, raises ``Cancelled`` if the caller is cancelled (without
        yielding otherwise); nothing on asyncio."""

    async def _schedule_point(self) -> None:
        """Awaited by a blocking method that is about to return without having
        waited: on trio, lets other tasks run (it cannot be cancelled, so what
        the method took is never lost); nothing on asyncio."""

    @abc.abstractmethod
    async def _resolve(self, host: str, port: int) -> Address:
        """Resolve a host name to the numeric ``(host, port)`` of the socket's family."""

    # ------------------------------------------------------------------ properties

    @property
    def node_id(self) -> bytes:
        """This node's id: its 32-byte public key."""
        return self._identity.node_id

    @property
    def identity(self) -> Identity:
        """This node's key pair (the one passed in, or the one generated for
        it): save it with ``stt_io.keys.save_identity`` to keep the node id."""
        return self._identity

    @property
    def address(self) -> Address:
        """The ``(host, port)`` the socket is bound to (once started)."""
        if self._sock is None:
            raise NodeStoppedError("node not started")
        return self._sock.address

    @property
    def endpoint(self) -> Endpoint:
        """The sans-I/O engine (for statistics and advanced use)."""
        return self._endpoint

    def statistics(self) -> dict[str, Any]:
        """The engine's counters plus the socket's (``socket_*``), and
        ``connects_reused`` (answered with a live session) and
        ``connects_merged`` (simultaneous opens settled on the peer's session)."""
        stats = dict(self._endpoint.statistics())
        stats["connects_reused"] = self._reuses
        stats["connects_merged"] = self._merged
        if self._sock is not None:
            stats.update({f"socket_{k}": v for k, v in self._sock.statistics().items()})
        return stats

    def __repr__(self) -> str:
        where = self._sock.address if self._sock is not None else "unbound"
        state = "running" if self._running else ("stopped" if self._stopped else "new")
        return f"<{type(self).__name__} {self.node_id.hex()[:16]} {where} {state}>"

    # ------------------------------------------------------------------ life cycle

    def _open(self) -> Address:
        """Bind the socket (the backend then starts watching it)."""
        if self._stopped:
            raise NodeStoppedError("a stopped node cannot start again")
        self._sock = DatagramSocket(self._host, self._port)
        self._accept_signal = self._new_signal()
        self._running = True
        return self._sock.address

    def _shutdown(self) -> None:
        """Close every session (the peers are told) and fail every pending call.
        The backend then cancels its tasks and closes the socket."""
        now = self._now()
        for session_id in list(self._sessions):
            self._endpoint.close(session_id, now=now, flush=False)
        for session_id in list(self._connects):
            self._endpoint.close(session_id, now=now)
        self._flush()
        self._running = False
        self._stopped = True
        for callback in list(self._stop_callbacks):  # a callback may remove itself
            try:
                callback()
            except Exception as exc:  # an overlay's bug must not break the stop
                self._report("a stop callback", exc)
        for pending in self._connects.values():
            pending.resolve(error=NodeStoppedError("node stopped"))
        self._connects.clear()
        for session in list(self._sessions.values()):
            session._on_closed(CloseReason.GRACEFUL, 0, "node stopped")
        self._sessions.clear()
        if self._accept_signal is not None:
            self._accept_signal.set()

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close every session (the peers are told), cancel the node's tasks and
        close the socket. Pending calls fail with :class:`NodeStoppedError` or
        :class:`SessionClosedError`. Stopping twice does nothing."""

    def _begin_stop(self) -> bool:
        """The part of ``stop()`` both backends share; ``False`` if there is
        nothing (left) to stop."""
        if not self._running:
            self._stopped = True
            return False
        self._shutdown()
        return True

    def _check_running(self) -> None:
        if not self._running:
            raise NodeStoppedError("node is not running (start it first)")

    async def rebind(self, port: int = 0, host: str | None = None) -> Address:
        """Move the node to a new socket, on ``port`` (0: any free one) of
        ``host`` (default: the host it was bound to), without closing anything:
        every session sends from the new address at once, and its peer follows
        once it has checked that the node receives there (``docs/protocol.md``
        7.11). What a handover to another network, or a socket that stopped
        working, needs. Returns the new ``(host, port)``.

        Raises:
            NodeStoppedError: the node is not running.
            OSError: the new socket cannot be bound (the old one is kept).
        """
        self._check_running()
        host, port = check_bind(self._host if host is None else host, port)
        new = DatagramSocket(host, port)
        old, self._sock = self._sock, new
        self._socket_replaced(old)
        old.close()
        self._endpoint.address_changed(now=self._now())
        self._flush()
        return new.address

    @abc.abstractmethod
    def _socket_replaced(self, old: DatagramSocket) -> None:
        """The backend stops watching ``old`` and watches :attr:`_sock`."""

    # ------------------------------------------------------------------ sessions

    async def connect(self, peer_addr: Address, peer_id: bytes,
                      timeout: float | None = 10.0, *, new: bool = False) -> Session:
        """A session with the node ``peer_id`` at ``peer_addr``.

        One session per peer: a live session with ``peer_id`` (opened by either
        side, or by the DHT for its own traffic) is returned as it is, with no
        handshake, and a connect to ``peer_id`` already under way is shared.
        ``new=True`` always opens another session. When two nodes connect to
        each other at the same moment, both end up with the session opened by
        the node with the smaller id; the other one is closed before either
        application used it.

        Args:
            peer_addr: ``(host, port)``; a host name is resolved first.
            peer_id: the peer's node id, 32 raw bytes (``bytes.fromhex`` turns
                a hex id into them).
            timeout: seconds to wait for the handshake (``None``: the node's
                ``connect_timeout``).
            new: open a session of its own even if there is one.

        Returns:
            The established session.

        Raises:
            TypeError: ``peer_addr`` is not a ``(host, port)`` pair (e.g. the
                string ``"host:port"``), ``peer_id`` is not bytes (e.g. hex
                text), or ``timeout`` is not a number. Checked before anything
                is sent, as are the ``ValueError`` cases.
            ValueError: a port outside 1..65535, a ``peer_id`` that is not 32
                bytes or no valid node id, or a ``timeout`` that is not above 0.
            ConnectionTimeoutError: no answer before ``timeout`` (also a wrong
                ``peer_id``: the peer stays silent).
            AuthenticationError: the peer holds another network seed.
            ConnectionRefusedError: the OS reports that nothing listens there.
            NodeStoppedError: the node is not running, or stopped meanwhile.
        """
        peer_addr = check_peer_address(peer_addr)
        peer_id = check_peer_id(peer_id)
        timeout = check_timeout(timeout)
        self._check_running()
        if not new:
            existing = self._session_with(peer_id)
            if existing is not None:
                self._reuses += 1
                await self._schedule_point()
                return existing
            shared = self._connecting_to.get(peer_id)
            if shared is not None:
                await self._wait_connect(shared)
                existing = self._session_with(peer_id)
                if existing is None:
                    raise ConnectionTimeoutError("the session opened meanwhile closed again")
                return existing
        address = self._literal_address(peer_addr)
        if address is None:
            address = await self._resolve(peer_addr[0], peer_addr[1])
            self._check_running()
        session_id = self._endpoint.connect(address, peer_id, now=self._now(), timeout=timeout)
        pending = self._connects[session_id] = _Connect(self._new_signal())
        if not new:
            self._connecting_to[peer_id] = pending
        self._flush()
        try:
            try:
                await self._wait_connect(pending)
            except BaseException:  # cancelled: give the attempt up
                if not pending.done and self._running and session_id in self._connects:
                    self._connects.pop(session_id, None)
                    self._endpoint.close(session_id, now=self._now())
                    self._flush()
                elif pending.session is not None:
                    _close_quietly(pending.session)
                raise
            session = pending.session
            if not new and self.node_id > peer_id:
                # Still marked as connecting: the peer's session, confirmed
                # meanwhile, is kept for us, not handed to on_session.
                session = await self._simultaneous_open(session)
            return session
        finally:
            if self._connecting_to.get(peer_id) is pending:
                del self._connecting_to[peer_id]

    async def _wait_connect(self, pending: _Connect) -> None:
        while not pending.done:
            pending.signal.clear()
            await pending.signal.wait()
        if pending.error is not None:
            raise pending.error

    def _session_with(self, peer_id: bytes) -> Session | None:
        """A live session with ``peer_id`` for the application (claimed from the
        pool or the unclaimed if need be): the one opened by the smaller node id
        if there are two."""
        best = None
        for session in self._sessions.values():
            if session.peer_id != peer_id or session._closed is not None:
                continue
            if best is None or (session.initiator == (self.node_id < peer_id)):
                best = session
        if best is not None and best.session_id in self._unclaimed:
            self._unclaimed.discard(best.session_id)
            self._engine.pool.disown(best.session_id)
        return best

    async def _simultaneous_open(self, ours: Session) -> Session:
        """Our connect to a peer with a smaller id succeeded; if the peer opened
        one to us at the same moment, its session is the one both keep (the
        tie-break of :meth:`connect`): wait briefly for it to be confirmed,
        then close ours, unused, and return the peer's."""
        peer_id = ours.peer_id

        def theirs() -> tuple[bytes, bool] | None:
            for session_id, initiator, established in self._endpoint.peer_sessions(peer_id):
                if not initiator:
                    return session_id, established
            return None

        found = theirs()
        if found is None:
            return ours
        # The peer's first packet confirms its session within about a round
        # trip of its own connect completing, which is now.
        deadline = self._now() + max(1.0, 4 * ours.statistics()["rtt_smoothed"])
        while not found[1] and self._now() < deadline:
            await self._sleep(0.005)
            found = theirs()
            if found is None:
                return ours
        session = self._sessions.get(found[0])
        if not found[1] or session is None or session._closed is not None:
            return ours
        self._unclaimed.discard(session.session_id)
        self._engine.pool.disown(session.session_id)
        self._merged += 1
        _close_quietly(ours)
        return session

    def _literal_address(self, peer_addr: Address) -> Address | None:
        """``peer_addr`` as is when its host is a numeric address of the
        socket's family: no resolver round trip (a thread hop) for it."""
        host, port = peer_addr[0], peer_addr[1]
        ip = _parse_host(host) if isinstance(host, str) else None
        if ip is None:
            return None
        version, host = ip.version, str(ip)  # the form the socket reports
        if not isinstance(port, int) or not 0 < port < 65536:
            return None
        family = self._sock.family
        if (version == 4 and family == socket.AF_INET) or \
                (version == 6 and family == socket.AF_INET6):
            return (host, port)
        return None

    async def accept(self) -> Session:
        """The next session a peer opened (when no ``on_session`` handler is
        registered, inbound sessions queue here)."""
        self._check_running()
        return await _next_from(self, self._accepted, self._accept_signal, self._check_running)

    def on_session(self, handler: Callable[[Session], Awaitable[Any]]) -> Callable:
        """Run ``handler(session)`` as a task for every inbound session (instead
        of queueing it for :meth:`accept`). Usable as a decorator.

        Raises:
            TypeError: ``handler`` is not callable.
        """
        self._session_handlers.append(check_handler(handler, "the session handler"))
        return handler

    def on_session_closed(self, callback: Callable[[bytes, str], Any]) -> Callable:
        """Call ``callback(session_id, reason)`` when any session (or connect
        attempt) ends; a coroutine function runs as a task. Usable as a decorator.

        Raises:
            TypeError: ``callback`` is not callable.
        """
        self._closed_callbacks.append(check_handler(callback, "the callback"))
        return callback

    def on_session_suspended(self, callback: Callable[[bytes], Any]) -> Callable:
        """Call ``callback(session_id)`` when a session hears nothing from its
        peer for ``suspend_after`` (a node option; without it a silent session
        closes at ``idle_timeout``) and starts waiting for it. Usable as a
        decorator; a coroutine function runs as a task."""
        self._suspended_callbacks.append(check_handler(callback, "the callback"))
        return callback

    def on_session_resumed(self, callback: Callable[[bytes, float], Any]) -> Callable:
        """Call ``callback(session_id, outage_seconds)`` when a suspended session
        hears from its peer again. Usable as a decorator."""
        self._resumed_callbacks.append(check_handler(callback, "the callback"))
        return callback

    # ------------------------------------------------------------------ I/O plumbing

    def _now(self) -> float:
        now = self._clock()
        if now > self._now_value:
            self._now_value = now
        return self._now_value

    def _on_readable(self) -> None:
        sock = self._sock
        now = self._now()
        engine = self._engine
        for data, address in sock.receive():
            engine.receive_datagram(data, address, now)
        for address, exc in sock.take_errors():
            self._refuse(address, exc, now)
        self._flush()

    def _refuse(self, address: Address, exc: OSError, now: float) -> None:
        # The engine fails the connects to that address (reported as "error");
        # their callers get the OS's own exception.
        reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        for session_id in self._endpoint.address_unreachable(address, now=now, reason=reason):
            pending = self._connects.pop(session_id, None)
            if pending is not None:
                pending.resolve(error=exc)

    def _on_writable(self) -> bool:
        """Drain the backlog; whether to keep watching for writability."""
        backlog = self._backlog
        sent = self._sock.send(list(backlog))
        for _ in range(sent):
            backlog.popleft()
        if backlog and not sent:
            # Writable yet nothing went (ENOBUFS: the device queue is full):
            # back off briefly instead of spinning on writability.
            self._retry_backlog_later()
            return False
        return bool(backlog)

    def _send(self, datagrams: list[tuple[bytes, Address]]) -> None:
        if self._backlog:
            self._backlog.extend(datagrams)
            return
        sent = self._sock.send(datagrams)
        if sent < len(datagrams):
            self._backlog.extend(datagrams[sent:])
            self._watch_writable()

    def _flush(self) -> None:
        """Send, dispatch events, re-arm the timer. Re-entrant calls (from event
        handlers) fold into the running one."""
        if self._sock is None or self._sock.closed:
            return
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        endpoint = self._engine
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
        if self._flush_callbacks:
            for callback in list(self._flush_callbacks):
                try:
                    callback()
                except Exception as exc:  # an overlay's bug must not break the node
                    self._report("a flush callback", exc)

    def _arm_timer(self) -> None:
        # Re-armed only when the deadline moves earlier: a timer armed before
        # the deadline (or with no deadline left) fires once, finds little or
        # nothing due, and re-arms. Deadlines move later on almost every packet
        # (PTO, ACK delay), and a spurious wake-up is cheaper than re-arming
        # each time.
        at = self._engine.get_timer()
        if self._timer_armed:
            if at is None or at >= self._timer_at:
                return
        elif at is None:
            return
        self._timer_at = at
        self._timer_armed = True
        if self._running:
            self._set_timer(at)

    def _on_timer(self) -> None:
        """The timer fired (the backend calls this at the armed time)."""
        self._timer_armed = False
        at = self._timer_at
        now = self._now()
        if at is not None and at > now:
            now = self._now_value = at  # the clock fired a hair early
        self._engine.handle_timer(now)
        self._flush()

    def _report(self, what: str, exc: BaseException) -> None:
        logger.error("exception in %s", what, exc_info=exc)

    # ------------------------------------------------------------------ events

    def _dispatch(self, event: ev.Event) -> None:
        kind = type(event)
        if kind in _STREAM_EVENTS:
            session = self._sessions.get(event.session_id)
            if session is not None:
                if event.session_id in self._unclaimed and kind is ev.StreamOpened:
                    self._hand_over(session)
                session._on_stream_event(event)
            return
        if kind is ev.SessionEstablished:
            self._on_established(event)
        elif kind is ev.SessionClosed:
            self._on_session_closed(event)
        elif kind is ev.SessionSuspended:
            self._call_back(self._suspended_callbacks, "an on_session_suspended callback",
                            event.session_id)
        elif kind is ev.SessionResumed:
            self._call_back(self._resumed_callbacks, "an on_session_resumed callback",
                            event.session_id, event.outage)
        elif kind is ev.SessionMigrated:
            session = self._sessions.get(event.session_id)
            if session is not None:  # remembered for after the close
                session._last_address = event.peer_address
        elif kind is ev.DatagramReceived:
            session = self._sessions.get(event.session_id)
            if session is not None:
                if event.session_id in self._unclaimed:
                    self._hand_over(session)
                session._on_datagram(event.data)
        else:
            handler = self._overlay_handlers.get(kind)
            if handler is not None:
                handler(event)

    def _on_established(self, event: ev.SessionEstablished) -> None:
        # The session may already be closed again (the events of one flush
        # are dispatched after the fact): it is still handed over, closed.
        session = Session(self, event.session_id, event.peer_id, event.initiator,
                          event.peer_address)
        self._sessions[event.session_id] = session
        if event.initiator:
            pending = self._connects.pop(event.session_id, None)
            if pending is not None and not pending.done:
                pending.resolve(session=session)
            elif self._engine.pool.owns(event.session_id):
                # Opened by the session pool for an overlay: the application gets
                # it through dht.connect, or when the peer opens a stream on it.
                self._unclaimed.add(event.session_id)
            else:  # the caller gave up meanwhile
                self._endpoint.close(event.session_id, now=self._now())
            return
        if self._engine.dht is not None or self._in_simultaneous_open(event.peer_id):
            # Handed over on its first stream or datagram: most are other
            # members' DHT traffic, or a simultaneous open's session that its
            # initiator is about to close (see connect).
            self._unclaimed.add(event.session_id)
            return
        self._hand_over(session, inbound=True)

    def _in_simultaneous_open(self, peer_id: bytes) -> bool:
        """Whether an inbound session from ``peer_id`` is part of a simultaneous
        open: we connect to it ourselves (our connect takes the session that
        wins), or connected already and have the smaller id (its initiator is
        about to close it)."""
        if peer_id in self._connecting_to:
            return True
        return self.node_id < peer_id and any(
            s.peer_id == peer_id and s.initiator and s._closed is None
            for s in self._sessions.values())

    def take_pool_session(self, session_id: bytes) -> Session | None:
        """The session the pool holds as ``session_id``, now the application's."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._unclaimed.discard(session_id)
            self._engine.pool.disown(session_id)
        return session

    def _hand_over(self, session: Session, inbound: bool = False) -> None:
        """Give a session to the ``on_session`` handlers or to ``accept``."""
        if not inbound:
            self._unclaimed.discard(session.session_id)
            self._engine.pool.disown(session.session_id)
        if self._session_handlers:
            for handler in self._session_handlers:
                self._spawn(run_handler(handler, session), "an STT session handler")
        else:
            self._accepted.append(session)
            self._accept_signal.set()

    def _on_session_closed(self, event: ev.SessionClosed) -> None:
        pending = self._connects.pop(event.session_id, None)
        if pending is not None:
            pending.resolve(error=close_error(event.reason, event.error_code, event.message))
        self._unclaimed.discard(event.session_id)
        session = self._sessions.pop(event.session_id, None)
        if session is not None:
            session._on_closed(event.reason, event.error_code, event.message)
        self._call_back(self._closed_callbacks, "an on_session_closed callback",
                        event.session_id, event.reason)

    def _call_back(self, callbacks: list[Callable[..., Any]], what: str, *args: Any) -> None:
        """Call every callback with ``args``; a coroutine's runs as a task."""
        for callback in callbacks:
            try:
                result = callback(*args)
            except Exception as exc:  # a callback's bug must not break the node
                self._report(what, exc)
                continue
            if hasattr(result, "__await__"):
                self._spawn(result, what)


async def run_handler(handler: Callable[[Session], Awaitable[Any]], session: Session) -> None:
    """``await handler(session)``, as the body of a handler task: whatever goes
    wrong, a plain function's exception or a result that cannot be awaited,
    happens inside the task and is reported like any handler error, instead of
    breaking the flush (``on_session``) or the accept loop (``serve``) that
    started it."""
    result = handler(session)
    if not hasattr(result, "__await__"):
        raise TypeError(f"the session handler must be an async function: it returned "
                        f"{type(result).__name__}, not an awaitable")
    await result


def _close_quietly(session: Session) -> None:
    try:
        node = session._node
        if session._closed is None and node._running:
            node._endpoint.close(session.session_id, now=node._now())
            node._flush()
    except Exception:  # noqa: BLE001 - best effort while unwinding
        pass


async def _next_from(node: NodeBase, queue: deque, signal: Signal,
                     check: Callable[[], None]) -> Any:
    """Pop the oldest item of ``queue``, waiting on ``signal`` while it is empty
    (``check`` raises once waiting is pointless). A checkpoint on either
    backend; cancelled, it takes nothing."""
    await node._cancel_point()
    waited = False
    while True:
        if queue:
            if waited:
                return queue.popleft()
            await node._schedule_point()  # then look again
        else:
            check()
            signal.clear()
            await signal.wait()
        waited = True


#: The deadline given to the engine for a message whose own passed while it
#: waited for buffer room: it is abandoned at once, and counted by the peer.
_SOONEST = 1e-9

_STREAM_EVENTS = frozenset({
    ev.StreamOpened, ev.MessageReceived, ev.StreamDataReceived, ev.StreamEnded,
    ev.MessagesSkipped, ev.StreamReset, ev.StreamStopped, ev.StreamWritable, ev.StreamClosed,
})


class Session:
    """An authenticated, encrypted session with one peer. Get one from
    ``Node.connect``, ``Node.accept`` or an ``on_session`` handler."""

    def __init__(self, node: NodeBase, session_id: bytes, peer_id: bytes, initiator: bool,
                 peer_address: Address) -> None:
        self._node = node
        self.session_id = session_id
        """Local handle of the session (16 bytes)."""
        self.peer_id = peer_id
        """The peer's node id (authenticated by the handshake)."""
        self.initiator = initiator
        """Whether this side opened the session."""
        self._streams: dict[int, Stream] = {}
        self._incoming: deque[Stream] = deque()
        self._incoming_signal = node._new_signal()
        self._datagrams: deque[bytes] = deque()
        self._datagram_bytes = 0
        self._datagrams_dropped = 0
        self._datagram_signal = node._new_signal()
        self._closed: SessionClosedError | None = None
        self._closed_signal = node._new_signal()
        #: Where the peer was last seen, kept for after the session is gone.
        self._last_address: Address = peer_address

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
                    max_frame_size: int | None = None, priority: int | None = None,
                    incremental: bool | None = None, deadline: float | None = None) -> Stream:
        """Open a stream (an allocated id when ``stream_id`` is ``None``) and
        return its handle. Nothing is sent until the first message. An id names
        one stream for the whole session: once that stream is gone, the id never
        opens again (allocated ids are always new).

        ``priority`` (urgency 0, the most urgent, to 7; 3 when not given) and
        ``incremental`` (default ``False``) say in which order this side's
        streams send, as :meth:`Stream.set_priority` does; given for a stream
        that is open already, they change it. ``deadline`` (seconds) is the
        stream's :attr:`Stream.deadline`: every message sent on it without
        one of its own is abandoned if not delivered within that time.

        Raises:
            StreamIdUsedError: ``stream_id`` was used in this session and its
                stream is gone.
            SessionClosedError: the session is closed.
            ValueError: ``stream_id`` is one of the overlays' (from
                ``FIRST_OVERLAY_STREAM_ID``, 2**62 - 256: pub/sub uses them),
                or ``priority`` is outside 0..7, or ``deadline`` is not above 0.
            TypeError: ``priority`` is not an int, or ``incremental`` not a bool,
                or ``deadline`` not a number.
        """
        self._check_open()
        if deadline is not None:
            check_deadline(deadline)
        if type(stream_id) is int and stream_id >= FIRST_OVERLAY_STREAM_ID:
            raise ValueError(f"stream ids from {FIRST_OVERLAY_STREAM_ID} (2**62 - 256) are "
                             "reserved for the overlays (pub/sub); choose a lower one")
        node = self._node
        stream_id = node._endpoint.open_stream(self.session_id, stream_id,
                                               max_frame_size=max_frame_size,
                                               priority=priority, incremental=incremental,
                                               now=node._now())
        stream = self._stream(stream_id)
        if deadline is not None:
            stream.deadline = deadline
        return stream

    def get_stream(self, stream_id: int, *, max_frame_size: int | None = None) -> Stream:
        """The handle for ``stream_id``, usable before the peer sends on it (also
        for a stream the peer opened: ``max_frame_size`` then changes its limit).

        Raises:
            StreamIdUsedError: the id's stream was open in this session and is gone.
        """
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
        return await _next_from(self._node, self._incoming, self._incoming_signal,
                                self._check_open)

    def _stream(self, stream_id: int) -> Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._streams[stream_id] = self._node._stream_class(self, stream_id)
        return stream

    # ------------------------------------------------------------------ datagrams

    def send_datagram(self, data: bytes) -> None:
        """Send ``data`` as one unreliable datagram (may be lost, never split)."""
        self._check_open()
        node = self._node
        node._endpoint.send_datagram(self.session_id, data, now=node._now())
        node._flush()

    async def receive_datagram(self) -> bytes:
        """The next unreliable datagram from the peer (the oldest are dropped
        past :data:`MAX_QUEUED_DATAGRAMS` unread ones or
        :data:`MAX_QUEUED_DATAGRAM_BYTES`, counted in ``statistics()`` as
        ``datagrams_dropped_unread``)."""
        data = await _next_from(self._node, self._datagrams, self._datagram_signal,
                                self._check_open)
        self._datagram_bytes -= len(data)
        return data

    def _on_datagram(self, data: bytes) -> None:
        queue = self._datagrams
        queue.append(data)
        self._datagram_bytes += len(data)
        while len(queue) > MAX_QUEUED_DATAGRAMS or self._datagram_bytes > MAX_QUEUED_DATAGRAM_BYTES:
            self._datagram_bytes -= len(queue.popleft())
            self._datagrams_dropped += 1
        self._datagram_signal.set()

    # ------------------------------------------------------------------ life cycle

    async def close(self) -> None:
        """Close the session gracefully: queued stream data is delivered first
        (for at most ``close_flush_timeout``), then the peer is told. Returns
        once the session is closed."""
        node = self._node
        await node._cancel_point()
        if self._closed is None and node._running:
            node._endpoint.close(self.session_id, now=node._now())
            node._flush()
        if self._closed is not None:
            await node._schedule_point()
        while self._closed is None:
            self._closed_signal.clear()
            await self._closed_signal.wait()

    def is_closed(self) -> bool:
        """Whether the session has ended (see :attr:`close_reason`)."""
        return self._closed is not None

    @property
    def close_reason(self) -> str | None:
        """``graceful``, ``timeout``, ``auth_failure`` or ``error`` once closed."""
        return None if self._closed is None else self._closed.reason

    def statistics(self) -> dict[str, Any]:
        """RTT, congestion window, bytes and packets sent/received/lost/
        retransmitted, streams open (see ``Endpoint.session_statistics``),
        plus the adapter's ``datagrams_queued`` (unread unreliable datagrams)
        and ``datagrams_dropped_unread``."""
        self._check_open()
        stats = self._node._endpoint.session_statistics(self.session_id)
        stats["datagrams_queued"] = len(self._datagrams)
        stats["datagrams_dropped_unread"] = self._datagrams_dropped
        return stats

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
        self._closed_signal.set()
        self._datagram_signal.set()
        self._incoming_signal.set()
        for stream in self._streams.values():
            stream._wake()

    # ------------------------------------------------------------------ stream events

    def _on_stream_event(self, event: ev.Event) -> None:
        kind = type(event)
        if kind is ev.StreamOpened:
            self._incoming.append(self._stream(event.stream_id))
            self._incoming_signal.set()
            return
        stream = self._streams.get(event.stream_id)
        if stream is None:
            stream = self._stream(event.stream_id)
        if kind is ev.MessageReceived or kind is ev.StreamDataReceived:
            if stream._receive_stopped:
                # Still in flight when we stopped: drop it, and give its credit
                # back so the session window does not shrink.
                stream._consume(event.flow_controlled_length)
                return
            stream._messages.append((event.data, event.flow_controlled_length))
            stream._readable.set()
        elif kind is ev.StreamEnded:
            stream._ended = True
            stream._consume(event.flow_controlled_length)
            stream._readable.set()
        elif kind is ev.MessagesSkipped:
            # The skipped bytes are held nowhere: their credit goes back at once.
            stream.messages_skipped += event.count
            stream._consume(event.flow_controlled_length)
        elif kind is ev.StreamReset:
            stream._reset_code = event.error_code
            stream._consume(sum(length for _, length in stream._messages))
            stream._messages.clear()
            stream._readable.set()
        elif kind is ev.StreamStopped:
            stream._stopped_code = event.error_code
            stream._writable.set()
        elif kind is ev.StreamWritable:
            stream._on_room()
        elif kind is ev.StreamClosed:
            stream._finished = True
            self._streams.pop(event.stream_id, None)
            stream._wake()


class Stream:
    """A reliable, ordered stream of messages within a session.

    ``await send(data)`` delivers ``data`` to the peer as one message: each
    :meth:`receive` there returns one whole message, in order, exactly once.
    ``await send(data, deadline=0.15)`` wants it there within 0.15 s: if it
    cannot be, it is abandoned, and the peer's :meth:`receive` goes on with the
    next message (its :attr:`messages_skipped` counts those it never saw).
    """

    #: Seconds within which each message sent without a deadline of its own
    #: must be delivered, or ``None`` (every message is delivered, however
    #: late): set it, or give ``deadline=`` to ``Session.open_stream``.
    deadline: float | None = None

    def __init__(self, session: Session, stream_id: int) -> None:
        node = session._node
        self.session = session
        self.stream_id = stream_id
        self._messages: deque[tuple[bytes, int]] = deque()
        self._readable = node._new_signal()
        self._writable = node._new_signal()
        self._send_lock = FifoLock(node._new_signal)
        self._ended = False
        self._reset_code: int | None = None
        self._stopped_code: int | None = None
        self._local_closed = False
        self._finished = False
        #: We asked the peer to stop sending (``stop_receiving``): arrivals are dropped.
        self._receive_stopped = False
        self._room_callback: Callable[[], None] | None = None
        #: Messages the peer abandoned at their deadline, never delivered here.
        self.messages_skipped = 0

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} of {self.session!r}>"

    def _wake(self) -> None:
        self._readable.set()
        self._writable.set()

    async def send(self, data: bytes, *, deadline: float | None = None) -> None:
        """Send one message; waits while the stream's send buffer is full.
        Concurrent senders on one stream go in call order (a FIFO lock).

        ``deadline`` (seconds from now; default :attr:`deadline`): if the
        message cannot be delivered by then, it is abandoned -- never sent
        again, and later messages are not held behind it. Meant for live data
        (audio, video, game state) where late is useless; the time spent here
        waiting for buffer room counts.

        Raises:
            ValueError, TypeError: ``deadline`` is not a positive number.
            StreamClosedError: this side was closed, or the peer asked it to stop
                (then a :class:`StreamResetError` with the peer's code).
            MessageTooLargeError: ``data`` exceeds the stream's ``max_frame_size``.
            SessionClosedError: the session is closed.
        """
        if deadline is None:
            deadline = self.deadline
        if deadline is not None:
            deadline = self.session._node._now() + check_deadline(deadline)
        await self._send(data, False, deadline)

    async def _send(self, data: bytes, as_bytes: bool, due: float | None = None) -> None:
        node = self.session._node
        await node._cancel_point()
        lock = self._send_lock
        if lock.try_acquire():
            # Nobody else is sending: queue and flush at once, yield after.
            try:
                sent = self._try_send(data, as_bytes, due)
            except BaseException:
                lock.release()
                raise
            if sent:
                lock.release()
                await node._schedule_point()
                return
        else:
            await lock.acquire()
        try:
            while not self._try_send(data, as_bytes, due):
                self._writable.clear()
                await self._writable.wait()
        finally:
            lock.release()

    def _try_send(self, data: bytes, as_bytes: bool, due: float | None = None) -> bool:
        """Queue ``data`` and flush; ``False`` if the send buffer is full. A
        message ``due`` at a time already past (it waited for room) is still
        queued: the engine abandons it at once, and the peer counts it skipped."""
        session = self.session
        node = session._node
        session._check_open()
        self._raise_if_stopped()
        try:
            if as_bytes:
                node._endpoint.send_stream_data(session.session_id, self.stream_id,
                                                data, now=node._now())
            elif due is None:
                node._endpoint.send_message(session.session_id, self.stream_id, data,
                                            now=node._now())
            else:
                now = node._now()
                node._endpoint.send_message(session.session_id, self.stream_id, data,
                                            now=now, deadline=max(due - now, _SOONEST))
        except SendBufferFullError:
            return False
        except StreamClosedError:
            self._explain_refusal()
            raise
        node._flush()
        return True

    def _raise_if_stopped(self) -> None:
        if self._stopped_code is not None:
            raise StreamResetError(
                f"the peer stopped stream {self.stream_id} "
                f"(code {self._stopped_code})", error_code=self._stopped_code)

    def _explain_refusal(self) -> None:
        """The engine refused to send or end because this side is closed. If
        the peer's STOP_SENDING did it, its event may still wait in the engine's
        queue (a batch of datagrams is dispatched after the application runs):
        dispatch it, so the caller gets the peer's code as it would a moment
        later, not a bare "closed"."""
        self.session._node._flush()
        self._raise_if_stopped()

    async def receive(self) -> bytes:
        """The next message. Cancelling a pending ``receive`` loses nothing: a
        message leaves the stream only when a ``receive`` returns it.

        Raises:
            StreamClosedError: the peer ended its side and every message was
                received (``async for`` stops here instead).
            StreamResetError: the peer reset its side (``error_code`` says why).
            SessionClosedError: the session closed.
        """
        data = await self._receive_next()
        if data is None:
            raise StreamClosedError(f"stream {self.stream_id} ended")
        return data

    async def _receive_next(self, stop: Callable[[], bool] | None = None) -> bytes | None:
        """:meth:`receive`, with ``None`` instead of an error at the peer's
        orderly end, or as soon as ``stop()`` is true (checked before taking
        anything and after every wake-up: a byte view closed by another task).
        Internal API of :mod:`stt_io._bytestream`."""
        session = self.session
        node = session._node
        await node._cancel_point()
        waited = False
        while True:
            if stop is not None and stop():
                return None
            if self._receive_stopped:
                raise StreamClosedError(f"receiving on stream {self.stream_id} was stopped")
            if self._messages:
                if not waited:
                    await node._schedule_point()  # then look again
                    waited = True
                    continue
                data, length = self._messages.popleft()
                self._consume(length)
                return data
            if self._reset_code is not None:
                raise StreamResetError(f"stream {self.stream_id} was reset "
                                       f"(code {self._reset_code})", error_code=self._reset_code)
            if self._ended:
                return None
            session._check_open()
            self._readable.clear()
            await self._readable.wait()
            waited = True

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
        messages already sent). Closing twice does nothing.

        Raises:
            StreamResetError: the peer asked this side to stop (its
                ``error_code`` says why), as :meth:`send` would.
        """
        node = self.session._node
        await node._cancel_point()
        if self._local_closed or self.session._closed is not None:
            self._local_closed = True
            await node._schedule_point()
            return
        async with self._send_lock:
            if self._local_closed:
                return
            self._local_closed = True
            if node._running:
                try:
                    node._endpoint.end_stream(self.session.session_id, self.stream_id,
                                              now=node._now())
                except StreamClosedError:
                    self._explain_refusal()
                    raise
                node._flush()
        await node._schedule_point()

    def set_priority(self, priority: int, incremental: bool | None = None) -> None:
        """Set the order in which this side's streams send (RFC 9218 meaning).

        ``priority`` is the urgency, 0 (most urgent) to 7; a stream has 3
        until told otherwise, as has every stream the peer opens. Streams of
        one urgency that are not ``incremental`` send one after another, in the
        order they got data; ``incremental`` ones (``None`` leaves the flag as
        it is) take turns. Urgencies are weighted, not strict: while it has data
        to send, urgency ``u`` gets at least ``1 / 2 ** (u + 1)`` of the bytes
        the session sends, so no stream starves. A stream sending small
        messages and waiting for answers is served ahead of bulk streams of its
        urgency by itself. The peer is not told; what is queued already goes
        out in the new order.

        Raises:
            ValueError: ``priority`` is outside 0..7.
            TypeError: ``priority`` is not an int (a bool is not one), or
                ``incremental`` not a bool.
            StreamClosedError: the stream is gone (both sides finished).
            SessionClosedError: the session is closed.
        """
        session = self.session
        session._check_open()
        try:
            session._node._endpoint.set_stream_priority(session.session_id, self.stream_id,
                                                        priority, incremental)
        except KeyError:
            raise StreamClosedError(f"stream {self.stream_id} is closed") from None

    @property
    def priority(self) -> int:
        """The stream's urgency, 0 (most urgent) to 7 (see :meth:`set_priority`).

        Raises:
            StreamClosedError: the stream is gone.
        """
        return self._priority_info()["priority"]

    @property
    def incremental(self) -> bool:
        """Whether the stream takes turns with the others of its urgency (see
        :meth:`set_priority`)."""
        return self._priority_info()["incremental"]

    def _priority_info(self) -> dict[str, Any]:
        session = self.session
        session._check_open()
        try:
            return session._node._endpoint.stream_info(session.session_id, self.stream_id)
        except KeyError:
            raise StreamClosedError(f"stream {self.stream_id} is closed") from None

    def is_closed(self) -> bool:
        """Whether this side can no longer send (closed, stopped by the peer, or
        the session closed)."""
        return (self._local_closed or self._stopped_code is not None or self._finished
                or self.session._closed is not None)

    async def stop_receiving(self, error_code: int = 0) -> None:
        """Ask the peer to stop sending on this stream (QUIC's STOP_SENDING).

        The peer's next ``send`` on it raises :class:`StreamResetError` with
        ``error_code``; messages not yet received here are dropped, and this
        side's ``receive`` raises :class:`StreamClosedError` from now on. Our own
        sending side is unaffected: ``send`` and ``close`` still work, so a
        receiver can refuse the rest of a transfer and still say why. Stopping
        twice does nothing.

        Raises:
            SessionClosedError: the session is closed.
        """
        node = self.session._node
        await node._cancel_point()
        self.session._check_open()
        self._stop_reading(error_code)
        await node._schedule_point()

    async def reset(self, error_code: int = 0) -> None:
        """Abandon this side: unsent data is dropped, the peer sees a reset."""
        node = self.session._node
        await node._cancel_point()
        self.session._check_open()
        self._local_closed = True
        node._endpoint.reset_stream(self.session.session_id, self.stream_id, error_code,
                                    now=node._now())
        node._flush()
        await node._schedule_point()

    # ------------------------------------------------------------------ internal API
    # What the byte views (stt_io._bytestream) need from a stream, so that they
    # never touch its state, its session's or its node's.

    def _input_ended(self) -> bool:
        """Whether the peer ended its side and every message was taken."""
        return self._ended and self._reset_code is None and not self._messages

    def _offer_bytes(self, data: bytes) -> bool:
        """Queue ``data`` in byte mode now, without waiting; ``False`` if the
        send buffer is full (a room callback follows when it has room).
        The caller owns this stream's sending side (no concurrent ``send``)."""
        return self._try_send(data, True)

    def _set_room_callback(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback()`` whenever a refused send may go through again
        (the engine's ``StreamWritable``), right after waking the waiters."""
        self._room_callback = callback

    def _on_room(self) -> None:
        self._writable.set()
        if self._room_callback is not None:
            self._room_callback()

    async def _wait_room(self) -> None:
        """Wait for the next "something changed" on the sending side: room in
        the send buffer, or the stream or session ending. Call it right after
        a refused :meth:`_offer_bytes`, with no await in between."""
        self._writable.clear()
        await self._writable.wait()

    async def _wait_writable(self, stop: Callable[[], bool]) -> None:
        """Return once a send would be accepted, or can never be (the stream,
        session or node ended: the send will raise), or ``stop()`` is true."""
        session = self.session
        node = session._node
        while not stop() and not self.is_closed() and node._running:
            try:
                if node._endpoint.stream_writable(session.session_id, self.stream_id):
                    return
            except KeyError:
                return
            self._writable.clear()
            await self._writable.wait()

    def _end_now(self) -> None:
        """End this side at once, bypassing the send lock (a send blocked in
        another task wakes to a closed stream). Best effort: nothing happens if
        the stream, its session or its node is already gone."""
        session = self.session
        node = session._node
        if self._local_closed or self._stopped_code is not None:
            self._local_closed = True
            return
        self._local_closed = True
        if session._closed is None and node._running:
            try:
                node._endpoint.end_stream(session.session_id, self.stream_id, now=node._now())
            except (STTError, KeyError):
                pass  # the stream or session is already gone
            node._flush()
        self._wake()

    def _consume(self, length: int) -> None:
        """Return ``length`` bytes of flow-control credit to the peer (a message
        taken or dropped), unless the session or node is gone."""
        session = self.session
        node = session._node
        if length and session._closed is None and node._running:
            try:
                due = node._endpoint.stream_consumed(session.session_id, self.stream_id,
                                                     length, now=node._now())
            except KeyError:
                return
            if due:  # most often not: credit goes back in batches
                node._flush_soon()

    def _stop_reading(self, error_code: int = 0) -> None:
        """Ask the peer to stop sending (unless it ended or reset its side),
        drop what was not received and wake every waiter. Best effort, like
        :meth:`_end_now`."""
        session = self.session
        node = session._node
        already = self._receive_stopped
        self._receive_stopped = True
        self._consume(sum(length for _, length in self._messages))
        self._messages.clear()
        if not already and not self._ended and self._reset_code is None \
                and session._closed is None and node._running:
            try:
                node._endpoint.stop_stream(session.session_id, self.stream_id, error_code,
                                           now=node._now())
            except (STTError, KeyError):
                pass
            node._flush()
        self._wake()

