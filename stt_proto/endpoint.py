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
composes them, each calling back only through the few callables it was given:

* routing: every packet names one of our local indices, which an
  :class:`~stt_proto.sessions.IndexTable` maps to a session or a handshake
  attempt (``docs/protocol.md`` sections 3 and 6);
* handshakes: :class:`~stt_proto.handshaking.Initiator` (connects, retries,
  rekeys) and :class:`~stt_proto.handshaking.Responder` (``mac1``, cookies under
  load, limits on new sessions);
* sessions: a :class:`~stt_proto.sessions.SessionTable` creates them from
  finished handshakes, runs their timer (idle timeout, keep-alive, when to
  rekey, linger and CLOSE repetition) and closes them; each
  :class:`~stt_proto.sessions.Session` moves through the life-cycle table in
  :mod:`stt_proto.state` (``HANDSHAKING`` until the initiator's first DATA
  packet confirms the keys, ``ESTABLISHED``, ``CLOSING`` while a graceful close
  drains, ``CLOSED`` while it lingers, ``FORGOTTEN``);
* streams, recovery and flow control: one :class:`~stt_proto.session.SessionCore`
  per session.

What stays here is the public surface and what binds the parts: the datagram
demultiplexer, the one timer heap behind :meth:`Endpoint.get_timer` (sessions
and pending connects each hold one entry; moved deadlines leave stale entries
that are skipped), the event queue with its limits, and the datagrams waiting
to leave.

Node-wide budgets. One :class:`~stt_proto.budget.NodeBudget` is shared by all
the sessions: receive buffers, out-of-order pieces, closed-id records and the
events waiting here. The event queue keeps, beside each event, the session
core it came from (if any), so each session's count of waiting events is
kept with an integer add and no lookup.

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
from .budget import NodeBudget
from .config import EndpointConfig
from .constants import PacketKind
from .deadlines import check_deadline
from .errors import DecodeError, LocalProtocolError
from .events import (
    STREAM_DATA_EVENTS,
    CloseReason,
    DatagramReceived,
    DhtMessageReceived,
    Event,
)
from .handshaking import Credentials, Initiator, PendingConnect, Responder
from .session import MODE_BYTES, MODE_MESSAGES
from .session_report import session_statistics, stream_info
from .sessions import IndexTable, Session, SessionTable
from .state import RekeyState
from .stream_control import end_stream, reset_stream, stop_stream

__all__ = ["Endpoint", "Address"]

Address = Any

#: Events that may be dropped (and counted) when ``max_events`` are waiting or
#: they would hold more than ``max_event_bytes``: unreliable ones only. Stream
#: events are bounded by flow control instead.
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
        self._outgoing: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        #: The session core each waiting event came from (None: the endpoint's
        #: own), in step with _events (the node's event budget).
        self._event_owners: deque[Any] = deque()
        #: Node-wide budgets shared by all sessions (stt_proto.budget).
        self._budget = NodeBudget(config)
        #: Bytes of data held by the droppable events waiting (max_event_bytes).
        self._event_bytes = 0
        #: ``(at, seq, owner)``: sessions and pending connects; an entry is
        #: stale unless ``owner.timer_at == at`` (see _arm).
        self._timers: list[tuple[float, int, Any]] = []
        self._timer_seq = itertools.count()
        self._last_now = float("-inf")
        # Counted per datagram: integers here (typed in the compiled build), put
        # in the dict by statistics(); the rare counters are the dict's own.
        self._datagrams_received = self._bytes_received = 0
        self._datagrams_sent = self._bytes_sent = 0
        self._stats = dict.fromkeys(
            (
                "dropped_undecodable", "dropped_unknown_index", "dropped_unauthenticated",
                "initiations_received", "initiations_bad_mac", "initiations_replayed",
                "initiations_failed", "initiations_rejected_limit", "cookie_replies_sent",
                "cookie_replies_received", "responses_bad_mac", "responses_bad_parameters",
                "handshakes_completed",
                "handshakes_unconfirmed", "connects_timed_out", "auth_failures",
                "rekeys_completed", "sessions_closed", "events_dropped",
                "handshake_bytes_received_unvalidated", "handshake_bytes_sent_unvalidated",
                "amplification_refused", "sessions_closed_by_violation",
                "early_dht_answered", "early_dht_unanswered", "early_dht_answers_received",
                "early_dht_resent", "path_probes_started", "path_challenges_sent",
                "path_challenges_deferred", "paths_validated", "path_validations_failed",
                "sessions_suspended", "sessions_resumed",
            ),
            0,
        )
        # The parts, composed: each calls back only through what it is given.
        table = self._table = SessionTable(
            config, self._indices, self._stats, queue=self._queue,
            push_event=self._push_event, arm=self._arm, new_session_id=self._new_session_id,
            start_rekey=lambda session, now: self._initiator.start_rekey(session, now),
            cancel_rekey=lambda session: self._initiator.cancel_rekey(session),
            budget=self._budget)
        #: The table's sessions by id (the same dict; read-only here).
        self._sessions = table.sessions
        credentials = Credentials(config)
        self._initiator = Initiator(
            config, credentials, self._indices, self._stats, queue=self._queue,
            push_event=self._push_event, schedule=self._arm,
            established=table.connect_established, rekeyed=table.rekeyed,
            rekey_abandoned=table.rekey_abandoned, early_result=self._early_result)
        self._responder = Responder(
            config, credentials, self._indices, self._stats, queue=self._queue,
            half_open=lambda: table.half_open, admits=table.admits,
            rekey_target=table.rekey_target, half_opened=table.half_opened,
            rekey_offered=table.rekey_offered, answer_early=self._answer_early)
        #: Answers DHT requests carried by INITIATIONs (set_early_dht_handler).
        self._early_dht_handler: Any = None
        self._mark = table.mark

    # ------------------------------------------------------------------ info

    @property
    def node_id(self) -> bytes:
        """This node's id (its static public key)."""
        return self._public

    def statistics(self) -> dict[str, int]:
        """Counters of everything dropped, refused, sent and completed, plus the
        current table sizes. Never contains secrets."""
        stats = {"datagrams_received": self._datagrams_received,
                 "bytes_received": self._bytes_received,
                 "datagrams_sent": self._datagrams_sent, "bytes_sent": self._bytes_sent}
        stats.update(self._stats)
        stats.update(
            sessions=len(self._sessions),
            half_open=self._table.half_open,
            pending_connects=len(self._initiator),
            indices=len(self._indices),
            replay_cache=self._responder.replay_cache_size,
            queued_events=len(self._events),
            queued_event_bytes=self._event_bytes,
            timer_entries=len(self._timers),
        )
        stats.update(self._budget.statistics())
        return stats

    def peer_sessions(self, peer_id: bytes) -> list[tuple[bytes, bool, bool]]:
        """The sessions with ``peer_id`` that are not closed, as ``(session_id,
        initiator, established)``: a responder's session is not established
        until the initiator's first packet confirms it (6.3). Pending connects
        are not sessions yet."""
        return [(s.session_id, s.initiator, s.established)
                for s in self._table.sessions.values()
                if s.peer_id == peer_id and not s.closed]

    def session_info(self, session_id: bytes) -> dict[str, Any]:
        """Peer, address, role, life-cycle state and key statistics of one session.

        ``state`` is the :class:`~stt_proto.state.SessionState` value
        (``"handshaking"``, ``"established"`` or ``"closing"``; closed sessions
        raise) and ``rekeying`` whether our rekey handshake is in flight.

        Raises:
            KeyError: unknown or closed session.
        """
        session = self._table.get(session_id)
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
                timeout: float | None = None, early_dht: bytes | None = None) -> bytes:
        """Start a handshake with the node ``peer_id`` at ``address``.

        ``early_dht``: a DHT message to deliver with the handshake
        (``docs/protocol.md`` 6.9). The INITIATION carries it when it is a
        request of at most ``MAX_EARLY_DHT_REQUEST`` bytes, and the responder may
        answer inside its RESPONSE: the answer then follows ``SessionEstablished``
        as a :class:`DhtMessageReceived`, one round trip after the connect.
        Otherwise it is sent as a DHT frame once the session is established.

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
        self._initiator.connect(session_id, peer_id, address, deadline=now + timeout, now=now,
                                early_dht=early_dht)
        return session_id

    def retry_connect(self, session_id: bytes, *, now: float) -> bool:
        """Send the pending connect ``session_id``'s next INITIATION now instead
        of after its backoff (``handshake_retry_initial``, doubling). For an
        owner that knows more than the endpoint: the DHT retransmits a request
        after a timeout drawn from its measured round-trip times, and a request
        waiting for a handshake means the INITIATION or the RESPONSE was lost.

        Returns:
            Whether such a connect was pending (``False``: nothing was sent).

        .. note:: then call :meth:`datagrams_to_send` and :meth:`get_timer`.
        """
        self._last_now = max(self._last_now, now)
        return self._initiator.retry(session_id, now)

    def set_early_dht_handler(self, handler: Any) -> None:
        """Answer the DHT requests INITIATIONs carry (``docs/protocol.md`` 6.9)
        with ``handler(peer_id, address, request, max_bytes, now)``: the answer's
        bytes (at most ``max_bytes``), or ``None`` to leave the request
        unanswered (the initiator then sends it again on the session). The
        sender holds ``peer_id``'s static key but is not yet proven a member of
        the network, and the handler must treat it so. ``None`` (the default)
        answers nothing early."""
        self._early_dht_handler = handler

    def _answer_early(self, peer_id: bytes, address: Address, request: bytes, max_bytes: int,
                      now: float) -> bytes | None:
        handler = self._early_dht_handler
        return None if handler is None else handler(peer_id, address, request, max_bytes, now)

    def _early_result(self, session_id: bytes, answer: bytes | None, request: bytes,
                      now: float) -> None:
        """A connect that carried ``request`` is established (6.9)."""
        if answer is not None:
            self._stats["early_dht_answers_received"] += 1
            self._push_event(DhtMessageReceived(session_id=session_id, data=answer))
            return
        self._stats["early_dht_resent"] += 1
        try:
            self.send_dht(session_id, request, now=now)
        except (KeyError, LocalProtocolError, ValueError):
            pass  # the DHT layer retransmits or times out

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

    def address_changed(self, *, now: float) -> int:
        """This node's own address changed (the adapter rebound its socket, the
        host joined another network): every established session sends a packet
        at once, so that its peer sees the new address and validates it
        (``docs/protocol.md`` 7.11). Without it a session that only receives
        would stay silent, and its peer would go on sending to the old address.
        A NAT that rebinds needs no call: the next packet shows the peer the new
        mapping. Returns the number of sessions that will send.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        self._last_now = max(self._last_now, now)
        count = 0
        for session in self._table.sessions.values():
            if session.established and session.core is not None:
                session.core.queue_ping()
                self._table.mark(session)
                count += 1
        return count

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

    def send_dht(self, session_id: bytes, data: bytes, *, now: float) -> None:
        """Queue ``data`` as one DHT frame on a session: unreliable like a
        datagram (the DHT layer retransmits), delivered to the peer's DHT layer
        as :class:`~stt_proto.events.DhtMessageReceived`.

        Raises:
            KeyError: unknown or closed session.
            LocalProtocolError: the session is not established yet.
            ValueError: ``data`` is larger than :meth:`max_datagram_payload` or
                than ``max_dht_message_size``.

        .. note:: then call :meth:`datagrams_to_send`.
        """
        session = self._usable_session(session_id, now, closing_ok=False)
        data = bytes(data)
        if len(data) > min(self.max_datagram_payload(session_id),
                           self._config.max_dht_message_size):
            raise ValueError(f"DHT message of {len(data)} bytes does not fit in a packet")
        session.core.queue_datagram(data, True)
        self._mark(session)

    def max_datagram_payload(self, session_id: bytes) -> int:
        """Largest ``data`` :meth:`send_datagram` accepts on this session."""
        room = self._table.payload_room(self._table.get(session_id))
        return room - 1 - wire.varint_size(room)

    # ------------------------------------------------------------------ streams

    def open_stream(self, session_id: bytes, stream_id: int | None = None, *,
                    max_frame_size: int | None = None, priority: int | None = None,
                    incremental: bool | None = None, now: float | None = None) -> int:
        """Open a stream (or adjust an open one) and return its id.

        ``stream_id=None`` allocates an unused id: odd on the side that initiated
        the session, even on the other, so the two sides never collide. Any other
        id may be chosen by the application, and either side may send first on
        it. ``max_frame_size`` (default from the configuration) is the largest
        message this side sends or accepts on the stream. Opening an id that is
        open already returns it (and applies ``max_frame_size``): that is how an
        application gets hold of a stream the peer opened. An id used once in
        the session never opens again (docs/protocol.md 7.5). ``priority`` and
        ``incremental``, unless ``None``, are set as by
        :meth:`set_stream_priority` (a new stream has urgency 3, not
        incremental, like every stream the peer opens).

        Raises:
            KeyError: unknown or closed session.
            StreamIdUsedError: ``stream_id`` was used in this session (by either
                side) and its stream is closed, or was refused.
            LocalProtocolError: the session is not established or is closing,
                ``max_streams`` streams are open, or ``stream_id`` would need a
                range of used ids beyond ``max_used_stream_ranges``.
            ValueError: ``stream_id``, ``max_frame_size`` or ``priority`` out of
                range.
            TypeError: ``priority`` is not an int, or ``incremental`` not a bool.

        ``now`` (optional) is the time of the call, as for every command.
        """
        session = self._usable_session(session_id, now)
        return session.core.open_stream(stream_id, max_frame_size=max_frame_size,
                                        priority=priority, incremental=incremental)

    def set_stream_priority(self, session_id: bytes, stream_id: int, priority: int,
                            incremental: bool | None = None) -> None:
        """Set an open stream's urgency and, unless ``incremental`` is ``None``,
        its incremental flag, with the meaning of RFC 9218: urgency 0 is the
        most urgent, 7 the least (3 by default); streams of one urgency that
        are not incremental send one after another, incremental ones take turns
        frame by frame. Urgencies are weighted, not strict: a waiting urgency
        ``u`` gets at least ``1 / 2 ** (u + 1)`` of the bytes sent
        (:mod:`stt_proto.priority`). Local only: the peer is not told. What is
        already queued goes out in the new order.

        Raises:
            KeyError: unknown or closed session, or the stream is not open.
            TypeError: ``priority`` is not an int (a bool is not one), or
                ``incremental`` not a bool.
            ValueError: ``priority`` is outside 0..7.
        """
        session = self._table.get(session_id)
        if session.core is None:
            raise KeyError("session not established")
        session.core.set_priority(stream_id, priority, incremental)

    def send_message(self, session_id: bytes, stream_id: int, data: bytes, *, now: float,
                     end_stream: bool = False, deadline: float | None = None) -> None:
        """Queue one message on a stream (opening it if needed); the peer receives
        it whole, in order, exactly once, as a ``MessageReceived`` event.
        ``end_stream`` ends this side of the stream after it.

        With a ``deadline`` (seconds from ``now``) the message is wanted only
        until then: if it cannot be delivered in time it is abandoned, never
        sent again, and the peer gets a ``MessagesSkipped`` in its place
        (docs/protocol.md 7.12). Messages after it are not held behind it.

        Raises:
            KeyError: unknown or closed session.
            ValueError, TypeError: ``deadline`` is not a positive number of seconds.
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
        if deadline is not None:
            deadline = now + check_deadline(deadline)
        session = self._usable_session(session_id, now)
        session.core.send(stream_id, data, mode=MODE_MESSAGES, end_stream=end_stream,
                          deadline=deadline)
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
        end_stream(session.core, stream_id)
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
        reset_stream(session.core, stream_id, error_code, now)
        self._mark(session)

    def stop_stream(self, session_id: bytes, stream_id: int, error_code: int = 0, *,
                    now: float) -> None:
        """Stop reading a stream: data that arrives is discarded and the peer is
        asked to stop sending (it sees ``StreamStopped(error_code)``).

        .. note:: then call :meth:`datagrams_to_send`.
        """
        _check_code(error_code)
        session = self._usable_session(session_id, now, closing_ok=True)
        stop_stream(session.core, stream_id, error_code, now)
        self._mark(session)

    def stream_consumed(self, session_id: bytes, stream_id: int, nbytes: int, *,
                        now: float) -> bool:
        """Return flow-control credit for ``nbytes`` the application consumed
        (the ``flow_controlled_length`` of stream events). Only needed with
        ``auto_credit=False``; unknown sessions and streams are ignored.

        Returns whether something became due: a credit update to send, or an
        event (the stream closing). Only then need the caller call
        :meth:`datagrams_to_send` and :meth:`next_event` soon; most calls
        return False (credit goes back in batches), and an application that
        answers each message saves a flush per message.
        """
        if now > self._last_now:
            self._last_now = now
        session = self._sessions.get(session_id)
        if session is None or session.core is None or session.closed:
            return False
        core = session.core
        events = len(self._events)
        core.stream_consumed(stream_id, nbytes, now=now)
        if core.has_eliciting_work():  # a credit update is due (often it is not)
            self._mark(session)
            return True
        return len(self._events) != events

    def stream_writable(self, session_id: bytes, stream_id: int) -> bool:
        """Whether a send on the stream would be accepted now."""
        session = self._table.get(session_id)
        return session.core is not None and session.core.stream_writable(stream_id)

    def stream_send_buffered(self, session_id: bytes, stream_id: int) -> int:
        """Bytes sent on the stream and not yet acknowledged (0 for a stream or
        session that is not open): what an overlay keeps low to queue the rest
        itself, where it can still choose what to drop or whom to prune."""
        session = self._sessions.get(session_id)
        if session is None or session.core is None:
            return 0
        return session.core.stream_send_buffered(stream_id)

    def stream_info(self, session_id: bytes, stream_id: int) -> dict[str, Any]:
        """States, buffered bytes and credit of one open stream (``KeyError`` if
        it is not open)."""
        session = self._table.get(session_id)
        if session.core is None:
            raise KeyError("session not established")
        return stream_info(session.core, stream_id)

    def stream_ids(self, session_id: bytes) -> list[int]:
        """Ids of the session's open streams."""
        session = self._table.get(session_id)
        return [] if session.core is None else session.core.stream_ids()

    def session_statistics(self, session_id: bytes) -> dict[str, Any]:
        """RTT (latest, smoothed, variance, min), congestion window, bytes and
        packets sent/received/lost/retransmitted, streams open, buffers and
        credit, plus the key counters of :meth:`session_info` (where both have a
        counter of the same name, such as ``packets_sent``, the session's own,
        which counts only the packets of its streams and control frames, wins)."""
        session = self._table.get(session_id)
        stats = self.session_info(session_id)
        if session.core is not None:
            stats.update(session_statistics(session.core))
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
        self._table.close(session_id, error_code, reason, flush, now)

    def _usable_session(self, session_id: bytes, now: float | None, *,
                        closing_ok: bool = False) -> Session:
        if now is not None:
            if now > self._last_now:
                self._last_now = now
        return self._table.usable(session_id, closing_ok=closing_ok)

    # ------------------------------------------------------------------ I/O

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Return the datagrams queued since the last call, each with the address
        it must be sent to (``sendto``; never a connected socket)."""
        if now > self._last_now:
            self._last_now = now
        if self._table.dirty:
            self._table.transmit_dirty(now)
        out = self._outgoing
        self._outgoing = []
        return out

    def next_event(self) -> Event | None:
        """Return the oldest event not handled yet, or ``None``.

        With ``auto_credit`` (the default), pulling a stream data event returns
        its flow-control credit to the peer.
        """
        if not self._events:
            return None
        event = self._events.popleft()
        owner = self._event_owners.popleft()
        if owner is not None:
            owner.events_waiting -= 1
        self._budget.events -= 1
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
        if self._table.dirty:
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
                self._table.handle_timer(owner, now)

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Process one datagram from ``address``. Never raises for any bytes:
        what cannot be decoded or authenticated is dropped and counted.

        .. note:: then call :meth:`datagrams_to_send`, :meth:`next_event` and
           :meth:`get_timer`.
        """
        if now > self._last_now:
            self._last_now = now
        self._datagrams_received += 1
        self._bytes_received += len(data)
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
        self._table.receive(session, data, receiver_index, address, now)

    # ------------------------------------------------------------------ helpers

    def _new_session_id(self) -> bytes:
        while True:
            session_id = self._rng(16)
            if session_id not in self._sessions and session_id not in self._initiator:
                return session_id

    def _queue(self, datagram: bytes, address: Address) -> None:
        self._datagrams_sent += 1
        self._bytes_sent += len(datagram)
        self._outgoing.append((datagram, address))

    def _push_event(self, event: Event, owner: Any = None) -> None:
        """Queue ``event`` for :meth:`next_event`; ``owner``: the session core
        it came from (its waiting events count against its part of the node's
        event budget)."""
        if type(event) in _DROPPABLE_EVENTS:
            config = self._config
            size = len(event.data)
            if (len(self._events) >= config.max_events
                    or self._event_bytes + size > config.max_event_bytes):
                self._stats["events_dropped"] += 1
                return
            self._event_bytes += size
        self._events.append(event)
        self._event_owners.append(owner)
        if owner is not None:
            owner.events_waiting += 1
        self._budget.events += 1

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
