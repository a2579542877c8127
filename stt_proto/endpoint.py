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

Routing. Every session and every outgoing handshake attempt owns random 32-bit
*local indices*; the peer puts ours in the clear header of every packet it sends
us (``docs/protocol.md`` sections 3 and 6). One dictionary maps indices to their
owner, so demultiplexing is a single lookup and needs no address (a peer may move).

Handshakes (``docs/protocol.md`` section 6). ``connect`` sends an INITIATION
and retransmits a fresh one with exponential backoff until the RESPONSE arrives
or the caller's deadline passes (then ``SessionClosed(reason="timeout")``). The
last few attempts stay valid, so a RESPONSE to an earlier one still completes the
connect on a slow path. A RESPONSE that does not authenticate means the responder
holds a different network seed: the connect fails with ``auth_failure`` within
the round trip. The responder answers an INITIATION only if its ``mac1`` proves
the sender knows our public key; it creates a *half-open* session, answers with
a RESPONSE (always smaller than the INITIATION, so it cannot amplify), and sends
nothing more until the initiator's first DATA packet confirms the keys and proves
the address. Only then does the application hear of the session.

Load. When more INITIATIONs arrive per second than the configured rate (or
half-open sessions pile up), the responder is *under load*: an INITIATION must then
carry a ``mac2`` made with a cookie bound to its source address. Without it the
answer is a small COOKIE_REPLY and no Diffie-Hellman work or state is spent.

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
from collections import OrderedDict, deque
from typing import Any

from . import _wire as wire
from .config import EndpointConfig
from .constants import AEAD_TAG_SIZE, DATA_HEADER_SIZE, ErrorCode, PacketKind
from .crypto import KeyExhaustedError, KeyRing, PacketKeys
from .errors import DecodeError, LocalProtocolError, NoiseError, ProtocolError
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
from .handshake import (
    MAC_SIZE,
    MIN_INITIATION_SIZE,
    PROLOGUE,
    SUITE_BY_CIPHER,
    SUITES,
    TransportParameters,
    cookie_key,
    encode_cookie_reply,
    encode_initiation,
    encode_response,
    mac,
    mac1_key,
    macs_equal,
    open_cookie,
    parse_cookie_reply_untrusted,
    parse_initiation_untrusted,
    parse_response_untrusted,
    seal_cookie,
)
from .identity import derive_psk
from .noise import HandshakeState
from .session import MODE_BYTES, MODE_MESSAGES, SessionCore

__all__ = ["Endpoint", "Address"]

Address = Any

#: Handshake attempts of one connect that stay valid at once (older ones are
#: forgotten, so a connect never holds more than this many Noise states).
MAX_ATTEMPTS_PER_CONNECT = 4
#: Noise message 1 of IKpsk2 without payload: ephemeral, encrypted static, tag.
_INITIATION_FIXED = 1 + 1 + 4 + 32 + 48 + 16 + 2 * MAC_SIZE

#: CLOSE frames a closed session sends at most (first, repeats and echoes).
_MAX_CLOSE_SENDS = 8

#: Peers whose static-static DH result is kept (least recently used evicted).
STATIC_DH_CACHE_SIZE = 4096

#: Events that may be dropped (and counted) when ``max_events`` are waiting or
#: they would hold more than ``max_event_bytes``: unreliable ones only. Stream events are bounded by flow control instead.
_DROPPABLE_EVENTS = (DatagramReceived, DhtMessageReceived)


class _BoundedCache(OrderedDict):
    """A mapping that forgets its least recently used entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def get(self, key, default=None):
        value = super().get(key, default)
        if value is not default:
            self.move_to_end(key)
        return value

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        if len(self) > self.limit:
            self.popitem(last=False)


class _Attempt:
    """One INITIATION in flight: its Noise state, index and ``mac1``."""

    __slots__ = ("handshake", "index", "mac1", "packet")

    def __init__(self, handshake: HandshakeState, index: int, mac1: bytes, packet: bytes):
        self.handshake = handshake
        self.index = index
        self.mac1 = mac1
        self.packet = packet


class _Connect:
    """An outgoing handshake: a new session, or a rekey of ``session``."""

    __slots__ = ("session_id", "peer_id", "address", "deadline", "attempts", "next_retry",
                 "interval", "cookie", "cookie_at", "session", "timer_at")

    def __init__(self, session_id: bytes, peer_id: bytes, address: Address, deadline: float,
                 interval: float, session: _Session | None) -> None:
        self.session_id = session_id
        self.peer_id = peer_id
        self.address = address
        self.deadline = deadline
        self.attempts: deque[_Attempt] = deque()
        self.next_retry = 0.0
        self.interval = interval
        self.cookie: bytes | None = None
        self.cookie_at = 0.0
        self.session = session
        self.timer_at: float | None = None


class _Session:
    """A session: its peer, address, keys and liveness clocks."""

    __slots__ = ("session_id", "peer_id", "address", "initiator", "keys", "peer_params",
                 "established", "created_at", "last_received", "last_sent", "rekey",
                 "closed_at", "timer_at", "routes", "core", "closing", "close_next",
                 "close_interval", "close_sends", "close_frame")

    def __init__(self, session_id: bytes, peer_id: bytes, address: Address, initiator: bool,
                 keys: KeyRing, peer_params: TransportParameters, now: float) -> None:
        self.session_id = session_id
        self.peer_id = peer_id
        self.address = address
        self.initiator = initiator
        self.keys = keys
        self.peer_params = peer_params
        self.established = False
        self.created_at = now
        self.last_received = now
        self.last_sent = now
        self.rekey: _Connect | None = None
        self.closed_at: float | None = None
        self.timer_at: float | None = None
        #: Local indices routed to this session (one per live key).
        self.routes: set[int] = set()
        #: Streams, recovery and flow control (stt_proto.session).
        self.core: SessionCore | None = None
        #: ``(error_code, reason, deadline)`` while a graceful close delivers
        #: what is queued.
        self.closing: tuple[int, str, float] | None = None
        #: After a local close: when the CLOSE frame is sent again (until the
        #: peer echoes a CLOSE or the linger period ends), the interval, and
        #: how many CLOSE frames were sent.
        self.close_next: float | None = None
        self.close_interval = 0.0
        self.close_sends = 0
        #: ``(error_code, reason)`` of our CLOSE: repetitions carry the same
        #: (docs/protocol.md 7.8; only the echo of the peer's CLOSE is CLOSE(0)).
        self.close_frame: tuple[int, str] = (ErrorCode.NO_ERROR, "")


def _check_code(error_code: int) -> None:
    if isinstance(error_code, bool) or not isinstance(error_code, int) \
            or not 0 <= error_code < 1 << 62:
        raise ValueError("error_code must be an int in 0..2**62-1")


def _address_key(address: Address) -> bytes:
    """Bytes that identify a source address, for cookies."""
    return repr(address).encode()


def _host(address: Address) -> Any:
    return address[0] if isinstance(address, tuple) else address


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
        self._identity = config.identity
        self._public = config.identity.node_id
        self._psk = derive_psk(config.shared_seed)
        self._mac1_key = mac1_key(self._public)
        self._cookie_key = cookie_key(self._public)
        self._by_index: dict[int, _Session | _Connect] = {}
        self._sessions: dict[bytes, _Session] = {}
        self._connects: dict[bytes, _Connect] = {}
        self._per_host: dict[Any, int] = {}
        self._half_open = 0
        self._outgoing: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        #: Bytes of data held by the droppable events waiting (max_event_bytes).
        self._event_bytes = 0
        self._timers: list[tuple[float, int, Any]] = []
        self._timer_seq = itertools.count()
        self._replay_cache: OrderedDict[bytes, None] = OrderedDict()
        # DH(our static, peer static) per peer, reused by every handshake with
        # that peer (a secret; bounded like every table).
        self._static_dh: _BoundedCache = _BoundedCache(STATIC_DH_CACHE_SIZE)
        self._cookie_secret = self._rng(32)
        self._previous_cookie_secret: bytes | None = None
        self._cookie_secret_at: float | None = None
        self._rate_window_start = float("-inf")
        self._rate_count = 0
        #: Sessions with input since they last transmitted.
        self._dirty: dict[_Session, None] = {}
        self._last_now = float("-inf")
        self._stats = dict.fromkeys(
            (
                "datagrams_received", "bytes_received", "datagrams_sent", "bytes_sent",
                "dropped_undecodable", "dropped_unknown_index", "dropped_unauthenticated",
                "initiations_received", "initiations_bad_mac", "initiations_replayed",
                "initiations_failed", "initiations_rejected_limit", "cookie_replies_sent",
                "cookie_replies_received", "responses_bad_mac", "responses_bad_parameters",
                "handshakes_completed",
                "handshakes_unconfirmed", "connects_timed_out", "auth_failures",
                "rekeys_completed", "sessions_closed", "events_dropped",
                "handshake_bytes_received_unvalidated", "handshake_bytes_sent_unvalidated",
                "amplification_refused", "sessions_closed_by_violation",
            ),
            0,
        )

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
            pending_connects=len(self._connects),
            indices=len(self._by_index),
            replay_cache=len(self._replay_cache),
            queued_events=len(self._events),
            queued_event_bytes=self._event_bytes,
            timer_entries=len(self._timers),
        )
        return stats

    def session_info(self, session_id: bytes) -> dict[str, Any]:
        """Peer, address, role and key statistics of one session."""
        session = self._get_session(session_id)
        info: dict[str, Any] = {
            "peer_id": session.peer_id,
            "peer_address": session.address,
            "initiator": session.initiator,
            "established": session.established,
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
        if len(self._connects) >= self._config.max_pending_connects:
            raise LocalProtocolError("too many pending connects")
        timeout = self._config.connect_timeout if timeout is None else timeout
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        session_id = self._new_session_id()
        pending = _Connect(session_id, peer_id, address, now + timeout,
                           self._config.handshake_retry_initial, None)
        self._connects[session_id] = pending
        try:
            self._send_attempt(pending, now)
        except NoiseError:
            # DH with that key fails: a low-order point, not anybody's node id.
            self._finish_connect(pending, None)
            raise ValueError("peer_id is not a valid node id (X25519 public key)") from None
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
        failed = [pending for pending in self._connects.values() if pending.address == address]
        for pending in failed:
            self._fail_connect(pending, CloseReason.ERROR, ErrorCode.INTERNAL_ERROR, reason)
        return [pending.session_id for pending in failed]

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
        application gets hold of a stream the peer opened. An id used once in
        the session never opens again (docs/protocol.md 7.5).

        Raises:
            KeyError: unknown or closed session.
            StreamIdUsedError: ``stream_id`` was used in this session (by either
                side) and its stream is closed, or was refused.
            LocalProtocolError: the session is not established or is closing,
                ``max_streams`` streams are open, or ``stream_id`` would need a
                range of used ids beyond ``max_used_stream_ranges``.
            ValueError: ``stream_id`` or ``max_frame_size`` out of range.

        ``now`` (optional) is the time of the call, as for every command.
        """
        session = self._usable_session(session_id, now)
        return session.core.open_stream(stream_id, max_frame_size=max_frame_size)

    def send_message(self, session_id: bytes, stream_id: int, data: bytes, *, now: float,
                     end_stream: bool = False) -> None:
        """Queue one message on a stream (opening it if needed); the peer receives
        it whole, in order, exactly once, as a ``MessageReceived`` event.
        ``end_stream`` ends this side of the stream after it.

        Raises:
            KeyError: unknown or closed session.
            StreamClosedError: this side of the stream was ended, reset or
                stopped by the peer; or the session is closing.
            StreamIdUsedError: the stream is closed (its id was used in this
                session and never opens again).
            MessageTooLargeError: ``data`` exceeds the stream's ``max_frame_size``.
            SendBufferFullError: ``max_send_buffer`` bytes are still
                unacknowledged; nothing was queued. Send again after
                ``StreamWritable``.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        session = self._usable_session(session_id, now)
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
        if session is None or session.core is None or session.closed_at is not None:
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
        pending = self._connects.get(session_id)
        if pending is not None:
            label = CloseReason.GRACEFUL if error_code == 0 else CloseReason.ERROR
            self._fail_connect(pending, label, error_code, reason or "closed locally")
            return
        session = self._sessions.get(session_id)
        if session is None or session.closed_at is not None:
            return
        if flush is None:
            flush = error_code == 0
        if flush and session.core is not None and session.core.has_unfinished_sends():
            if session.closing is None:
                session.closing = (error_code, reason,
                                   now + self._config.close_flush_timeout)
                self._schedule(session)
            return
        self._close_now(session, error_code, reason, now)

    def _close_now(self, session: _Session, error_code: int, reason: str, now: float) -> None:
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

    def _send_close(self, session: _Session, error_code: int, reason: str, now: float) -> None:
        frame = wire.CloseFrame(error_code, reason[:200])
        try:
            self._send_payload(session, wire.encode_frames([frame]), now)
            session.close_sends += 1
        except (KeyExhaustedError, LocalProtocolError):
            pass  # keys expired (or never confirmed): the peer times out instead

    def _receive_closed(self, session: _Session, data: bytes, receiver_index: int,
                        now: float) -> None:
        """A packet for a closed session: a CLOSE from the peer ends our
        retransmission of ours, or is answered with one (at most a few times),
        so that both sides learn of the close even when CLOSE frames are lost.
        Anything else is absorbed."""
        if session.close_sends >= _MAX_CLOSE_SENDS or not session.established:
            return
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
                        closing_ok: bool = False) -> _Session:
        if now is not None:
            if now > self._last_now:
                self._last_now = now
        session = self._get_session(session_id)
        if not session.established or session.core is None:
            raise LocalProtocolError("session is not established")
        if session.closing is not None and not closing_ok:
            raise StreamClosedError("session is closing")
        return session

    def _mark(self, session: _Session) -> None:
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

    def _transmit(self, session: _Session, now: float) -> None:
        core = session.core
        if core is None or not session.established or session.closed_at is not None:
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
            if session is not None and session.core is not None and session.closed_at is None:
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
            if isinstance(owner, _Connect):
                self._connect_timer(owner, now)
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
                self._receive_initiation(data, address, now)
            elif kind == PacketKind.RESPONSE:
                self._receive_response(data, address, now)
            elif kind == PacketKind.COOKIE_REPLY:
                self._receive_cookie_reply(data, address, now)
            else:
                self._stats["dropped_undecodable"] += 1
        except DecodeError:
            self._stats["dropped_undecodable"] += 1

    # ------------------------------------------------------------------ DATA

    def _receive_data(self, data: bytes, address: Address, now: float) -> None:
        receiver_index, _ = wire.pull_data_header_untrusted(data)
        session = self._by_index.get(receiver_index)
        if not isinstance(session, _Session):
            self._stats["dropped_unknown_index"] += 1
            return
        if session.closed_at is not None:
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
        if not session.established:
            # The initiator's first packet confirms the keys and proves it
            # receives at this address: the session becomes usable.
            session.established = True
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
        if session.closing is not None and not core.has_unfinished_sends():
            self._close_now(session, session.closing[0], session.closing[1], now)
            return
        # No _schedule here: datagrams_to_send transmits the dirty session and
        # _transmit re-arms its timer (get_timer answers "now" until then).
        self._mark(session)

    # ------------------------------------------------------------------ responder

    def _under_load(self, now: float) -> bool:
        if now - self._rate_window_start >= 1.0:
            self._rate_window_start = now
            self._rate_count = 0
        self._rate_count += 1
        return (
            self._rate_count > self._config.handshakes_per_second_before_cookies
            or self._half_open * 2 >= self._config.max_half_open
        )

    def _cookie_for(self, address: Address, secret: bytes) -> bytes:
        return mac(secret, _address_key(address))

    def _rotate_cookie_secret(self, now: float) -> None:
        if self._cookie_secret_at is None:
            self._cookie_secret_at = now
        elif now - self._cookie_secret_at >= self._config.cookie_secret_lifetime:
            self._previous_cookie_secret = self._cookie_secret
            self._cookie_secret = self._rng(32)
            self._cookie_secret_at = now

    def _valid_mac2(self, body: bytes, mac2: bytes, address: Address) -> bool:
        for secret in (self._cookie_secret, self._previous_cookie_secret):
            if secret is not None and macs_equal(mac(self._cookie_for(address, secret), body), mac2):
                return True
        return False

    def _send_unvalidated(self, packet: bytes, address: Address, received: int) -> None:
        # docs/protocol.md section 6.6: before an address is validated we never
        # send more bytes than it sent us. The layouts guarantee it (INITIATIONs
        # are padded); this check keeps it true whatever changes later.
        if len(packet) > received:
            self._stats["amplification_refused"] += 1
            return
        self._stats["handshake_bytes_sent_unvalidated"] += len(packet)
        self._queue(packet, address)

    def _receive_initiation(self, data: bytes, address: Address, now: float) -> None:
        self._stats["initiations_received"] += 1
        self._stats["handshake_bytes_received_unvalidated"] += len(data)
        msg = parse_initiation_untrusted(data)
        if not macs_equal(mac(self._mac1_key, msg.body_for_mac1), msg.mac1):
            # The sender does not know our node id: silence, no state, no DH.
            self._stats["initiations_bad_mac"] += 1
            return
        if SUITES[msg.suite].split("_")[3] not in self._config.accepted_ciphers:
            self._stats["initiations_failed"] += 1
            return
        self._rotate_cookie_secret(now)
        if self._under_load(now) and not self._valid_mac2(msg.body_for_mac2, msg.mac2, address):
            nonce = self._rng(12)
            sealed = seal_cookie(self._cookie_key, nonce,
                                 self._cookie_for(address, self._cookie_secret), msg.mac1)
            self._stats["cookie_replies_sent"] += 1
            self._send_unvalidated(encode_cookie_reply(msg.sender_index, nonce, sealed),
                                   address, len(data))
            return
        ephemeral = msg.noise[:32]
        if ephemeral in self._replay_cache:
            self._stats["initiations_replayed"] += 1
            return
        handshake = HandshakeState(SUITES[msg.suite], initiator=False, prologue=PROLOGUE,
                                   s=self._identity.private_key, psks=[self._psk], rng=self._rng,
                                   static_dh_cache=self._static_dh)
        try:
            payload = handshake.read_message(msg.noise)
            params = TransportParameters.decode_untrusted(payload)
        except (NoiseError, DecodeError):
            self._stats["initiations_failed"] += 1
            return
        self._replay_cache[ephemeral] = None
        if len(self._replay_cache) > self._config.replay_cache_size:
            self._replay_cache.popitem(last=False)
        peer_id = handshake.remote_static
        assert peer_id is not None  # IK always transmits the initiator's static key
        rekeyed = None
        if params.rekey_index is not None:
            rekeyed = self._by_index.get(params.rekey_index)
            if not (isinstance(rekeyed, _Session) and rekeyed.peer_id == peer_id
                    and rekeyed.established and rekeyed.closed_at is None):
                self._stats["initiations_failed"] += 1
                return
        elif (self._half_open >= self._config.max_half_open
                or len(self._sessions) >= self._config.max_sessions
                or self._per_host.get(_host(address), 0) >= self._config.max_sessions_per_address):
            # The limits bound new sessions only, so they are checked once the
            # Noise message told a rekey apart: a rekey replaces the keys of a
            # session already counted, and refusing it would let a full table
            # (or the peer's other sessions) kill that session when its keys
            # reach their hard time limit.
            self._stats["initiations_rejected_limit"] += 1
            return
        local_index = self._new_index()
        response_noise = handshake.write_message(self._local_params(address=address).encode())
        send, recv = self._split(handshake, initiator=False)
        keys = PacketKeys(send=send, recv=recv, local_index=local_index,
                          remote_index=msg.sender_index, created_at=now, initiator=False,
                          limits=self._config.key_limits)
        packet = encode_response(local_index, msg.sender_index, response_noise, peer_id)
        if rekeyed is not None:
            # A rekey: the new keys wait as ``next`` until the initiator uses them.
            rekeyed.keys.install(keys, now=now, confirmed=False)
            self._route(rekeyed, local_index)
            self._queue(packet, address)
            self._schedule(rekeyed)
            return
        ring = KeyRing(limits=self._config.key_limits)
        ring.install(keys, now=now, confirmed=True)
        session = _Session(self._new_session_id(), peer_id, address, False, ring, params, now)
        session.core = self._new_core(session)
        self._sessions[session.session_id] = session
        self._route(session, local_index)
        self._per_host[_host(address)] = self._per_host.get(_host(address), 0) + 1
        self._half_open += 1
        self._send_unvalidated(packet, address, len(data))
        self._schedule(session)

    # ------------------------------------------------------------------ initiator

    def _datagram_size(self, address: Address) -> int:
        """The largest datagram this side announces and sends on the path to
        ``address`` (see ``EndpointConfig.path_max_datagram_size``)."""
        config = self._config
        path = config.path_max_datagram_size
        size = path(address) if path is not None else None
        if size is None:
            return config.max_datagram_size
        return min(max(int(size), 1200), 65527)

    def _local_params(self, rekey_index: int | None = None,
                      address: Address = None) -> TransportParameters:
        config = self._config
        return TransportParameters(
            idle_timeout_ms=int(config.idle_timeout * 1000),
            max_datagram_size=self._datagram_size(address),
            initial_max_data=config.session_window,
            initial_max_stream_data=config.stream_window,
            initial_max_streams=config.max_streams,
            rekey_index=rekey_index,
        )

    def _send_attempt(self, pending: _Connect, now: float) -> None:
        """Send a fresh INITIATION (new ephemeral key, new index)."""
        cipher = self._config.cipher
        suite = SUITE_BY_CIPHER[cipher]
        handshake = HandshakeState(SUITES[suite], initiator=True, prologue=PROLOGUE,
                                   s=self._identity.private_key, rs=pending.peer_id,
                                   psks=[self._psk], rng=self._rng,
                                   static_dh_cache=self._static_dh)
        rekey_index = pending.session.keys.current.remote_index if pending.session else None
        params = self._local_params(rekey_index, pending.address).encode(
            pad_to=MIN_INITIATION_SIZE - _INITIATION_FIXED)
        noise = handshake.write_message(params)
        index = self._new_index()
        cookie = pending.cookie
        if cookie is not None and now - pending.cookie_at >= self._config.cookie_secret_lifetime:
            cookie = pending.cookie = None
        packet, mac1_value = encode_initiation(suite, index, noise, pending.peer_id, cookie)
        attempt = _Attempt(handshake, index, mac1_value, packet)
        pending.attempts.append(attempt)
        self._by_index[index] = pending
        while len(pending.attempts) > MAX_ATTEMPTS_PER_CONNECT:
            old = pending.attempts.popleft()
            self._by_index.pop(old.index, None)
        self._queue(packet, pending.address)
        pending.next_retry = now + pending.interval
        pending.interval = min(pending.interval * 2, self._config.handshake_retry_max)
        self._schedule(pending)

    def _find_attempt(self, index: int) -> tuple[_Connect, _Attempt] | None:
        """The handshake attempt a RESPONSE or COOKIE_REPLY answers; counts and
        returns ``None`` when there is none."""
        pending = self._by_index.get(index)
        if isinstance(pending, _Connect):
            for attempt in pending.attempts:
                if attempt.index == index:
                    return pending, attempt
        self._stats["dropped_unknown_index"] += 1
        return None

    def _receive_response(self, data: bytes, address: Address, now: float) -> None:
        msg = parse_response_untrusted(data)
        found = self._find_attempt(msg.receiver_index)
        if found is None:
            return
        pending, attempt = found
        if not macs_equal(mac(self._mac1_key, msg.body_for_mac1), msg.mac1):
            self._stats["responses_bad_mac"] += 1
            return
        try:
            payload = attempt.handshake.read_message(msg.noise)
        except NoiseError:
            # The responder is who we asked for (mac1 and the index match) but the
            # handshake does not authenticate: it holds another network seed.
            self._stats["auth_failures"] += 1
            if pending.session is None:
                self._fail_connect(pending, CloseReason.AUTH_FAILURE, ErrorCode.AUTH_FAILURE,
                                   "handshake did not authenticate (different network seed?)")
            else:
                self._forget_attempt(pending, attempt)
            return
        try:
            params = TransportParameters.decode_untrusted(payload)
        except DecodeError as exc:
            # docs/protocol.md section 6.4: missing or out-of-range parameters.
            self._stats["responses_bad_parameters"] += 1
            if pending.session is None:
                self._fail_connect(pending, CloseReason.ERROR, ErrorCode.PROTOCOL_VIOLATION,
                                   f"bad transport parameters: {exc}")
            else:
                self._forget_attempt(pending, attempt)
            return
        send, recv = self._split(attempt.handshake, initiator=True)
        keys = PacketKeys(send=send, recv=recv, local_index=attempt.index,
                          remote_index=msg.sender_index, created_at=now, initiator=True,
                          limits=self._config.key_limits)
        self._finish_connect(pending, attempt)
        if pending.session is not None:
            session = pending.session
            session.rekey = None
            session.keys.install(keys, now=now, confirmed=True)
            self._route(session, attempt.index)
            self._sync_indices(session)
            self._stats["rekeys_completed"] += 1
            # Use the new keys at once: that is what confirms them to the responder.
            session.core.queue_ping()
            self._mark(session)
            self._schedule(session)
            return
        ring = KeyRing(limits=self._config.key_limits)
        ring.install(keys, now=now, confirmed=True)
        session = _Session(pending.session_id, pending.peer_id, address, True, ring, params, now)
        session.core = self._new_core(session)
        session.established = True
        self._sessions[session.session_id] = session
        self._route(session, attempt.index)
        self._per_host[_host(address)] = self._per_host.get(_host(address), 0) + 1
        self._stats["handshakes_completed"] += 1
        self._push_event(SessionEstablished(session_id=session.session_id,
                                            peer_id=session.peer_id, peer_address=address,
                                            initiator=True))
        # The first DATA packet confirms the keys to the responder (section 6.3).
        # It is ack-eliciting, so loss recovery repeats it until it arrives.
        session.core.queue_ping()
        self._mark(session)
        self._schedule(session)

    def _receive_cookie_reply(self, data: bytes, address: Address, now: float) -> None:
        msg = parse_cookie_reply_untrusted(data)
        found = self._find_attempt(msg.receiver_index)
        if found is None:
            return
        pending, attempt = found
        cookie = open_cookie(cookie_key(pending.peer_id), msg.nonce, msg.sealed_cookie,
                             attempt.mac1)
        if cookie is None:
            self._stats["dropped_unauthenticated"] += 1
            return
        self._stats["cookie_replies_received"] += 1
        pending.cookie = cookie
        pending.cookie_at = now
        # Resend at once with mac2: the cookie reply was smaller than our
        # INITIATION, so this exchange cannot be used to amplify.
        self._send_attempt(pending, now)

    def _forget_attempt(self, pending: _Connect, attempt: _Attempt) -> None:
        pending.attempts.remove(attempt)
        self._by_index.pop(attempt.index, None)

    def _finish_connect(self, pending: _Connect, keep: _Attempt | None) -> None:
        for attempt in pending.attempts:
            if attempt is not keep:
                self._by_index.pop(attempt.index, None)
        pending.attempts.clear()
        pending.timer_at = None
        if pending.session is None:
            self._connects.pop(pending.session_id, None)

    def _fail_connect(self, pending: _Connect, reason: str, code: int, message: str) -> None:
        self._finish_connect(pending, None)
        self._stats["sessions_closed"] += 1
        self._push_event(SessionClosed(session_id=pending.session_id, peer_id=pending.peer_id,
                                       reason=reason, error_code=int(code), message=message))

    def _connect_timer(self, pending: _Connect, now: float) -> None:
        if now >= pending.deadline:
            if pending.session is None:
                self._stats["connects_timed_out"] += 1
                self._fail_connect(pending, CloseReason.TIMEOUT, ErrorCode.IDLE_TIMEOUT,
                                   "no handshake response before the deadline")
            else:
                self._finish_connect(pending, None)
                pending.session.rekey = None
                self._schedule(pending.session)
            return
        if now >= pending.next_retry:
            self._send_attempt(pending, now)
        self._schedule(pending)

    # ------------------------------------------------------------------ sessions

    def _session_timer(self, session: _Session, now: float) -> None:
        config = self._config
        if session.closed_at is not None:
            if now >= session.closed_at + config.close_linger:
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
        if not session.established:
            if now >= session.created_at + config.half_open_timeout:
                # The initiator never confirmed: a lost confirmation, a peer with
                # another network seed, or a replayed/forged initiation.
                self._stats["handshakes_unconfirmed"] += 1
                self._half_open -= 1
                session.closed_at = now
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
        if session.rekey is None and (
            # Time limits: the side that initiated the keys rekeys (WireGuard).
            (current.initiator and current.needs_rekey(now=now))
            # Volume limits apply to whoever sends: either side may rekey.
            or current.packets_sent >= config.key_limits.rekey_after_packets
            or not current.can_send(now=now)
        ):
            self._start_rekey(session, now)
        session.keys.expire(now)
        self._sync_indices(session)
        session.core.handle_timer(now)
        if now >= session.last_sent + config.keep_alive_interval:
            session.core.queue_ping()
        if session.closing is not None and (not session.core.has_unfinished_sends()
                                            or now >= session.closing[2]):
            self._close_now(session, session.closing[0], session.closing[1], now)
            return
        self._mark(session)
        self._schedule(session)

    def _start_rekey(self, session: _Session, now: float) -> None:
        current = session.keys.current
        deadline = current.expires_at if current else now
        pending = _Connect(session.session_id, session.peer_id, session.address,
                           max(deadline, now + self._config.handshake_retry_initial),
                           self._config.handshake_retry_initial, session)
        session.rekey = pending
        self._send_attempt(pending, now)

    def _send_payload(self, session: _Session, payload: bytes, now: float) -> None:
        _, datagram = session.keys.seal(payload, now=now)
        session.last_sent = now
        self._queue(datagram, session.address)

    def _payload_room(self, session: _Session) -> int:
        if session.core is not None:
            return session.core.max_payload
        limit = min(self._datagram_size(session.address), session.peer_params.max_datagram_size)
        return limit - DATA_HEADER_SIZE - AEAD_TAG_SIZE

    def _new_core(self, session: _Session) -> SessionCore:
        return SessionCore(self._config, session_id=session.session_id,
                           initiator=session.initiator, peer_params=session.peer_params,
                           emit=self._push_event,
                           max_datagram_size=self._datagram_size(session.address))

    def _protocol_violation(self, session: _Session, code: int, message: str, now: float) -> None:
        self._stats["sessions_closed_by_violation"] += 1
        try:
            self._send_payload(session, wire.encode_frames([wire.CloseFrame(int(code), message[:200])]), now)
        except KeyExhaustedError:
            pass
        self._close_session(session, CloseReason.ERROR, code, message, now)

    def _close_session(self, session: _Session, reason: str, code: int, message: str,
                       now: float) -> None:
        if session.closed_at is not None:
            return
        session.closed_at = now
        if session.rekey is not None:
            self._finish_connect(session.rekey, None)
            session.rekey = None
        self._stats["sessions_closed"] += 1
        self._push_event(SessionClosed(session_id=session.session_id, peer_id=session.peer_id,
                                       reason=reason, error_code=int(code), message=message))
        self._schedule(session)

    def _forget_session(self, session: _Session) -> None:
        for index in session.routes:
            if self._by_index.get(index) is session:
                del self._by_index[index]
        session.routes.clear()
        if self._sessions.pop(session.session_id, None) is not None:
            host = _host(session.address)
            left = self._per_host.get(host, 1) - 1
            if left > 0:
                self._per_host[host] = left
            else:
                self._per_host.pop(host, None)
        session.timer_at = None

    def _route(self, session: _Session, index: int) -> None:
        self._by_index[index] = session
        session.routes.add(index)

    def _sync_indices(self, session: _Session) -> None:
        """Drop the routes of keys the ring has retired."""
        live = set(session.keys.indices())
        for index in [i for i in session.routes if i not in live]:
            session.routes.discard(index)
            if self._by_index.get(index) is session:
                del self._by_index[index]

    # ------------------------------------------------------------------ helpers

    def _get_session(self, session_id: bytes) -> _Session:
        session = self._sessions.get(session_id)
        if session is None or session.closed_at is not None:
            raise KeyError("unknown or closed session")
        return session

    def _split(self, handshake: HandshakeState, *, initiator: bool):
        i2r, r2i = handshake.split()
        return (i2r, r2i) if initiator else (r2i, i2r)

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self._rng(4), "big")
            if index not in self._by_index:
                return index

    def _new_session_id(self) -> bytes:
        while True:
            session_id = self._rng(16)
            if session_id not in self._sessions and session_id not in self._connects:
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

    def _schedule(self, owner: _Session | _Connect) -> None:
        at = self._deadline_of(owner)
        if at is None or at == owner.timer_at:
            if at is None:
                owner.timer_at = None
            return
        owner.timer_at = at
        heapq.heappush(self._timers, (at, next(self._timer_seq), owner))

    def _deadline_of(self, owner: _Session | _Connect) -> float | None:
        config = self._config
        if isinstance(owner, _Connect):
            # A connect is live while listed; a rekey while its session points at it.
            live = (owner.session_id in self._connects if owner.session is None
                    else owner.session.rekey is owner)
            return min(owner.deadline, owner.next_retry) if live else None
        if owner.session_id not in self._sessions:
            return None
        if owner.closed_at is not None:
            end = owner.closed_at + config.close_linger
            return end if owner.close_next is None else min(end, owner.close_next)
        if not owner.established:
            return owner.created_at + config.half_open_timeout
        # Runs after every transmit: a running minimum, no list.
        at = owner.last_received + config.idle_timeout
        core = owner.core
        if not core.ping_pending:
            t = owner.last_sent + config.keep_alive_interval
            if t < at:
                at = t
        t = core.get_timer()
        if t is not None and t < at:
            at = t
        if owner.closing is not None and owner.closing[2] < at:
            at = owner.closing[2]
        keys = owner.keys
        current = keys.current
        if current is not None:
            if owner.rekey is None and current.initiator and current.rekey_at < at:
                at = current.rekey_at
            if current.expires_at < at:
                at = current.expires_at
        t = keys.next_deadline()
        if t is not None and t < at:
            at = t
        return at

