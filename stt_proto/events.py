"""Events the engine reports to the application, pulled one at a time with
``Endpoint.next_event()``.

Every event is a frozen, slotted, keyword-only dataclass; names are past-tense
facts. Don't subclass them: adapters dispatch on the exact type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Event",
    "CloseReason",
    "SessionEstablished",
    "SessionClosed",
    "DatagramReceived",
]

Address = Any  # whatever the adapter uses for a UDP address, e.g. ("127.0.0.1", 4000)


class CloseReason:
    """The close reasons applications see (``SessionClosed.reason``)."""

    GRACEFUL = "graceful"
    """An orderly close by either side."""
    TIMEOUT = "timeout"
    """Nothing authenticated was heard for the idle timeout, or the connect
    deadline passed without a handshake."""
    AUTH_FAILURE = "auth_failure"
    """The handshake did not authenticate: the peer holds a different network seed
    (or is not who the caller said)."""
    ERROR = "error"
    """A protocol violation, by the peer or detected locally."""

    ALL = frozenset({GRACEFUL, TIMEOUT, AUTH_FAILURE, ERROR})


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEstablished(Event):
    """A handshake completed and the session can carry data."""

    session_id: bytes
    """Local handle of the session (16 bytes); stable across rekeys."""
    peer_id: bytes
    """The peer's node id (its authenticated static public key)."""
    peer_address: Address
    """Where the peer's packets come from."""
    initiator: bool
    """True on the side that called ``connect``."""

    def __post_init__(self) -> None:
        if len(self.session_id) != 16 or len(self.peer_id) != 32:
            raise ValueError("session_id must be 16 bytes and peer_id 32 bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed(Event):
    """A session ended, or a connect attempt failed (then it was never
    established). After this event the session id is no longer valid."""

    session_id: bytes
    peer_id: bytes
    reason: str
    """One of :class:`CloseReason`'s values."""
    error_code: int = 0
    """The numeric code (``stt_proto.constants.ErrorCode``) behind the reason."""
    message: str = ""
    """Human-readable detail; never contains key material."""

    def __post_init__(self) -> None:
        if self.reason not in CloseReason.ALL:
            raise ValueError(f"unknown close reason {self.reason!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DatagramReceived(Event):
    """An unreliable application datagram arrived on a session."""

    session_id: bytes
    data: bytes
