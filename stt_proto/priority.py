"""Stream priorities: which stream's data goes into the next STREAM frame
(docs/engine.md, "Stream scheduling").

Theory of operation
-------------------
Every stream has an *urgency*, 0 (most urgent) to 7, default 3, and an
*incremental* flag, default off, with the meaning of RFC 9218 section 4:
among streams of one urgency, non-incremental ones are served one after
another, in the order they became ready, each keeping the turn until it has
nothing more to send (a file is worth nothing half-sent); incremental ones
(media, progressive data) take turns frame by frame. Priorities are local: the
peer is never told (they are the sender's business; RFC 9218 carries them as a
request hint, here the sender is the one who knows).

**Weighted, not strict, between urgencies.** Strict priority lets a busy
urgent stream starve everything below it forever. Here each urgency level with
data waiting is charged for what it sends, ``bytes << u`` for level ``u`` (a
stride scheduler: level ``u`` weighs ``2 ** (7 - u)``), and the next frame goes
to the waiting level charged least so far, the more urgent one on a tie. A
level that had nothing to send starts again at the charge of the level served
last, so it neither saves up a claim while idle nor pays for the bytes others
sent meanwhile; one that just woke is therefore served at once, ahead of any
less urgent level (how a 100-byte message at urgency 0 overtakes a bulk
transfer at urgency 7: the next packet built carries it).

*The bound.* Over any stretch of sending during which level ``u`` always has
a stream with data it may send (credit permitting), level ``u`` gets at least
``2 ** (7 - u) / 255`` of the stream bytes sent (retransmissions included),
short of at most two frames per level: that is more than ``1 / 2 ** (u + 1)``
whatever the other levels do (a half for urgency 0, 1/256 for urgency 7). Proof
sketch: a level is served only while its charge is the least, so the charges
of two levels that keep data waiting never drift apart by more than one
frame's charge each; a level that joins starts at the least charge, never
below. Hence ``sent_v * 2 ** v <= sent_u * 2 ** u + (one frame of each)``
for every level ``v``; summing ``sent_v`` over the eight levels gives the share
above (``sum(2 ** -v) = 255 / 128``). Against one other level the share is
higher: urgency 7 next to urgency 0 gets 1/129 of the bytes, urgency 4 next
to urgency 3 a third.

**Interactive streams.** A stream whose writes leave at most
:data:`INTERACTIVE_PACKETS` packets' worth of data queued and unacknowledged
on it (a chat, a request, a remote shell: small messages, then a wait for the
answer) is *interactive*: within its level it goes in a lane served ahead of
the level's other ("bulk") streams, so it is not queued behind a transfer of
its own urgency. The status is decided again at every write: a write that
leaves more queued (the stream started sending bulk) takes it away. While
bulk streams of the level wait, at most every other frame of the level goes
to the lane, so the bulk keeps at least half of the level's frames; the
level's charge, and so the bound between levels, counts the lane's bytes like
any other. Less urgent levels are passed anyway: a level that was idle is
served first when it wakes (see above).

The per-packet path: a session almost always has one stream sending, or one
urgency; then no charge is kept and no level is compared.

Streams are duck-typed: anything with ``stream_id``, ``send`` (a
:class:`~stt_proto.stream.SendStream`), ``urgency``, ``incremental`` and
``interactive`` attributes (the session's ``_Stream``); the scheduler sets
``urgency``, ``incremental`` and ``interactive``, nothing else.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StreamScheduler", "DEFAULT_URGENCY", "LOWEST_URGENCY", "INTERACTIVE_PACKETS",
           "check_priority"]

#: Urgency of a stream nobody gave one (RFC 9218 section 4.1).
DEFAULT_URGENCY = 3
#: The least urgent level; 0 is the most urgent.
LOWEST_URGENCY = 7
#: A write that leaves at most this many packets' payload queued and
#: unacknowledged on its stream makes (or keeps) the stream interactive.
INTERACTIVE_PACKETS = 2


def check_priority(priority: Any, incremental: Any = None) -> None:
    """Raise if ``priority`` is not an urgency or ``incremental`` not a flag.

    Raises:
        TypeError: ``priority`` is not an int (a bool is not one either), or
            ``incremental`` is neither ``None`` nor a bool.
        ValueError: ``priority`` is outside 0..7.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int from 0 (most urgent) to {LOWEST_URGENCY}, "
                        f"not {type(priority).__name__}")
    if not 0 <= priority <= LOWEST_URGENCY:
        raise ValueError(f"priority must be from 0 (most urgent) to {LOWEST_URGENCY}, "
                         f"not {priority}")
    if incremental is not None and not isinstance(incremental, bool):
        raise TypeError(f"incremental must be True or False, not {type(incremental).__name__}")


class _Level:
    """The streams of one urgency waiting to send, in turn order."""

    __slots__ = ("bulk", "lane", "lane_went", "charge")

    def __init__(self) -> None:
        #: Streams that are not interactive, in the order they became ready.
        self.bulk: dict[int, Any] = {}
        #: Interactive streams, round-robin.
        self.lane: dict[int, Any] = {}
        #: The level's last frame came from the lane (the bulk goes next).
        self.lane_went = False
        #: What the level was charged for its bytes (``bytes << urgency``).
        self.charge = 0


class StreamScheduler:
    """The streams of a session with data (or a FIN) to send, and whose turn it
    is (see the module docstring).

    It reads as a set of streams keyed by id: ``len``, ``in``, truth, and
    :meth:`pop` to take a stream out; :meth:`push` or :meth:`update` put
    streams in. The assembler asks :meth:`head` for the stream to take the
    next frame from and reports what it sent with :meth:`served`.

    Args:
        max_payload: the largest packet payload (the unit of the interactive
            rule).
    """

    __slots__ = ("_members", "_levels", "_active", "_vtime", "_turn", "_interactive_bytes")

    def __init__(self, max_payload: int) -> None:
        self._members: dict[int, Any] = {}
        #: The level of each urgency, made when a stream of it first waits:
        #: most sessions use one or two of the eight.
        self._levels: list[_Level | None] = [None] * (LOWEST_URGENCY + 1)
        #: Bit ``u`` set: level ``u`` has a stream waiting.
        self._active = 0
        #: The charge of the level served last (where a waking level starts).
        self._vtime = 0
        #: ``(level, from the lane, its urgency or -1 when no charges are
        #: kept)`` of the stream :meth:`head` chose.
        self._turn: tuple[_Level, bool, int] | None = None
        self._interactive_bytes = INTERACTIVE_PACKETS * max_payload

    def __len__(self) -> int:
        return len(self._members)

    def __bool__(self) -> bool:
        return bool(self._members)

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._members

    def __repr__(self) -> str:
        waiting = {u: [*level.lane, *level.bulk] for u, level in enumerate(self._levels)
                   if level is not None and (level.lane or level.bulk)}
        return f"StreamScheduler({waiting})"

    # ------------------------------------------------------------------ membership

    def push(self, stream: Any) -> None:
        """``stream`` has something to send: queue it at the back of its level
        (where it is, if it is queued already)."""
        sid = stream.stream_id
        if sid in self._members:
            return
        self._members[sid] = stream
        urgency = stream.urgency
        level = self._levels[urgency]
        if level is None:
            level = self._levels[urgency] = _Level()
        bit = 1 << urgency
        if not self._active & bit:
            self._active |= bit
            # A level wakes at the charge of the level served last: no claim
            # saved up while idle, no debt for what others sent meanwhile.
            if level.charge < self._vtime:
                level.charge = self._vtime
        (level.lane if stream.interactive else level.bulk)[sid] = stream

    def update(self, streams: dict[int, Any]) -> None:
        """:meth:`push` each of ``streams`` (a table of streams by id), in order."""
        for stream in streams.values():
            self.push(stream)

    def pop(self, stream_id: int, default: Any = None) -> Any:
        """Take the stream out (it has nothing more, or closed); returns it, or
        ``default`` if it was not queued."""
        stream = self._members.pop(stream_id, None)
        if stream is None:
            return default
        urgency = stream.urgency
        level = self._levels[urgency]
        if level.lane.pop(stream_id, None) is None:
            del level.bulk[stream_id]
        if not level.lane and not level.bulk:
            self._active &= ~(1 << urgency)
        return stream

    # ------------------------------------------------------------------ priorities

    def set_priority(self, stream: Any, urgency: int, incremental: bool | None) -> None:
        """Give ``stream`` a new urgency (and flag, unless ``None``); a stream
        that waits moves to the back of its new level. Values are checked by
        :func:`check_priority` before."""
        if incremental is not None:
            stream.incremental = incremental
        if urgency == stream.urgency:
            return
        queued = self.pop(stream.stream_id)
        stream.urgency = urgency
        if queued is not None:
            self.push(stream)

    def wrote(self, stream: Any) -> None:
        """The application queued data on ``stream``: decide again whether it is
        interactive (at most :data:`INTERACTIVE_PACKETS` packets' payload
        queued and unacknowledged now), then :meth:`push` it."""
        send = stream.send
        interactive = send.write_end - send.acked_end <= self._interactive_bytes
        if interactive is not stream.interactive:
            self.pop(stream.stream_id)  # it changes lanes
            stream.interactive = interactive
        self.push(stream)

    # ------------------------------------------------------------------ turns

    def head(self) -> Any:
        """The stream whose turn it is (the scheduler must not be empty); tell
        :meth:`served` what it sent before asking again."""
        active = self._active
        if not active & (active - 1):
            # One level waiting: no charges to keep, no levels to compare.
            level = self._levels[active.bit_length() - 1]
            urgency = -1
        else:
            # The level charged least, the more urgent on a tie (levels are
            # visited most urgent first; the comparison is strict).
            levels = self._levels
            level = None
            least = urgency = 0
            bits = active
            while bits:
                low = bits & -bits
                bits ^= low
                candidate = levels[low.bit_length() - 1]
                if level is None or candidate.charge < least:
                    level, least, urgency = candidate, candidate.charge, low.bit_length() - 1
            self._vtime = least
        lane = bool(level.lane) and (not level.bulk or not level.lane_went)
        self._turn = (level, lane, urgency)
        table = level.lane if lane else level.bulk
        return next(iter(table.values()))

    def served(self, stream: Any, nbytes: int, more: bool) -> None:
        """The stream :meth:`head` returned sent ``nbytes`` of stream data (0
        if nothing fitted or only a FIN went); ``more``: it still has
        something it may send. An incremental or interactive stream goes to
        the back of its turn order; a non-incremental one keeps the turn."""
        level, lane, urgency = self._turn  # type: ignore[misc]
        if urgency >= 0:
            # A frame costs at least 1: a FIN alone is a turn too.
            level.charge += (nbytes or 1) << urgency
        if level.bulk:
            level.lane_went = lane
        sid = stream.stream_id
        table = level.lane if lane else level.bulk
        if not more:
            self.pop(sid)
        elif lane or stream.incremental:
            table[sid] = table.pop(sid)
