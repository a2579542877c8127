"""Packet assembly: what goes into a session's next packet, in which order, and
when a packet may leave at all (docs/protocol.md 6 and 8).

Theory of operation
-------------------
A :class:`PacketAssembler` holds everything a session has decided to send but
not yet put in a packet, and turns it into sealed datagrams on demand
(:meth:`PacketAssembler.transmit`). It decides nothing about *what* is owed:
the session queues control frames when the state of a stream or of the
session's credit says so, :class:`~stt_proto.acks.AckTracker` says when an ACK
is owed, and :class:`~stt_proto.recovery.PacketRecovery` says how much may be
in flight and when the pacer lets the next packet go. Keeping the queues and
the one loop that drains them together means the order of frames in a packet,
and the room each kind needs, is written down in one place.

- **Order.** Each packet carries, in order: an ACK frame if one is owed (or
  rides along), then control frames -- MAX_DATA, MAX_STREAM_DATA, RESET_STREAM,
  STOP_SENDING, refusals (STOP_SENDING with STREAM_LIMIT_ERROR),
  PATH_RESPONSE, DATA_BLOCKED, STREAM_DATA_BLOCKED -- then queued datagrams, a
  pending PING, and last STREAM frames from the streams that have something to
  send, in the order :class:`~stt_proto.priority.StreamScheduler` gives
  (urgency, then turns within an urgency; each stream sends its lost data
  first). Control
  frames come first because they are small and unblock the peer; stream data
  fills whatever room is left.
- **Limits.** Ack-eliciting packets leave only while the congestion window
  has room and the pacer allows; when the pacer holds one back, the time it
  names is :attr:`PacketAssembler.pacing_at`, part of the session's timer.
  A probe may exceed the window by a packet, and a keep-alive PING goes out
  even with the window full, but then alone. Stream data also needs session
  credit (:class:`~stt_proto.flow.SessionCredit`) and the stream's own; a
  stream out of credit waits in :attr:`PacketAssembler.credit_waiters` (session
  credit) or announces STREAM_DATA_BLOCKED (its own) instead of spinning.
- **Records.** Every frame that must be settled when its packet is
  acknowledged or lost is recorded as a tuple whose first item is one of the
  ``F_*`` kinds below; the records of a packet go to
  :meth:`PacketRecovery.on_packet_sent
  <stt_proto.recovery.PacketRecovery.on_packet_sent>` and come back to the
  session to be settled. Frames of a lost packet come back here
  (:meth:`PacketAssembler.requeue`) and are queued again where what they
  carried is still wanted; so do the frames taken for a packet that cannot be
  sealed (the keys are exhausted).

This is the per-packet path: the loop asks the cheap questions first (most
calls, a receiver after each packet, have nothing to send) and looks the
collaborators up once per call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _wire as wire
from .constants import ErrorCode
from .crypto import KeyExhaustedError
from .priority import StreamScheduler

if TYPE_CHECKING:
    from .acks import AckTracker
    from .flow import SessionCredit
    from .recovery import PacketRecovery
    from .stream_ids import StreamAdmission

__all__ = [
    "PacketAssembler",
    "F_STREAM", "F_MAX_DATA", "F_MAX_STREAM_DATA", "F_RESET", "F_STOP", "F_REFUSAL",
]

#: Frame records kept with a sent packet (first item of each tuple).
F_STREAM = 0
F_MAX_DATA = 1
F_MAX_STREAM_DATA = 2
F_RESET = 3
F_STOP = 4
F_REFUSAL = 5
F_SKIP = 6

#: Most bytes a STREAM_SKIP frame takes (type and four 8-byte varints).
_SKIP_ROOM = 33

#: Smallest space worth starting a STREAM frame in.
_MIN_STREAM_ROOM = 24
#: PATH_RESPONSEs queued at most: a challenge beyond this is not answered
#: (the peer asks again).
_MAX_PATH_RESPONSES = 8

_PingFrame = wire.PingFrame
_push_stream_frame = wire.push_stream_frame


# The control frames owed per stream, built from the stream's state when they
# are written (what was lost is sent as it is now).
def _max_stream_data_frame(sid: int, stream: Any):
    return wire.MaxStreamDataFrame(sid, stream.recv.max_data)


def _reset_frame(sid: int, stream: Any):
    return wire.ResetStreamFrame(sid, stream.send.reset_code, stream.send.final_size)


def _stop_frame(sid: int, stream: Any):
    return wire.StopSendingFrame(sid, stream.recv.stop_code)


class PacketAssembler:
    """The send queues of one session and the loop that builds its packets.

    Args:
        max_payload: the largest packet payload (the datagram size less the
            header and the AEAD tag).
        recovery: the session's loss recovery (window, pacer, probes, packets
            in flight).
        acks: the session's acknowledgement tracker.
        credit: the session's credit (MAX_DATA, DATA_BLOCKED and the credit
            stream data takes).
        admission: the session's stream admission (refusals to send).
        stats: the session's counters, updated in place.
        max_queued_datagrams: datagrams kept waiting at most; the oldest is
            dropped beyond it.
        streams: the session's open streams by id (read only: lost frames of a
            stream that closed are not sent again).

    Attributes:
        send_queue: streams with data (or a FIN) to send, and whose turn it is
            (:class:`~stt_proto.priority.StreamScheduler`).
        credit_waiters: streams held back by session credit, by id; they go
            back to ``send_queue`` when MAX_DATA arrives.
        updates: streams owed a MAX_STREAM_DATA.
        resets: streams owed a RESET_STREAM (until it is acknowledged).
        stops: streams owed a STOP_SENDING.
        stream_blocked: streams owed a STREAM_DATA_BLOCKED.
        ping_pending: a PING is owed.
        pacing_at: when the pacer lets the next packet go, if it holds one back.
    """

    __slots__ = ("max_payload", "_recovery", "_acks", "_credit", "_admission", "_stats",
                 "_max_queued_datagrams", "_streams", "send_queue", "credit_waiters",
                 "updates", "resets", "stops", "stream_blocked", "_path_responses",
                 "ping_pending", "_datagrams", "pacing_at", "skips")

    def __init__(self, *, max_payload: int, recovery: PacketRecovery, acks: AckTracker,
                 credit: SessionCredit, admission: StreamAdmission, stats: dict,
                 streams: dict[int, Any], max_queued_datagrams: int) -> None:
        self.max_payload = max_payload
        self._recovery = recovery
        self._acks = acks
        self._credit = credit
        self._admission = admission
        self._stats = stats
        self._max_queued_datagrams = max_queued_datagrams
        self._streams = streams
        self.send_queue = StreamScheduler(max_payload)
        self.credit_waiters: dict[int, Any] = {}
        self.updates: dict[int, Any] = {}
        self.resets: dict[int, Any] = {}
        self.stops: dict[int, Any] = {}
        self.stream_blocked: dict[int, Any] = {}
        #: Streams owing STREAM_SKIPs (docs/protocol.md 7.12).
        self.skips: dict[int, Any] = {}
        # Both queues are empty in almost every session: a list of at most
        # _MAX_PATH_RESPONSES, and a deque made on first use (an empty deque
        # holds a 64-slot block, 0.6 KiB per idle session otherwise).
        self._path_responses: list[bytes] = []
        self.ping_pending = False
        self._datagrams: deque[tuple[bytes, bool]] | None = None
        self.pacing_at: float | None = None

    # ------------------------------------------------------------------ queuing

    def queue_datagram(self, data: bytes, dht: bool = False) -> None:
        """Queue an unreliable datagram (a DHT frame when ``dht``); the oldest is
        dropped (and counted in ``datagrams_dropped``) beyond ``max_queued_datagrams``.
        Both kinds share the queue: both are unreliable and sent in order."""
        queue = self._datagrams
        if queue is None:
            queue = self._datagrams = deque()
        if len(queue) >= self._max_queued_datagrams:
            queue.popleft()
            self._stats["datagrams_dropped"] += 1
        queue.append((data, dht))

    def queue_path_response(self, data: bytes) -> None:
        """Answer a PATH_CHALLENGE, unless ``_MAX_PATH_RESPONSES`` answers
        already wait."""
        if len(self._path_responses) < _MAX_PATH_RESPONSES:
            self._path_responses.append(data)

    @property
    def queued_datagrams(self) -> int:
        """Datagrams waiting for a packet."""
        return len(self._datagrams) if self._datagrams is not None else 0

    def has_eliciting_work(self) -> bool:
        """Whether anything ack-eliciting waits to be sent (window and pacing
        aside)."""
        credit = self._credit
        return bool(self.send_queue or self.updates or self.resets or self.stops
                    or credit.update_pending or self.ping_pending or self._datagrams
                    or self._admission.refusals or self._path_responses
                    or self.stream_blocked or credit.blocked_pending or self.skips)

    def want_send(self, stream: Any) -> None:
        """Queue ``stream`` for sending (at the back of its urgency unless it
        waits already); it no longer waits for session credit."""
        self.send_queue.push(stream)
        self.credit_waiters.pop(stream.stream_id, None)

    def wrote(self, stream: Any) -> None:
        """The application queued data on ``stream``: as :meth:`want_send`, and
        the scheduler decides again whether the stream is interactive
        (:meth:`StreamScheduler.wrote <stt_proto.priority.StreamScheduler.wrote>`)."""
        self.send_queue.wrote(stream)
        self.credit_waiters.pop(stream.stream_id, None)

    def requeue(self, records: list) -> None:
        """Queue again what the frames of a lost packet carried, where it is
        still wanted (docs/protocol.md 8.2): stream data and FIN of a stream
        still open, the current MAX_DATA, the current MAX_STREAM_DATA of a
        stream still receiving, a RESET_STREAM until it is acknowledged, a
        STOP_SENDING until it is acknowledged, a refusal. A credit frame
        carries the limit as it is now, not the one that was lost.

        Args:
            records: the frame records of the packet (``F_*`` tuples).
        """
        streams = self._streams
        for record in records:
            kind = record[0]
            if kind == F_STREAM:
                stream = record[1]
                send = stream.send
                send.on_lost(record[2], record[3], record[4])
                if stream.stream_id in streams and (send.lost or send.fin_pending):
                    self.want_send(stream)
            elif kind == F_MAX_DATA:
                self._credit.update_pending = True
            elif kind == F_MAX_STREAM_DATA:
                stream = record[1]
                if stream.stream_id in streams and not stream.recv.finished:
                    self.updates[stream.stream_id] = stream
            elif kind == F_RESET:
                stream = record[1]
                if stream.stream_id in streams and stream.send.state.value == "reset_sent":
                    self.resets[stream.stream_id] = stream
            elif kind == F_STOP:
                stream = record[1]
                if stream.recv.stop_unacked and streams.get(stream.stream_id) is stream:
                    self.stops[stream.stream_id] = stream
            elif kind == F_REFUSAL:
                # A lost refusal is sent again: the opener may send nothing more
                # that would prompt another one.
                self._admission.refusal_lost(record[1])
            elif kind == F_SKIP:
                stream = record[1]
                deadlines = stream.send.deadlines
                if deadlines is not None and streams.get(stream.stream_id) is stream:
                    deadlines.skips.append(record[2:])
                    self.skips[stream.stream_id] = stream

    def forget(self, stream_id: int) -> None:
        """Drop everything queued for a stream that closed."""
        for table in (self.send_queue, self.credit_waiters, self.updates, self.resets,
                      self.stops, self.stream_blocked, self.skips):
            table.pop(stream_id, None)

    # ------------------------------------------------------------------ building

    def path_challenge(self, data: bytes, now: float, seal: Callable[..., tuple[int, bytes]],
                       room: int) -> bytes | None:
        """One packet holding PATH_CHALLENGE ``data``, for a new address of the
        peer (:mod:`stt_proto.path`), with an ACK of what was received: a peer
        that moved hears of its packets a round trip sooner than by way of the
        validation. ``room``: the most the packet's payload may hold (the ACK
        is left out if it does not fit). Its number is recorded as sent, but it
        is not ack-eliciting for loss recovery (the path validator repeats it
        itself, with new data). None if the keys are exhausted."""
        challenge_size = 1 + len(data)
        w = wire.Writer(self.max_payload)
        with_ack = self._acks.write(w, now, True)
        if with_ack and w.tell() + challenge_size > room:
            w, with_ack = wire.Writer(self.max_payload), False
        wire.PathChallengeFrame(data).push(w)
        try:
            pn, datagram = seal(w.getvalue(), now=now)
        except KeyExhaustedError:
            return None
        if with_ack:
            self._acks.on_sent()
            self._stats["acks_sent"] += 1
        self._stats["packets_sent"] += 1
        self._stats["bytes_sent"] += len(datagram)
        self._recovery.on_packet_sent(pn, now, len(datagram), [], ack_eliciting=False)
        return datagram

    def transmit(self, now: float, seal: Callable[..., tuple[int, bytes]]) -> list[bytes]:
        """Build and seal the packets that may leave now.

        Args:
            now: the current time.
            seal: ``seal(payload, now=now)`` returns ``(packet_number,
                datagram)``; it may raise
                :class:`~stt_proto.crypto.KeyExhaustedError`, in which case the
                frames taken for that packet are queued again and sending
                stops.

        Returns:
            The sealed datagrams, in order.
        """
        out: list[bytes] = []
        recovery = self._recovery
        cc = recovery.cc
        pacer = recovery.pacer
        acks = self._acks
        stats = self._stats
        max_payload = self.max_payload
        while True:
            # Probes may exceed the window by a packet; a keep-alive PING goes
            # out even with the window full, but then alone.
            # The cheap questions first: most calls (a receiver after each
            # packet) have nothing to send, and then the pacer is not asked.
            ping_only = False
            in_flight = recovery.bytes_in_flight
            if recovery.probes > 0:
                can_elicit = True
            elif self.ping_pending:
                can_elicit = True
                ping_only = in_flight >= cc.congestion_window
            elif not self.has_eliciting_work():
                if in_flight < cc.congestion_window:
                    cc.on_app_limited(bytes_in_flight=in_flight, now=now)
                can_elicit = False
            elif in_flight >= cc.congestion_window:
                can_elicit = False
            else:
                at = pacer.next_send_time(now)
                can_elicit = at <= now
                if not can_elicit:
                    self.pacing_at = at
            want_ack = acks.owed(now)
            if not can_elicit and not want_ack:
                break
            w = wire.Writer(max_payload)
            records: list = []
            # An ACK goes out when one is owed, or rides along with other frames.
            with_ack = acks.write(w, now, want_ack)
            eliciting = False
            if ping_only:
                _PingFrame().push(w)
                self.ping_pending = False
                eliciting = True
            elif can_elicit:
                eliciting = self._write_frames(w, records)
                if not eliciting and recovery.probes:
                    _PingFrame().push(w)
                    eliciting = True
            if not w.tell():
                break
            try:
                pn, datagram = seal(w.getvalue(), now=now)
            except KeyExhaustedError:
                self.requeue(records)
                break
            size = len(datagram)
            out.append(datagram)
            stats["packets_sent"] += 1
            stats["bytes_sent"] += size
            if with_ack:
                stats["acks_sent"] += 1
                acks.on_sent()
            recovery.on_packet_sent(pn, now, size, records, ack_eliciting=eliciting)
            if not eliciting:
                break  # one ACK-only packet is all that is ever owed
        return out

    def _write_frames(self, w, records: list) -> bool:
        """Fill ``w`` with control frames, datagrams and stream data; returns whether
        anything ack-eliciting went in."""
        start = w.tell()
        credit = self._credit
        if credit.update_pending and w.remaining() >= 9:
            wire.MaxDataFrame(credit.local_max_data).push(w)
            records.append((F_MAX_DATA,))
            credit.update_pending = False
        if self.updates:
            self._drain(w, records, self.updates, 17, F_MAX_STREAM_DATA, _max_stream_data_frame)
        if self.resets:
            self._drain(w, records, self.resets, 25, F_RESET, _reset_frame)
        if self.stops:
            self._drain(w, records, self.stops, 17, F_STOP, _stop_frame)
        refusals = self._admission.refusals
        while refusals and w.remaining() >= 17:
            sid = refusals.pop(0)
            wire.StopSendingFrame(sid, ErrorCode.STREAM_LIMIT_ERROR).push(w)
            records.append((F_REFUSAL, sid))
        while self._path_responses and w.remaining() >= 9:
            wire.PathResponseFrame(self._path_responses.pop(0)).push(w)
        if self.skips:
            self._write_skips(w, records)
        if credit.blocked_pending and w.remaining() >= 9:
            wire.DataBlockedFrame(credit.blocked_at).push(w)
            credit.blocked_pending = False
        if self.stream_blocked:
            blocked = self.stream_blocked
            for sid in list(blocked):
                if w.remaining() < 17:
                    break
                stream = blocked.pop(sid)
                limit = stream.send.blocked_limit()
                if limit is not None:
                    stream.send.blocked_at = limit
                    wire.StreamDataBlockedFrame(sid, limit).push(w)
        if self._datagrams:
            queue = self._datagrams
            while queue:
                data, dht = queue[0]
                need = 1 + wire.varint_size(len(data)) + len(data)
                if need > w.remaining():
                    if need > self.max_payload:
                        queue.popleft()  # cannot ever fit (the path shrank)
                        self._stats["datagrams_dropped"] += 1
                        continue
                    break
                queue.popleft()
                (wire.DhtFrame if dht else wire.DatagramFrame)(data).push(w)
        if self.ping_pending and w.remaining() >= 1:
            _PingFrame().push(w)
            self.ping_pending = False
        if self.send_queue:
            self._write_streams(w, records)
        return w.tell() > start

    def _write_skips(self, w, records: list) -> None:
        """STREAM_SKIPs owed, each once the stream's offset has passed its end
        (the bytes it names count against credit only then)."""
        table = self.skips
        for sid in list(table):
            stream = table[sid]
            send = stream.send
            deadlines = send.deadlines
            skips = deadlines.skips if deadlines is not None else None
            while skips and skips[0][1] <= send.sent_end and w.remaining() >= _SKIP_ROOM:
                start, end, index = skips.popleft()
                while skips and skips[0][0] == end and skips[0][1] <= send.sent_end:
                    end, index = skips.popleft()[1:]  # one frame for a run
                wire.StreamSkipFrame(sid, start, end - start, index).push(w)
                records.append((F_SKIP, stream, start, end, index))
            if not skips:
                del table[sid]
            elif w.remaining() < _SKIP_ROOM:
                break

    @staticmethod
    def _drain(w, records: list, table: dict, room: int, kind: int, build) -> None:
        """Write one control frame per stream waiting in ``table`` while at least
        ``room`` bytes are left, recording each for loss and acknowledgement."""
        for sid in list(table):
            if w.remaining() < room:
                break
            stream = table.pop(sid)
            build(sid, stream).push(w)
            records.append((kind, stream))

    def _write_streams(self, w, records: list) -> None:
        """STREAM frames from the streams in ``send_queue``, each from the stream
        whose turn it is, within the room left and the session's and each
        stream's credit."""
        queue = self.send_queue
        session_credit = self._credit
        credit = session_credit.available
        stats = self._stats
        while queue and w.remaining() >= _MIN_STREAM_ROOM:
            stream = queue.head()
            sid = stream.stream_id
            send = stream.send
            frame = send.next_frame(w.remaining(), credit)
            sent = 0
            if frame is not None:
                offset, data, fin, new = frame
                _push_stream_frame(w, sid, offset, data, fin)
                end = offset + len(data)
                sent = end - offset
                records.append((F_STREAM, stream, offset, end, fin))
                if new:
                    credit -= new
                    session_credit.on_sent(new)
                    stats["stream_bytes_sent"] += new
                else:
                    stats["bytes_retransmitted"] += sent
            more = send.wants_to_send(credit)
            queue.served(stream, sent, more)
            if more:
                if frame is None:
                    break  # it did not fit: the packet is full
            elif send.reset_code is None and send.sent_end < send.write_end:
                if send.max_data <= send.sent_end:
                    if send.blocked_limit() is not None:
                        self.stream_blocked[sid] = stream
                else:
                    self.credit_waiters[sid] = stream
                    session_credit.blocked()
