"""The acknowledgements a session owes its peer (docs/protocol.md 8.1).

Theory of operation
-------------------
An :class:`AckTracker` records the packet numbers a session received and
decides when an ACK frame must leave. It is the receiving half of loss
recovery; the sending half is :class:`~stt_proto.recovery.PacketRecovery`.

- Every packet the session accepts is added to a range set of received
  numbers, of which at most ``max_ack_ranges`` ranges are kept (the lowest
  are forgotten: the peer stopped retransmitting those long ago). A packet
  the session refused a frame of is not recorded, so the peer resends it
  (7.6).
- An ACK is owed *at once* after every second ack-eliciting packet (every
  tenth once the session has received a hundred packets, as many stacks do at
  high rates), and for any ack-eliciting packet that arrives out of order or
  leaves a gap, so the sender learns of losses quickly. Otherwise it is owed
  within ``max_ack_delay`` of the first unacknowledged ack-eliciting packet:
  that deadline is the tracker's timer.
- Whenever the session sends a packet anyway and an ack-eliciting packet is
  unacknowledged, the ACK rides along.

Nothing here reads a clock: every method that needs the time takes ``now``.
"""

from __future__ import annotations

from . import _wire as wire
from ._rangeset import RangeSet

__all__ = ["AckTracker"]

#: Ack ranges carried in one ACK frame (the newest ones).
_ACK_RANGES_PER_FRAME = 64
#: Ack-eliciting packets received before an ACK is sent at once: every second
#: one while fewer than _ACK_EARLY_PACKETS were received, every tenth after.
_ACK_EVERY_EARLY = 2
_ACK_EVERY = 10
_ACK_EARLY_PACKETS = 100

_push_ack_frame = wire.push_ack_frame


class AckTracker:
    """Received packet numbers and the ACK owed for them.

    Args:
        max_ranges: ranges of received numbers kept (``max_ack_ranges``).
        max_ack_delay: longest an ACK of an ack-eliciting packet waits, in
            seconds.

    Attributes:
        received: the received packet numbers (a ``RangeSet``).
        deadline: when a delayed ACK falls due, or ``None``.
    """

    __slots__ = ("received", "max_ranges", "max_ack_delay", "deadline", "_now",
                 "_largest", "_largest_at", "_unacked_eliciting")

    def __init__(self, *, max_ranges: int, max_ack_delay: float) -> None:
        self.received = RangeSet()
        self.max_ranges = max_ranges
        self.max_ack_delay = max_ack_delay
        self.deadline: float | None = None
        #: An ACK is owed at once.
        self._now = False
        self._largest = -1
        #: When the largest number arrived (the ACK delay is counted from it).
        self._largest_at = 0.0
        self._unacked_eliciting = 0

    def on_packet(self, pn: int, now: float, eliciting: bool,
                  packets_received: int) -> int:
        """Record packet ``pn``, accepted at ``now``; ``packets_received``
        counts every packet of the session so far, this one included.

        Returns:
            the number of ranges forgotten to stay within ``max_ranges``.
        """
        received = self.received
        received.add(pn, pn + 1)
        forgotten = 0
        if len(received) > self.max_ranges:
            forgotten = received.trim_lowest(self.max_ranges)
        largest = self._largest
        if pn > largest:
            if largest >= 0 and pn != largest + 1 and eliciting:
                self._now = True  # a gap: tell the sender quickly
            self._largest = pn
            self._largest_at = now
        elif eliciting:
            self._now = True  # reordered: fill the sender in at once
        if eliciting:
            self._unacked_eliciting += 1
            every = _ACK_EVERY_EARLY if packets_received < _ACK_EARLY_PACKETS else _ACK_EVERY
            if self._unacked_eliciting >= every:
                self._now = True
            elif self.deadline is None:
                self.deadline = now + self.max_ack_delay
        return forgotten

    def on_timer(self, now: float) -> None:
        """The delayed-ACK deadline passed: the ACK is owed at once."""
        if self.deadline is not None and now >= self.deadline:
            self._now = True
            self.deadline = None

    def owed(self, now: float) -> bool:
        """Whether an ACK must leave now, in a packet of its own if need be."""
        return self._now or (self.deadline is not None and now >= self.deadline)

    def write(self, w, now: float, owed: bool) -> bool:
        """Push an ACK frame into ``w`` if one is owed (``owed``) or may ride
        along (an ack-eliciting packet is unacknowledged); returns whether it
        did. Call :meth:`on_sent` once the packet is sealed."""
        if not ((owed or self._unacked_eliciting) and self.received):
            return False
        delay = int((now - self._largest_at) * 1e6)
        _push_ack_frame(w, self.received.ack_ranges(_ACK_RANGES_PER_FRAME),
                        delay if delay > 0 else 0)
        return True

    def on_sent(self) -> None:
        """The ACK written by :meth:`write` left: nothing is owed any more."""
        self._now = False
        self.deadline = None
        self._unacked_eliciting = 0
