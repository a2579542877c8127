"""The stream ids a session has used: an id is never opened twice in one session.

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
"""

from __future__ import annotations

from ._rangeset import RangeSet

__all__ = ["UsedStreamIds"]

#: Keys of odd ids start here (even ids map below it).
_ODD_BASE = 1 << 61


def _key(stream_id: int) -> int:
    return (stream_id >> 1) | ((stream_id & 1) << 61)


def _stream_id(key: int) -> int:
    return ((key & (_ODD_BASE - 1)) << 1) | (key >> 61)


class UsedStreamIds:
    """Every stream id used in one session, as ranges per parity.

    :param limit: the most ranges kept (``max_used_stream_ranges``).
    """

    __slots__ = ("_ranges", "limit")

    def __init__(self, limit: int) -> None:
        self._ranges = RangeSet()
        self.limit = limit

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
        if len(self._ranges) < self.limit:
            return True
        key = _key(stream_id)
        ranges = self._ranges
        # A key touching an existing range merges into it (at most two ranges
        # become one); only an isolated key needs a range of its own.
        return key in ranges or (key > 0 and key - 1 in ranges) or key + 1 in ranges

    def add(self, stream_id: int) -> None:
        """Remember ``stream_id`` as used. Call :meth:`has_room_for` first: this
        never refuses, so the limit holds only if the caller checked."""
        key = _key(stream_id)
        self._ranges.add(key, key + 1)

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
