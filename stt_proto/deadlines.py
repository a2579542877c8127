"""Deadline delivery: messages abandoned when they can no longer arrive in time.

A message sent with a deadline (``docs/protocol.md`` 7.12) is wanted only until
then. When the deadline is near and the peer has not acknowledged the message,
the sender *abandons* it:

* none of its bytes is sent again, and what was never sent is never sent: the
  stream's offset jumps over it (the bytes still count against flow control,
  exactly as if they had been sent, so both sides keep counting the same);
* a STREAM_SKIP frame tells the receiver to drop what it holds of the message
  and go on with the next one -- the idea of PR-SCTP's FORWARD-TSN (RFC 3758)
  on a byte stream. It names the bytes abandoned and the number of the message
  after them, so the receiver knows how many messages it never saw, and it
  is sent again until acknowledged.

"Near" is half a smoothed round trip before the deadline: a copy sent later
could not arrive in time. Abandoning only stops sending; a copy already in
flight may still arrive and is delivered, and a STREAM_SKIP for bytes the
receiver already has changes nothing there. The order of what is delivered
always holds: later messages wait for an earlier one until it arrives or its
skip does.

Why no "probabilistic" sending (drop a message by chance or by how its bytes
look, as the original STT did): which messages go and which do not would tell an
observer something about their content. A deadline depends only on time.

:class:`MessageDeadlines` keeps one stream's deadlines and the skips it owes;
:class:`~stt_proto.stream.SendStream` owns one once a message with a deadline
is written, and the receiving side lives in
:class:`~stt_proto.stream.RecvStream`. :func:`next_abandon` and
:func:`abandon_due` are the session's side: when it next has to abandon
something, and doing it for every stream with deadlines.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from .events import StreamWritable

__all__ = ["MessageDeadlines", "check_deadline", "next_abandon", "abandon_due"]

#: The record heap is rebuilt without acknowledged messages when it reaches
#: twice the size it had after the last rebuild (and at least this): memory
#: stays proportional to the messages not yet acknowledged, at O(1) amortised.
_PRUNE_MIN = 64


def check_deadline(deadline: object) -> float:
    """``deadline`` as seconds, or ``ValueError``/``TypeError`` for what cannot be
    one (a bool, not a number, zero or less, not finite)."""
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError(f"deadline must be a number of seconds, not {deadline!r}")
    if not 0 < deadline < float("inf"):
        raise ValueError(f"deadline must be a positive number of seconds, not {deadline!r}")
    return float(deadline)


class MessageDeadlines:
    """The deadlines of one stream's messages, and the skips owed to the peer.

    Records are ``(deadline, start, end, next_index)``: the message occupies
    stream bytes ``[start, end)`` and the one after it has number
    ``next_index``. Skips are ``(start, end, next_index)``, owed in order.
    """

    __slots__ = ("_heap", "_prune_at", "skips", "abandoned")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, int]] = []
        self._prune_at = _PRUNE_MIN
        #: Skips not yet sent (or lost and owed again).
        self.skips: deque[tuple[int, int, int]] = deque()
        #: Messages abandoned so far.
        self.abandoned = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, deadline: float, start: int, end: int, next_index: int,
            acked_end: int) -> None:
        """Record a message written with a deadline."""
        heap = self._heap
        if len(heap) >= self._prune_at:
            heap[:] = [r for r in heap if r[2] > acked_end]
            heapq.heapify(heap)
            self._prune_at = max(_PRUNE_MIN, 2 * len(heap))
        heapq.heappush(heap, (deadline, start, end, next_index))

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline recorded (perhaps of a message since acknowledged)."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, margin: float):
        """Yield ``(deadline, start, end, next_index)`` of every message whose
        deadline less ``margin`` is at or before ``now``, forgetting them; the caller abandons those not
        acknowledged (:meth:`SendStream.abandon
        <stt_proto.stream.SendStream.abandon>`)."""
        heap = self._heap
        while heap and heap[0][0] - margin <= now:
            yield heapq.heappop(heap)

    def owe_skip(self, start: int, end: int, next_index: int) -> None:
        """A skip of message ``[start, end)`` is owed. Skips stay one per message
        until sent (a frame then covers a run of them): a run can be sent only
        as far as the stream's offset has reached."""
        self.abandoned += 1
        self.skips.append((start, end, next_index))


# -- the session's side --------------------------------------------------------------
# ``core`` is a SessionCore; its streams with deadlines are ``core._deadline_streams``.


def _abandon_margin(core: Any) -> float:
    """How long before its deadline a message is abandoned: a copy sent later
    could not arrive in time (half a round trip)."""
    return core.rtt.smoothed_rtt / 2


def next_abandon(core: Any) -> float | None:
    """When the session next has a message to abandon, or ``None``."""
    due = None
    for stream in core._deadline_streams.values():
        deadlines = stream.send.deadlines
        at = None if deadlines is None else deadlines.next_deadline
        if at is not None and (due is None or at < due):
            due = at
    return None if due is None else due - _abandon_margin(core)


def abandon_due(core: Any, now: float) -> None:
    """Abandon the session's messages that can no longer arrive in time
    (:meth:`SendStream.abandon <stt_proto.stream.SendStream.abandon>`)."""
    margin = _abandon_margin(core)
    streams = core._deadline_streams
    for sid, stream in list(streams.items()):
        send = stream.send
        deadlines = send.deadlines
        if deadlines is None:  # reset meanwhile
            del streams[sid]
            continue
        if deadlines.next_deadline is None or deadlines.next_deadline - margin > now:
            continue
        before = deadlines.abandoned
        held = send.held
        finished, jumped = send.abandon(now, margin)
        if jumped:
            core.credit.on_sent(jumped)
        core._stats["messages_abandoned"] += deadlines.abandoned - before
        if held != send.held:
            core._release_held(held - send.held)
        if deadlines.skips:
            core.assembly.skips[sid] = stream
        if jumped and send.wants_to_send(core.credit.available):
            core.assembly.want_send(stream)  # what follows, or the FIN
        if not len(deadlines):
            del streams[sid]
        if finished:
            core._check_closed(stream, now)
        elif send.buffer_was_full and send.writable and core._streams.get(sid) is stream:
            send.buffer_was_full = False
            core._emit(StreamWritable(session_id=core.session_id, stream_id=sid))
