"""The stream state machines, as tables.

Each direction of a stream has its own machine (the shape of RFC 9000 section 3).
All transition logic lives here; the stream code only feeds inputs and reads the
state. An input that has no entry for the current state is refused: the caller
turns a refused *peer* input into a stream or session error and a refused *local*
input into :class:`~stt_proto.errors.LocalProtocolError`.

Sending side::

    READY --data/fin--> SEND --fin--> DATA_SENT --all acked--> DATA_RECVD
      |                   |               |
      +-------------------+---reset-------+--> RESET_SENT --reset acked--> RESET_RECVD

Receiving side::

    RECV --fin--> SIZE_KNOWN --all received--> DATA_RECVD --all delivered--> DATA_READ
      |               |                             |
      +---------------+------------reset------------+--> RESET_RECVD --reported--> RESET_READ
      +---------------+------------abort (the application stops reading)----------> RESET_READ

``DATA_RECVD``/``RESET_RECVD`` (sending) and ``DATA_READ``/``RESET_READ``
(receiving) are terminal: a stream whose two directions are terminal is closed and
is forgotten; its id is never opened again in the session.

A session's life cycle, as the endpoint sees it (``docs/protocol.md`` 6.3, 7.7,
7.8)::

    HANDSHAKING --confirmed--> ESTABLISHED --flush--> CLOSING
        |                          |                     |
        +--close-------------------+--close--------------+--> CLOSED --linger over--> FORGOTTEN
        +--half-open timeout------------------------------------------------------> FORGOTTEN

A responder's session starts half-open (``HANDSHAKING``) and is confirmed by the
initiator's first authenticated DATA packet; an initiator creates its session
when the RESPONSE authenticates and confirms it at once. ``CLOSING`` drains what
is queued on streams before the CLOSE frame; ``CLOSED`` keeps the indices for the
linger period, repeating or echoing CLOSE and absorbing late packets;
``FORGOTTEN`` is terminal (the session has left every table).

A rekey is a sub-machine beside it: the side whose keys are due starts a fresh
handshake (``IDLE --start--> RUNNING``), which ends when it completes, when its
deadline passes, or when the session closes (``RUNNING --completed/abandoned-->
IDLE``). A rekey may start only while the session is ``ESTABLISHED`` or
``CLOSING``.

Unlike the stream tables, every session input is decided by the endpoint itself
(the peer's bytes are judged before they become an input), so a refused input is
a bug in the engine: :func:`session_transition` and :func:`rekey_transition`
return ``None`` and the caller raises.
"""

from __future__ import annotations

import enum

__all__ = ["SendState", "SendInput", "RecvState", "RecvInput", "send_transition",
           "recv_transition", "SEND_TERMINAL", "RECV_TERMINAL", "SessionState",
           "SessionInput", "RekeyState", "RekeyInput", "session_transition",
           "rekey_transition", "REKEY_ALLOWED"]


class SendState(enum.Enum):
    READY = "ready"
    SEND = "send"
    DATA_SENT = "data_sent"
    DATA_RECVD = "data_recvd"
    RESET_SENT = "reset_sent"
    RESET_RECVD = "reset_recvd"


class SendInput(enum.Enum):
    DATA = "data"          # the application queued data
    FIN = "fin"            # the application ended its side
    ALL_ACKED = "all_acked"  # every byte and the FIN are acknowledged
    RESET = "reset"        # local reset, or the peer's STOP_SENDING
    RESET_ACKED = "reset_acked"


class RecvState(enum.Enum):
    RECV = "recv"
    SIZE_KNOWN = "size_known"
    DATA_RECVD = "data_recvd"
    DATA_READ = "data_read"
    RESET_RECVD = "reset_recvd"
    RESET_READ = "reset_read"


class RecvInput(enum.Enum):
    DATA = "data"              # a STREAM frame without FIN
    FIN = "fin"                # the final size became known
    ALL_RECEIVED = "all_received"
    ALL_DELIVERED = "all_delivered"
    RESET = "reset"            # RESET_STREAM from the peer
    RESET_REPORTED = "reset_reported"
    ABORT = "abort"            # the application stops reading (STOP_SENDING)


S, SI = SendState, SendInput
_SEND: dict[tuple[SendState, SendInput], SendState] = {
    (S.READY, SI.DATA): S.SEND,
    (S.READY, SI.FIN): S.DATA_SENT,
    (S.READY, SI.RESET): S.RESET_SENT,
    (S.SEND, SI.DATA): S.SEND,
    (S.SEND, SI.FIN): S.DATA_SENT,
    (S.SEND, SI.RESET): S.RESET_SENT,
    (S.DATA_SENT, SI.ALL_ACKED): S.DATA_RECVD,
    (S.DATA_SENT, SI.RESET): S.RESET_SENT,
    (S.RESET_SENT, SI.RESET): S.RESET_SENT,
    (S.RESET_SENT, SI.RESET_ACKED): S.RESET_RECVD,
    # A STOP_SENDING after everything was acknowledged changes nothing.
    (S.DATA_RECVD, SI.RESET): S.DATA_RECVD,
    (S.RESET_RECVD, SI.RESET): S.RESET_RECVD,
}

R, RI = RecvState, RecvInput
_RECV: dict[tuple[RecvState, RecvInput], RecvState] = {
    (R.RECV, RI.DATA): R.RECV,
    (R.RECV, RI.FIN): R.SIZE_KNOWN,
    (R.RECV, RI.RESET): R.RESET_RECVD,
    (R.SIZE_KNOWN, RI.DATA): R.SIZE_KNOWN,
    (R.SIZE_KNOWN, RI.FIN): R.SIZE_KNOWN,
    (R.SIZE_KNOWN, RI.ALL_RECEIVED): R.DATA_RECVD,
    (R.SIZE_KNOWN, RI.RESET): R.RESET_RECVD,
    # Late or duplicated frames after everything arrived are absorbed.
    (R.DATA_RECVD, RI.DATA): R.DATA_RECVD,
    (R.DATA_RECVD, RI.FIN): R.DATA_RECVD,
    (R.DATA_RECVD, RI.ALL_DELIVERED): R.DATA_READ,
    (R.DATA_RECVD, RI.RESET): R.DATA_RECVD,
    (R.DATA_READ, RI.DATA): R.DATA_READ,
    (R.DATA_READ, RI.FIN): R.DATA_READ,
    (R.DATA_READ, RI.RESET): R.DATA_READ,
    (R.RESET_RECVD, RI.DATA): R.RESET_RECVD,
    (R.RESET_RECVD, RI.FIN): R.RESET_RECVD,
    (R.RESET_RECVD, RI.RESET): R.RESET_RECVD,
    (R.RESET_RECVD, RI.RESET_REPORTED): R.RESET_READ,
    (R.RESET_READ, RI.DATA): R.RESET_READ,
    (R.RESET_READ, RI.FIN): R.RESET_READ,
    (R.RESET_READ, RI.RESET): R.RESET_READ,
    # Reading stopped locally: whatever arrives later is discarded.
    (R.RECV, RI.ABORT): R.RESET_READ,
    (R.SIZE_KNOWN, RI.ABORT): R.RESET_READ,
    (R.DATA_RECVD, RI.ABORT): R.RESET_READ,
    (R.RESET_RECVD, RI.ABORT): R.RESET_READ,
}
del S, SI, R, RI

SEND_TERMINAL = frozenset({SendState.DATA_RECVD, SendState.RESET_RECVD})
RECV_TERMINAL = frozenset({RecvState.DATA_READ, RecvState.RESET_READ})


def send_transition(state: SendState, event: SendInput) -> SendState | None:
    """The next sending state, or ``None`` if ``event`` is not allowed in ``state``."""
    return _SEND.get((state, event))


def recv_transition(state: RecvState, event: RecvInput) -> RecvState | None:
    """The next receiving state, or ``None`` if ``event`` is not allowed in ``state``."""
    return _RECV.get((state, event))


class SessionState(enum.Enum):
    HANDSHAKING = "handshaking"  # half-open: keys derived, not yet confirmed
    ESTABLISHED = "established"
    CLOSING = "closing"          # a graceful close delivers what is queued first
    CLOSED = "closed"            # lingering: CLOSE repeated/echoed, late packets absorbed
    FORGOTTEN = "forgotten"      # left every table of the endpoint


class SessionInput(enum.Enum):
    CONFIRMED = "confirmed"      # the peer proved it holds the keys (6.3)
    EXPIRED = "expired"          # half_open_timeout passed without confirmation
    FLUSH = "flush"              # graceful close while stream data is unfinished (7.8)
    CLOSE = "close"              # closed: locally, by the peer, a timeout or a violation
    LINGER_OVER = "linger_over"  # close_linger passed since the close


class RekeyState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"          # our fresh handshake for this session is in flight


class RekeyInput(enum.Enum):
    START = "start"              # our keys reached a rekey limit
    COMPLETED = "completed"      # the RESPONSE authenticated: new keys installed
    ABANDONED = "abandoned"      # its deadline passed, or the session closed


SS, SN = SessionState, SessionInput
_SESSION: dict[tuple[SessionState, SessionInput], SessionState] = {
    (SS.HANDSHAKING, SN.CONFIRMED): SS.ESTABLISHED,
    (SS.HANDSHAKING, SN.EXPIRED): SS.FORGOTTEN,
    # A half-open session has no streams, so nothing to flush: a local close
    # closes it at once (no CLOSE frame: its keys are unconfirmed).
    (SS.HANDSHAKING, SN.CLOSE): SS.CLOSED,
    (SS.ESTABLISHED, SN.FLUSH): SS.CLOSING,
    (SS.ESTABLISHED, SN.CLOSE): SS.CLOSED,
    # A second graceful close keeps the first one's deadline.
    (SS.CLOSING, SN.FLUSH): SS.CLOSING,
    (SS.CLOSING, SN.CLOSE): SS.CLOSED,
    (SS.CLOSED, SN.LINGER_OVER): SS.FORGOTTEN,
}
del SS, SN

#: Session states in which a rekey may start (and so be running).
REKEY_ALLOWED = frozenset({SessionState.ESTABLISHED, SessionState.CLOSING})

K, KI = RekeyState, RekeyInput
_REKEY: dict[tuple[RekeyState, RekeyInput], RekeyState] = {
    (K.IDLE, KI.START): K.RUNNING,
    (K.RUNNING, KI.COMPLETED): K.IDLE,
    (K.RUNNING, KI.ABANDONED): K.IDLE,
}
del K, KI


def session_transition(state: SessionState, event: SessionInput) -> SessionState | None:
    """The session's next state, or ``None`` if ``event`` is not allowed in ``state``."""
    return _SESSION.get((state, event))


def rekey_transition(session: SessionState, state: RekeyState,
                     event: RekeyInput) -> RekeyState | None:
    """The rekey's next state, or ``None`` if ``event`` is not allowed.

    A rekey starts and completes only in :data:`REKEY_ALLOWED` session states;
    it may be abandoned in any state it was running in (a session that closes
    abandons its rekey once it is ``CLOSED``).
    """
    if event is not RekeyInput.ABANDONED and session not in REKEY_ALLOWED:
        return None
    return _REKEY.get((state, event))
