"""The endpoint's sessions: one record per session, and the index table that routes
packets to it.

Theory of operation
-------------------
A :class:`Session` is what the endpoint knows about one peer beyond the frames
and streams (those are :class:`~stt_proto.session.SessionCore`): where the peer
is, the keys, the liveness clocks, and where the session stands in its life
cycle. The life cycle is not a set of flags: ``state`` and ``rekey_state`` move
only through :meth:`Session.advance` and :meth:`Session.advance_rekey`, which
follow the tables in :mod:`stt_proto.state` and raise on anything the tables do
not list (every input is the endpoint's own decision, so a refusal is a bug).

Routing (``docs/protocol.md`` sections 3 and 6). The peer puts one of our random
32-bit *local indices* in the clear header of every packet; an :class:`IndexTable`
maps each live index to its owner, a session or an outgoing handshake attempt,
so demultiplexing is one lookup and needs no address (a peer may move).
"""

from __future__ import annotations

from typing import Any, Callable

from .constants import ErrorCode
from .crypto import KeyRing
from .handshake import TransportParameters
from .session import SessionCore
from .state import (
    RekeyInput,
    RekeyState,
    SessionInput,
    SessionState,
    rekey_transition,
    session_transition,
)

__all__ = ["Session", "IndexTable", "host_of"]

Address = Any


def host_of(address: Address) -> Any:
    """The host part of an address, for the per-address session limit."""
    return address[0] if isinstance(address, tuple) else address


class Session:
    """A session: its peer, address, keys, liveness clocks and life-cycle state."""

    __slots__ = ("session_id", "peer_id", "address", "initiator", "keys", "peer_params",
                 "state", "rekey_state", "closed_from", "created_at", "last_received",
                 "last_sent", "closed_at", "timer_at", "routes", "core", "closing",
                 "close_next", "close_interval", "close_sends", "close_frame")

    def __init__(self, session_id: bytes, peer_id: bytes, address: Address, initiator: bool,
                 keys: KeyRing, peer_params: TransportParameters, now: float) -> None:
        self.session_id = session_id
        self.peer_id = peer_id
        self.address = address
        self.initiator = initiator
        self.keys = keys
        self.peer_params = peer_params
        self.state = SessionState.HANDSHAKING
        self.rekey_state = RekeyState.IDLE
        #: The state the session closed from (only a confirmed session speaks
        #: CLOSE while it lingers).
        self.closed_from: SessionState | None = None
        self.created_at = now
        self.last_received = now
        self.last_sent = now
        #: When the session became CLOSED: the linger period runs from here.
        self.closed_at: float | None = None
        self.timer_at: float | None = None
        #: Local indices routed to this session (one per live key).
        self.routes: set[int] = set()
        #: Streams, recovery and flow control (stt_proto.session).
        self.core: SessionCore | None = None
        #: ``(error_code, reason, deadline)`` while CLOSING delivers what is queued.
        self.closing: tuple[int, str, float] | None = None
        #: After a local close: when the CLOSE frame is sent again (until the
        #: peer echoes a CLOSE or the linger period ends), the interval, and
        #: how many CLOSE frames were sent.
        self.close_next: float | None = None
        self.close_interval = 0.0
        self.close_sends = 0
        #: ``(error_code, reason)`` of our CLOSE: repetitions carry the same
        #: (docs/protocol.md 7.8; only the echo of the peer's CLOSE is CLOSE(0)).
        self.close_frame: tuple[int, str] = (ErrorCode.NO_ERROR, "")

    def advance(self, event: SessionInput) -> None:
        """Move the life cycle by ``event`` (:func:`~stt_proto.state.session_transition`).

        Raises:
            RuntimeError: the table does not allow ``event`` now (an engine bug).
        """
        new = session_transition(self.state, event)
        if new is None:
            raise RuntimeError(f"session life cycle: {event.name} in {self.state.name}")
        if new is SessionState.CLOSED:
            self.closed_from = self.state
        self.state = new

    def advance_rekey(self, event: RekeyInput) -> None:
        """Move the rekey sub-machine by ``event`` (:func:`~stt_proto.state.rekey_transition`).

        Raises:
            RuntimeError: the table does not allow ``event`` now (an engine bug).
        """
        new = rekey_transition(self.state, self.rekey_state, event)
        if new is None:
            raise RuntimeError(f"rekey: {event.name} in {self.rekey_state.name} "
                               f"of a {self.state.name} session")
        self.rekey_state = new

    @property
    def established(self) -> bool:
        """Confirmed and not closed: the application may use it."""
        return self.state is SessionState.ESTABLISHED or self.state is SessionState.CLOSING

    @property
    def closed(self) -> bool:
        """Closed (lingering) or forgotten: no longer the application's."""
        return self.state is SessionState.CLOSED or self.state is SessionState.FORGOTTEN


class IndexTable:
    """Local indices and their owners (sessions and handshake attempts).

    Args:
        rng: the endpoint's random source; indices are drawn from it.
    """

    __slots__ = ("_owners", "_rng")

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._owners: dict[int, Any] = {}
        self._rng = rng

    def __len__(self) -> int:
        return len(self._owners)

    def get(self, index: int) -> Any:
        """The owner of ``index``, or ``None``."""
        return self._owners.get(index)

    def new(self, owner: Any | None = None) -> int:
        """A fresh random index no one owns; routed to ``owner`` if one is given."""
        while True:
            index = int.from_bytes(self._rng(4), "big")
            if index not in self._owners:
                if owner is not None:
                    self._owners[index] = owner
                return index

    def route(self, index: int, owner: Any) -> None:
        """Send packets for ``index`` to ``owner`` from now on."""
        self._owners[index] = owner

    def release(self, index: int, owner: Any | None = None) -> None:
        """Forget ``index`` (only if ``owner`` still owns it, when given)."""
        if owner is None:
            self._owners.pop(index, None)
        elif self._owners.get(index) is owner:
            del self._owners[index]
