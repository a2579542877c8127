"""Node-wide budgets: what all the sessions of one endpoint may hold together
(docs/security.md section 3, "Node-wide budgets").

Theory of operation
-------------------
Every per-session limit (credit, out-of-order pieces, stream ids, events) bounds
one session; a node with ``max_sessions`` sessions could still be made to hold
that limit times ``max_sessions``. A :class:`NodeBudget` is shared by the
endpoint and all its sessions and counts, node-wide:

- ``recv_used``: bytes of stream data received and not yet consumed by the
  application, over all streams of all sessions -- in order (a message in
  progress, delivered messages not yet pulled or read) and out of order. It
  counts what flow control counts (growth of a stream's highest offset, so a
  gap is counted as if it held data), which makes it an upper bound of the
  memory held;
- ``fragments``: out-of-order pieces held;
- ``closed_ids``: the records of stream ids kept to recognise late frames --
  ranges of used ids and refused ids remembered;
- ``events``: events waiting for ``next_event``.

**The rule** is the same for all four. With ``n`` sessions (established,
half-open or lingering), each session has a *fair share* of ``3/4 * limit /
n``. A session may grow its part of a budget

- within its fair share, while the node stays within the limit; and
- beyond its fair share only while the node holds less than a quarter of the
  limit (the *open* part).

So the node never exceeds the limit: the parts beyond fair shares fill at
most a quarter of it, the fair shares the other three quarters. Why three
quarters: with a thousand hostile sessions sitting on their parts of the
default 256 MiB receive budget, a half left a good session 128 kB of credit,
hardly a 50 Mbit/s, 20 ms path's bandwidth-delay product (0.76 of its goodput
alone, in ``tests/engine/test_budgets.py``); three quarters leave it 196 kB.
A session that holds little -- a well-behaved one, whose data is consumed as
it arrives -- always finds its fair share free, however many hostile sessions
sit on theirs, as long as the number of sessions does not grow meanwhile (when
it does, the shares shrink; parts already held are kept, and the limit still
holds). A lone session may take three quarters of a budget.

**What happens at the budget** keeps nothing lost for a well-behaved peer:

- a STREAM (or STREAM_SKIP) frame that would take a session over its part
  (bytes, pieces or events) is discarded and its packet left unacknowledged,
  as for the per-session fragment limit: the sender takes it for a loss and
  sends it again. Acknowledged data is never dropped. Frames that fill a gap
  (raise no highest offset) are never refused for bytes, so a sender's
  retransmissions always make progress;
- credit is the lever for in-order bytes: a MAX_DATA never grants a session
  more than its part could hold (:meth:`~stt_proto.flow.SessionCredit.update`),
  so a well-behaved sender is slowed by credit rather than by refusals;
- a stream the peer opens with an id that needs a new range of used ids is
  refused the same way (unacknowledged); a refused id beyond the session's
  part makes the session forget its oldest refused id (as at
  ``max_refused_streams``).

Events can exceed ``max_events`` by the events of one STREAM frame (one per
message it completes): the check comes before the frame is read, and reliable
events are never dropped.

The rule is one method per budget (:meth:`NodeBudget.recv_room`,
:meth:`~NodeBudget.fragment_room`, :meth:`~NodeBudget.closed_id_room`), called
where frames are handled (``stt_proto.session``, ``stt_proto.stream_ids``) and
where credit is granted (``stt_proto.flow``); in the compiled build they are C
calls on integers, a few operations per frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import EndpointConfig

__all__ = ["NodeBudget"]

#: The limit of a budget that does not limit (a sum never reaches it).
_UNLIMITED = 1 << 62


class NodeBudget:
    """The node-wide budgets of one endpoint and their counters.

    Args:
        config: the endpoint's configuration (``max_node_receive_buffer``,
            ``max_node_fragments``, ``max_node_closed_ids``, ``max_events``);
            ``None``: no node-wide limit (a session or stream used alone,
            as in unit tests).

    Attributes:
        recv_limit, fragment_limit, closed_id_limit, event_limit: the limits.
        recv_share, fragment_share, closed_id_share, event_share: a session's
            fair share of each (``(limit - limit // 4) // sessions``).
        recv_open, fragment_open, closed_id_open, event_open: a quarter of
            each: beyond its fair share a session grows only while the node
            holds less.
        sessions: the number of sessions sharing the budgets.
        recv_used, fragments, closed_ids, events: what all sessions hold now.
        recv_refused, fragments_refused, closed_ids_refused, events_refused:
            frames discarded (unacknowledged) at each budget.
        closed_ids_forgotten: refused ids forgotten early at the budget.
        credit_capped: credit updates the receive budget made smaller.
    """

    __slots__ = ("recv_limit", "recv_used", "fragment_limit", "fragments",
                 "closed_id_limit", "closed_ids", "event_limit", "events",
                 "recv_refused", "fragments_refused", "closed_ids_refused",
                 "closed_ids_forgotten", "events_refused", "credit_capped", "sessions",
                 "recv_share", "recv_open", "fragment_share", "fragment_open",
                 "closed_id_share", "closed_id_open", "event_share", "event_open")

    def __init__(self, config: EndpointConfig | None = None) -> None:
        if config is None:
            self.recv_limit = self.fragment_limit = self.closed_id_limit = \
                self.event_limit = _UNLIMITED
        else:
            self.recv_limit = config.max_node_receive_buffer
            self.fragment_limit = config.max_node_fragments
            self.closed_id_limit = config.max_node_closed_ids
            self.event_limit = config.max_events
        # What is held, then the counters of the budgets' hits.
        self.recv_used = self.fragments = self.closed_ids = self.events = 0
        self.recv_refused = self.fragments_refused = self.credit_capped = 0
        self.closed_ids_refused = self.closed_ids_forgotten = self.events_refused = 0
        self.set_sessions(1)

    def set_sessions(self, sessions: int) -> None:
        """``sessions`` share the budgets now: the fair shares follow."""
        self.sessions = sessions = max(sessions, 1)
        self.recv_share = _share(self.recv_limit, sessions)
        self.recv_open = self.recv_limit // 4
        self.fragment_share = _share(self.fragment_limit, sessions)
        self.fragment_open = self.fragment_limit // 4
        self.closed_id_share = _share(self.closed_id_limit, sessions)
        self.closed_id_open = self.closed_id_limit // 4
        self.event_share = _share(self.event_limit, sessions)
        self.event_open = self.event_limit // 4

    def statistics(self) -> dict[str, int]:
        """What is held against each budget, and the counters of its hits."""
        return {
            "node_recv_buffered": self.recv_used,
            "node_fragments": self.fragments,
            "node_closed_ids": self.closed_ids,
            "budget_recv_refused": self.recv_refused,
            "budget_credit_capped": self.credit_capped,
            "budget_fragments_refused": self.fragments_refused,
            "budget_closed_ids_refused": self.closed_ids_refused,
            "budget_closed_ids_forgotten": self.closed_ids_forgotten,
            "budget_events_refused": self.events_refused,
        }

    # -- the rule, one method per budget ------------------------------------------------
    # How much more a session holding ``mine`` may take: within its fair share
    # up to the limit, beyond it only up to the open quarter. May be negative.

    def recv_room(self, mine: int) -> int:
        """Receive-buffer bytes (``mine``: the session's bytes not consumed)."""
        return _room(self.recv_limit, self.recv_open, self.recv_share, self.recv_used, mine)

    def fragment_room(self, mine: int) -> int:
        """Out-of-order pieces (``mine``: the session's pieces held)."""
        return _room(self.fragment_limit, self.fragment_open, self.fragment_share,
                     self.fragments, mine)

    def closed_id_room(self, mine: int) -> int:
        """Closed-id records (``mine``: the session's ranges and refused ids)."""
        return _room(self.closed_id_limit, self.closed_id_open, self.closed_id_share,
                     self.closed_ids, mine)


def _share(limit: int, sessions: int) -> int:
    # (limit // 4) * 3 rather than 3 * limit: the unlimited budget stays below 2**63.
    return (limit - limit // 4) // sessions


def _room(limit: int, open_part: int, share: int, total: int, mine: int) -> int:
    within = share - mine
    if within > limit - total:
        within = limit - total
    beyond = open_part - total
    return within if within > beyond else beyond
