"""Session-wide flow control: the MAX_DATA credit in both directions
(docs/protocol.md 7.6).

Theory of operation
-------------------
Credit is an absolute limit on the sum, over all streams of the session, of
the highest offset sent (a reset stream counts its final size). Each stream
has its own limit as well; that half lives with the stream
(:class:`~stt_proto.stream.RecvStream`, :class:`~stt_proto.stream.SendStream`).
A :class:`SessionCredit` keeps the session's half for one session:

- **Receiving.** Bytes count as *received* when they raise a stream's highest
  offset (:meth:`SessionCredit.on_received`: beyond the limit granted, the peer
  broke flow control) and as *consumed* when the application has taken them
  (:meth:`SessionCredit.on_consumed`). The limit wanted is ``consumed + window
  + reserves``, where a reserve is the rest of a message larger than the
  window whose delivery is under way (7.6). A MAX_DATA is owed once the wanted
  limit exceeds the current one by a quarter of the window, or at once when the
  peer says it is blocked. If updates go out less than two smoothed RTTs apart,
  the window, not the reader, limits the peer: it doubles, up to its maximum.
- **Sending.** The peer's limit only grows (:meth:`SessionCredit.on_max_data`);
  the session takes credit for every new byte it sends
  (:meth:`SessionCredit.on_sent`) and, when credit runs out with data waiting,
  reports DATA_BLOCKED once per limit value (:meth:`SessionCredit.blocked`).

The object does not know streams beyond the receive halves that hold a
reserve; the session tells it what moved.

Node-wide. What is received and not consumed also counts against the node's
receive budget (:class:`~stt_proto.budget.NodeBudget`, shared by all
sessions): :meth:`SessionCredit.on_received` and
:meth:`SessionCredit.on_consumed` keep its ``recv_used`` in step, and
:meth:`SessionCredit.update` never grants more than the session's part of
the budget could hold, so credit, not discarded frames, slows a well-behaved
sender when the node is full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .budget import NodeBudget
from .constants import ErrorCode
from .errors import ProtocolError

if TYPE_CHECKING:
    from .stream import RecvStream

__all__ = ["SessionCredit"]


class SessionCredit:
    """The session-level credit of one session, both directions.

    Args:
        peer_max_data: the credit the peer granted in its transport parameters.
        window: our initial session window (``session_window``).
        max_window: how far auto-tuning may grow it (``max_session_window``).
        budget: the node's budgets (``None``: a private one without limits).

    Attributes:
        peer_max_data: the peer's current limit on what we send.
        sent: new stream bytes we sent (counted against ``peer_max_data``).
        local_max_data: the limit we granted the peer.
        received: stream bytes the peer sent (counted against ``local_max_data``).
        window: our current session window.
        update_pending: a MAX_DATA is owed to the peer.
        blocked_at: the limit last reported in DATA_BLOCKED (-1: none).
        blocked_pending: a DATA_BLOCKED is owed to the peer.
    """

    __slots__ = ("peer_max_data", "sent", "local_max_data", "received", "window",
                 "max_window", "consumed", "reserving", "update_pending", "updated_at",
                 "blocked_at", "blocked_pending", "skipped", "budget")

    def __init__(self, *, peer_max_data: int, window: int, max_window: int,
                 budget: NodeBudget | None = None) -> None:
        self.budget = NodeBudget() if budget is None else budget
        self.peer_max_data = peer_max_data
        self.sent = 0
        self.local_max_data = window
        self.received = 0
        #: Of those, bytes STREAM_SKIPs named (see on_skipped).
        self.skipped = 0
        self.window = window
        self.max_window = max_window
        #: Stream bytes the application consumed (all streams).
        self.consumed = 0
        #: Receive halves that may hold a reserve for a large message.
        self.reserving: set[RecvStream] = set()
        self.update_pending = False
        self.updated_at = float("-inf")
        self.blocked_at = -1
        self.blocked_pending = False

    # -- receiving -------------------------------------------------------------------

    def on_received(self, grown: int) -> None:
        """``grown`` more bytes count against the credit we granted.

        Raises:
            ProtocolError: beyond the credit (FLOW_CONTROL_ERROR, 7.6).
        """
        total = self.received + grown
        if total - self.skipped > self.local_max_data:
            raise ProtocolError("session data beyond the credit granted",
                                error_code=ErrorCode.FLOW_CONTROL_ERROR)
        self.received = total
        self.budget.recv_used += grown

    def on_skipped(self, grown: int) -> None:
        """``grown`` more bytes were named by a STREAM_SKIP (docs/protocol.md
        7.12): counted like received bytes, so both sides keep the same count,
        but never refused, and left out of the limit check: they take no memory
        here, and the sender jumped over those it never sent whatever its
        credit, since only the skip frees credit."""
        self.received += grown
        self.skipped += grown
        self.budget.recv_used += grown  # until consumed, as for received bytes

    def on_consumed(self, delta: int) -> None:
        """The application took ``delta`` more bytes (ignored unless positive)."""
        if delta > 0:
            self.consumed += delta
            self.budget.recv_used -= delta

    @property
    def in_use(self) -> int:
        """Bytes received (or skipped) and not consumed: this session's part of
        the node's receive budget."""
        return self.received - self.consumed

    def release(self) -> None:
        """The session closed: what it held leaves the node's receive budget,
        and later counts go to a private one."""
        self.budget.recv_used -= self.received - self.consumed
        self.consumed = self.received
        self.budget = NodeBudget()

    def update(self, now: float, smoothed_rtt: float, force: bool = False) -> None:
        """Decide whether a MAX_DATA is owed, after consumption, a reserve or a
        DATA_BLOCKED (``force``: send the current limit even if unchanged)."""
        reserved = 0
        if self.reserving:
            for recv in list(self.reserving):
                reserve = recv.message_reserve()
                if reserve:
                    reserved += reserve
                else:
                    self.reserving.discard(recv)
        window = self.window
        wanted = self.consumed + window + reserved
        # The node's receive budget: never grant more than this session's part
        # could hold (the rule of stt_proto.budget).
        budget = self.budget
        cap = self.received + budget.recv_room(self.received - self.consumed)
        capped = wanted > cap
        if capped:
            wanted = cap
        current = self.local_max_data
        if wanted <= current:
            if force:
                self.update_pending = True
            return
        # A capped grant is worth a frame once it moved by a quarter of what it
        # grants (a quarter of the window could then never be reached).
        if wanted - current < ((wanted - self.consumed) if capped else window) // 4 \
                and not force:
            return
        if capped:
            budget.credit_capped += 1
        # Auto-tuning (7.6): updates this frequent mean the window limits the peer
        # (not when the budget is what limits it).
        elif now - self.updated_at < 2 * smoothed_rtt and window < self.max_window:
            window = self.window = min(window * 2, self.max_window)
            wanted = min(self.consumed + window + reserved, cap)
        self.updated_at = now
        self.local_max_data = wanted
        self.update_pending = True

    # -- sending ---------------------------------------------------------------------

    @property
    def available(self) -> int:
        """Credit left for new bytes."""
        return self.peer_max_data - self.sent

    def on_max_data(self, maximum: int) -> bool:
        """A MAX_DATA from the peer; returns whether the limit grew (limits only
        grow, 7.6)."""
        if maximum > self.peer_max_data:
            self.peer_max_data = maximum
            return True
        return False

    def on_sent(self, new: int) -> None:
        """``new`` bytes beyond any stream's previous highest offset were sent."""
        self.sent += new

    def blocked(self) -> None:
        """Data waits for session credit: report DATA_BLOCKED, once per limit."""
        if self.blocked_at != self.peer_max_data:
            self.blocked_at = self.peer_max_data
            self.blocked_pending = True
