"""Which stream ids may open in a session: an id is never opened twice, and the
peer's opens are limited (docs/protocol.md 7.2, 7.5).

Theory of operation
-------------------
An application may choose stream ids, and either side may open any id
(``docs/protocol.md`` 7.2), but once an id has been used in a session -- opened
by this side, opened by the peer, or refused for the stream limit -- it can
never open again in that session (7.5). A frame for a used id whose stream is
no longer open is therefore always a late or repeated copy: the session
acknowledges it and drops it. No race between a close and a delayed packet
can turn such a frame into a new stream, however long the packet was delayed,
which is what closed-stream "tombstones" with linger periods used to
approximate.

The ids are remembered as a set of ranges. Allocated ids are monotonic, odd for
the side that initiated the session and even for the other (as in QUIC), so
each side's allocations form one run of its parity. To keep such a run one
range, an id is stored under a key that puts the two parities apart:
``id // 2`` for even ids and ``2**61 + id // 2`` for odd ones. Two sides
allocating at once then need two ranges in all, whatever the number of
streams; only ids chosen out of order (by an application, or by a hostile
peer using every other id) make more.

The number of ranges is bounded (``max_used_stream_ranges``): the caller asks
:meth:`UsedStreamIds.has_room_for` first, and refuses a local open, or closes
the session when the peer is the one that would overflow it (7.2).

Node-wide, the ranges and the refused ids of all sessions count against the
node's budget of closed-id records (``max_node_closed_ids``,
:mod:`stt_proto.budget`): a session over its part has a peer's new stream that
needs another range deferred (:data:`DEFERRED`: the frame is discarded
unacknowledged and comes again), and forgets its oldest refused id early.

:class:`StreamAdmission` applies these rules and the stream limits of one
session: it allocates ids, checks local opens, and decides for each id the
peer starts whether it opens, is refused (beyond ``max_streams`` or faster
than ``max_stream_open_rate``: STOP_SENDING(STREAM_LIMIT_ERROR), 7.2) or is a
late frame for a used id. It counts the streams open on each side; the
session holds the streams themselves.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ._rangeset import RangeSet
from .budget import NodeBudget
from .constants import ErrorCode
from .errors import LocalProtocolError, ProtocolError, StreamIdUsedError

if TYPE_CHECKING:
    from .config import EndpointConfig

__all__ = ["UsedStreamIds", "StreamAdmission", "OPEN", "REFUSED", "LATE", "DEFERRED"]

#: What :meth:`StreamAdmission.admit_peer` decides for a frame of the peer.
OPEN, REFUSED, LATE, DEFERRED = "open", "refused", "late", "deferred"
#: Refusals (STOP_SENDING) queued at most at a time.
_MAX_QUEUED_REFUSALS = 64

#: Keys of odd ids start here (even ids map below it).
_ODD_BASE = 1 << 61


def _key(stream_id: int) -> int:
    return (stream_id >> 1) | ((stream_id & 1) << 61)


def _stream_id(key: int) -> int:
    return ((key & (_ODD_BASE - 1)) << 1) | (key >> 61)


class UsedStreamIds:
    """Every stream id used in one session, as ranges per parity.

    :param limit: the most ranges kept (``max_used_stream_ranges``).
    :param budget: the node's budgets; the ranges count in its ``closed_ids``
        (``None``: a private one without limits).
    """

    __slots__ = ("_ranges", "limit", "budget")

    def __init__(self, limit: int, budget: NodeBudget | None = None) -> None:
        self._ranges = RangeSet()
        self.limit = limit
        self.budget = NodeBudget() if budget is None else budget

    def __contains__(self, stream_id: int) -> bool:
        return _key(stream_id) in self._ranges

    def __len__(self) -> int:
        """Number of ranges kept (what the limit bounds)."""
        return len(self._ranges)

    def count(self) -> int:
        """Number of ids used."""
        return self._ranges.covered()

    def has_room_for(self, stream_id: int) -> bool:
        """Whether :meth:`add` of ``stream_id`` stays within the limit: the id is
        used already, extends a range, or a new range still fits."""
        return len(self._ranges) < self.limit or not self.needs_range(stream_id)

    def needs_range(self, stream_id: int) -> bool:
        """Whether :meth:`add` of ``stream_id`` would make a new range."""
        key = _key(stream_id)
        ranges = self._ranges
        # A key touching an existing range merges into it (at most two ranges
        # become one); only an isolated key needs a range of its own.
        return not (key in ranges or (key > 0 and key - 1 in ranges) or key + 1 in ranges)

    def add(self, stream_id: int) -> None:
        """Remember ``stream_id`` as used. Call :meth:`has_room_for` first: this
        never refuses, so the limit holds only if the caller checked."""
        key = _key(stream_id)
        ranges = self._ranges
        before = len(ranges)
        ranges.add(key, key + 1)
        self.budget.closed_ids += len(ranges) - before

    def next_unused(self, stream_id: int) -> int | None:
        """The first id of ``stream_id``'s parity, from ``stream_id`` on, that was
        never used; ``None`` if every such id up to ``2**62 - 1`` was."""
        key = self._ranges.contiguous_end(_key(stream_id))
        # Past the last key of the parity: the odd keys, or the end of them.
        if (key >> 61) != (stream_id & 1):
            return None
        return _stream_id(key)

    def __repr__(self) -> str:
        return f"UsedStreamIds({self.count()} ids in {len(self)} ranges, limit {self.limit})"


class StreamAdmission:
    """The stream ids and stream limits of one session (docs/protocol.md 7.2).

    Args:
        config: the endpoint's configuration (``max_streams``,
            ``max_stream_open_rate``, ``max_refused_streams``,
            ``max_used_stream_ranges``).
        initiator: this side started the session (it allocates odd ids).
        budget: the node's budgets (``None``: a private one without limits).

    Attributes:
        used: every id used in the session (:class:`UsedStreamIds`).
        refused: ids refused for the stream limit -> the highest offset seen
            on them (their bytes count against session credit, 7.2).
        refusals: refused ids whose STOP_SENDING waits to be sent.
        peer_streams: streams opened by the peer that are open.
        local_streams: streams opened by this side that are open.
        stats: counters, merged into the session's statistics.
    """

    __slots__ = ("used", "refused", "refusals", "peer_streams", "local_streams", "stats",
                 "_config", "_next_id", "_burst", "_tokens", "_tokens_at", "budget")

    def __init__(self, config: EndpointConfig, *, initiator: bool,
                 budget: NodeBudget | None = None) -> None:
        self._config = config
        self.budget = NodeBudget() if budget is None else budget
        self.used = UsedStreamIds(config.max_used_stream_ranges, self.budget)
        self.refused: OrderedDict[int, int] = OrderedDict()
        self.refusals: list[int] = []   # at most _MAX_QUEUED_REFUSALS
        self.peer_streams = 0
        self.local_streams = 0
        self._next_id = 1 if initiator else 0
        #: Token bucket of peer opens (max_stream_open_rate): bursts of one
        #: second's worth or max_streams, whichever is more.
        self._burst = float(max(config.max_streams, config.max_stream_open_rate))
        self._tokens = self._burst
        self._tokens_at: float | None = None
        self.stats = dict.fromkeys(
            ("streams_refused", "streams_refused_rate", "refused_streams_forgotten"), 0)

    # -- this side --------------------------------------------------------------------

    def allocate(self) -> int:
        """The next id of this side's parity never used (7.2).

        Raises:
            LocalProtocolError: every such id was used.
        """
        stream_id = self.used.next_unused(self._next_id)
        if stream_id is None:
            raise LocalProtocolError("every stream id of this side was used")
        self._next_id = stream_id + 2
        return stream_id

    def open_local(self, stream_id: int) -> None:
        """This side opens ``stream_id`` (counted; not yet marked used: see
        :meth:`mark_used`).

        Raises:
            StreamIdUsedError: the id was used in this session (7.5).
            LocalProtocolError: ``max_streams`` streams of this side are open,
                or the id would need a range beyond ``max_used_stream_ranges``.
        """
        if stream_id in self.used:
            raise StreamIdUsedError(f"stream id {stream_id} was already used in this session")
        config = self._config
        if self.local_streams >= config.max_streams:
            raise LocalProtocolError(f"{config.max_streams} streams are open already")
        if not self.used.has_room_for(stream_id):
            raise LocalProtocolError(
                f"stream id {stream_id} would need a range of used ids beyond "
                f"max_used_stream_ranges ({config.max_used_stream_ranges})")
        self.local_streams += 1

    def mark_used(self, stream_id: int) -> None:
        """A stream this side opened is in use: its id never opens again.
        (:meth:`open_local` checked that it fits.)"""
        self.used.add(stream_id)

    # -- the peer -----------------------------------------------------------------------

    def admit_peer(self, stream_id: int, now: float) -> str:
        """The peer sent STREAM or RESET_STREAM for ``stream_id``, which has no
        open stream here. Returns :data:`OPEN` (the caller opens it),
        :data:`REFUSED` (refused now or before; a STOP_SENDING is queued),
        :data:`LATE` (a late frame for a used id: absorb it, 7.5) or
        :data:`DEFERRED` (the id needs another range of used ids and the
        session is over its part of the node's closed-id budget: discard the
        frame unacknowledged, so that it comes again).

        Raises:
            ProtocolError: the id would need a range of used ids beyond
                ``max_used_stream_ranges`` (STREAM_LIMIT_ERROR, 7.2).
        """
        if stream_id in self.refused:
            self._queue_refusal(stream_id)  # remind the peer
            return REFUSED
        used = self.used
        if stream_id in used:
            return LATE
        if not used.has_room_for(stream_id):
            # Only ids used out of order take ranges: a peer scattering them
            # would make the set grow without bound (docs/security.md).
            raise ProtocolError(
                f"stream ids used out of order beyond {used.limit} ranges",
                error_code=ErrorCode.STREAM_LIMIT_ERROR)
        budget = self.budget
        if used.needs_range(stream_id):
            # The node-wide rule (stt_proto.budget).
            if budget.closed_id_room(len(used) + len(self.refused)) < 1:
                budget.closed_ids_refused += 1
                return DEFERRED
        used.add(stream_id)
        config = self._config
        over = self.peer_streams >= config.max_streams
        if not over and not self._take_token(now):
            # Opening faster than max_stream_open_rate: refused like a stream
            # beyond the limit (docs/security.md), so churn costs us nothing.
            self.stats["streams_refused_rate"] += 1
            over = True
        if over:
            self.stats["streams_refused"] += 1
            refused = self.refused
            refused[stream_id] = 0
            budget.closed_ids += 1
            if (len(refused) > config.max_refused_streams
                    or budget.closed_id_room(len(used) + len(refused)) < 0):
                if len(refused) <= config.max_refused_streams:
                    budget.closed_ids_forgotten += 1  # the node's budget, not ours
                refused.popitem(last=False)
                budget.closed_ids -= 1
                self.stats["refused_streams_forgotten"] += 1
            self._queue_refusal(stream_id)
            return REFUSED
        self.peer_streams += 1
        return OPEN

    def refused_bytes(self, stream_id: int, end: int) -> int:
        """A frame of refused stream ``stream_id`` reaches offset ``end``:
        returns by how much that raises the highest offset seen (bytes the
        peer counted against session credit, 7.2)."""
        highest = self.refused.get(stream_id)
        if highest is None or end <= highest:
            return 0
        self.refused[stream_id] = end
        return end - highest

    def refusal_lost(self, stream_id: int) -> None:
        """A packet with the refusal of ``stream_id`` was lost: send it again
        (the opener may send nothing more that would prompt another one)."""
        if stream_id in self.refused and stream_id not in self.refusals:
            self._queue_refusal(stream_id)

    # -- both ---------------------------------------------------------------------------

    def closed(self, *, remote: bool) -> None:
        """A stream closed (``remote``: the peer had opened it)."""
        if remote:
            self.peer_streams -= 1
        else:
            self.local_streams -= 1

    def release(self) -> None:
        """The session closed: its records leave the node's budget (they are
        kept, uncounted, while the closed session lingers)."""
        self.budget.closed_ids -= len(self.used) + len(self.refused)
        self.budget = self.used.budget = NodeBudget()

    def _queue_refusal(self, stream_id: int) -> None:
        if len(self.refusals) < _MAX_QUEUED_REFUSALS:
            self.refusals.append(stream_id)

    def _take_token(self, now: float) -> bool:
        """Take a token from the bucket of peer stream opens, if one is left."""
        tokens = self._tokens
        last = self._tokens_at
        if last is not None and now > last:
            tokens = min(tokens + (now - last) * self._config.max_stream_open_rate,
                         self._burst)
        self._tokens_at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
