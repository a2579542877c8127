"""The endpoint: everything one UDP socket's worth of STT needs, without the socket.

Theory of operation
-------------------
An :class:`Endpoint` owns the handshakes and sessions reachable through one
socket. The adapter feeds it every datagram with :meth:`Endpoint.receive_datagram`,
sends what :meth:`Endpoint.datagrams_to_send` returns to exactly the address given
with each datagram, keeps one timer at :meth:`Endpoint.get_timer` and calls
:meth:`Endpoint.handle_timer` when it fires, and pulls events with
:meth:`Endpoint.next_event`. Nothing here reads a clock: every entry point takes
``now``, an opaque non-decreasing number of seconds chosen by the caller.

The endpoint is the hub; the mechanisms live in their own modules and it
composes them:

* routing: every packet names one of our local indices, which an
  :class:`~stt_proto.sessions.IndexTable` maps to a session or a handshake
  attempt (``docs/protocol.md`` sections 3 and 6);
* handshakes: :class:`~stt_proto.handshaking.Initiator` (connects, retries,
  rekeys) and :class:`~stt_proto.handshaking.Responder` (``mac1``, cookies under
  load, limits on new sessions) call back here when keys are ready;
* a session's life cycle: :class:`~stt_proto.sessions.Session` moves through the
  table in :mod:`stt_proto.state` (``HANDSHAKING`` until the initiator's first
  DATA packet confirms the keys and proves its address: only then does the
  application hear of the session; ``ESTABLISHED``; ``CLOSING`` while a graceful
  close drains; ``CLOSED`` while it lingers; ``FORGOTTEN``);
* streams, recovery and flow control: one :class:`~stt_proto.session.SessionCore`
  per session.

What stays here is what binds them: the per-session timer (idle timeout,
keep-alive, when to rekey, the linger and CLOSE repetition of section 7.8), the
one timer heap behind :meth:`Endpoint.get_timer`, the event queue and its limits,
and the datagrams waiting to leave.

Keys. Each session's packet keys live in a :class:`~stt_proto.crypto.KeyRing`.
Before their time or volume limit, the side that initiated them starts a fresh
handshake in the background (a *rekey*, tagged with the session it belongs to);
the old keys keep decrypting for a grace period so nothing in flight is lost.

Errors follow the three-way model of ``stt_proto.errors``: undecodable or
unauthenticated datagrams are dropped and counted (see :meth:`statistics`);
violations by an authenticated peer close its session with an error; local misuse
raises.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any

from . import _wire as wire
from .config import EndpointConfig
from .constants import AEAD_TAG_SIZE, DATA_HEADER_SIZE, ErrorCode, PacketKind
from .crypto import KeyExhaustedError, KeyRing, PacketKeys
from .errors import DecodeError, LocalProtocolError, ProtocolError
from .errors import StreamClosedError
from .events import (
    STREAM_DATA_EVENTS,
    CloseReason,
    DatagramReceived,
    DhtMessageReceived,
    Event,
    SessionClosed,
    SessionEstablished,
)
from .handshake import TransportParameters
from .handshaking import (
    Credentials,
    Initiator,
    PendingConnect,
    Responder,
    path_datagram_size,
)
from .session import MODE_BYTES, MODE_MESSAGES, SessionCore
from .sessions import IndexTable, Session, host_of
from .state import RekeyInput, RekeyState, SessionInput, SessionState

__all__ = ["Endpoint", "Address"]

Address = Any

#: CLOSE frames a closed session sends at most (first, repeats and echoes).
_MAX_CLOSE_SENDS = 8

#: Events that may be dropped (and counted) when ``max_events`` are waiting or
#: they would hold more than ``max_event_bytes``: unreliable ones only. Stream events are bounded by flow control instead.
_DROPPABLE_EVENTS = (DatagramReceived, DhtMessageReceived)


def _check_code(error_code: int) -> None:
    if isinstance(error_code, bool) or not isinstance(error_code, int) \
            or not 0 <= error_code < 1 << 62:
        raise ValueError("error_code must be an int in 0..2**62-1")


class Endpoint:
    """Sans-I/O engine for one UDP socket: handshakes, sessions and their packets.

    Args:
        config: the node's identity, network seed and limits.

    After every call that takes input (``receive_datagram``, ``handle_timer`` and
    the commands), call :meth:`datagrams_to_send`, :meth:`next_event` until it
    returns ``None``, and :meth:`get_timer`.
    """

    def __init__(self, config: EndpointConfig) -> None:
        self._config = config
        self._rng = config.rng
        self._public = config.identity.node_id
        self._indices = IndexTable(self._rng)
        self._sessions: dict[bytes, Session] = {}
        self._per_host: dict[Any, int] = {}
        self._half_open = 0
        self._outgoing: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        #: Bytes of data held by the droppable events waiting (max_event_bytes).
        self._event_bytes = 0
        #: ``(at, seq, owner)``: sessions and pending connects; an entry is
        #: stale unless ``owner.timer_at == at`` (see _arm).
        self._timers: list[tuple[float, int, Any]] = []
        self._timer_seq = itertools.count()
        #: Sessions with input since they last transmitted.
        self._dirty: dict[Session, None] = {}
        self._last_now = float("-inf")
        self._stats = dict.fromkeys(
            (
                "datagrams_received", "bytes_received", "datagrams_sent", "bytes_sent",
                "dropped_undecodable", "dropped_unknown_index", "dropped_unauthenticated",
                "initiations_received", "initiations_bad_mac", "initiations_replayed",
                "initiations_failed", "initiations_rejected_limit", "cookie_replies_sent",
                "cookie_replies_received", "responses_bad_mac", "handshakes_completed",
                "handshakes_unconfirmed", "connects_timed_out", "auth_failures",
                "rekeys_completed", "sessions_closed", "events_dropped",
                "handshake_bytes_received_unvalidated", "handshake_bytes_sent_unvalidated",
                "amplification_refused", "sessions_closed_by_violation",
            ),
            0,
        )
        credentials = Credentials(config)
        self._initiator = Initiator(
            config, credentials, self._indices, self._stats, queue=self._queue,
            push_event=self._push_event, schedule=self._arm,
            established=self._connect_established, rekeyed=self._rekeyed,
            rekey_abandoned=self._rekey_abandoned)
        self._responder = Responder(
            config, credentials, self._indices, self._stats, queue=self._queue,
            half_open=lambda: self._half_open, admits=self._admits,
            rekey_target=self._rekey_target, half_opened=self._half_opened,
            rekey_offered=self._rekey_offered)

    # ------------------------------------------------------------------ info

    @property
    def node_id(self) -> bytes:
        """This node's id (its static public key)."""
        return self._public

    def statistics(self) -> dict[str, int]:
        """Counters of everything dropped, refused, sent and completed, plus the
        current table sizes. Never contains secrets."""
        stats = dict(self._stats)
        stats.update(
            sessions=len(self._sessions),
            half_open=self._half_open,
            pending_connects=len(self._initiator),
            indices=len(self._indices),
            replay_cache=self._responder.replay_cache_size,
            queued_events=len(self._events),
            queued_event_bytes=self._event_bytes,
            timer_entries=len(self._timers),
        )
        return stats

    def session_info(self, session_id: bytes) -> dict[str, Any]:
        """Peer, address, role, life-cycle state and key statistics of one session.

        ``state`` is the :class:`~stt_proto.state.SessionState` value
        (``"handshaking"``, ``"established"`` or ``"closing"``; closed sessions
        raise) and ``rekeying`` whether our rekey handshake is in flight.

        Raises:
            KeyError: unknown or closed session.
        """
        session = self._get_session(session_id)
        info: dict[str, Any] = {
            "peer_id": session.peer_id,
            "peer_address": session.address,
            "initiator": session.initiator,
            "established": session.established,
            "state": session.state.value,
            "rekeying": session.rekey_state is RekeyState.RUNNING,
        }
        info.update(session.keys.statistics())
        return info

    # ------------------------------------------------------------------ commands

    def connect(self, address: Address, peer_id: bytes, *, now: float,
                timeout: float | None = None) -> bytes:
        """Start a handshake with the node ``peer_id`` at ``address``.

        Returns:
            The new session's id. A :class:`SessionEstablished` or
            :class:`SessionClosed` event with that id follows.

        Raises:
            ValueError: ``peer_id`` is not 32 bytes, not a usable X25519 public
                key, or is this node's own id.
            LocalProtocolError: too many connects are pending.

        .. note:: then call :meth:`datagrams_to_send` and :meth:`get_timer`.
        """
        peer_id = bytes(peer_id)
        if len(peer_id) != 32:
            raise ValueError("peer_id must be 32 bytes")
        if peer_id == self._public:
            raise ValueError("cannot connect to this node's own id")
        if len(self._initiator) >= self._config.max_pending_connects:
            raise LocalProtocolError("too many pending connects")
        timeout = self._config.connect_timeout if timeout is None else timeout
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        session_id = self._new_session_id()
        self._initiator.connect(session_id, peer_id, address, deadline=now + timeout, now=now)
        return session_id

    def address_unreachable(self, address: Address, *, now: float,
                            reason: str = "address unreachable") -> list[bytes]:
        """The OS reported that nothing answers at ``address`` (an ICMP port or
        host unreachable the adapter read from its socket). Every pending connect
        to that address fails at once (``SessionClosed`` with reason ``error``)
        instead of waiting for its deadline; their session ids are returned.

        Established sessions and rekeys are left alone: ICMP messages are not
        authenticated, so they may only cut short what would time out anyway.

        .. note:: then call :meth:`next_event`.
        """
        self._last_now = max(self._last_now, now)
        return self._initiator.fail_connects_to(address, reason)

    def send_datagram(self, session_id: bytes, data: bytes, *, now: float) -> None:
        """Queue ``data`` as one unreliable DATAGRAM frame on a session. It leaves
        when the congestion window allows; the oldest queued datagrams are
        dropped beyond ``max_queued_datagrams``.

        Raises:
            KeyError: unknown or closed session.
            LocalProtocolError: the session is not established yet.
            ValueError: ``data`` is larger than :meth:`max_datagram_payload`.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        session = self._usable_session(session_id, now, closing_ok=True)
        data = bytes(data)
        if len(data) > self.max_datagram_payload(session_id):
            raise ValueError(f"datagram of {len(data)} bytes does not fit in a packet")
        session.core.queue_datagram(data)
        self._mark(session)

    def max_datagram_payload(self, session_id: bytes) -> int:
        """Largest ``data`` :meth:`send_datagram` accepts on this session."""
        room = self._payload_room(self._get_session(session_id))
        return room - 1 - wire.varint_size(room)

    # ------------------------------------------------------------------ streams

    def open_stream(self, session_id: bytes, stream_id: int | None = None, *,
                    max_frame_size: int | None = None, now: float | None = None) -> int:
        """Open a stream (or adjust an open one) and return its id.

        ``stream_id=None`` allocates an unused id: odd on the side that initiated
        the session, even on the other, so the two sides never collide. Any other
        id may be chosen by the application, and either side may send first on
        it. ``max_frame_size`` (default from the configuration) is the largest
        message this side sends or accepts on the stream. Opening an id that is
        open already returns it (and applies ``max_frame_size``): that is how an
        application gets hold of a stream the peer opened.

        Raises:
            KeyError: unknown or closed session.
            LocalProtocolError: the session is not established or is closing,
                ``max_streams`` streams are open, or ``stream_id`` closed less
                than ``closed_stream_linger`` ago.
            ValueError: ``stream_id`` or ``max_frame_size`` out of range.

        ``now`` (optional) is only used to tell whether a closed id may be reused:
        that happens ``2 * closed_stream_linger + idle_timeout`` after it closed.
        """
        session = self._usable_session(session_id, now)
        core = session.core
        core.advance(self._last_now)
        return core.open_stream(stream_id, max_frame_size=max_frame_size)

    def send_message(self, session_id: bytes, stream_id: int, data: bytes, *, now: float,
                     end_stream: bool = False) -> None:
        """Queue one message on a stream (opening it if needed); the peer receives
        it whole, in order, exactly once, as a ``MessageReceived`` event.
        ``end_stream`` ends this side of the stream after it.

        Raises:
            KeyError: unknown or closed session.
            StreamClosedError: this side of the stream was ended, reset or
                stopped by the peer; or the session is closing.
            MessageTooLargeError: ``data`` exceeds the stream's ``max_frame_size``.
            SendBufferFullError: ``max_send_buffer`` bytes are still
                unacknowledged; nothing was queued. Send again after
                ``StreamWritable``.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        session = self._usable_session(session_id, now)
        session.core.advance(now)
        session.core.send(stream_id, data, mode=MODE_MESSAGES, end_stream=end_stream)
        self._mark(session)

    def send_stream_data(self, session_id: bytes, stream_id: int, data: bytes, *,
                         now: float, end_stream: bool = False) -> None:
        """Queue bytes on a stream used as a byte stream (no message boundaries);
        the peer receives ``StreamDataReceived`` events. A stream's side sends
        either messages or bytes, never both. Errors as for :meth:`send_message`.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        session = self._usable_session(session_id, now)
        session.core.advance(now)
        session.core.send(stream_id, data, mode=MODE_BYTES, end_stream=end_stream)
        self._mark(session)

    def end_stream(self, session_id: bytes, stream_id: int, *, now: float) -> None:
        """End this side of a stream (FIN after what is queued). The peer sees
        ``StreamEnded``; it may still send on its side.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        session = self._usable_session(session_id, now)
        session.core.end_stream(stream_id)
        self._mark(session)

    def reset_stream(self, session_id: bytes, stream_id: int, error_code: int = 0, *,
                     now: float) -> None:
        """Abandon this side of a stream: unsent data is dropped and the peer sees
        ``StreamReset(error_code)``. Does nothing if everything was already
        acknowledged.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        _check_code(error_code)
        session = self._usable_session(session_id, now, closing_ok=True)
        session.core.reset_stream(stream_id, error_code, now=now)
        self._mark(session)

    def stop_stream(self, session_id: bytes, stream_id: int, error_code: int = 0, *,
                    now: float) -> None:
        """Stop reading a stream: data that arrives is discarded and the peer is
        asked to stop sending (it sees ``StreamStopped(error_code)``).

        .. note:: then call :meth:`datagrams_to_send`.
        """
        _check_code(error_code)
        session = self._usable_session(session_id, now, closing_ok=True)
        session.core.stop_stream(stream_id, error_code, now=now)
        self._mark(session)

    def stream_consumed(self, session_id: bytes, stream_id: int, nbytes: int, *,
                        now: float) -> None:
        """Return flow-control credit for ``nbytes`` the application consumed
        (the ``flow_controlled_length`` of stream events). Only needed with
        ``auto_credit=False``; unknown sessions and streams are ignored.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        if now > self._last_now:
            self._last_now = now
        session = self._sessions.get(session_id)
        if session is None or session.core is None or session.closed:
            return
        core = session.core
        core.stream_consumed(stream_id, nbytes, now=now)
        if core._has_eliciting_work():  # a credit update is due (often it is not)
            self._mark(session)

    def stream_writable(self, session_id: bytes, stream_id: int) -> bool:
        """Whether a send on the stream would be accepted now."""
        session = self._get_session(session_id)
        return session.core is not None and session.core.stream_writable(stream_id)

    def stream_info(self, session_id: bytes, stream_id: int) -> dict[str, Any]:
        """States, buffered bytes and credit of one open stream (``KeyError`` if
        it is not open)."""
        session = self._get_session(session_id)
        if session.core is None:
            raise KeyError("session not established")
        return session.core.stream_info(stream_id)

    def stream_ids(self, session_id: bytes) -> list[int]:
        """Ids of the session's open streams."""
        session = self._get_session(session_id)
        return [] if session.core is None else session.core.stream_ids()

    def session_statistics(self, session_id: bytes) -> dict[str, Any]:
        """RTT (latest, smoothed, variance, min), congestion window, bytes and
        packets sent/received/lost/retransmitted, streams open, buffers and
        credit, plus the key counters of :meth:`session_info` (where both have a
        counter of the same name, such as ``packets_sent``, the session's own,
        which counts only the packets of its streams and control frames, wins)."""
        session = self._get_session(session_id)
        stats = self.session_info(session_id)
        if session.core is not None:
            stats.update(session.core.statistics())
        return stats

    def close(self, session_id: bytes, *, now: float, error_code: int = 0,
              reason: str = "", flush: bool | None = None) -> None:
        """Close a session (or abandon a pending connect) and tell the peer.

        With ``flush`` (the default for ``error_code`` 0) stream data already
        queued is delivered first, for at most ``close_flush_timeout``; new sends
        are refused meanwhile. A :class:`SessionClosed` event follows, with
        reason ``graceful`` for ``error_code`` 0 and ``error`` otherwise.
        Closing an unknown or already closed session does nothing.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        _check_code(error_code)
        if now > self._last_now:
            self._last_now = now
        label = CloseReason.GRACEFUL if error_code == 0 else CloseReason.ERROR
        if self._initiator.abandon(session_id, label, error_code, reason or "closed locally"):
            return
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            return
        if flush is None:
            flush = error_code == 0
        if flush and session.core is not None and session.core.has_unfinished_sends():
            # docs/protocol.md 7.8: deliver what is queued first (CLOSING); a
            # second graceful close keeps the first one's deadline.
            if session.state is not SessionState.CLOSING:
                session.closing = (error_code, reason,
                                   now + self._config.close_flush_timeout)
                self._schedule(session)
            session.advance(SessionInput.FLUSH)
            return
        self._close_now(session, error_code, reason, now)

    def _close_now(self, session: Session, error_code: int, reason: str, now: float) -> None:
        if session.established:
            # What is queued (datagrams, acknowledgements) leaves before the CLOSE.
            self._transmit(session, now)
            self._dirty.pop(session, None)
            session.close_frame = (error_code, reason)
            self._send_close(session, error_code, reason, now)
            # CLOSE is repeated until the peer echoes one (docs/protocol.md 7.8).
            session.close_interval = min(max(0.05, 1.5 * session.core.rtt.smoothed_rtt),
                                         self._config.close_linger / _MAX_CLOSE_SENDS)
            session.close_next = now + session.close_interval
        label = CloseReason.GRACEFUL if error_code == 0 else CloseReason.ERROR
        self._close_session(session, label, error_code, reason or "closed locally", now)

    def _send_close(self, session: Session, error_code: int, reason: str, now: float) -> None:
        frame = wire.CloseFrame(error_code, reason[:200])
        try:
            self._send_payload(session, wire.encode_frames([frame]), now)
            session.close_sends += 1
        except (KeyExhaustedError, LocalProtocolError):
            pass  # keys expired (or never confirmed): the peer times out instead

    def _receive_closed(self, session: Session, data: bytes, receiver_index: int,
                        now: float) -> None:
        """A packet for a closed session: a CLOSE from the peer ends our
        retransmission of ours, or is answered with one (at most a few times),
        so that both sides learn of the close even when CLOSE frames are lost.
        Anything else is absorbed."""
        if session.close_sends >= _MAX_CLOSE_SENDS \
                or session.closed_from is SessionState.HANDSHAKING:
            return  # never confirmed: it has no CLOSE to say
        opened = session.keys.open_untrusted(data, receiver_index, now=now)
        if opened is None:
            return
        try:
            frames = wire.decode_frames_untrusted(opened[2])
        except DecodeError:
            return
        closing = any(type(frame) is wire.CloseFrame for frame in frames)
        if session.close_interval:
            # We closed. A CLOSE back means ours arrived; anything else means it
            # did not (yet): say it again.
            if closing:
                session.close_next = None
                session.close_interval = 0.0
                self._schedule(session)
            else:
                self._send_close(session, *session.close_frame, now)
        elif closing:
            self._send_close(session, ErrorCode.NO_ERROR, "", now)  # echo

    def _usable_session(self, session_id: bytes, now: float | None, *,
                        closing_ok: bool = False) -> Session:
        if now is not None:
            if now > self._last_now:
                self._last_now = now
        session = self._get_session(session_id)
        if not session.established or session.core is None:
            raise LocalProtocolError("session is not established")
        if session.state is SessionState.CLOSING and not closing_ok:
            raise StreamClosedError("session is closing")
        return session

    def _mark(self, session: Session) -> None:
        self._dirty[session] = None

    # ------------------------------------------------------------------ I/O

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Return the datagrams queued since the last call, each with the address
        it must be sent to (``sendto``; never a connected socket)."""
        if now > self._last_now:
            self._last_now = now
        if self._dirty:
            dirty = self._dirty
            self._dirty = {}
            for session in dirty:
                self._transmit(session, now)
        out = self._outgoing
        self._outgoing = []
        return out

    def _transmit(self, session: Session, now: float) -> None:
        core = session.core
        if core is None or not session.established:
            return
        datagrams = core.transmit(now, session.keys.seal)
        if datagrams:
            session.last_sent = now
            address = session.address
            for datagram in datagrams:
                self._queue(datagram, address)
        self._schedule(session)

    def next_event(self) -> Event | None:
        """Return the oldest event not handled yet, or ``None``.

        With ``auto_credit`` (the default), pulling a stream data event returns
        its flow-control credit to the peer.
        """
        if not self._events:
            return None
        event = self._events.popleft()
        if type(event) in _DROPPABLE_EVENTS:
            self._event_bytes -= len(event.data)
        if self._config.auto_credit and type(event) in STREAM_DATA_EVENTS \
                and event.flow_controlled_length:
            session = self._sessions.get(event.session_id)
            if session is not None and session.core is not None and not session.closed:
                session.core.stream_consumed(event.stream_id, event.flow_controlled_length,
                                             now=self._last_now)
                self._mark(session)
        return event

    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` has work, or ``None``.

        When output is waiting (for instance credit returned by
        :meth:`next_event`), this is the time of the latest call: fire at once,
        then call :meth:`datagrams_to_send`.
        """
        if self._dirty:
            return self._last_now
        timers = self._timers
        while timers:
            at, _, owner = timers[0]
            if owner.timer_at == at:
                return at
            heapq.heappop(timers)  # stale entry: the owner's deadline moved
        return None

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now`` (retransmissions, keep-alives, idle
        timeouts, rekeys, expiry of old keys and half-open handshakes).

        .. note:: then call :meth:`datagrams_to_send` and :meth:`next_event`.
        """
        if now > self._last_now:
            self._last_now = now
        timers = self._timers
        due = []
        while timers and timers[0][0] <= now:
            at, _, owner = heapq.heappop(timers)
            if owner.timer_at != at:
                continue
            owner.timer_at = None
            due.append(owner)
        # Each owner runs once per call, so a deadline that is still due after
        # its handler ran cannot spin here (it is handled by the next call).
        for owner in due:
            if isinstance(owner, PendingConnect):
                self._initiator.handle_timer(owner, now)
            else:
                self._session_timer(owner, now)

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Process one datagram from ``address``. Never raises for any bytes:
        what cannot be decoded or authenticated is dropped and counted.

        .. note:: then call :meth:`datagrams_to_send`, :meth:`next_event` and
           :meth:`get_timer`.
        """
        if now > self._last_now:
            self._last_now = now
        self._stats["datagrams_received"] += 1
        self._stats["bytes_received"] += len(data)
        if not data:
            self._stats["dropped_undecodable"] += 1
            return
        data = bytes(data)
        kind = data[0]
        try:
            if kind == PacketKind.DATA:
                self._receive_data(data, address, now)
            elif kind == PacketKind.INITIATION:
                self._responder.receive_initiation(data, address, now)
            elif kind == PacketKind.RESPONSE:
                self._initiator.receive_response(data, address, now)
            elif kind == PacketKind.COOKIE_REPLY:
                self._initiator.receive_cookie_reply(data, address, now)
            else:
                self._stats["dropped_undecodable"] += 1
        except DecodeError:
            self._stats["dropped_undecodable"] += 1

    # ------------------------------------------------------------------ DATA

    def _receive_data(self, data: bytes, address: Address, now: float) -> None:
        receiver_index, _ = wire.pull_data_header_untrusted(data)
        session = self._indices.get(receiver_index)
        if not isinstance(session, Session):
            self._stats["dropped_unknown_index"] += 1
            return
        if session.state is SessionState.CLOSED:
            self._receive_closed(session, data, receiver_index, now)
            return
        keys = session.keys
        current = keys.current
        opened = keys.open_untrusted(data, receiver_index, now=now)
        if opened is None:
            self._stats["dropped_unauthenticated"] += 1
            return
        _, pn, payload = opened
        if keys.current is not current:
            self._sync_indices(session)  # the peer confirmed a rekey: the ring moved
        session.last_received = now
        # WireGuard-style roaming: the latest authenticated source is where the
        # peer is now.
        session.address = address
        if session.state is SessionState.HANDSHAKING:
            # The initiator's first packet confirms the keys and proves it
            # receives at this address: the session becomes usable (6.3).
            session.advance(SessionInput.CONFIRMED)
            self._half_open -= 1
            self._stats["handshakes_completed"] += 1
            self._push_event(SessionEstablished(session_id=session.session_id,
                                                peer_id=session.peer_id,
                                                peer_address=address, initiator=False))
        core = session.core
        try:
            core.receive_packet(pn, payload, now)
        except ProtocolError as exc:
            self._protocol_violation(session, exc.error_code, str(exc), now)
            return
        if core.peer_close is not None:
            code, message = core.peer_close
            reason = CloseReason.GRACEFUL if code == 0 else CloseReason.ERROR
            self._close_session(session, reason, code, message or "closed by peer", now)
            return
        if session.state is SessionState.CLOSING and not core.has_unfinished_sends():
            self._close_now(session, session.closing[0], session.closing[1], now)
            return
        # No _schedule here: datagrams_to_send transmits the dirty session and
        # _transmit re-arms its timer (get_timer answers "now" until then).
        self._mark(session)


    # ------------------------------------------------------------------ handshake callbacks

    def _connect_established(self, session_id: bytes, peer_id: bytes, address: Address,
                             keys: PacketKeys, params: TransportParameters, local_index: int,
                             now: float) -> None:
        """The Initiator's RESPONSE authenticated: the session exists and is
        confirmed for us at once (6.3)."""
        ring = KeyRing(limits=self._config.key_limits)
        ring.install(keys, now=now, confirmed=True)
        session = Session(session_id, peer_id, address, True, ring, params, now)
        session.core = self._new_core(session)
        session.advance(SessionInput.CONFIRMED)
        self._sessions[session_id] = session
        self._route(session, local_index)
        self._per_host[host_of(address)] = self._per_host.get(host_of(address), 0) + 1
        self._stats["handshakes_completed"] += 1
        self._push_event(SessionEstablished(session_id=session_id, peer_id=peer_id,
                                            peer_address=address, initiator=True))
        # The first DATA packet confirms the keys to the responder (section 6.3).
        # It is ack-eliciting, so loss recovery repeats it until it arrives.
        session.core.queue_ping()
        self._mark(session)
        self._schedule(session)

    def _rekeyed(self, session: Session, keys: PacketKeys, local_index: int,
                 now: float) -> None:
        """Our rekey of ``session`` completed: the new keys are current at once."""
        session.advance_rekey(RekeyInput.COMPLETED)
        session.keys.install(keys, now=now, confirmed=True)
        self._route(session, local_index)
        self._sync_indices(session)
        self._stats["rekeys_completed"] += 1
        # Use the new keys at once: that is what confirms them to the responder.
        session.core.queue_ping()
        self._mark(session)
        self._schedule(session)

    def _rekey_abandoned(self, session: Session) -> None:
        session.advance_rekey(RekeyInput.ABANDONED)
        self._schedule(session)

    def _admits(self, address: Address) -> bool:
        """Room for one more session from ``address`` (half-open, total, per host)."""
        config = self._config
        return not (self._half_open >= config.max_half_open
                    or len(self._sessions) >= config.max_sessions
                    or self._per_host.get(host_of(address), 0) >= config.max_sessions_per_address)

    def _rekey_target(self, index: int, peer_id: bytes) -> Session | None:
        """The session a peer's rekey names (by our index): only one of its own,
        established and open."""
        session = self._indices.get(index)
        if isinstance(session, Session) and session.peer_id == peer_id \
                and session.established:
            return session
        return None

    def _half_opened(self, peer_id: bytes, address: Address, keys: PacketKeys,
                     params: TransportParameters, local_index: int, now: float) -> None:
        """The Responder answered a new INITIATION: a HANDSHAKING session waits
        for the initiator's first DATA packet (or ``half_open_timeout``)."""
        ring = KeyRing(limits=self._config.key_limits)
        ring.install(keys, now=now, confirmed=True)
        session = Session(self._new_session_id(), peer_id, address, False, ring, params, now)
        session.core = self._new_core(session)
        self._sessions[session.session_id] = session
        self._route(session, local_index)
        self._per_host[host_of(address)] = self._per_host.get(host_of(address), 0) + 1
        self._half_open += 1
        self._schedule(session)

    def _rekey_offered(self, session: Session, keys: PacketKeys, local_index: int,
                       now: float) -> None:
        """The peer rekeys ``session``: the new keys wait as ``next`` until it uses them."""
        session.keys.install(keys, now=now, confirmed=False)
        self._route(session, local_index)
        self._schedule(session)

    # ------------------------------------------------------------------ sessions

    def _session_timer(self, session: Session, now: float) -> None:
        config = self._config
        state = session.state
        if state is SessionState.CLOSED:
            if now >= session.closed_at + config.close_linger:
                session.advance(SessionInput.LINGER_OVER)
                self._forget_session(session)
                return
            if session.close_next is not None and now >= session.close_next:
                if session.close_sends < _MAX_CLOSE_SENDS:
                    self._send_close(session, *session.close_frame, now)
                    session.close_interval = min(session.close_interval * 2,
                                                 config.close_linger / _MAX_CLOSE_SENDS)
                    session.close_next = now + session.close_interval
                else:
                    session.close_next = None
            self._schedule(session)
            return
        if state is SessionState.HANDSHAKING:
            if now >= session.created_at + config.half_open_timeout:
                # The initiator never confirmed: a lost confirmation, a peer with
                # another network seed, or a replayed/forged initiation.
                self._stats["handshakes_unconfirmed"] += 1
                self._half_open -= 1
                session.closed_at = now
                session.advance(SessionInput.EXPIRED)
                self._forget_session(session)
            else:
                self._schedule(session)
            return
        if now >= session.last_received + config.idle_timeout:
            self._close_session(session, CloseReason.TIMEOUT, ErrorCode.IDLE_TIMEOUT,
                                "no packet from the peer within the idle timeout", now)
            return
        current = session.keys.current
        if current is None or not current.can_receive(now=now):
            self._close_session(session, CloseReason.TIMEOUT, ErrorCode.IDLE_TIMEOUT,
                                "keys expired before a rekey completed", now)
            return
        if session.rekey_state is RekeyState.IDLE and (
            # Time limits: the side that initiated the keys rekeys (WireGuard).
            (current.initiator and current.needs_rekey(now=now))
            # Volume limits apply to whoever sends: either side may rekey.
            or current.packets_sent >= config.key_limits.rekey_after_packets
            or not current.can_send(now=now)
        ):
            session.advance_rekey(RekeyInput.START)
            self._initiator.start_rekey(session, now)
        session.keys.expire(now)
        self._sync_indices(session)
        session.core.handle_timer(now)
        if now >= session.last_sent + config.keep_alive_interval:
            session.core.queue_ping()
        if state is SessionState.CLOSING and (not session.core.has_unfinished_sends()
                                              or now >= session.closing[2]):
            self._close_now(session, session.closing[0], session.closing[1], now)
            return
        self._mark(session)
        self._schedule(session)

    def _send_payload(self, session: Session, payload: bytes, now: float) -> None:
        _, datagram = session.keys.seal(payload, now=now)
        session.last_sent = now
        self._queue(datagram, session.address)

    def _payload_room(self, session: Session) -> int:
        if session.core is not None:
            return session.core.max_payload
        limit = min(path_datagram_size(self._config, session.address),
                    session.peer_params.max_datagram_size)
        return limit - DATA_HEADER_SIZE - AEAD_TAG_SIZE

    def _new_core(self, session: Session) -> SessionCore:
        return SessionCore(self._config, session_id=session.session_id,
                           initiator=session.initiator, peer_params=session.peer_params,
                           emit=self._push_event,
                           max_datagram_size=path_datagram_size(self._config, session.address))

    def _protocol_violation(self, session: Session, code: int, message: str, now: float) -> None:
        self._stats["sessions_closed_by_violation"] += 1
        try:
            self._send_payload(session, wire.encode_frames([wire.CloseFrame(int(code), message[:200])]), now)
        except KeyExhaustedError:
            pass
        self._close_session(session, CloseReason.ERROR, code, message, now)

    def _close_session(self, session: Session, reason: str, code: int, message: str,
                       now: float) -> None:
        if session.closed:
            return
        session.closed_at = now
        session.advance(SessionInput.CLOSE)
        if session.rekey_state is RekeyState.RUNNING:
            self._initiator.cancel_rekey(session)
            session.advance_rekey(RekeyInput.ABANDONED)
        self._stats["sessions_closed"] += 1
        self._push_event(SessionClosed(session_id=session.session_id, peer_id=session.peer_id,
                                       reason=reason, error_code=int(code), message=message))
        self._schedule(session)

    def _forget_session(self, session: Session) -> None:
        for index in session.routes:
            self._indices.release(index, session)
        session.routes.clear()
        if self._sessions.pop(session.session_id, None) is not None:
            host = host_of(session.address)
            left = self._per_host.get(host, 1) - 1
            if left > 0:
                self._per_host[host] = left
            else:
                self._per_host.pop(host, None)
        session.timer_at = None

    def _route(self, session: Session, index: int) -> None:
        self._indices.route(index, session)
        session.routes.add(index)

    def _sync_indices(self, session: Session) -> None:
        """Drop the routes of keys the ring has retired."""
        live = set(session.keys.indices())
        for index in [i for i in session.routes if i not in live]:
            session.routes.discard(index)
            self._indices.release(index, session)

    # ------------------------------------------------------------------ helpers

    def _get_session(self, session_id: bytes) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            raise KeyError("unknown or closed session")
        return session

    def _new_session_id(self) -> bytes:
        while True:
            session_id = self._rng(16)
            if session_id not in self._sessions and session_id not in self._initiator:
                return session_id

    def _queue(self, datagram: bytes, address: Address) -> None:
        self._stats["datagrams_sent"] += 1
        self._stats["bytes_sent"] += len(datagram)
        self._outgoing.append((datagram, address))

    def _push_event(self, event: Event) -> None:
        if type(event) in _DROPPABLE_EVENTS:
            config = self._config
            size = len(event.data)
            if (len(self._events) >= config.max_events
                    or self._event_bytes + size > config.max_event_bytes):
                self._stats["events_dropped"] += 1
                return
            self._event_bytes += size
        self._events.append(event)

    def _arm(self, owner: Session | PendingConnect, at: float | None) -> None:
        """Set ``owner``'s deadline in the timer heap (``None``: none). Entries
        are never removed: one whose ``at`` is not the owner's ``timer_at`` any
        more is stale and skipped."""
        if at is None or at == owner.timer_at:
            if at is None:
                owner.timer_at = None
            return
        owner.timer_at = at
        heapq.heappush(self._timers, (at, next(self._timer_seq), owner))

    def _schedule(self, session: Session) -> None:
        self._arm(session, self._deadline_of(session))

    def _deadline_of(self, session: Session) -> float | None:
        config = self._config
        if session.session_id not in self._sessions:
            return None
        state = session.state
        if state is SessionState.CLOSED:
            end = session.closed_at + config.close_linger
            return end if session.close_next is None else min(end, session.close_next)
        if state is SessionState.HANDSHAKING:
            return session.created_at + config.half_open_timeout
        # Runs after every transmit: a running minimum, no list.
        at = session.last_received + config.idle_timeout
        core = session.core
        if not core.ping_pending:
            t = session.last_sent + config.keep_alive_interval
            if t < at:
                at = t
        t = core.get_timer()
        if t is not None and t < at:
            at = t
        if state is SessionState.CLOSING and session.closing[2] < at:
            at = session.closing[2]
        keys = session.keys
        current = keys.current
        if current is not None:
            if (session.rekey_state is RekeyState.IDLE and current.initiator
                    and current.rekey_at < at):
                at = current.rekey_at
            if current.expires_at < at:
                at = current.expires_at
        t = keys.next_deadline()
        if t is not None and t < at:
            at = t
        return at
