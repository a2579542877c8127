"""Range sets: sorted sets of half-open integer ranges, for ACKs, reassembly and loss.

This file is the single source of truth for :class:`RangeSet`. Like
``_wire_py.py`` it is plain Python and importable as is (the *pure* build), and
the very same file is compiled by Cython as ``stt_proto._rangeset_c`` (the
*accelerated* build), with the C types in ``_rangeset_c.pxd``.
``stt_proto._rangeset`` picks one of the two at import time. Nothing in this
file may depend on being compiled; the one ``import cython`` is guarded, because
Cython is needed to build, never to run.

The session keeps the packet numbers it received in a :class:`RangeSet` and
builds its ACK frames from :meth:`RangeSet.ack_ranges` (``docs/protocol.md``
section 8.1); the streams keep received, acknowledged and lost byte ranges in
them. Bounds are packet numbers and stream offsets, which are varints
(``docs/protocol.md`` section 2), so the compiled build can hold every bound in
a signed 64-bit integer.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from .constants import VARINT_MAX

__all__ = ["COMPILED", "RangeSet"]

try:  # ``cython.compiled`` is a compile-time True in the compiled module.
    import cython

    #: True when this module is the Cython-compiled build.
    COMPILED = bool(cython.compiled)
except ImportError:  # Cython is only a build dependency, not a runtime one.
    COMPILED = False

#: One past the largest value a range may cover: ranges hold packet numbers and
#: stream offsets, which are varints, so every bound fits a signed 64-bit integer
#: (the compiled build relies on this).
_RANGE_END = VARINT_MAX + 1

#: Stale slots at the front of ``RangeSet._bounds`` that are tolerated before
#: they are cut off (see :meth:`RangeSet._advance`).
_HEAD_SLACK = 32


def _as_bound(value: int) -> int:
    """Return ``value`` if it may bound a range (``0 ..= VARINT_MAX + 1``).

    Raises:
        TypeError: ``value`` is not an ``int`` (subclasses such as ``bool``
            included, so both builds store plain ints only).
        ValueError: ``value`` is out of range.
    """
    if type(value) is not int:
        raise TypeError(f"range bound must be an int, not {type(value).__name__}")
    # Compared as Python ints first: a huge value must raise ValueError in both
    # builds, not OverflowError in the compiled one.
    if value < 0 or value > _RANGE_END:
        raise ValueError(f"range bound out of range: {value!r}")
    return value


def _as_limit(value: int, count: int) -> int:
    """Return ``min(value, count)`` for a non-negative ``int`` ``value``."""
    if type(value) is not int:
        raise TypeError(f"limit must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"limit must not be negative: {value!r}")
    if value < count:
        return value
    return count


class RangeSet:
    """A sorted set of disjoint, non-adjacent half-open integer ranges
    ``[start, stop)``.

    Used for received packet numbers (:meth:`ack_ranges` gives what an
    :class:`~stt_proto._wire.AckFrame` carries), received stream bytes
    (:meth:`missing`, :meth:`contiguous_end`) and lost stream bytes
    (:meth:`shift`). Bounds are ``int`` values in ``0 ..= VARINT_MAX + 1``;
    anything else raises ``TypeError`` (not an ``int``) or ``ValueError`` (out
    of range, or ``start > stop``), identically in both builds.

    Theory of operation: the ranges live in one flat list of bounds,
    ``[start0, stop0, start1, stop1, ...]``, which is strictly increasing because
    touching ranges are merged. So a value is covered exactly when
    ``bisect_right`` puts it at an odd position, and every operation is a bisect
    plus a local splice. The common hot-path cases (adding at or past the top,
    removing the lowest range) touch only the ends of the list: removal from the
    front moves a head index instead of shifting the list, and the stale slots
    are cut off in bulk once they are at least half of the list. The bounds
    stored are the caller's own int objects, so the compiled build does its
    arithmetic in C without creating new ones. The number of integers covered is
    kept up to date on every change.
    """

    __slots__ = ("_bounds", "_head", "_covered")

    def __init__(self, ranges=()) -> None:
        """Build the set from an iterable of ``(start, stop)`` pairs, in any order
        and possibly overlapping."""
        self._bounds = []
        self._head = 0
        self._covered = 0
        for start, stop in ranges:
            self.add(start, stop)

    # -- inspection ----------------------------------------------------------

    def __len__(self) -> int:
        """Number of disjoint ranges."""
        return (len(self._bounds) - self._head) >> 1

    def __bool__(self) -> bool:
        return len(self._bounds) > self._head

    def __iter__(self):
        """``(start, stop)`` tuples in ascending order (a snapshot)."""
        return iter(self._pairs())

    def __contains__(self, value: object) -> bool:
        return self._has(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._pairs() == other._pairs()

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RangeSet({self._pairs()!r})"

    def _pairs(self) -> list:
        bounds = self._bounds
        return [(bounds[i], bounds[i + 1]) for i in range(self._head, len(bounds), 2)]

    def _has(self, value: object) -> bool:
        # Anything that is not a plain int in range is simply not a member.
        if type(value) is not int or value < 0 or value >= _RANGE_END:
            return False
        return (bisect_right(self._bounds, value, self._head) - self._head) & 1 == 1

    def covered(self) -> int:
        """Total number of integers covered (kept up to date, O(1))."""
        return self._covered

    def lowest(self) -> int:
        """The smallest integer covered.

        Raises:
            IndexError: the set is empty.
        """
        if len(self._bounds) == self._head:
            raise IndexError("lowest() of an empty RangeSet")
        return self._bounds[self._head]

    def highest(self) -> int:
        """The largest integer covered (the last range's ``stop - 1``).

        Raises:
            IndexError: the set is empty.
        """
        bounds = self._bounds
        n = len(bounds)
        if n == self._head:
            raise IndexError("highest() of an empty RangeSet")
        stop = bounds[n - 1]
        return stop - 1

    def contiguous_end(self, start: int) -> int:
        """Where the covered run starting at ``start`` ends: the ``stop`` of the
        range holding ``start``, or ``start`` itself if it is not covered (so,
        the first integer from ``start`` on that is missing)."""
        _as_bound(start)
        bounds = self._bounds
        head = self._head
        i = bisect_right(bounds, start, head)
        if (i - head) & 1:
            return bounds[i]
        return start

    def missing(self, start: int, stop: int) -> list:
        """The parts of ``[start, stop)`` not covered, as an ascending list of
        ``(start, stop)`` pairs (empty when all of it is covered).

        Raises:
            ValueError: ``start > stop`` or a bound out of range.
        """
        s = _as_bound(start)
        e = _as_bound(stop)
        if s > e:
            raise ValueError(f"empty range: start {start!r} > stop {stop!r}")
        result = []
        bounds = self._bounds
        head = self._head
        n = len(bounds)
        pos = start  # the first integer not yet classified
        p = s
        i = bisect_right(bounds, start, head, n)
        if (i - head) & 1:  # start is covered: skip to the end of its range
            pos = bounds[i]
            p = pos
            i += 1
        while p < e:
            if i == n:
                result.append((pos, stop))
                break
            nxt = bounds[i]
            a = nxt
            if a >= e:
                result.append((pos, stop))
                break
            result.append((pos, nxt))
            pos = bounds[i + 1]
            p = pos
            i += 2
        return result

    def ack_ranges(self, limit: int) -> tuple:
        """The highest ``limit`` ranges as inclusive ``(first, last)`` pairs,
        highest first: the ``ranges`` of an :class:`~stt_proto._wire.AckFrame`
        (whose encoder also accepts at most ``MAX_ACK_RANGES + 1`` of them).
        ``()`` when empty."""
        bounds = self._bounds
        n = len(bounds)
        k = _as_limit(limit, (n - self._head) >> 1)
        result = []
        i = n - 2
        while k > 0:
            last = bounds[i + 1]
            result.append((bounds[i], last - 1))
            i -= 2
            k -= 1
        return tuple(result)

    def copy(self) -> RangeSet:
        """An independent copy."""
        other = RangeSet()
        other._bounds = self._bounds[self._head :]
        other._covered = self._covered
        return other

    def __copy__(self) -> RangeSet:
        # The default would share the list of bounds between the two sets.
        return self.copy()

    # -- changes -------------------------------------------------------------

    def add(self, start: int, stop: int) -> int:
        """Add ``[start, stop)``, merging it with the ranges it overlaps or
        touches.

        Returns:
            How many integers were not covered before (0 for an empty range).

        Raises:
            ValueError: ``start > stop`` or a bound out of range; the set is
                unchanged.
        """
        s = _as_bound(start)
        e = _as_bound(stop)
        if s >= e:
            if s > e:
                raise ValueError(f"empty range: start {start!r} > stop {stop!r}")
            return 0
        bounds = self._bounds
        head = self._head
        n = len(bounds)
        if n == head:
            bounds.append(start)
            bounds.append(stop)
            self._covered += e - s
            return e - s
        # Fast paths: at or past the top range (in-order packets and bytes).
        top = bounds[n - 1]
        if s > top:
            bounds.append(start)
            bounds.append(stop)
            self._covered += e - s
            return e - s
        x = bounds[n - 2]
        if s >= x:
            if e <= top:
                return 0
            bounds[n - 1] = stop
            self._covered += e - top
            return e - top
        # General case: [lo, hi) is the slice of bounds that the merged range
        # replaces. Both are even offsets from head, because a bound that falls
        # inside a range widens the new range to that range's edge.
        i = bisect_left(bounds, start, head, n)
        j = bisect_right(bounds, stop, i, n)
        new_start = start
        new_stop = stop
        lo = i
        hi = j
        if (i - head) & 1:
            lo = i - 1
            new_start = bounds[lo]
            s = new_start
        if (j - head) & 1:
            hi = j + 1
            new_stop = bounds[j]
            e = new_stop
        added = e - s
        k = lo
        while k < hi:
            x = bounds[k]
            y = bounds[k + 1]
            added -= y - x
            k += 2
        if hi == lo:
            # A new range between existing ones (or below them all).
            if lo == head and head >= 2:
                head -= 2  # reuse the stale slots in front: no list shift
                self._head = head
                bounds[head] = new_start
                bounds[head + 1] = new_stop
            else:
                bounds.insert(lo, new_stop)
                bounds.insert(lo, new_start)
        else:
            bounds[lo] = new_start
            bounds[lo + 1] = new_stop
            if hi > lo + 2:
                del bounds[lo + 2 : hi]
        self._covered += added
        return added

    def discard(self, start: int, stop: int) -> None:
        """Remove ``[start, stop)``; parts that were not covered are ignored.

        Raises:
            ValueError: ``start > stop`` or a bound out of range; the set is
                unchanged.
        """
        s = _as_bound(start)
        e = _as_bound(stop)
        if s > e:
            raise ValueError(f"empty range: start {start!r} > stop {stop!r}")
        bounds = self._bounds
        head = self._head
        n = len(bounds)
        if s == e or n == head:
            return
        x = bounds[head]
        y = bounds[n - 1]
        if e <= x or s >= y:
            return
        i = bisect_right(bounds, start, head, n)
        j = bisect_left(bounds, stop, i, n)
        # [lo, hi) are the bounds of every range that meets [start, stop); the
        # parts of the first and the last of them outside it are kept.
        lo = i
        hi = j
        keep_left = False
        keep_right = False
        if (i - head) & 1:
            lo = i - 1
            x = bounds[lo]
            keep_left = x < s
        if (j - head) & 1:
            hi = j + 1
            y = bounds[j]
            keep_right = e < y
        if hi == lo:
            return  # [start, stop) falls in a gap
        removed = 0
        k = lo
        while k < hi:
            x = bounds[k]
            y = bounds[k + 1]
            removed += y - x
            k += 2
        if keep_left:
            x = bounds[lo]
            removed -= s - x
        if keep_right:
            y = bounds[hi - 1]
            removed -= y - e
        self._covered -= removed
        if keep_left and keep_right:
            if hi == lo + 2:  # split one range in two: [a, b) -> [a, start), [stop, b)
                bounds.insert(lo + 1, stop)
                bounds.insert(lo + 1, start)
            else:
                bounds[lo + 1] = start
                bounds[hi - 2] = stop
                self._delete(lo + 2, hi - 2)
        elif keep_left:
            bounds[lo + 1] = start
            self._delete(lo + 2, hi)
        elif keep_right:
            bounds[hi - 2] = stop
            self._delete(lo, hi - 2)
        else:
            self._delete(lo, hi)

    def shift(self) -> tuple:
        """Remove the lowest range and return it as ``(start, stop)``.

        Raises:
            IndexError: the set is empty.
        """
        bounds = self._bounds
        head = self._head
        if len(bounds) == head:
            raise IndexError("shift() from an empty RangeSet")
        x = bounds[head]
        y = bounds[head + 1]
        self._covered -= y - x
        result = (bounds[head], bounds[head + 1])
        self._advance(2)
        return result

    def trim_lowest(self, max_ranges: int) -> int:
        """Drop the lowest ranges until at most ``max_ranges`` are left (how an
        ACK range table stays bounded).

        Returns:
            How many ranges were dropped.
        """
        bounds = self._bounds
        head = self._head
        count = (len(bounds) - head) >> 1
        drop = count - _as_limit(max_ranges, count)
        if drop == 0:
            return 0
        removed = 0
        k = head
        end = head + 2 * drop
        while k < end:
            x = bounds[k]
            y = bounds[k + 1]
            removed += y - x
            k += 2
        self._covered -= removed
        self._advance(2 * drop)
        return drop

    def _delete(self, lo: int, hi: int) -> None:
        """Remove ``bounds[lo:hi]`` (an even number of slots)."""
        bounds = self._bounds
        if lo == hi:
            pass
        elif lo == self._head:
            self._advance(hi - lo)
        elif hi == len(bounds):
            del bounds[lo:]
        else:
            del bounds[lo:hi]

    def _advance(self, slots: int) -> None:
        """Drop ``slots`` bounds from the front by moving the head; the stale
        slots are cut off in one go once they are many and at least half of the
        list, which keeps removal from the front O(1) amortised."""
        head = self._head + slots
        bounds = self._bounds
        if head >= _HEAD_SLACK and head * 2 >= len(bounds):
            del bounds[:head]
            head = 0
        self._head = head
