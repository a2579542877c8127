"""The exceptions the adapters raise: one hierarchy under :class:`STTError`.

The engine's own exceptions (``stt_proto.errors``) are part of it: a stream that
can no longer send raises the engine's :class:`StreamClosedError`, an oversized
message its :class:`MessageTooLargeError`, reopening a stream id already used in
the session its :class:`StreamIdUsedError`, so ``except STTError`` catches
everything STT raises on purpose.
"""

from __future__ import annotations

from stt_proto.errors import (
    ContentError,
    ContentNotFoundError,
    ProofError,
    StoreFullError,
    StoreInUseError,
    DhtBusyError,
    DhtError,
    MessageTooLargeError,
    MissingSigningKeyError,
    PubSubError,
    STTError,
    StreamClosedError,
    StreamIdUsedError,
    ValueTooLargeError,
)

__all__ = [
    "STTError",
    "ConnectionTimeoutError",
    "AuthenticationError",
    "SessionClosedError",
    "StreamClosedError",
    "StreamResetError",
    "StreamIdUsedError",
    "MessageTooLargeError",
    "NodeStoppedError",
    "DhtError",
    "DhtBusyError",
    "ValueTooLargeError",
    "MissingSigningKeyError",
    "BootstrapError",
    "PubSubError",
    "ContentError",
    "ContentNotFoundError",
    "ProofError",
    "StoreFullError",
    "StoreInUseError",
]


class ConnectionTimeoutError(STTError, TimeoutError):
    """No handshake answer before the deadline (nobody there, a wrong peer id, or
    the path lost everything)."""

    reason = "timeout"


class AuthenticationError(STTError):
    """The handshake did not authenticate: the peer holds a different network
    seed (close reason ``auth_failure``)."""

    reason = "auth_failure"


class SessionClosedError(STTError):
    """The session is closed. :attr:`reason` is ``graceful``, ``timeout``,
    ``auth_failure`` or ``error``; :attr:`error_code` the numeric code."""

    def __init__(self, message: str, *, reason: str, error_code: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_code = error_code


class StreamResetError(StreamClosedError):
    """The peer reset its side of the stream (or this side refused a message
    above ``max_frame_size``); :attr:`error_code` says why."""

    def __init__(self, message: str, *, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class NodeStoppedError(STTError):
    """The node was stopped (or not started) while the call was pending."""


class BootstrapError(DhtError, ConnectionError):
    """No bootstrap node answered before the bootstrap gave up."""
