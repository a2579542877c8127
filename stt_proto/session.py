"""The reliable transport inside one session: streams, acknowledgements, loss
recovery, congestion control and flow control.

Theory of operation
-------------------
A :class:`SessionCore` belongs to one established session of an
:class:`~stt_proto.endpoint.Endpoint`. The endpoint owns keys, addresses and
liveness; it hands the core every authenticated packet payload with its packet
number (:meth:`SessionCore.receive_packet`), asks it for packets to send
(:meth:`SessionCore.transmit`, given the function that seals them), and runs its
timer (:meth:`SessionCore.get_timer`, :meth:`SessionCore.handle_timer`). Events
go out through the ``emit`` callable given at construction. Nothing here reads a
clock: every entry point takes ``now``.

Packet numbers come from the session's keys and keep increasing across rekeys
(:meth:`~stt_proto.crypto.PacketKeys.continue_from`), so one number space serves
acknowledgements for the whole session.

Sending (:class:`~stt_proto.assembly.PacketAssembler`). The core queues the
control frames a stream or the session's credit owes, and the streams with
data to send; packets are built from those queues on demand. Each carries, in
order: an ACK frame if one is owed, control frames (credit, resets, stops,
blocked signals, pings), queued datagrams, then STREAM frames from the streams
that have something to send, retransmissions first, in the order of their
priorities (:mod:`stt_proto.priority`). A packet
that carries anything but ACK and PADDING is *ack-eliciting*, counts as in
flight, and is remembered with the frames it carried, so that an
acknowledgement or a loss can be applied to exactly those frames.
Ack-eliciting packets leave only while the congestion window has room and the
pacer allows.

Loss recovery follows RFC 9002 and lives in
:class:`~stt_proto.recovery.PacketRecovery`: the core tells it of every packet
sent, every ACK frame and every timer, and settles the frames it hands back.
Frames of acknowledged packets are done (data released, resets and stops
finished); frames of lost packets are queued again by the assembler
(:meth:`~stt_proto.assembly.PacketAssembler.requeue`; stream data goes out in
new packets, and the receiver's reassembly drops any duplicate, so nothing is
delivered twice); on a probe timeout the oldest packet's frames are queued
again too, for the one or two probes to carry.

Acknowledging (:class:`~stt_proto.acks.AckTracker`). Every second ack-eliciting
packet (every tenth after the first hundred, as many stacks do at high rates) is
acknowledged at once, and any packet that arrives out of order too; otherwise an
ACK leaves within ``max_ack_delay``.

Streams. An id opens when either side first uses it and never opens again in
the session (docs/protocol.md 7.5, :mod:`stt_proto.stream_ids`): a frame for an
id that was used and whose stream is gone is a late copy, acknowledged and
dropped. Flow control and the streams' halves: see :mod:`stt_proto.stream`.

Node-wide budgets (:mod:`stt_proto.budget`). What the session holds for its
peer -- bytes received and not consumed, out-of-order pieces, closed-id
records, events waiting -- also counts against the endpoint's budgets, shared
by all its sessions. A STREAM frame that would take the session over its part
of one is discarded with its packet unacknowledged, like a frame over the
session's own fragment limit; the sender resends it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from . import _wire as wire
from .acks import AckTracker
from .assembly import F_RESET, F_STOP, F_STREAM, PacketAssembler
from .budget import NodeBudget
from .config import EndpointConfig
from .congestion import Pacer, create_congestion_controller
from .constants import AEAD_TAG_SIZE, DATA_HEADER_SIZE, ErrorCode
from .deadlines import abandon_due, next_abandon
from .errors import (
    LocalProtocolError,
    ProtocolError,
    SendBufferFullError,
)
from .events import (
    MessageReceived,
    MessagesSkipped,
    StreamClosed,
    StreamDataReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from .flow import SessionCredit
from .handshake import TransportParameters
from .priority import DEFAULT_URGENCY, check_priority
from .recovery import PacketRecovery
from .stream import MODE_BYTES, MODE_MESSAGES, RecvStream, SendStream
from .stream_control import HANDLERS
from .stream_ids import DEFERRED, LATE, OPEN, StreamAdmission

__all__ = ["SessionCore", "MODE_MESSAGES", "MODE_BYTES"]

_VARINT_MAX = (1 << 62) - 1

#: Out-of-order pieces that average at least this many bytes are always held:
#: the fragment limits only bite on tiny pieces (docs/security.md), so the
#: bookkeeping stays a fraction of the bytes, which credit bounds.
_BYTES_PER_FRAGMENT = 512

_StreamFrame = wire.StreamFrame
_AckFrame = wire.AckFrame
_PaddingFrame = wire.PaddingFrame
_CloseFrame = wire.CloseFrame


class _Stream:
    """A stream's two halves and its bookkeeping in the session (its
    priority is the scheduler's, :mod:`stt_proto.priority`)."""

    __slots__ = ("stream_id", "send", "recv", "remote", "urgency", "incremental",
                 "interactive")

    def __init__(self, stream_id: int, send: SendStream, recv: RecvStream, remote: bool):
        self.stream_id = stream_id
        self.send = send
        self.recv = recv
        self.remote = remote
        self.urgency = DEFAULT_URGENCY
        self.incremental = False
        self.interactive = False

    def __repr__(self) -> str:
        return f"_Stream({self.send!r}, {self.recv!r})"


class SessionCore:
    """Streams, acknowledgements, loss recovery, congestion and flow control of one
    session (see the module docstring).

    :param config: the endpoint's configuration (windows, limits, controller).
    :param session_id: the session's handle, put in every event.
    :param initiator: whether this side started the session (it allocates odd
        stream ids, the responder even ones).
    :param peer_params: the peer's transport parameters (its credit and sizes).
    :param emit: called with every event, in order, as ``emit(event,
        owner=core)``; the endpoint counts the events waiting for the
        application in the owner's :attr:`events_waiting`.
    :param max_datagram_size: the largest datagram the path carries (default:
        the configuration's); the peer's announced limit caps it too.
    :param budget: the endpoint's node-wide budgets (``None``: a private one
        without limits).
    """

    def __init__(self, config: EndpointConfig, *, session_id: bytes, initiator: bool,
                 peer_params: TransportParameters, emit: Callable[..., None],
                 max_datagram_size: int | None = None,
                 budget: NodeBudget | None = None) -> None:
        self._config = config
        self.session_id = session_id
        self.initiator = initiator
        self._emit = partial(emit, owner=self)
        budget = self._budget = NodeBudget() if budget is None else budget
        #: Events of this session waiting for the application (the endpoint
        #: counts them; the node's event budget, stt_proto.budget).
        self.events_waiting = 0
        ours = config.max_datagram_size if max_datagram_size is None else max_datagram_size
        size = min(ours, peer_params.max_datagram_size)
        self.max_datagram_size = size
        self.max_payload = size - DATA_HEADER_SIZE - AEAD_TAG_SIZE

        # -- recovery (RFC 9002): sent packets, RTT, congestion control, pacing
        self.recovery = PacketRecovery(
            cc=create_congestion_controller(config.congestion_control, max_datagram_size=size),
            pacer=Pacer(max_datagram_size=size), max_ack_delay=config.max_ack_delay)
        self.rtt = self.recovery.rtt

        # -- acknowledging (docs/protocol.md 8.1)
        self.acks = AckTracker(max_ranges=config.max_ack_ranges,
                               max_ack_delay=config.max_ack_delay)
        #: Set while a packet is processed if a frame of it was refused: the
        #: packet is then not acknowledged.
        self._withhold_ack = False

        # -- streams
        self._streams: dict[int, _Stream] = {}
        #: Which ids may open: used ids (never again, 7.5), limits, refusals.
        self.admission = StreamAdmission(config, initiator=initiator, budget=budget)
        self._used = self.admission.used
        #: Queued bytes all streams keep in memory (max_session_send_buffer),
        #: and the ids a send refused for that limit, to wake up.
        self._send_held = 0
        self._room_waiters: dict[int, None] = {}
        #: Streams with messages sent with a deadline not yet settled.
        self._deadline_streams: dict[int, _Stream] = {}
        #: Out-of-order pieces held by all streams (max_session_fragments),
        #: and their bytes.
        self._fragments = 0
        self._fragment_bytes = 0

        # -- flow control
        self.credit = SessionCredit(peer_max_data=peer_params.initial_max_data,
                                    window=config.session_window,
                                    max_window=config.max_session_window, budget=budget)
        self._peer_stream_credit = peer_params.initial_max_stream_data

        #: ``(error_code, reason)`` once the peer sent CLOSE.
        self.peer_close: tuple[int, str] | None = None
        #: PATH_RESPONSE data received and not yet looked at by the session
        #: table (:mod:`stt_proto.path`); a few at most.
        self.path_responses: list[bytes] = []

        self._stats = dict.fromkeys((
            "packets_sent", "packets_received", "bytes_sent", "bytes_received",
            "bytes_retransmitted", "acks_sent", "stream_bytes_sent", "stream_bytes_received",
            "messages_sent", "messages_received", "datagrams_dropped",
            "spurious_frames_absorbed", "fragments_refused", "ack_ranges_forgotten",
            "dht_messages_dropped", "messages_refused_too_large",
            "sends_refused_session_buffer", "messages_abandoned", "messages_skipped",
        ), 0)

        # -- sending: the queues of frames owed and the packets built from them
        self.assembly = PacketAssembler(
            max_payload=self.max_payload, recovery=self.recovery, acks=self.acks,
            credit=self.credit, admission=self.admission, stats=self._stats,
            streams=self._streams, max_queued_datagrams=config.max_queued_datagrams)

    # ------------------------------------------------------------------ streams (API)

    def open_stream(self, stream_id: int | None = None, *,
                    max_frame_size: int | None = None, priority: int | None = None,
                    incremental: bool | None = None) -> int:
        """Open a stream, or return (and adjust) an existing one; see
        :meth:`Endpoint.open_stream <stt_proto.endpoint.Endpoint.open_stream>`.
        ``priority`` and ``incremental``, unless ``None``, are set as by
        :meth:`set_priority`.

        :raises StreamIdUsedError: ``stream_id`` was used in this session and its
            stream is gone (ids never open twice, docs/protocol.md 7.5).
        :raises LocalProtocolError: ``max_streams`` streams of this side are open,
            or the used ids would need more than ``max_used_stream_ranges`` ranges.
        """
        if max_frame_size is not None:
            if (isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int)
                    or not 0 <= max_frame_size <= _VARINT_MAX):
                raise ValueError("max_frame_size must be a non-negative int")
        if priority is not None or incremental is not None:
            check_priority(DEFAULT_URGENCY if priority is None else priority, incremental)
        if stream_id is None:
            stream_id = self.admission.allocate()
        elif isinstance(stream_id, bool) or not isinstance(stream_id, int) \
                or not 0 <= stream_id <= _VARINT_MAX:
            raise ValueError("stream_id must be an int in 0..2**62-1")
        stream = self._streams.get(stream_id)
        if stream is not None:
            if max_frame_size is not None:
                stream.send.max_frame_size = max_frame_size
                stream.recv.max_frame_size = max_frame_size
        else:
            stream = self._open_local(stream_id, max_frame_size)
            self._used.add(stream_id)
        if priority is not None or incremental is not None:
            self.assembly.send_queue.set_priority(
                stream, stream.urgency if priority is None else priority, incremental)
        return stream_id

    def set_priority(self, stream_id: int, priority: int,
                     incremental: bool | None = None) -> None:
        """Set an open stream's urgency, 0 (most urgent) to 7, and, unless
        ``incremental`` is ``None``, whether it shares its urgency's turns frame
        by frame (RFC 9218 meaning; :mod:`stt_proto.priority`). Local only:
        the peer is not told. Data already queued goes out in the new order.

        :raises KeyError: the stream is not open.
        :raises TypeError: ``priority`` is not an int (or is a bool), or
            ``incremental`` not a bool.
        :raises ValueError: ``priority`` is outside 0..7.
        """
        check_priority(priority, incremental)
        stream = self._streams.get(stream_id)
        if stream is None:
            raise KeyError(f"no open stream {stream_id}")
        self.assembly.send_queue.set_priority(stream, priority, incremental)

    def _open_local(self, stream_id: int, max_frame_size: int | None = None) -> _Stream:
        """Create a stream this side opens, not yet marked used (a send that
        opens it marks it only once something was queued)."""
        self.admission.open_local(stream_id)
        return self._new_stream(stream_id, remote=False, max_frame_size=max_frame_size)

    def _new_stream(self, stream_id: int, *, remote: bool,
                    max_frame_size: int | None = None) -> _Stream:
        config = self._config
        size = config.max_frame_size if max_frame_size is None else max_frame_size
        send = SendStream(stream_id, max_data=self._peer_stream_credit,
                          max_buffer=config.max_send_buffer, max_frame_size=size)
        recv = RecvStream(stream_id, window=config.stream_window,
                          max_window=config.max_stream_window, max_frame_size=size)
        stream = self._streams[stream_id] = _Stream(stream_id, send, recv, remote)
        return stream

    def _local_stream(self, stream_id: int) -> _Stream:
        """The open stream ``stream_id``, opened now if the id was never used:
        either side may send first on any id (7.2)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._open_local(stream_id)
            self._used.add(stream_id)
        return stream

    def _gone(self, stream_id: int) -> bool:
        """Whether ``stream_id`` was used and its stream is no longer open."""
        return stream_id not in self._streams and stream_id in self._used

    def send(self, stream_id: int, data: bytes, *, mode: int, end_stream: bool,
             deadline: float | None = None) -> None:
        """Queue a message (``MODE_MESSAGES``) or bytes (``MODE_BYTES``); a message
        with a ``deadline`` (a time on the session's clock) is abandoned if it
        cannot be delivered by then (:mod:`stt_proto.deadlines`)."""
        stream = self._streams.get(stream_id)
        new = stream is None
        if new:
            stream = self._open_local(stream_id)
        try:
            if (self._send_held >= self._config.max_session_send_buffer
                    and (data or not end_stream)):
                self._session_buffer_full(stream)
            self._send_held += stream.send.write(data, mode=mode, end_stream=end_stream,
                                                 deadline=deadline)
        except LocalProtocolError:
            if new:
                # Nothing was queued: the id stays unused, free to send on
                # again (StreamWritable says when, for a full session buffer).
                del self._streams[stream_id]
                self.admission.closed(remote=False)
            raise
        if new:
            self._used.add(stream_id)
        if mode == MODE_MESSAGES:
            self._stats["messages_sent"] += 1
        if deadline is not None:
            self._deadline_streams[stream_id] = stream
        self.assembly.wrote(stream)

    def _session_buffer_full(self, stream: _Stream) -> None:
        send = stream.send
        if send.fin or send.reset_code is not None:
            return  # write() raises the better error
        self._stats["sends_refused_session_buffer"] += 1
        self._room_waiters[stream.stream_id] = None
        raise SendBufferFullError(
            f"the session holds {self._send_held} unacknowledged bytes "
            f"(max_session_send_buffer {self._config.max_session_send_buffer})")

    def _release_held(self, nbytes: int) -> None:
        """``nbytes`` of queued data left memory (acknowledged or reset)."""
        held = self._send_held = self._send_held - nbytes
        if self._room_waiters and held < self._config.max_session_send_buffer:
            waiters = self._room_waiters
            self._room_waiters = {}
            streams = self._streams
            for sid in waiters:
                # A send that would have opened the id was refused too: the
                # id is free to send on (and so to open) again.
                stream = streams.get(sid)
                if (stream.send.writable if stream is not None
                        else sid not in self._used):
                    self._emit(StreamWritable(session_id=self.session_id, stream_id=sid))

    def stream_consumed(self, stream_id: int, nbytes: int, now: float) -> None:
        """The application took ``nbytes`` (an event's ``flow_controlled_length``)
        of the stream's delivered data: return that much credit to the peer."""
        if nbytes <= 0:
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # closed: its credit went back when it was closed
        recv = stream.recv
        before = recv.consumed
        recv.consume(nbytes)
        self.credit.on_consumed(recv.consumed - before)
        self._stream_credit(stream, now)
        if recv.message_reserve():
            # Everything before a large message in progress is consumed now:
            # the session must let the rest of it in.
            self.credit.reserving.add(stream.recv)
        self._session_credit(now)
        self._check_closed(stream, now)

    def stream_writable(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)
        return (stream is not None and stream.send.writable
                and self._send_held < self._config.max_session_send_buffer)

    def stream_send_buffered(self, stream_id: int) -> int:
        """Bytes of the stream's sending side not yet acknowledged (0 if not open)."""
        stream = self._streams.get(stream_id)
        return stream.send.buffered if stream is not None else 0

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def queue_datagram(self, data: bytes, dht: bool = False) -> None:
        self.assembly.queue_datagram(data, dht)

    def queue_ping(self) -> None:
        self.assembly.ping_pending = True

    @property
    def ping_pending(self) -> bool:
        return self.assembly.ping_pending

    def has_unfinished_sends(self) -> bool:
        """Whether stream data or control frames still wait for acknowledgement
        (a graceful close waits until this is false)."""
        assembly = self.assembly
        if (self.recovery.packets_in_flight or assembly.resets or assembly.send_queue
                or assembly.credit_waiters):
            return True
        for stream in self._streams.values():
            send = stream.send
            if send.buffered or (send.fin and not send.fin_acked and send.reset_code is None):
                return True
        return False

    # ------------------------------------------------------------------ receiving

    def receive_packet(self, pn: int, payload: bytes, now: float) -> None:
        """Process the frames of an authenticated packet.

        :raises ProtocolError: the peer violated the protocol; the endpoint closes
            the session with ``error_code``. (``DecodeError`` is one.)
        """
        frames = wire.decode_frames_untrusted(payload)
        self._withhold_ack = False
        stats = self._stats
        stats["packets_received"] += 1
        stats["bytes_received"] += len(payload) + DATA_HEADER_SIZE + AEAD_TAG_SIZE
        eliciting = False
        for frame in frames:
            kind = type(frame)
            if kind is _StreamFrame:
                eliciting = True
                self._on_stream_input(frame, now, False)
            elif kind is _AckFrame:
                self._on_ack(frame, now)
            elif kind is _PaddingFrame:
                pass
            elif kind is _CloseFrame:
                self.peer_close = (frame.error_code, frame.reason)
                break
            else:
                eliciting = True
                handler = _HANDLERS.get(kind)
                if handler is None:
                    raise ProtocolError(f"unexpected {kind.__name__}")
                handler(self, frame, now)
        if self._withhold_ack:
            return  # not acknowledged: the peer will resend what we refused
        stats["ack_ranges_forgotten"] += self.acks.on_packet(
            pn, now, eliciting=eliciting, packets_received=stats["packets_received"])

    def _incoming_stream(self, stream_id: int, now: float) -> _Stream | None:
        """The stream a peer's STREAM or RESET_STREAM frame is for, opened if the
        id was never used; ``None`` when the frame is to be absorbed.

        :raises ProtocolError: the id would need a range of used ids beyond
            ``max_used_stream_ranges`` (STREAM_LIMIT_ERROR, 7.2).
        """
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        verdict = self.admission.admit_peer(stream_id, now)
        if verdict is not OPEN:
            if verdict is LATE:
                # A late or repeated frame for a stream that is gone: it never
                # opens the id again, and its packet is acknowledged (7.5).
                self._stats["spurious_frames_absorbed"] += 1
            elif verdict is DEFERRED:
                # Over the session's part of the node's closed-id budget: the
                # peer sends the frame again (stt_proto.budget).
                self._withhold_ack = True
            return None
        stream = self._new_stream(stream_id, remote=True)
        self._emit(StreamOpened(session_id=self.session_id, stream_id=stream_id))
        return stream

    def _absorb_refused(self, stream_id: int, end: int, now: float) -> None:
        """Count the bytes of a refused stream as received and consumed: the
        peer counted them against our session credit (7.2)."""
        grown = self.admission.refused_bytes(stream_id, end)
        if grown:
            self.credit.on_received(grown)
            self.credit.on_consumed(grown)
            self._session_credit(now)

    def _on_stream_input(self, frame, now: float, skip: bool) -> None:
        """A STREAM frame, or a STREAM_SKIP (docs/protocol.md 7.12): the bytes
        it covers count the same way for flow control.

        Node-wide budgets (:mod:`stt_proto.budget`), checked with a few integer
        operations: a session over its part of the node's event budget, or
        that would go over its part of the receive budget (bytes) or of the
        fragment budget (pieces), has the frame discarded and its packet left
        unacknowledged. Every frame we act
        on is idempotent, so the rest of the packet coming again does no harm.
        """
        budget = self._budget
        if budget.events >= (budget.event_limit if self.events_waiting < budget.event_share
                             else budget.event_open):
            budget.events_refused += 1
            self._withhold_ack = True
            return
        end = frame.offset + (frame.length if skip else len(frame.data))
        stream = self._incoming_stream(frame.stream_id, now)
        if stream is None:
            if self.admission.refused:
                self._absorb_refused(frame.stream_id, end, now)
            return
        recv = stream.recv
        more = end - recv.highest
        if more > 0 and recv.reset_code is None:
            # Bytes: within the session's fair share up to the limit, beyond
            # it up to half the limit. A frame that raises no highest offset
            # (it fills a gap) is never refused for bytes, so retransmissions
            # always make progress.
            credit = self.credit
            if more > budget.recv_room(credit.received - credit.consumed):
                budget.recv_refused += 1
                self._withhold_ack = True
                return
        out: list = []
        before = recv.consumed
        held = recv.fragments
        held_bytes = recv.out_of_order_bytes
        config = self._config
        node_room = budget.fragment_room(self._fragments)
        room = min(max(config.max_stream_fragments, held_bytes // _BYTES_PER_FRAGMENT) - held,
                   max(config.max_session_fragments, self._fragment_bytes // _BYTES_PER_FRAGMENT)
                   - self._fragments, node_room)
        if skip:
            grown = recv.receive_skip(frame.offset, frame.length, frame.index, out, room)
        else:
            grown = recv.receive(frame.offset, frame.data, frame.fin, out, room)
        if grown < 0:
            # Too many out-of-order pieces: the frame is discarded and its
            # packet left unacknowledged, so an honest sender resends it
            # (docs/security.md).
            self._stats["fragments_refused"] += 1
            if room == node_room:
                budget.fragments_refused += 1
            self._withhold_ack = True
            return
        pieces = recv.fragments - held
        if pieces:
            self._fragments += pieces
            budget.fragments += pieces
        self._fragment_bytes += recv.out_of_order_bytes - held_bytes
        if grown:
            if skip:
                self.credit.on_skipped(grown)
            else:
                self.credit.on_received(grown)
                self._stats["stream_bytes_received"] += grown
        if recv.consumed != before:
            self.credit.on_consumed(recv.consumed - before)
        if recv.aborted and recv.final_size is None and not recv.stop_unacked:
            # Data on a direction we stopped, after our STOP_SENDING was
            # acknowledged: the peer may have ignored it because it had not
            # opened the stream yet (7.2). Ask again, or it waits for credit
            # that never comes and the stream never closes.
            recv.stop_pending = recv.stop_unacked = True
            self.assembly.stops[stream.stream_id] = stream
        if out:
            self._deliver(stream, out, now)
        elif recv.finished:
            self._check_closed(stream, now)
        if recv.limits_moved:
            # Credit only changes when the receive half moved; most packets carry
            # the middle of a message and change nothing.
            recv.limits_moved = False
            self._stream_credit(stream, now)
            if recv.message_reserve():
                self.credit.reserving.add(stream.recv)
                self._session_credit(now)

    def _deliver(self, stream: _Stream, out: list, now: float) -> None:
        emit = self._emit
        session_id = self.session_id
        sid = stream.stream_id
        for kind, data, span in out:
            if kind == "message":
                self._stats["messages_received"] += 1
                emit(MessageReceived(session_id=session_id, stream_id=sid, data=data,
                                     flow_controlled_length=span))
            elif kind == "data":
                emit(StreamDataReceived(session_id=session_id, stream_id=sid, data=data,
                                        flow_controlled_length=span))
            elif kind == "end":
                emit(StreamEnded(session_id=session_id, stream_id=sid,
                                 flow_controlled_length=span))
            elif kind == "skipped":
                self._stats["messages_skipped"] += data
                emit(MessagesSkipped(session_id=session_id, stream_id=sid, count=data,
                                     flow_controlled_length=span))
            else:  # too_large: the stream stopped itself
                self._stats["messages_refused_too_large"] += 1
                self.assembly.stops[sid] = stream
                emit(StreamReset(session_id=session_id, stream_id=sid,
                                 error_code=ErrorCode.MESSAGE_TOO_LARGE))
                self._session_credit(now)
        self._check_closed(stream, now)

    # ------------------------------------------------------------------ ACKs and loss

    def _on_ack(self, frame, now: float) -> None:
        acked, lost = self.recovery.on_ack(frame.ranges, frame.delay / 1e6, now)
        for frames in acked:
            self._frames_acked(frames, now)
        requeue = self.assembly.requeue
        for frames in lost:
            requeue(frames)

    def _frames_acked(self, frames: list, now: float) -> None:
        for record in frames:
            kind = record[0]
            if kind == F_STREAM:
                stream = record[1]
                send = stream.send
                held = send.held
                finished = send.on_acked(record[2], record[3], record[4])
                held -= send.held
                if held:
                    self._release_held(held)
                if finished:
                    self._check_closed(stream, now)
                elif send.buffer_was_full and send.writable:
                    send.buffer_was_full = False
                    if self._streams.get(stream.stream_id) is stream:
                        self._emit(StreamWritable(session_id=self.session_id,
                                                  stream_id=stream.stream_id))
            elif kind == F_RESET:
                stream = record[1]
                if self.assembly.resets.get(stream.stream_id) is stream:
                    del self.assembly.resets[stream.stream_id]  # queued again when lost
                if stream.send.on_reset_acked():
                    self._check_closed(stream, now)
            elif kind == F_STOP:
                stream = record[1]
                recv = stream.recv
                if recv.stop_unacked:
                    recv.stop_unacked = False
                    sid = stream.stream_id
                    if self.assembly.stops.get(sid) is stream:
                        del self.assembly.stops[sid]
                    if (recv.final_size is None and recv.highest
                            and self._streams.get(sid) is stream):
                        # Data came before this acknowledgement and no answer
                        # yet: the peer may have ignored the STOP_SENDING for
                        # a stream it opened only after it (7.2), then sent
                        # up to our credit, which a stopped direction never
                        # raises (7.6). Ask once more (7.4); the RESET_STREAM
                        # of a peer that did act on it cancels this.
                        recv.stop_pending = recv.stop_unacked = True
                        self.assembly.stops[sid] = stream
                    else:
                        self._check_closed(stream, now)

    # ------------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` has work to do."""
        deadline = self.acks.deadline
        loss = self.recovery.get_timer()
        if loss is not None and (deadline is None or loss < deadline):
            deadline = loss
        pacing = self.assembly.pacing_at
        if pacing is not None and (deadline is None or pacing < deadline):
            deadline = pacing
        if self._deadline_streams:
            due = next_abandon(self)
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        return deadline

    def handle_timer(self, now: float) -> None:
        self.acks.on_timer(now)
        assembly = self.assembly
        if assembly.pacing_at is not None and now >= assembly.pacing_at:
            assembly.pacing_at = None
        for frames in self.recovery.on_timer(now):
            assembly.requeue(frames)
        if self._deadline_streams:
            abandon_due(self, now)

    # ------------------------------------------------------------------ flow control

    def _stream_credit(self, stream: _Stream, now: float, force: bool = False) -> None:
        recv = stream.recv
        limit = recv.credit_update(now, self.rtt.smoothed_rtt, force)
        if limit is not None:
            self.assembly.updates[stream.stream_id] = stream
            self._session_credit(now)

    def _session_credit(self, now: float, force: bool = False) -> None:
        self.credit.update(now, self.rtt.smoothed_rtt, force)

    # ------------------------------------------------------------------ sending

    def transmit(self, now: float, seal: Callable[..., tuple[int, bytes]]) -> list[bytes]:
        """Build and seal the packets that may leave now
        (:meth:`PacketAssembler.transmit <stt_proto.assembly.PacketAssembler.transmit>`).

        ``seal(payload, now=now)`` returns ``(packet_number, datagram)``; it may
        raise :class:`~stt_proto.crypto.KeyExhaustedError`, in which case the
        frames taken for that packet are queued again and sending stops.
        """
        return self.assembly.transmit(now, seal)

    def resend_in_flight(self, *, new_path_at: float | None = None) -> None:
        """What is in flight was most likely lost to a dead path (the peer moved
        to a validated new address, or came back after an outage): it goes
        again at once (see :meth:`PacketRecovery.abandon_in_flight
        <stt_proto.recovery.PacketRecovery.abandon_in_flight>`).
        ``new_path_at``: the peer moved to another host at that time, so the
        congestion and RTT estimates restart as well
        (:meth:`~stt_proto.recovery.PacketRecovery.new_path`)."""
        recovery, requeue = self.recovery, self.assembly.requeue
        abandoned = recovery.abandon_in_flight() if new_path_at is None \
            else recovery.new_path(new_path_at)
        for frames in abandoned:
            requeue(frames)

    def has_eliciting_work(self) -> bool:
        """Whether anything ack-eliciting waits to be sent (a credit update, a
        control frame, a datagram, stream data), window and pacing aside."""
        return self.assembly.has_eliciting_work()

    # ------------------------------------------------------------------ closing streams

    def _check_closed(self, stream: _Stream, now: float) -> None:
        """Forget a stream whose two sides are done and whose data the application
        consumed; its id stays used, so late frames for it are absorbed (7.5)."""
        send, recv = stream.send, stream.recv
        if not (send.finished and recv.finished and recv.consumed >= recv.delivered):
            return
        sid = stream.stream_id
        if self._streams.get(sid) is not stream:
            return
        del self._streams[sid]
        self._fragments -= recv.fragments
        self._budget.fragments -= recv.fragments
        self._fragment_bytes -= recv.out_of_order_bytes
        if stream.send.held:
            self._release_held(stream.send.held)
        self.assembly.forget(sid)
        self._room_waiters.pop(sid, None)
        self._deadline_streams.pop(sid, None)
        self.credit.reserving.discard(stream.recv)
        self.admission.closed(remote=stream.remote)
        self._emit(StreamClosed(session_id=self.session_id, stream_id=sid))

    def release_budget(self) -> None:
        """The session closed: what it held leaves the node's budgets (its
        events still waiting stay counted until they are pulled). Later calls
        do nothing."""
        budget = self._budget
        budget.fragments -= self._fragments
        self.credit.release()
        self.admission.release()
        self._budget = self.credit.budget  # private now, like the parts'
        self._fragments = self._fragment_bytes = 0

    # ------------------------------------------------------------------ statistics



def _on_stream_skip(core: SessionCore, frame, now: float) -> None:
    core._on_stream_input(frame, now, True)


#: frame type -> ``handler(core, frame, now)``: the control frames
#: (stt_proto.stream_control) and STREAM_SKIP, which counts as stream input.
_HANDLERS = {**HANDLERS, wire.StreamSkipFrame: _on_stream_skip}
