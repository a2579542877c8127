"""The endpoint's sessions: their records, their life cycle, their timer, how they
close, and the index table that routes packets to them.

Theory of operation
-------------------
A :class:`Session` is what the endpoint knows about one peer beyond the frames
and streams (those are :class:`~stt_proto.session.SessionCore`): where the peer
is, the keys, the liveness clocks, and where the session stands in its life
cycle. The life cycle is not a set of flags: ``state`` and ``rekey_state`` move
only through :meth:`Session.advance` and :meth:`Session.advance_rekey`, which
follow the tables in :mod:`stt_proto.state` and raise on anything the tables do
not list (every input is the endpoint's own decision, so a refusal is a bug).

A :class:`SessionTable` holds every session of one endpoint until it is
forgotten, with the limits on them (``max_sessions``, per address, half-open).
The handshake drivers (:mod:`stt_proto.handshaking`) call it when keys are ready:
a responder's session starts ``HANDSHAKING`` and is confirmed by the initiator's
first authenticated DATA packet (``docs/protocol.md`` 6.3), which also proves
the initiator's address; only then does the application hear of it. Each
session has one deadline in the endpoint's timer heap, the earliest of: idle
timeout and keep-alive (7.7), the core's loss-recovery and pacing timers, the
flush deadline of a graceful close, when our keys are due for a rekey or expire
(6.7), and, once ``CLOSED``, the next CLOSE repetition and the end of the linger
period (7.8). Its timer handler decides what is due in that order.

Closing (7.8). A graceful close may first drain (``CLOSING``); then a confirmed
session sends CLOSE, repeats it with backoff until the peer echoes one, and
lingers for ``close_linger`` with its indices still routed, so that late packets
are absorbed (not counted as unknown) and a peer that missed our CLOSE hears it
again. A session closed by the peer, a timeout or a violation does not repeat
(it only echoes).

Routing (sections 3 and 6). The peer puts one of our random 32-bit *local
indices* in the clear header of every packet; an :class:`IndexTable` maps each
live index to its owner, a session or an outgoing handshake attempt, so
demultiplexing is one lookup and needs no address. A peer may move: an
authenticated packet from a new address starts its validation, and the session
sends there once the peer proved it receives there (:mod:`stt_proto.path`, 7.11).
"""

from __future__ import annotations

from typing import Any, Callable

from . import _wire as wire
from .budget import NodeBudget
from .config import EndpointConfig
from .constants import AEAD_TAG_SIZE, DATA_HEADER_SIZE, ErrorCode
from .crypto import KeyExhaustedError, KeyRing, PacketKeys
from .errors import DecodeError, LocalProtocolError, ProtocolError, StreamClosedError
from .events import (
    CloseReason,
    Event,
    SessionClosed,
    SessionEstablished,
    SessionMigrated,
    SessionResumed,
    SessionSuspended,
)
from .handshake import TransportParameters
from .handshaking import path_datagram_size
from .path import CHALLENGE_SIZE, PathProbe, new_host
from .session import SessionCore
from .state import (
    RekeyInput,
    RekeyState,
    SessionInput,
    SessionState,
    rekey_transition,
    session_transition,
)

__all__ = ["Session", "SessionTable", "IndexTable", "host_of"]

Address = Any

#: CLOSE frames a closed session sends at most (first, repeats and echoes; 7.8).
MAX_CLOSE_SENDS = 8
#: A suspended session's PINGs: the first gap, and the most it doubles to (7.7).
_SUSPENDED_PING_FIRST = 0.25
_SUSPENDED_PING_MAX = 8.0
#: The size of a packet holding one PATH_CHALLENGE (type byte and data).
_CHALLENGE_PACKET_SIZE = DATA_HEADER_SIZE + 1 + CHALLENGE_SIZE + AEAD_TAG_SIZE

# The states as module constants: reading a member off an Enum class costs a
# slow attribute lookup in CPython 3.11, and these checks run for every packet.
_HANDSHAKING = SessionState.HANDSHAKING
_ESTABLISHED = SessionState.ESTABLISHED
_CLOSING = SessionState.CLOSING
_CLOSED = SessionState.CLOSED
_FORGOTTEN = SessionState.FORGOTTEN
_REKEY_IDLE = RekeyState.IDLE
_REKEY_RUNNING = RekeyState.RUNNING


def host_of(address: Address) -> Any:
    """The host part of an address, for the per-address session limit."""
    return address[0] if isinstance(address, tuple) else address


class Session:
    """A session: its peer, address, keys, liveness clocks and life-cycle state."""

    __slots__ = ("session_id", "peer_id", "address", "initiator", "keys", "peer_params",
                 "state", "rekey_state", "closed_from", "created_at", "last_received",
                 "last_sent", "closed_at", "timer_at", "routes", "core", "closing",
                 "close_next", "close_interval", "close_sends", "close_frame", "probe",
                 "largest_pn", "suspended_at", "ping_at", "ping_gap")

    def __init__(self, session_id: bytes, peer_id: bytes, address: Address, initiator: bool,
                 keys: KeyRing, peer_params: TransportParameters, now: float) -> None:
        self.session_id = session_id
        self.peer_id = peer_id
        self.address = address
        self.initiator = initiator
        self.keys = keys
        self.peer_params = peer_params
        self.state = _HANDSHAKING
        self.rekey_state = _REKEY_IDLE
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
        #: The validation of a new address of the peer, if one runs (stt_proto.path).
        self.probe: PathProbe | None = None
        #: The highest packet number received: the newest packet says where the
        #: peer is now.
        self.largest_pn = -1
        #: While suspended (``suspend_after``): since when, and the next PING
        #: and the gap after it (it doubles up to _SUSPENDED_PING_MAX).
        self.suspended_at: float | None = None
        self.ping_at = 0.0
        self.ping_gap = 0.0
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
        if new is _CLOSED:
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
        return self.state is _ESTABLISHED or self.state is _CLOSING

    @property
    def closed(self) -> bool:
        """Closed (lingering) or forgotten: no longer the application's."""
        return self.state is _CLOSED or self.state is _FORGOTTEN


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


class SessionTable:
    """The endpoint's sessions: their creation from finished handshakes, their
    limits, the per-session timer and how they close.

    Args:
        config: the endpoint's configuration.
        indices: the endpoint's index table (sessions route their keys' indices).
        stats: the endpoint's counters (this object adds to them).
        queue: ``queue(datagram, address)`` sends a datagram.
        push_event: ``push_event(event)`` hands an event to the application.
        arm: ``arm(session, at)`` sets the session's timer (``None``: none);
            :meth:`handle_timer` runs when it fires.
        new_session_id: ``new_session_id()`` is a fresh, unused session id.
        start_rekey: ``start_rekey(session, now)`` starts our fresh handshake.
        cancel_rekey: ``cancel_rekey(session)`` forgets it (the session closed).
        budget: the endpoint's node-wide budgets, shared by the sessions'
            cores; a session's part leaves them when it closes.
    """

    def __init__(self, config: EndpointConfig, indices: IndexTable, stats: dict[str, int], *,
                 queue: Callable[[bytes, Address], None], push_event: Callable[[Event], None],
                 arm: Callable[[Session, float | None], None],
                 new_session_id: Callable[[], bytes],
                 start_rekey: Callable[[Session, float], None],
                 cancel_rekey: Callable[[Session], None],
                 budget: NodeBudget | None = None) -> None:
        self._config = config
        self._budget = NodeBudget(config) if budget is None else budget
        self._indices = indices
        self._stats = stats
        self._queue = queue
        self._push_event = push_event
        self._arm = arm
        self._new_session_id = new_session_id
        self._start_rekey = start_rekey
        self._cancel_rekey = cancel_rekey
        #: Every session not yet forgotten, by id (``max_sessions``). Read-only
        #: outside this class.
        self.sessions: dict[bytes, Session] = {}
        #: Sessions per peer host (``max_sessions_per_address``).
        self._per_host: dict[Any, int] = {}
        #: Sessions in HANDSHAKING (``max_half_open``).
        self.half_open = 0
        #: Sessions with input since they last transmitted.
        self.dirty: dict[Session, None] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, session_id: bytes) -> Session:
        """The session, unless it is unknown or closed (``KeyError``)."""
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            raise KeyError("unknown or closed session")
        return session

    def usable(self, session_id: bytes, *, closing_ok: bool = False) -> Session:
        """The session, if the application may use it now.

        Raises:
            KeyError: unknown or closed session.
            LocalProtocolError: not established yet.
            StreamClosedError: closing (unless ``closing_ok``).
        """
        session = self.get(session_id)
        if not session.established or session.core is None:
            raise LocalProtocolError("session is not established")
        if session.state is _CLOSING and not closing_ok:
            raise StreamClosedError("session is closing")
        return session

    def mark(self, session: Session) -> None:
        """``session`` has something to send: :meth:`transmit_dirty` will."""
        self.dirty[session] = None

    def transmit_dirty(self, now: float) -> None:
        """Let every marked session send what it may."""
        dirty = self.dirty
        self.dirty = {}
        for session in dirty:
            self._transmit(session, now)

    def payload_room(self, session: Session) -> int:
        """Bytes of frames one packet of ``session`` can carry."""
        if session.core is not None:
            return session.core.max_payload
        limit = min(path_datagram_size(self._config, session.address),
                    session.peer_params.max_datagram_size)
        return limit - DATA_HEADER_SIZE - AEAD_TAG_SIZE

    # ------------------------------------------------------------------ packets

    def receive(self, session: Session, data: bytes, receiver_index: int, address: Address,
                now: float) -> None:
        """A DATA packet routed to ``session`` by ``receiver_index``: open it,
        confirm a half-open session (6.3), follow the peer's address, and feed
        the frames to the session's core; a violation closes the session."""
        if session.state is _CLOSED:
            self._receive_closed(session, data, receiver_index, now)
            return
        keys = session.keys
        current = keys.current
        opened = keys.open_untrusted(data, receiver_index, now=now)
        if opened is None:
            self._stats["dropped_unauthenticated"] += 1
            return
        _, pn, payload = opened
        if keys.current is not current:
            self._sync_indices(session)  # the peer confirmed a rekey: the ring moved
        silent_since = session.last_received
        session.last_received = now
        if session.suspended_at is not None:
            self._resume(session, now - silent_since)
        newest = pn > session.largest_pn  # numbers go on across rekeys
        if newest:
            session.largest_pn = pn
        if address != session.address:
            if session.state is _HANDSHAKING:
                self._move(session, address)  # the initiator's first packet proves it (6.3)
            else:
                self._from_elsewhere(session, address, len(data), newest, now)
        elif newest and session.probe is not None:
            session.probe.current = False  # the peer is (back) where we send
        if session.state is _HANDSHAKING:
            # The initiator's first packet confirms the keys and proves it
            # receives at this address: the session becomes usable (6.3).
            session.advance(SessionInput.CONFIRMED)
            self.half_open -= 1
            self._stats["handshakes_completed"] += 1
            self._push_event(SessionEstablished(session_id=session.session_id,
                                                peer_id=session.peer_id,
                                                peer_address=address, initiator=False))
        core = session.core
        try:
            core.receive_packet(pn, payload, now)
        except ProtocolError as exc:
            self._protocol_violation(session, exc.error_code, str(exc), now)
            return
        if core.peer_close is not None:
            code, message = core.peer_close
            reason = CloseReason.GRACEFUL if code == 0 else CloseReason.ERROR
            self._close_session(session, reason, code, message or "closed by peer", now)
            return
        if core.path_responses:
            self._path_answered(session, now)
        if session.state is _CLOSING and not core.has_unfinished_sends():
            self._close_now(session, session.closing[0], session.closing[1], now)
            return
        # No _schedule here: datagrams_to_send transmits the dirty session and
        # _transmit re-arms its timer (get_timer answers "now" until then).
        self.mark(session)

    def _transmit(self, session: Session, now: float) -> None:
        core = session.core
        if core is None or not session.established:
            return
        datagrams = core.transmit(now, session.keys.seal)
        if datagrams:
            session.last_sent = now
            address = session.address
            probe = session.probe
            if probe is not None and probe.current:
                # The peer's newest packet came from the address under
                # validation: send there too, within what it sent us (7.11).
                for datagram in datagrams:
                    if probe.may_send(len(datagram)):
                        probe.sent += len(datagram)
                        self._queue(datagram, probe.address)
                    else:
                        self._queue(datagram, address)
            else:
                for datagram in datagrams:
                    self._queue(datagram, address)
        self._schedule(session)

    # ------------------------------------------------------------------ outages (7.7)

    def _suspend(self, session: Session, now: float) -> None:
        """Silent for ``suspend_after``: wait for the peer, probing, instead of closing."""
        session.suspended_at = now
        session.ping_gap = _SUSPENDED_PING_FIRST
        session.ping_at = now  # the first PING goes now
        self._stats["sessions_suspended"] += 1
        self._push_event(SessionSuspended(session_id=session.session_id,
                                          peer_id=session.peer_id))

    def _resume(self, session: Session, outage: float) -> None:
        """The peer is heard again: what went out during the silence is most
        likely lost, so it goes again now rather than at the backed-off probe
        timeout."""
        session.suspended_at = None
        session.core.resend_in_flight()
        self._stats["sessions_resumed"] += 1
        self._push_event(SessionResumed(session_id=session.session_id,
                                        peer_id=session.peer_id, outage=outage))

    # ------------------------------------------------------------------ paths (7.11)

    def _from_elsewhere(self, session: Session, address: Address, size: int, newest: bool,
                        now: float) -> None:
        """An authenticated packet from another address than the session's:
        probe that address (stt_proto.path); the latest claim replaces an older
        one. ``newest``: it has the highest packet number yet."""
        probe = session.probe
        if probe is None or probe.address != address:
            probe = session.probe = PathProbe(address)
            self._stats["path_probes_started"] += 1
        probe.received += size
        if newest:
            probe.current = True
        self._challenge(session, now)

    def _challenge(self, session: Session, now: float) -> None:
        """Send the probe's next PATH_CHALLENGE if it is due and the address
        sent us enough bytes to pay for it."""
        probe = session.probe
        if not probe.due(now):
            return
        if not probe.may_send(_CHALLENGE_PACKET_SIZE):
            self._stats["path_challenges_deferred"] += 1  # sent when it sends more
            return
        core = session.core
        data = probe.challenge(self._config.rng, 3 * core.recovery.rtt.smoothed_rtt, now)
        room = probe.received - probe.sent - DATA_HEADER_SIZE - AEAD_TAG_SIZE
        datagram = core.assembly.path_challenge(data, now, session.keys.seal, room)
        if datagram is None:
            return
        probe.sent += len(datagram)
        self._stats["path_challenges_sent"] += 1
        self._queue(datagram, probe.address)
        self._schedule(session)

    def _path_answered(self, session: Session, now: float) -> None:
        responses, session.core.path_responses = session.core.path_responses, []
        probe = session.probe
        if probe is None or not any(probe.answered_by(data) for data in responses):
            return  # late, or for an abandoned probe
        old = session.address
        self._move(session, probe.address)
        session.probe = None
        session.core.resend_in_flight(new_path_at=now if new_host(old, probe.address) else None)
        self._stats["paths_validated"] += 1
        self._push_event(SessionMigrated(session_id=session.session_id,
                                         peer_id=session.peer_id, old_address=old,
                                         peer_address=session.address))

    def _move(self, session: Session, address: Address) -> None:
        """Send to ``address`` from now on; the per-host count follows."""
        old, new = host_of(session.address), host_of(address)
        if old != new and session.session_id in self.sessions:
            left = self._per_host.get(old, 1) - 1
            if left > 0:
                self._per_host[old] = left
            else:
                self._per_host.pop(old, None)
            self._per_host[new] = self._per_host.get(new, 0) + 1
        session.address = address

    def _send_payload(self, session: Session, payload: bytes, now: float) -> None:
        _, datagram = session.keys.seal(payload, now=now)
        session.last_sent = now
        self._queue(datagram, session.address)

    # ------------------------------------------------------------------ from the handshakes

    def connect_established(self, session_id: bytes, peer_id: bytes, address: Address,
                            keys: PacketKeys, params: TransportParameters, local_index: int,
                            now: float) -> None:
        """The Initiator's RESPONSE authenticated: the session exists and is
        confirmed for us at once (6.3)."""
        ring = KeyRing(limits=self._config.key_limits)
        ring.install(keys, now=now, confirmed=True)
        session = Session(session_id, peer_id, address, True, ring, params, now)
        session.core = self._new_core(session)
        session.advance(SessionInput.CONFIRMED)
        self.sessions[session_id] = session
        self._budget.set_sessions(len(self.sessions))
        self._route(session, local_index)
        self._per_host[host_of(address)] = self._per_host.get(host_of(address), 0) + 1
        self._stats["handshakes_completed"] += 1
        self._push_event(SessionEstablished(session_id=session_id, peer_id=peer_id,
                                            peer_address=address, initiator=True))
        # The first DATA packet confirms the keys to the responder (section 6.3).
        # It is ack-eliciting, so loss recovery repeats it until it arrives.
        session.core.queue_ping()
        self.mark(session)
        self._schedule(session)

    def rekeyed(self, session: Session, keys: PacketKeys, local_index: int,
                now: float) -> None:
        """Our rekey of ``session`` completed: the new keys are current at once."""
        session.advance_rekey(RekeyInput.COMPLETED)
        session.keys.install(keys, now=now, confirmed=True)
        self._route(session, local_index)
        self._sync_indices(session)
        self._stats["rekeys_completed"] += 1
        # Use the new keys at once: that is what confirms them to the responder.
        session.core.queue_ping()
        self.mark(session)
        self._schedule(session)

    def rekey_abandoned(self, session: Session) -> None:
        """Our rekey of ``session`` reached its deadline unanswered."""
        session.advance_rekey(RekeyInput.ABANDONED)
        self._schedule(session)

    def admits(self, address: Address) -> bool:
        """Room for one more session from ``address`` (half-open, total, per host)."""
        config = self._config
        return not (self.half_open >= config.max_half_open
                    or len(self.sessions) >= config.max_sessions
                    or self._per_host.get(host_of(address), 0) >= config.max_sessions_per_address)

    def rekey_target(self, index: int, peer_id: bytes) -> Session | None:
        """The session a peer's rekey names (by our index): only one of its own,
        established and open."""
        session = self._indices.get(index)
        if isinstance(session, Session) and session.peer_id == peer_id \
                and session.established:
            return session
        return None

    def half_opened(self, peer_id: bytes, address: Address, keys: PacketKeys,
                    params: TransportParameters, local_index: int, now: float) -> None:
        """The Responder answered a new INITIATION: a HANDSHAKING session waits
        for the initiator's first DATA packet (or ``half_open_timeout``)."""
        ring = KeyRing(limits=self._config.key_limits)
        ring.install(keys, now=now, confirmed=True)
        session = Session(self._new_session_id(), peer_id, address, False, ring, params, now)
        session.core = self._new_core(session)
        self.sessions[session.session_id] = session
        self._budget.set_sessions(len(self.sessions))
        self._route(session, local_index)
        self._per_host[host_of(address)] = self._per_host.get(host_of(address), 0) + 1
        self.half_open += 1
        self._schedule(session)

    def rekey_offered(self, session: Session, keys: PacketKeys, local_index: int,
                      now: float) -> None:
        """The peer rekeys ``session``: the new keys wait as ``next`` until it uses them."""
        session.keys.install(keys, now=now, confirmed=False)
        self._route(session, local_index)
        self._schedule(session)

    # ------------------------------------------------------------------ the timer

    def handle_timer(self, session: Session, now: float) -> None:
        """Run what is due for ``session`` at ``now``, in the order of its
        life cycle: linger and CLOSE repetition once closed; expiry of a
        half-open session; then idle timeout, key expiry, starting a rekey,
        the core's timers, keep-alive and the end of a graceful close's flush."""
        config = self._config
        state = session.state
        if state is _CLOSED:
            if now >= session.closed_at + config.close_linger:
                session.advance(SessionInput.LINGER_OVER)
                self._forget_session(session)
                return
            if session.close_next is not None and now >= session.close_next:
                if session.close_sends < MAX_CLOSE_SENDS:
                    self._send_close(session, *session.close_frame, now)
                    session.close_interval = min(session.close_interval * 2,
                                                 config.close_linger / MAX_CLOSE_SENDS)
                    session.close_next = now + session.close_interval
                else:
                    session.close_next = None
            self._schedule(session)
            return
        if state is _HANDSHAKING:
            if now >= session.created_at + config.half_open_timeout:
                # The initiator never confirmed: a lost confirmation, a peer with
                # another network seed, or a replayed/forged initiation.
                self._stats["handshakes_unconfirmed"] += 1
                self.half_open -= 1
                session.closed_at = now
                session.advance(SessionInput.EXPIRED)
                self._forget_session(session)
            else:
                self._schedule(session)
            return
        if config.suspend_after is None:
            if now >= session.last_received + config.idle_timeout:
                self._close_session(session, CloseReason.TIMEOUT, ErrorCode.IDLE_TIMEOUT,
                                    "no packet from the peer within the idle timeout", now)
                return
        elif now >= session.last_received + config.max_outage:
            self._close_session(session, CloseReason.TIMEOUT, ErrorCode.IDLE_TIMEOUT,
                                "no packet from the peer within max_outage", now)
            return
        elif session.suspended_at is None:
            if now >= session.last_received + config.suspend_after:
                self._suspend(session, now)
        elif now >= session.ping_at:
            session.core.queue_ping()
            session.ping_gap = min(2 * session.ping_gap, _SUSPENDED_PING_MAX)
            session.ping_at = now + session.ping_gap
        current = session.keys.current
        if current is None or not current.can_receive(now=now):
            self._close_session(session, CloseReason.TIMEOUT, ErrorCode.IDLE_TIMEOUT,
                                "keys expired before a rekey completed", now)
            return
        if session.rekey_state is _REKEY_IDLE and (
            # Time limits: the side that initiated the keys rekeys (WireGuard).
            (current.initiator and current.needs_rekey(now=now))
            # Volume limits apply to whoever sends: either side may rekey.
            or current.packets_sent >= config.key_limits.rekey_after_packets
            or not current.can_send(now=now)
        ):
            session.advance_rekey(RekeyInput.START)
            self._start_rekey(session, now)
        session.keys.expire(now)
        self._sync_indices(session)
        probe = session.probe
        if probe is not None and probe.next_at is not None and now >= probe.next_at:
            if probe.exhausted(now):
                session.probe = None
                self._stats["path_validations_failed"] += 1
            else:
                self._challenge(session, now)
        session.core.handle_timer(now)
        if now >= session.last_sent + config.keep_alive_interval:
            session.core.queue_ping()
        if state is _CLOSING and (not session.core.has_unfinished_sends()
                                              or now >= session.closing[2]):
            self._close_now(session, session.closing[0], session.closing[1], now)
            return
        self.mark(session)
        self._schedule(session)

    def _schedule(self, session: Session) -> None:
        self._arm(session, self._deadline_of(session))

    def _deadline_of(self, session: Session) -> float | None:
        """The earliest time :meth:`handle_timer` has work for ``session``."""
        config = self._config
        if session.session_id not in self.sessions:
            return None
        state = session.state
        if state is _CLOSED:
            end = session.closed_at + config.close_linger
            return end if session.close_next is None else min(end, session.close_next)
        if state is _HANDSHAKING:
            return session.created_at + config.half_open_timeout
        # Runs after every transmit: a running minimum, no list.
        if config.suspend_after is None:
            at = session.last_received + config.idle_timeout
        elif session.suspended_at is None:
            at = session.last_received + config.suspend_after
        else:
            at = min(session.last_received + config.max_outage, session.ping_at)
        core = session.core
        if not core.ping_pending:
            t = session.last_sent + config.keep_alive_interval
            if t < at:
                at = t
        t = core.get_timer()
        if t is not None and t < at:
            at = t
        if state is _CLOSING and session.closing[2] < at:
            at = session.closing[2]
        keys = session.keys
        current = keys.current
        if current is not None:
            if (session.rekey_state is _REKEY_IDLE and current.initiator
                    and current.rekey_at < at):
                at = current.rekey_at
            if current.expires_at < at:
                at = current.expires_at
        t = keys.next_deadline()
        if t is not None and t < at:
            at = t
        probe = session.probe
        if probe is not None and probe.next_at is not None and probe.next_at < at:
            at = probe.next_at
        return at

    # ------------------------------------------------------------------ closing (7.8)

    def close(self, session_id: bytes, error_code: int, reason: str, flush: bool | None,
              now: float) -> None:
        """The application closes a session (see :meth:`Endpoint.close`); an
        unknown or closed session is ignored."""
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            return
        if flush is None:
            flush = error_code == 0
        if flush and session.core is not None and session.core.has_unfinished_sends():
            # docs/protocol.md 7.8: deliver what is queued first (CLOSING); a
            # second graceful close keeps the first one's deadline.
            first = session.state is not _CLOSING
            session.advance(SessionInput.FLUSH)
            if first:
                session.closing = (error_code, reason,
                                   now + self._config.close_flush_timeout)
                self._schedule(session)  # now CLOSING: the flush deadline counts
            return
        self._close_now(session, error_code, reason, now)

    def _close_now(self, session: Session, error_code: int, reason: str, now: float) -> None:
        if session.established:
            # What is queued (datagrams, acknowledgements) leaves before the CLOSE.
            self._transmit(session, now)
            self.dirty.pop(session, None)
            session.close_frame = (error_code, reason)
            self._send_close(session, error_code, reason, now)
            # CLOSE is repeated until the peer echoes one (docs/protocol.md 7.8).
            session.close_interval = min(max(0.05, 1.5 * session.core.rtt.smoothed_rtt),
                                         self._config.close_linger / MAX_CLOSE_SENDS)
            session.close_next = now + session.close_interval
        label = CloseReason.GRACEFUL if error_code == 0 else CloseReason.ERROR
        self._close_session(session, label, error_code, reason or "closed locally", now)

    def _send_close(self, session: Session, error_code: int, reason: str, now: float) -> None:
        frame = wire.CloseFrame(error_code, reason[:200])
        try:
            self._send_payload(session, wire.encode_frames([frame]), now)
            session.close_sends += 1
        except (KeyExhaustedError, LocalProtocolError):
            pass  # keys expired (or never confirmed): the peer times out instead

    def _receive_closed(self, session: Session, data: bytes, receiver_index: int,
                        now: float) -> None:
        """A packet for a closed session: a CLOSE from the peer ends our
        retransmission of ours, or is answered with one (at most a few times),
        so that both sides learn of the close even when CLOSE frames are lost.
        Anything else is absorbed."""
        if session.close_sends >= MAX_CLOSE_SENDS \
                or session.closed_from is _HANDSHAKING:
            return  # never confirmed: it has no CLOSE to say
        opened = session.keys.open_untrusted(data, receiver_index, now=now)
        if opened is None:
            return
        try:
            frames = wire.decode_frames_untrusted(opened[2])
        except DecodeError:
            return
        closing = any(type(frame) is wire.CloseFrame for frame in frames)
        if session.close_interval:
            # We closed. A CLOSE back means ours arrived; anything else means it
            # did not (yet): say it again.
            if closing:
                session.close_next = None
                session.close_interval = 0.0
                self._schedule(session)
            else:
                self._send_close(session, *session.close_frame, now)
        elif closing:
            self._send_close(session, ErrorCode.NO_ERROR, "", now)  # echo

    def _protocol_violation(self, session: Session, code: int, message: str, now: float) -> None:
        self._stats["sessions_closed_by_violation"] += 1
        try:
            frame = wire.CloseFrame(int(code), message[:200])
            self._send_payload(session, wire.encode_frames([frame]), now)
        except KeyExhaustedError:
            pass
        self._close_session(session, CloseReason.ERROR, code, message, now)

    def _close_session(self, session: Session, reason: str, code: int, message: str,
                       now: float) -> None:
        if session.closed:
            return
        session.closed_at = now
        session.advance(SessionInput.CLOSE)
        if session.core is not None:
            session.core.release_budget()
        if session.rekey_state is _REKEY_RUNNING:
            self._cancel_rekey(session)
            session.advance_rekey(RekeyInput.ABANDONED)
        self._stats["sessions_closed"] += 1
        self._push_event(SessionClosed(session_id=session.session_id, peer_id=session.peer_id,
                                       reason=reason, error_code=int(code), message=message))
        self._schedule(session)

    def _forget_session(self, session: Session) -> None:
        if session.core is not None:
            session.core.release_budget()  # a half-open one never closed
        for index in session.routes:
            self._indices.release(index, session)
        session.routes.clear()
        if self.sessions.pop(session.session_id, None) is not None:
            self._budget.set_sessions(len(self.sessions))
            host = host_of(session.address)
            left = self._per_host.get(host, 1) - 1
            if left > 0:
                self._per_host[host] = left
            else:
                self._per_host.pop(host, None)
        session.timer_at = None

    # ------------------------------------------------------------------ helpers

    def _new_core(self, session: Session) -> SessionCore:
        return SessionCore(self._config, session_id=session.session_id,
                           initiator=session.initiator, peer_params=session.peer_params,
                           emit=self._push_event,
                           max_datagram_size=path_datagram_size(self._config, session.address),
                           budget=self._budget)

    def _route(self, session: Session, index: int) -> None:
        self._indices.route(index, session)
        session.routes.add(index)

    def _sync_indices(self, session: Session) -> None:
        """Drop the routes of keys the ring has retired."""
        live = set(session.keys.indices())
        for index in [i for i in session.routes if i not in live]:
            session.routes.discard(index)
            self._indices.release(index, session)
