"""Exactly once and in each publisher's order: what a subscriber hands its application.

A publisher numbers its messages per *epoch* (its start time in milliseconds,
so a restarted publisher begins a new, later epoch) from 1 up, with no holes.
A subscriber therefore needs no cache of message ids to drop duplicates: per
publisher it keeps the next sequence number it owes the application, and a
message below it was delivered already. Messages that arrive ahead of a hole
wait in a bounded buffer while the hole is repaired (IWANT); a hole nobody can
fill within the repair window, or that every peer says is gone, is reported as
a :class:`Gap` with its size and skipped, never silently.

Where a subscriber starts owing a publisher's messages (its *baseline*):

* a whole epoch that began after the subscriber subscribed (with
  ``clock_tolerance`` for clocks that differ): from sequence 1, so a new
  publisher's first messages are owed even if they take a slower path;
* otherwise from what the first peer that tells it about the publisher holds
  (an IHAVE summary, which peers send before forwarding anything on a new
  link), or from the first message, whichever comes first.

The module knows nothing of peers or the wire: :class:`Ordering` takes
messages and summaries and says what to deliver, what is missing and what to
report.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["Gap", "Ordering", "Budget"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages ``first`` to ``last`` of ``publisher``'s ``epoch`` will never be delivered."""

    publisher: bytes
    epoch: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class Budget:
    """Bytes held out of order over every topic of a node (``max_buffered_bytes``)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class _Publisher:
    __slots__ = ("epoch", "next", "buffer", "arrived", "known_high", "tail_since",
                 "gone_until")

    def __init__(self, epoch: int, next_seq: int) -> None:
        self.epoch = epoch
        self.next = next_seq              # the next sequence number owed to the application
        self.buffer: dict[int, Any] = {}  # seq -> message, all above ``next``
        self.known_high = next_seq - 1    # the highest sequence number known to exist
        self.arrived: dict[int, float] = {}  # seq -> when a buffered message arrived
        self.tail_since = 0.0             # since when messages up to known_high are known of
        self.gone_until = 0               # every peer asked said messages up to this are gone

    def _raise_high(self, high: int, now: float) -> None:
        if self.known_high < self.next:
            self.tail_since = now  # a hole at the tail opens now
        self.known_high = high

    def hole_since(self) -> float:
        """Since when the first hole is known: the arrival of the message right
        after it, or, with nothing buffered, of the news of later messages."""
        if self.buffer:
            return self.arrived[min(self.buffer)]
        return self.tail_since

    def hole(self) -> tuple[int, int] | None:
        """The first range owed and not held: up to the first buffered message,
        or up to the highest a peer said it holds."""
        if self.next > self.known_high:
            return None
        last = min(self.buffer) - 1 if self.buffer else self.known_high
        return self.next, last


class Ordering:
    """Per-publisher order of one topic for one subscriber.

    :param subscribed_at: the subscriber's wall-clock time of subscribing, in
        milliseconds (the unit of epochs).
    :param tolerance_ms: epochs up to this much older than ``subscribed_at``
        still count as begun after it.
    """

    def __init__(self, *, subscribed_at: int, tolerance_ms: int, max_publishers: int,
                 max_buffered: int, budget: Budget, stats: dict[str, int]) -> None:
        self.subscribed_at = subscribed_at
        self.tolerance_ms = tolerance_ms
        self.max_publishers = max_publishers
        self.max_buffered = max_buffered
        self.budget = budget
        self.stats = stats
        self._publishers: OrderedDict[bytes, _Publisher] = OrderedDict()

    # -- what arrives -------------------------------------------------------------------

    def _state(self, publisher: bytes, epoch: int, first_known: int) -> _Publisher | None:
        """The state of ``publisher`` at ``epoch``, created (or moved to a newer
        epoch) with the baseline rule; None for an older epoch (stale)."""
        state = self._publishers.get(publisher)
        if state is not None:
            self._publishers.move_to_end(publisher)
            if epoch == state.epoch:
                return state
            if epoch < state.epoch:
                return None
            self._drop_buffer(state)   # a new epoch: the old one's holes will never fill
        start = 1 if epoch + self.tolerance_ms >= self.subscribed_at else first_known
        if state is None:
            while len(self._publishers) >= self.max_publishers:
                _, old = self._publishers.popitem(last=False)
                self._drop_buffer(old)
                self.stats["publishers_forgotten"] += 1
            state = self._publishers[publisher] = _Publisher(epoch, start)
        else:
            state.epoch, state.next, state.gone_until = epoch, start, 0
            state.known_high = start - 1
        return state

    def _drop_buffer(self, state: _Publisher) -> None:
        for message in state.buffer.values():
            self.budget.used -= len(message.data)
        state.buffer.clear()
        state.arrived.clear()

    def is_new(self, message: Any) -> bool:
        """Whether ``message`` is neither delivered, buffered nor stale (it is
        then worth forwarding and keeping for repair)."""
        state = self._publishers.get(message.publisher)
        if state is None or message.epoch > state.epoch:
            return True
        if message.epoch < state.epoch:
            return False
        return message.seq >= state.next and message.seq not in state.buffer

    def offer(self, message: Any, now: float) -> list[Any]:
        """Take a verified message; return what can be delivered now, in order
        (possibly nothing, possibly several that waited for it)."""
        state = self._state(message.publisher, message.epoch, message.seq)
        if state is None:
            self.stats["messages_stale_epoch"] += 1
            return []
        seq = message.seq
        if seq > state.known_high:
            state._raise_high(seq, now)
        if seq < state.next or seq in state.buffer:
            self.stats["messages_duplicate"] += 1
            return []
        if seq > state.next:
            if len(state.buffer) >= self.max_buffered or \
                    self.budget.used + len(message.data) > self.budget.limit:
                # Drop it; it is asked for again once the hole before it fills.
                self.stats["messages_buffer_full"] += 1
                return []
            state.buffer[seq] = message
            state.arrived[seq] = now
            self.budget.used += len(message.data)
            return []
        out = [message]
        state.next = seq + 1
        self._drain(state, out)
        return out

    def _drain(self, state: _Publisher, out: list[Any]) -> None:
        buffer = state.buffer
        while state.next in buffer:
            message = buffer.pop(state.next)
            del state.arrived[state.next]
            self.budget.used -= len(message.data)
            out.append(message)
            state.next += 1
        if state.gone_until < state.next:
            state.gone_until = 0

    def summary_heard(self, publisher: bytes, epoch: int, high: int, now: float) -> tuple[int, int] | None:
        """A peer holds ``publisher``'s ``epoch`` up to ``high``. Sets the baseline
        of a publisher heard of for the first time; returns the range this
        subscriber now misses and that peer could fill, if any."""
        state = self._state(publisher, epoch, high + 1)
        if state is None or high < state.next:
            return None
        if high > state.known_high:
            state._raise_high(high, now)
        return state.hole()

    # -- repair -----------------------------------------------------------------------------

    def missing(self) -> list[tuple[bytes, int, int, int]]:
        """``(publisher, epoch, first, last)`` of the first hole of every publisher."""
        holes = []
        for publisher, state in self._publishers.items():
            hole = state.hole()
            if hole is not None:
                holes.append((publisher, state.epoch, hole[0], hole[1]))
        return holes

    def gone(self, publisher: bytes, epoch: int, last: int) -> None:
        """Every peer asked says messages up to ``last`` are gone: the hole is
        reported at the next :meth:`expire`, without waiting out the window."""
        state = self._publishers.get(publisher)
        if state is not None and state.epoch == epoch and last >= state.next:
            state.gone_until = max(state.gone_until, last)

    def expire(self, now: float, window: float) -> list[Any]:
        """Skip holes that are gone or older than ``window``: a :class:`Gap` for
        each, followed by the messages that waited behind it."""
        out: list[Any] = []
        for publisher, state in self._publishers.items():
            while (hole := state.hole()) is not None:
                first, last = hole
                if now - state.hole_since() >= window:
                    pass
                elif state.gone_until >= first:
                    last = min(last, state.gone_until)
                else:
                    break
                out.append(Gap(publisher, state.epoch, first, last))
                self.stats["gaps_reported"] += 1
                self.stats["messages_lost"] += last - first + 1
                state.next = last + 1
                self._drain(state, out)
        return out

    def waiting_since(self, publisher: bytes) -> float | None:
        state = self._publishers.get(publisher)
        return None if state is None or state.hole() is None else state.hole_since()

    def next_owed(self, publisher: bytes, epoch: int) -> int | None:
        state = self._publishers.get(publisher)
        return state.next if state is not None and state.epoch == epoch else None

    def summary(self) -> list[tuple[bytes, int, int]]:
        """``(publisher, epoch, high)``: the last message delivered of each publisher."""
        return [(p, s.epoch, s.next - 1) for p, s in self._publishers.items()]

    def close(self) -> None:
        for state in self._publishers.values():
            self._drop_buffer(state)
        self._publishers.clear()
