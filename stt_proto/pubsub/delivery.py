"""Exactly once and in each publisher's order: what a subscriber hands its application.

A publisher numbers its messages per *epoch* (its start time in milliseconds,
so a restarted publisher begins a new, later epoch) from 1 up, with no holes,
and stamps each with its wall-clock time of publishing (never decreasing
within an epoch). A subscriber therefore needs no cache of message ids to drop
duplicates: per publisher it keeps the next sequence number it owes the
application, and a message below it was delivered already. Messages that
arrive ahead of a hole wait in a bounded buffer while the hole is repaired
(IWANT); a hole nobody can fill within the repair window, or that every peer
says is gone, is reported as a :class:`Gap` with its size and skipped, never
silently.

What a subscriber is owed: every message published at or after the time it
subscribed, less ``tolerance_ms`` for clocks that differ. Where that starts
in a publisher's numbering (its *start*):

* an epoch that began after that time is owed whole, from sequence 1;
* for an older epoch the start is the first message stamped at or after that
  time. Until it is known, the publisher is *unsettled*: what is owed waits in
  the buffer, and the subscriber asks for the messages just below the lowest
  owed one it has (one, then two, four, ...), from the top down, until it finds
  one stamped earlier or reaches sequence 1. A range peers no longer hold is
  older than their repair window and taken as before its time. In the common
  case — a new subscriber hearing of a busy publisher — one message settles it.

So neither the first message nor the first summary a subscriber hears of a
publisher decides where delivery starts: a message published just after it
subscribed, that takes a slower path than a later one, is still delivered,
first.

The module knows nothing of peers or the wire: :class:`Ordering` takes
messages and summaries and says what to deliver, what to ask for and what to
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
    __slots__ = ("epoch", "next", "low", "probe", "unsettled_since", "buffer", "arrived",
                 "known_high", "tail_since", "gone_until")

    def __init__(self, epoch: int, next_seq: int) -> None:
        self.epoch = epoch
        # The next sequence number owed. While unsettled: one above the highest
        # known to be from before our time.
        self.next = next_seq
        self.low: int | None = None       # unsettled: the lowest owed message known
        self.probe = 1                    # unsettled: how many to ask for below ``low``
        self.unsettled_since = 0.0
        self.buffer: dict[int, Any] = {}  # seq -> message, all at or above ``next``
        self.arrived: dict[int, float] = {}  # seq -> when a buffered message arrived
        self.known_high = next_seq - 1    # the highest sequence number known to exist
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
        if self.low is not None or self.next > self.known_high:
            return None
        last = min(self.buffer) - 1 if self.buffer else self.known_high
        return self.next, last

    def probe_range(self) -> tuple[int, int] | None:
        """Unsettled: the messages to ask for, just below the lowest owed one."""
        if self.low is None:
            return None
        return max(self.next, self.low - self.probe), self.low - 1


class Ordering:
    """Per-publisher order of one topic for one subscriber.

    :param subscribed_at: the subscriber's wall-clock time of subscribing, in
        milliseconds (the unit of epochs and of publishing times).
    :param tolerance_ms: messages stamped up to this much before
        ``subscribed_at`` are still owed (clocks differ).
    """

    def __init__(self, *, subscribed_at: int, tolerance_ms: int, max_publishers: int,
                 max_buffered: int, budget: Budget, stats: dict[str, int]) -> None:
        self.since = subscribed_at - tolerance_ms
        self.max_publishers = max_publishers
        self.max_buffered = max_buffered
        self.budget = budget
        self.stats = stats
        self._publishers: OrderedDict[bytes, _Publisher] = OrderedDict()
        # Where each forgotten publisher stood, (epoch, next): a publisher pushed
        # out by others and heard of again resumes there instead of starting
        # afresh and delivering its old messages a second time. Sixteen times
        # as many as are tracked, at some 60 bytes each.
        self._forgotten: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        self.max_forgotten = 16 * max_publishers

    # -- publishers -------------------------------------------------------------------

    def _state(self, publisher: bytes, epoch: int, now: float,
               low: int) -> _Publisher | None:
        """The state of ``publisher`` at ``epoch``, created (or moved to a newer
        epoch) if need be; None for an older epoch (stale). A new state of an
        epoch from before our time starts unsettled, with ``low`` the lowest
        message that may be owed (0: none known)."""
        state = self._publishers.get(publisher)
        if state is not None:
            self._publishers.move_to_end(publisher)
            if epoch == state.epoch:
                return state
            if epoch < state.epoch:
                return None
            self._drop_buffer(state)   # a new epoch: the old one's holes will never fill
            del self._publishers[publisher]
        while len(self._publishers) >= self.max_publishers:
            gone_id, old = self._publishers.popitem(last=False)
            self._drop_buffer(old)
            self.stats["publishers_forgotten"] += 1
            if old.low is None:
                self._forgotten[gone_id] = (old.epoch, old.next)
                while len(self._forgotten) > self.max_forgotten:
                    self._forgotten.popitem(last=False)
        state = self._publishers[publisher] = _Publisher(epoch, 1)
        resumed = self._forgotten.pop(publisher, None)
        if resumed is not None:
            if resumed[0] > epoch:
                del self._publishers[publisher]
                self._forgotten[publisher] = resumed
                return None  # an epoch older than one we already followed
            if resumed[0] == epoch:
                state.next = state.known_high = resumed[1]
                state.known_high -= 1
                return state
        if epoch < self.since and low > 1:
            state.low = low
            state.unsettled_since = now
        return state

    def _drop_buffer(self, state: _Publisher) -> None:
        for message in state.buffer.values():
            self.budget.used -= len(message.data)
        state.buffer.clear()
        state.arrived.clear()

    def _drop_below(self, state: _Publisher, seq: int) -> None:
        for old in [s for s in state.buffer if s < seq]:
            self.budget.used -= len(state.buffer.pop(old).data)
            del state.arrived[old]

    def _settle(self, state: _Publisher, out: list[Any]) -> None:
        """Unsettled, and everything between what is before our time and the
        lowest owed message is known: deliver from there."""
        low = state.low
        if low is None or state.next < low:
            return
        state.low = None
        self._drop_below(state, state.next)
        self._drain(state, out)

    # -- what arrives -------------------------------------------------------------------

    def knows(self, publisher: bytes) -> bool:
        return publisher in self._publishers or publisher in self._forgotten

    @property
    def full(self) -> bool:
        """``max_publishers`` are tracked: a new one pushes the least recent out."""
        return len(self._publishers) >= self.max_publishers

    def is_new(self, message: Any) -> bool:
        """Whether ``message`` is neither delivered, buffered nor stale (it is
        then worth forwarding and keeping for repair)."""
        return self.is_new_slot(message.publisher, message.epoch, message.seq)

    def is_new_slot(self, publisher: bytes, epoch: int, seq: int) -> bool:
        state = self._publishers.get(publisher)
        if state is None:
            resumed = self._forgotten.get(publisher)
            return resumed is None or (epoch, seq) >= resumed
        if epoch > state.epoch:
            return True
        if epoch < state.epoch:
            return False
        return seq >= state.next and seq not in state.buffer

    def offer(self, message: Any, now: float) -> list[Any]:
        """Take a verified message; return what can be delivered now, in order
        (possibly nothing, possibly several that waited for it)."""
        seq = message.seq
        before = message.published_ms < self.since
        state = self._state(message.publisher, message.epoch, now,
                            seq if not before else 0)
        if state is None:
            self.stats["messages_stale_epoch"] += 1
            return []
        if seq > state.known_high:
            state._raise_high(seq, now)
        if seq < state.next or seq in state.buffer:
            self.stats["messages_duplicate"] += 1
            return []
        out: list[Any] = []
        if before and message.epoch < self.since:
            # Published before we subscribed: not owed, and neither is anything
            # before it (a publisher's stamps never go back within an epoch).
            self.stats["messages_before_subscription"] += 1
            state.next = seq + 1
            self._drop_below(state, state.next)
            if state.low is not None:
                self._settle(state, out)
            else:
                self._drain(state, out)
            return out
        if state.low is not None and seq < state.low:
            # Owed, and lower than any owed before: the start is further down
            # still; look twice as far below next time (an exponential search).
            state.low = seq
            state.probe = min(2 * state.probe, 1 << 20)
        if seq > state.next or state.low is not None:
            if len(state.buffer) >= self.max_buffered or \
                    self.budget.used + len(message.data) > self.budget.limit:
                # Drop it; it is asked for again once the hole before it fills.
                self.stats["messages_buffer_full"] += 1
                if state.low == seq:
                    state.low = min(state.buffer, default=None) or seq + 1
                return []
            state.buffer[seq] = message
            state.arrived[seq] = now
            self.budget.used += len(message.data)
            self._settle(state, out)
            return out
        out.append(message)
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

    def summary_heard(self, publisher: bytes, epoch: int, high: int,
                      now: float) -> tuple[int, int] | None:
        """A peer holds ``publisher``'s ``epoch`` up to ``high``. Returns the
        range this subscriber misses (or must look at to settle where it
        starts) and that peer could fill, if any."""
        if high < 1:
            return None
        if self.full and publisher not in self._publishers:
            # A summary names publishers without proof: it never pushes a
            # tracked one out (only a genuine message can).
            self.stats["publishers_refused"] += 1
            return None
        state = self._state(publisher, epoch, now, high + 1)
        if state is None:
            return None
        if high > state.known_high:
            state._raise_high(high, now)
        if state.low is not None:
            return state.probe_range()
        if high < state.next:
            return None
        return state.hole()

    # -- repair -----------------------------------------------------------------------------

    def missing(self) -> list[tuple[bytes, int, int, int]]:
        """``(publisher, epoch, first, last)`` to ask for, per publisher: its first
        hole, or (unsettled) the messages just below the lowest owed one."""
        wanted = []
        for publisher, state in self._publishers.items():
            wanted_range = state.probe_range() if state.low is not None else state.hole()
            if wanted_range is not None:
                wanted.append((publisher, state.epoch, wanted_range[0], wanted_range[1]))
        return wanted

    def gone(self, publisher: bytes, epoch: int, last: int) -> list[Any]:
        """Every peer asked says messages up to ``last`` are gone. Settling: they
        are older than the peers' repair window, so from before our time.
        Otherwise the hole is reported at the next :meth:`expire`, without
        waiting out the window. Returns what can be delivered now."""
        state = self._publishers.get(publisher)
        out: list[Any] = []
        if state is None or state.epoch != epoch or last < state.next:
            return out
        if state.low is not None:
            if last < state.low:
                state.next = last + 1
                self._settle(state, out)
            return out
        state.gone_until = max(state.gone_until, last)
        return out

    def settling(self, publisher: bytes, epoch: int) -> bool:
        """Whether we still look for where ``publisher``'s messages owed to us start."""
        state = self._publishers.get(publisher)
        return state is not None and state.epoch == epoch and state.low is not None

    def wanted(self, publisher: bytes, epoch: int) -> tuple[int, int] | None:
        """What to ask for of ``publisher``'s ``epoch`` now (see :meth:`missing`)."""
        state = self._publishers.get(publisher)
        if state is None or state.epoch != epoch:
            return None
        return state.probe_range() if state.low is not None else state.hole()

    def expire(self, now: float, window: float) -> list[Any]:
        """Skip holes that are gone or older than ``window``: a :class:`Gap` for
        each, followed by the messages that waited behind it. A publisher still
        unsettled after ``window`` starts at its lowest owed message."""
        out: list[Any] = []
        for publisher, state in self._publishers.items():
            if state.low is not None:
                if now - state.unsettled_since < window:
                    continue
                self.stats["starts_unsettled"] += 1
                state.next = state.low
                self._settle(state, out)
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
        self._forgotten.clear()
