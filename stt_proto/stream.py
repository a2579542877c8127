"""One stream of a session: its sending and receiving halves, framing and flow control.

A stream is two independent byte sequences, one per direction (``docs/protocol.md``
section 7). Each direction starts with one *mode* byte chosen by its sender:

* ``MODE_MESSAGES`` (0x00): the bytes that follow are messages, each a varint
  length and that many bytes. The receiver hands out every message whole, once,
  in order.
* ``MODE_BYTES`` (0x01): a plain byte stream; the receiver hands out data as it
  becomes contiguous.

The halves here know nothing about packets, keys or time: the session asks a
:class:`SendStream` for the next frame that fits, tells it which of its frames
were acknowledged or lost, and feeds a :class:`RecvStream` the STREAM frames that
arrive. Their states follow the tables in :mod:`stt_proto.state`.

Flow control. The receiver grants credit as an absolute offset (MAX_STREAM_DATA).
It counts bytes as *consumed* only when the application says so (or, with
automatic credit, when the event carrying them was pulled), so a slow reader
closes the window and the sender stops. A message larger than the window still
gets through: once the application has consumed everything delivered before it,
the receiver extends its credit to the end of the message in progress (bounded
by ``max_frame_size``, which the application chose).
"""

from __future__ import annotations

from . import _wire as wire
from ._rangeset import RangeSet
from .constants import ErrorCode
from .deadlines import MessageDeadlines
from .errors import (
    MessageTooLargeError,
    ProtocolError,
    SendBufferFullError,
    StreamClosedError,
)
from .state import (
    RECV_TERMINAL,
    SEND_TERMINAL,
    RecvInput,
    RecvState,
    SendInput,
    SendState,
    recv_transition,
    send_transition,
)

__all__ = ["MODE_MESSAGES", "MODE_BYTES", "SendStream", "RecvStream"]

MODE_MESSAGES = 0x00
MODE_BYTES = 0x01

#: Acknowledged (sending) or parsed (receiving) bytes at the head of a buffer are
#: released once there are this many and they are at least half of the buffer,
#: so releasing costs amortised O(1) per byte.
_COMPACT_MIN = 1 << 16

_encode_varint = wire.encode_varint
_frame_overhead = wire.stream_frame_overhead


class SendStream:
    """The sending half of a stream.

    :param stream_id: the stream's number.
    :param max_data: the peer's initial credit for this stream (its transport
        parameter ``initial_max_stream_data``).
    :param max_buffer: bytes queued but not yet acknowledged beyond which
        :meth:`write` refuses new data (one message is always accepted while the
        buffer is below this, whatever its size).
    :param max_frame_size: the largest message :meth:`write` accepts.
    """

    __slots__ = (
        "stream_id", "state", "mode", "max_frame_size", "max_buffer", "_buf", "_base",
        "write_end", "sent_end", "acked_end", "_acked", "lost", "fin",
        "fin_pending", "fin_acked", "max_data", "blocked_at", "reset_code",
        "reset_pending", "final_size", "buffer_was_full", "messages", "deadlines",
    )

    def __init__(self, stream_id: int, *, max_data: int, max_buffer: int,
                 max_frame_size: int) -> None:
        self.stream_id = stream_id
        self.state = SendState.READY
        self.mode: int | None = None
        self.max_frame_size = max_frame_size
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._base = 0           # stream offset of _buf[0]
        self.write_end = 0       # offset after the last byte queued
        self.sent_end = 0        # offset after the last new byte sent
        self.acked_end = 0       # every byte below this is acknowledged
        self._acked = RangeSet()  # acknowledged ranges above acked_end
        self.lost = RangeSet()   # ranges to send again
        self.fin = False          # the application ended this side
        self.fin_pending = False
        self.fin_acked = False
        self.max_data = max_data
        self.blocked_at = -1      # credit limit a STREAM_DATA_BLOCKED was sent for
        self.reset_code: int | None = None
        self.reset_pending = False
        self.final_size = 0
        self.buffer_was_full = False
        self.messages = 0         # messages written (the next one's number)
        #: Deadlines of messages sent with one (docs/protocol.md 7.12).
        self.deadlines: MessageDeadlines | None = None

    def __repr__(self) -> str:
        return (f"SendStream(id={self.stream_id}, state={self.state.value}, "
                f"queued={self.write_end}, sent={self.sent_end}, acked={self.acked_end})")

    def _to(self, event: SendInput) -> None:
        state = send_transition(self.state, event)
        if state is None:
            raise StreamClosedError(f"stream {self.stream_id} cannot send "
                                    f"({self.state.value})")
        self.state = state

    # -- the application side --------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet acknowledged."""
        return self.write_end - self.acked_end

    @property
    def held(self) -> int:
        """Bytes of queued data this side still keeps in memory (none after a
        reset: the buffer is dropped then)."""
        return self.write_end - max(self.acked_end, self._base)

    @property
    def writable(self) -> bool:
        """Whether :meth:`write` would accept data now."""
        return (not self.fin and self.reset_code is None
                and self.write_end - self.acked_end < self.max_buffer)

    def write(self, data: bytes, *, mode: int, end_stream: bool = False,
              deadline: float | None = None) -> int:
        """Queue ``data`` (a message in ``MODE_MESSAGES``); returns the bytes queued
        on the wire, framing included. A message with a ``deadline`` (a time on
        the session's clock) is abandoned if it cannot be delivered by then
        (:mod:`stt_proto.deadlines`).

        :raises StreamClosedError: the side was ended, reset or stopped.
        :raises MessageTooLargeError: a message above ``max_frame_size``.
        :raises SendBufferFullError: ``max_buffer`` is already reached.
        :raises StreamClosedError: ``mode`` differs from the stream's first send
            (this side already sends the other kind).
        """
        if self.fin or self.reset_code is not None:
            raise StreamClosedError(f"stream {self.stream_id} can no longer send")
        if self.mode is not None and mode != self.mode:
            raise StreamClosedError(
                f"stream {self.stream_id} already sends "
                f"{'messages' if self.mode == MODE_MESSAGES else 'bytes'}")
        size = len(data)
        if mode == MODE_MESSAGES and size > self.max_frame_size:
            raise MessageTooLargeError(
                f"message of {size} bytes exceeds max_frame_size {self.max_frame_size}")
        if self.write_end - self.acked_end >= self.max_buffer and (size or not end_stream):
            self.buffer_was_full = True
            raise SendBufferFullError(
                f"stream {self.stream_id} holds {self.buffered} unacknowledged bytes")
        if deadline is not None and mode != MODE_MESSAGES:
            raise ValueError("deadlines apply to messages, not to a byte stream")
        start = self.write_end
        buf = self._buf
        if self.mode is None:
            self.mode = mode
            buf.append(mode)
        if mode == MODE_MESSAGES:
            buf += _encode_varint(size)
            self.messages += 1
        if size:
            buf += data
        self.write_end = self._base + len(buf)
        if self.write_end > start:
            self._to(SendInput.DATA)
        if deadline is not None:
            if self.deadlines is None:
                self.deadlines = MessageDeadlines()
            self.deadlines.add(deadline, start, self.write_end, self.messages,
                               self.acked_end)
        if end_stream:
            self.end()
        return self.write_end - start

    def end(self) -> None:
        """End this side (FIN after the queued data). Ending twice does nothing."""
        if self.fin:
            return
        if self.reset_code is not None:
            raise StreamClosedError(f"stream {self.stream_id} was reset")
        self._to(SendInput.FIN)
        self.fin = True
        self.fin_pending = True

    def reset(self, error_code: int) -> bool:
        """Abandon unsent and unacknowledged data and queue a RESET_STREAM.

        Returns ``False`` (and does nothing) if everything was already acknowledged
        or a reset is under way."""
        if self.state in SEND_TERMINAL or self.reset_code is not None:
            return False
        self._to(SendInput.RESET)
        self.reset_code = error_code
        self.reset_pending = True
        self.final_size = self.sent_end
        self._buf = bytearray()
        self._base = self.write_end
        self.lost = RangeSet()
        self._acked = RangeSet()
        self.fin_pending = False
        self.deadlines = None  # no skip matters after the reset
        return True

    @property
    def finished(self) -> bool:
        """Whether this side is done: all acknowledged, or the reset acknowledged."""
        return self.state in SEND_TERMINAL

    # -- the session side -------------------------------------------------------------

    def wants_to_send(self, credit: int) -> bool:
        """Whether :meth:`next_frame` has something, given ``credit`` bytes of
        session-level flow control."""
        if self.reset_code is not None:
            return False
        if self.lost or (self.fin_pending and self.sent_end == self.write_end
                         and self.sent_end <= self.max_data):
            # (A FIN alone waits for credit only after a jump past the credit
            # over abandoned messages: the peer's credit catches up on the skip.)
            return True
        return self.sent_end < self.write_end and credit > 0 and self.max_data > self.sent_end

    def blocked_limit(self) -> int | None:
        """The credit limit to report in STREAM_DATA_BLOCKED, if the stream has data
        it may not send and has not reported this limit yet."""
        if (self.reset_code is None and self.sent_end < self.write_end
                and self.max_data <= self.sent_end and self.blocked_at != self.max_data):
            return self.max_data
        return None

    def next_frame(self, room: int, credit: int):
        """The next STREAM frame that fits in ``room`` bytes of packet.

        Lost data goes first, then new data within the stream's and the session's
        (``credit``) flow control. Returns ``(offset, data, fin, new_bytes)`` or
        ``None``; ``new_bytes`` is what the frame takes from session credit.
        Nothing after a reset: the RESET_STREAM's final size is the last word.
        """
        if self.reset_code is not None:
            return None
        sid = self.stream_id
        if self.lost:
            start, stop = self.lost.shift()
            space = room - _frame_overhead(sid, start, room)
            if space <= 0:
                self.lost.add(start, stop)
                return None
            end = min(stop, start + space)
            if end < stop:
                self.lost.add(end, stop)
            fin = self.fin and end == self.write_end and not self.fin_acked
            if fin:
                self.fin_pending = False
            base = self._base
            return start, self._buf[start - base:end - base], fin, 0
        start = self.sent_end
        jumped = 0
        abandoned = self._acked if self.deadlines is not None else None
        if abandoned:
            # Abandoned messages are marked acknowledged; those never sent are
            # jumped over, never sent (the skip makes the peer count them).
            covered = abandoned.contiguous_end(start)
            if covered > start:
                jumped = covered - start
                start = self.sent_end = covered
        space = room - _frame_overhead(sid, start, room)
        if space < 0:
            return (start, b"", False, jumped) if jumped else None
        end = min(self.write_end, self.max_data, start + space, start + max(credit, 0))
        if abandoned and end > start:
            end = abandoned.missing(start, end)[0][1]  # up to the next abandoned one
        if end <= start:
            # Nothing new may go; a FIN alone still may.
            if self.fin_pending and start == self.write_end and start <= self.max_data:
                self.fin_pending = False
                return start, b"", True, jumped
            return (start, b"", False, jumped) if jumped else None
        self.sent_end = end
        fin = self.fin and end == self.write_end
        if fin:
            self.fin_pending = False
        base = self._base
        return start, self._buf[start - base:end - base], fin, end - start + jumped

    def on_acked(self, start: int, end: int, fin: bool) -> bool:
        """A frame was acknowledged. Returns ``True`` when the side just finished."""
        # Also called after a reset: the buffer is then empty with its base at
        # write_end, so nothing below is compacted, and the state (RESET_SENT)
        # does not move on ALL_ACKED.
        if fin:
            self.fin_acked = True
            self.fin_pending = False
        if end > self.acked_end:
            acked = self._acked
            if start <= self.acked_end and not acked:
                self.acked_end = end  # acknowledged in order: no range set needed
            else:
                acked.add(max(start, self.acked_end), end)
                if acked and acked.lowest() == self.acked_end:
                    self.acked_end = acked.shift()[1]
            if self.lost:
                self.lost.discard(start, end)
            dead = self.acked_end - self._base
            if dead >= _COMPACT_MIN and dead * 2 >= len(self._buf):
                del self._buf[:dead]
                self._base = self.acked_end
        if (self.fin_acked and self.acked_end == self.write_end
                and self.state is SendState.DATA_SENT):
            self._to(SendInput.ALL_ACKED)
            self._buf = bytearray()
            self._base = self.write_end
            return True
        return False

    def abandon(self, now: float, margin: float) -> tuple[bool, int]:
        """Abandon the messages not acknowledged yet whose deadline is at most
        ``margin`` after ``now``: their bytes are marked acknowledged (never
        sent again), the offset jumps over those never sent, and a skip is owed
        for each. Returns whether the side just finished, and the bytes jumped
        (they count as sent for the session's flow control: the skip makes the
        peer count them too)."""
        deadlines = self.deadlines
        finished = False
        if deadlines is None or self.reset_code is not None:
            return False, 0
        for _, start, end, next_index in deadlines.due(now, margin):
            if end <= self.acked_end or (self._acked
                                         and not self._acked.missing(start, end)):
                continue  # it arrived
            deadlines.owe_skip(start, end, next_index)
            finished = self.on_acked(start, end, False) or finished
        sent = self.sent_end
        covered = self.acked_end if sent < self.acked_end else sent
        if self._acked:
            covered = self._acked.contiguous_end(covered)
        self.sent_end = covered
        return finished, covered - sent

    def on_lost(self, start: int, end: int, fin: bool) -> None:
        """A frame was declared lost: queue what of it is not acknowledged."""
        if self.reset_code is not None:
            return
        start = max(start, self.acked_end)
        if end > start:
            acked = self._acked
            if acked:
                for a, b in acked.missing(start, end):
                    self.lost.add(a, b)
            else:
                self.lost.add(start, end)
        if fin and not self.fin_acked:
            self.fin_pending = True

    def on_reset_acked(self) -> bool:
        if self.state is SendState.RESET_SENT:
            self._to(SendInput.RESET_ACKED)
            return True
        return False

    def on_max_data(self, maximum: int) -> bool:
        """The peer raised our credit; returns whether it grew."""
        if maximum > self.max_data:
            self.max_data = maximum
            return True
        return False


class RecvStream:
    """The receiving half of a stream: reassembly, message parsing, credit.

    :param stream_id: the stream's number.
    :param window: credit granted ahead of what the application consumed.
    :param max_window: the window may grow (auto-tuning) up to this.
    :param max_frame_size: the largest message accepted; a larger one makes the
        stream ask the peer to stop (STOP_SENDING with ``MESSAGE_TOO_LARGE``).
    """

    __slots__ = (
        "stream_id", "state", "mode", "max_frame_size", "window", "max_window",
        "max_data", "highest", "final_size", "read_end", "_ranges", "_pending", "_buf",
        "_buf_base", "_pos", "_msg_len", "_msg_end", "delivered", "consumed",
        "last_update", "reset_code", "aborted", "stop_pending",
        "stop_code", "reserved", "stop_unacked", "limits_moved", "messages", "_skips",
        "_skip_span",
    )

    def __init__(self, stream_id: int, *, window: int, max_window: int,
                 max_frame_size: int) -> None:
        self.stream_id = stream_id
        self.state = RecvState.RECV
        self.mode: int | None = None
        self.max_frame_size = max_frame_size
        self.window = window
        self.max_window = max(window, max_window)
        self.max_data = window      # credit advertised (absolute offset)
        self.highest = 0            # highest offset received (flow-controlled bytes)
        self.final_size: int | None = None
        self.read_end = 0           # every byte below this has arrived
        self._ranges = RangeSet()  # ranges above read_end that arrived
        self._pending: dict[int, bytes] = {}  # their bytes, by start offset
        #: Skips above read_end (STREAM_SKIP, docs/protocol.md 7.12), by start
        #: offset: ``(end, next_index)``; their ranges are in _ranges too.
        self._skips: dict[int, tuple[int, int]] = {}
        self._skip_span = 0         # bytes those skips cover (held by nobody)
        self.messages = 0           # messages delivered or skipped (the next one's number)
        self._buf = bytearray()     # contiguous bytes not parsed yet
        self._buf_base = 0          # stream offset of _buf[0]
        self._pos = 0               # parse position in _buf
        self._msg_len: int | None = None
        self._msg_end = 0
        self.delivered = 0          # offset up to which data was handed out
        self.consumed = 0           # offset up to which the application consumed
        self.last_update = float("-inf")
        self.reset_code: int | None = None
        self.aborted = False        # we asked the peer to stop; data is discarded
        self.stop_pending = False
        self.stop_code = 0
        self.stop_unacked = False   # a STOP_SENDING not acknowledged yet
        self.reserved = 0           # credit beyond the window for a large message
        #: Set when something the credit depends on moved (a delivery, a new
        #: message header, consumption); the session clears it when it asks.
        self.limits_moved = False

    def __repr__(self) -> str:
        return (f"RecvStream(id={self.stream_id}, state={self.state.value}, "
                f"received={self.read_end}, delivered={self.delivered}, "
                f"consumed={self.consumed})")

    def _to(self, event: RecvInput) -> None:
        state = recv_transition(self.state, event)
        if state is None:
            raise ProtocolError(f"stream {self.stream_id}: {event.value} in {self.state.value}",
                                error_code=ErrorCode.STREAM_STATE_ERROR)
        self.state = state

    @property
    def finished(self) -> bool:
        """Done: terminal, and any STOP_SENDING acknowledged (until then the
        stream must stay to send it again if it is lost)."""
        return (self.state in RECV_TERMINAL and not self.stop_unacked
                # after a local stop, the peer's final size must still be counted
                and self.final_size is not None)

    @property
    def buffered(self) -> int:
        """Bytes held: received and not yet handed out, in order or not (gaps,
        and what waiting skips cover, are held by nobody)."""
        if self.aborted:
            return 0
        return self.read_end - self.delivered + self._ranges.covered() - self._skip_span

    # -- frames from the peer --------------------------------------------------------

    @property
    def fragments(self) -> int:
        """Out-of-order pieces held (data above a gap, waiting for it to fill,
        and skips waiting for the data before them)."""
        return len(self._pending) + len(self._skips)

    @property
    def out_of_order_bytes(self) -> int:
        """Bytes held in those pieces."""
        return self._ranges.covered() - self._skip_span

    def receive(self, offset: int, data: bytes, fin: bool, out: list,
                fragment_room: int | None = None) -> int:
        """Take a STREAM frame; append deliveries to ``out`` as ``(kind, data,
        span)`` with kind ``"message"``, ``"data"``, ``"end"`` or ``"too_large"``.

        :param fragment_room: how many more out-of-order pieces may be held
            (``None``: no limit). A frame above a gap that would need more is
            refused whole: nothing changes and ``-1`` is returned.
        :returns: the growth of :attr:`highest` (what the session's flow control
            counts), or ``-1`` if the frame was refused.
        :raises ProtocolError: flow-control or final-size violations.
        """
        end = offset + len(data)
        if end > self.max_data:
            raise ProtocolError(f"stream {self.stream_id}: data beyond the credit granted",
                                error_code=ErrorCode.FLOW_CONTROL_ERROR)
        final = self.final_size
        if final is not None and (end > final or (fin and end != final)):
            raise ProtocolError(f"stream {self.stream_id}: final size changed",
                                error_code=ErrorCode.FINAL_SIZE_ERROR)
        if (fragment_room is not None and offset > self.read_end
                and self.state is not RecvState.RESET_READ
                and self.state is not RecvState.RESET_RECVD
                and len(self._ranges.missing(offset, end)) > fragment_room):
            # Tiny frames above a gap would each cost a dictionary entry; the
            # bytes are bounded by credit, the pieces by this (docs/security.md).
            # Data at the gap itself is never refused, so an honest sender's
            # retransmissions always make progress.
            return -1
        grown = end - self.highest
        if grown > 0:
            self.highest = end
        else:
            grown = 0
        if fin and final is None and end < self.highest:
            raise ProtocolError(f"stream {self.stream_id}: final size below data received",
                                error_code=ErrorCode.FINAL_SIZE_ERROR)
        if self.state is RecvState.RESET_READ or self.state is RecvState.RESET_RECVD:
            # Reading was stopped or the peer reset: account for the bytes (the
            # session's flow control counts them) and give the credit back.
            if fin:
                self.final_size = end
            self.consumed = self.delivered = self.highest
            return grown
        if fin and final is None:
            self._to(RecvInput.FIN)
            self.final_size = end
        elif self.state is not RecvState.RECV:
            self._to(RecvInput.DATA)
        start = max(offset, self.read_end)
        if end > start:
            if start == self.read_end and not self._ranges:
                self._buf += data if start == offset else data[start - offset:]
                self.read_end = end
            else:
                ranges = self._ranges
                pending = self._pending
                for a, b in ranges.missing(start, end):
                    ranges.add(a, b)
                    pending[a] = data[a - offset:b - offset]
                self._reassemble(out)
            self._parse(out)
        elif fin and self.read_end == end:
            self._parse(out)
        return grown

    def _reassemble(self, out: list) -> None:
        """Move the pieces that now follow ``read_end`` into the parse buffer,
        applying the skips among them in order."""
        ranges = self._ranges
        pending = self._pending
        skips = self._skips
        while ranges and ranges.lowest() == self.read_end:
            a, b = ranges.shift()
            while a < b:
                skip = skips.pop(a, None) if skips else None
                if skip is not None:
                    self._skip_span -= skip[0] - a
                    self.read_end = a
                    self._skip_to(skip[0], skip[1], out)
                    a = skip[0]
                    continue
                piece = pending.pop(a)
                self._buf += piece
                a += len(piece)
            self.read_end = b

    def receive_skip(self, offset: int, length: int, index: int, out: list,
                     fragment_room: int | None = None) -> int:
        """Take a STREAM_SKIP frame: the peer abandoned bytes ``[offset, offset +
        length)`` and the message after them is number ``index``. Deliveries go
        to ``out`` as for :meth:`receive`, a skip as ``("skipped", count,
        span)``. Returns what :meth:`receive` returns.

        :raises ProtocolError: beyond the final size, on a byte stream, overlapping another skip, or naming a message number below
            the messages already delivered.
        """
        # Not limited by credit: skipped bytes take no memory, and the sender
        # jumps over those it never sent whatever its credit (7.12).
        end = offset + length
        final = self.final_size
        if final is not None and end > final:
            raise ProtocolError(f"stream {self.stream_id}: skip beyond the final size",
                                error_code=ErrorCode.FINAL_SIZE_ERROR)
        if self.mode == MODE_BYTES:
            raise ProtocolError(f"stream {self.stream_id}: skip on a byte stream")
        if self.state is RecvState.RESET_READ or self.state is RecvState.RESET_RECVD:
            grown = max(end - self.highest, 0)
            self.highest += grown
            self.consumed = self.delivered = self.highest
            return grown
        if end <= self.read_end:
            return 0  # everything up to its end arrived: it changes nothing here
        skips = self._skips
        if skips.get(offset) == (end, index):
            return 0  # a copy of one waiting already
        for start, (stop, _) in skips.items():
            if start < end and offset < stop:
                raise ProtocolError(f"stream {self.stream_id}: overlapping skips")
        if offset > self.read_end:
            if fragment_room is not None and fragment_room < 1:
                return -1
            self._drop(offset, end)
            self._ranges.add(offset, end)
            skips[offset] = (end, index)
            self._skip_span += end - offset
        grown = max(end - self.highest, 0)
        self.highest += grown
        if self.state is not RecvState.RECV:
            self._to(RecvInput.DATA)
        if offset <= self.read_end:
            self._drop(self.read_end, end)
            self._skip_to(end, index, out)
            self._reassemble(out)
            self._parse(out)
        return grown

    def _drop(self, start: int, end: int) -> None:
        """Forget the out-of-order bytes held in ``[start, end)`` (pieces cut at
        its edges keep their outer parts)."""
        pending = self._pending
        for a in [a for a in pending if a < end and a + len(pending[a]) > start]:
            piece = pending.pop(a)
            if a < start:
                pending[a] = piece[:start - a]
            if a + len(piece) > end:
                pending[end] = piece[end - a:]
        self._ranges.discard(start, end)

    def _skip_to(self, end: int, index: int, out: list) -> None:
        """Every byte before a skip is here (``read_end`` is at or inside it):
        deliver what completes before it, drop the rest up to ``end``, and go on
        with message ``index`` at ``end``."""
        self._parse(out)
        if self.aborted:
            return  # a message before the skip was too large: reading stopped
        skipped = index - self.messages
        if skipped < 0:
            raise ProtocolError(f"stream {self.stream_id}: skip to message {index}, "
                                f"below the {self.messages} already delivered")
        if self.mode is None:
            self.mode = MODE_MESSAGES  # the mode byte was in the first message skipped
        self._buf = bytearray()
        self._buf_base = end
        self._pos = 0
        self._msg_len = None
        self.reserved = 0
        self.read_end = end
        self.messages = index
        out.append(("skipped", skipped, end - self.delivered))
        self.delivered = end
        self.limits_moved = True

    def _parse(self, out: list) -> None:
        buf = self._buf
        pos = self._pos
        size = len(buf)
        base = self._buf_base
        if self.mode is None:
            if pos < size:
                mode = buf[pos]
                if mode != MODE_MESSAGES and mode != MODE_BYTES:
                    raise ProtocolError(f"stream {self.stream_id}: unknown mode {mode}")
                self.mode = mode
                pos += 1
        if self.mode == MODE_MESSAGES:
            limit = self.max_frame_size
            while True:
                length = self._msg_len
                if length is None:
                    avail = size - pos
                    if avail <= 0:
                        break
                    n = 1 << (buf[pos] >> 6)
                    if avail < n:
                        break
                    length = buf[pos] & 0x3F
                    for i in range(pos + 1, pos + n):
                        length = (length << 8) | buf[i]
                    pos += n
                    if length > limit:
                        self._pos = pos
                        self._abort(out, length)
                        return
                    self._msg_len = length
                    self._msg_end = base + pos + length
                    self.limits_moved = True
                if size - pos < length:
                    break
                with memoryview(buf) as view:  # one copy instead of two
                    message = bytes(view[pos:pos + length])
                pos += length
                self._msg_len = None
                offset = base + pos
                out.append(("message", message, offset - self.delivered))
                self.messages += 1
                self.limits_moved = True
                self.delivered = offset
                self.reserved = 0
        elif self.mode == MODE_BYTES and pos < size:
            out.append(("data", bytes(buf[pos:]), base + size - self.delivered))
            self.limits_moved = True
            pos = size
            self.delivered = base + size
        if pos >= size:
            buf.clear()
            self._buf_base = base + size
            pos = 0
        elif pos >= _COMPACT_MIN and pos * 2 >= size:
            del buf[:pos]
            self._buf_base = base + pos
            pos = 0
        self._pos = pos
        final = self.final_size
        if final is not None and self.read_end == final and self.state is not RecvState.DATA_READ:
            if self.state is RecvState.SIZE_KNOWN:
                self._to(RecvInput.ALL_RECEIVED)
            if self._msg_len is not None or self._buf_base + pos != final:
                raise ProtocolError(f"stream {self.stream_id} ended inside a message")
            out.append(("end", b"", final - self.delivered))
            self.delivered = final
            self._to(RecvInput.ALL_DELIVERED)

    def _abort(self, out: list, length: int) -> None:
        """An incoming message is larger than ``max_frame_size``: stop reading."""
        self.stop(ErrorCode.MESSAGE_TOO_LARGE)
        out.append(("too_large", b"", length))

    def on_reset(self, error_code: int, final_size: int) -> tuple[bool, int]:
        """RESET_STREAM from the peer.

        :returns: ``(report, grown)``: whether the application should hear of it
            (the first time only), and the growth of :attr:`highest` to final size.
        :raises ProtocolError: the final size contradicts data already received.
        """
        if final_size < self.highest or (self.final_size is not None
                                         and final_size != self.final_size):
            raise ProtocolError(f"stream {self.stream_id}: reset with a wrong final size",
                                error_code=ErrorCode.FINAL_SIZE_ERROR)
        if final_size > self.max_data:
            raise ProtocolError(f"stream {self.stream_id}: reset beyond the credit granted",
                                error_code=ErrorCode.FLOW_CONTROL_ERROR)
        grown = final_size - self.highest
        self.final_size = final_size
        self.highest = final_size
        state = self.state
        if state is RecvState.DATA_READ or state is RecvState.DATA_RECVD:
            return False, grown
        if state is RecvState.RESET_READ:
            # Reading was stopped here; the peer's reset answers that.
            self.consumed = self.delivered = final_size
            self.stop_unacked = False
            return False, grown
        first = self.reset_code is None
        if state is not RecvState.RESET_RECVD:
            self._to(RecvInput.RESET)
        if first:
            self.reset_code = error_code
        self._buf = bytearray()
        self._pending.clear()
        self._skips.clear()
        self._skip_span = 0
        self._ranges = RangeSet()
        self._msg_len = None
        self.reserved = 0
        self.consumed = self.delivered = final_size
        self.stop_pending = self.stop_unacked = False
        return first, grown

    def reported(self) -> None:
        """The application was told of the reset: the side is done."""
        if self.state is RecvState.RESET_RECVD:
            self._to(RecvInput.RESET_REPORTED)

    def stop(self, error_code: int) -> bool:
        """Stop reading: discard what is held and what comes later, and ask the
        peer to stop (the session sends STOP_SENDING). The side is done at once."""
        if self.state is RecvState.DATA_READ or self.state is RecvState.RESET_READ:
            return False
        self._to(RecvInput.ABORT)
        self.aborted = True
        self.stop_pending = self.final_size is None or self.read_end < self.final_size
        self.stop_unacked = self.stop_pending
        self.stop_code = error_code
        if self.reset_code is None:
            self.reset_code = error_code
        self._buf = bytearray()
        self._pending.clear()
        self._skips.clear()
        self._skip_span = 0
        self._ranges = RangeSet()
        self._msg_len = None
        self.reserved = 0
        self.consumed = self.delivered = self.highest
        return True

    def refused(self) -> None:
        """The peer refused the stream (stream limit): nothing will arrive."""
        if self.state is not RecvState.DATA_READ and self.state is not RecvState.RESET_READ:
            self._to(RecvInput.ABORT)
        self.aborted = True
        self.stop_pending = self.stop_unacked = False
        if self.final_size is None:
            self.final_size = self.highest
        self.consumed = self.delivered = self.highest

    # -- credit -------------------------------------------------------------------------

    def consume(self, n: int) -> None:
        """The application consumed ``n`` bytes of what was delivered."""
        consumed = self.consumed + n
        self.consumed = consumed if consumed < self.delivered else self.delivered
        self.limits_moved = True

    def wanted_limit(self) -> int:
        """The credit limit the stream would like the peer to have."""
        limit = self.consumed + self.window
        self.reserved = 0
        if self._msg_len is not None and self.consumed == self.delivered:
            # Everything before this message is consumed: let it arrive whole.
            end = self._msg_end
            if end > limit:
                self.reserved = end - limit
                limit = end
        return limit

    def message_reserve(self) -> int:
        """Bytes the session must let this stream receive beyond its share of the
        session window: the rest of a message in progress, once everything
        before it was consumed (else a message larger than the session window
        could never complete)."""
        if self._msg_len is not None and self.consumed == self.delivered:
            return self._msg_end - self.consumed
        return 0

    def credit_update(self, now: float, srtt: float, force: bool = False) -> int | None:
        """A new MAX_STREAM_DATA value if one is due, else ``None``.

        Credit is returned when half the window is used up, or at once when a
        large message needs it. The window doubles (up to ``max_window``) when
        updates come faster than every two round trips: the reader keeps up and
        the window, not the reader, limits the sender.
        """
        if self.final_size is not None or self.aborted or self.reset_code is not None:
            return None
        limit = self.wanted_limit()
        if limit <= self.max_data:
            return None
        if (limit - self.max_data < self.window // 2 and not self.reserved and not force
                and not (self._msg_len is not None and self._msg_end > self.max_data)):
            # Not worth a frame yet; but a message that cannot complete under the
            # current limit, or a peer that says it is blocked, gets credit now.
            return None
        if now - self.last_update < 2 * srtt and self.window < self.max_window:
            self.window = min(self.window * 2, self.max_window)
            limit = self.wanted_limit()
        self.last_update = now
        self.max_data = limit
        return limit
