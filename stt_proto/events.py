"""Events the engine reports to the application, pulled one at a time with
``Endpoint.next_event()``.

Every event is a frozen, slotted, keyword-only dataclass; names are past-tense
facts. Don't subclass them: adapters dispatch on the exact type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ContentProgress",
    "ContentProviderDropped",
    "ContentRetrieved",
    "ContentRetrievalFailed",
    "Event",
    "CloseReason",
    "SessionEstablished",
    "SessionClosed",
    "SessionMigrated",
    "SessionSuspended",
    "SessionResumed",
    "DatagramReceived",
    "StreamOpened",
    "MessageReceived",
    "StreamDataReceived",
    "StreamEnded",
    "MessagesSkipped",
    "StreamReset",
    "StreamStopped",
    "StreamWritable",
    "StreamClosed",
    "DhtMessageReceived",
    "DhtQueryCompleted",
    "PubSubMessage",
    "PubSubGap",
    "STREAM_DATA_EVENTS",
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
class SessionMigrated(Event):
    """The peer proved it receives at a new address (path validation,
    ``docs/protocol.md`` 7.11): the session now sends there."""

    session_id: bytes
    peer_id: bytes
    old_address: Address
    """Where the session sent before."""
    peer_address: Address
    """Where it sends now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSuspended(Event):
    """Nothing authenticated came from the peer for ``suspend_after``: the
    session waits for it (probing) instead of closing (``docs/protocol.md`` 7.7)."""

    session_id: bytes
    peer_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResumed(Event):
    """A suspended session heard from its peer again."""

    session_id: bytes
    peer_id: bytes
    outage: float
    """Seconds from the peer's last packet before the outage to this one."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened(Event):
    """The peer sent the first frame of a stream this side had not opened. Its
    data events follow."""

    session_id: bytes
    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived(Event):
    """One whole message arrived on a stream (in order, exactly once)."""

    session_id: bytes
    stream_id: int
    data: bytes
    flow_controlled_length: int
    """Stream bytes this event accounts for (message, framing, and the stream's
    mode byte on the first). Give it to ``Endpoint.stream_consumed`` when the
    application has taken the message, unless ``auto_credit`` is on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamDataReceived(Event):
    """Bytes arrived, in order, on a stream the peer sends as a byte stream."""

    session_id: bytes
    stream_id: int
    data: bytes
    flow_controlled_length: int
    """As for :class:`MessageReceived`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(Event):
    """The peer ended its side of the stream (FIN) and everything before it was
    delivered. The stream's other side may still send."""

    session_id: bytes
    stream_id: int
    flow_controlled_length: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesSkipped(Event):
    """The peer abandoned messages whose deadline passed before they could be
    delivered (``docs/protocol.md`` 7.12); the stream goes on with the next one.
    It comes in order: after the messages sent before those skipped, before
    the ones sent after them."""

    session_id: bytes
    stream_id: int
    count: int
    """Messages never delivered here (0 when all of them arrived after all)."""
    flow_controlled_length: int = 0
    """As for :class:`MessageReceived`: the bytes the skipped messages took."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReset(Event):
    """The peer's side of the stream was abandoned: the peer reset it
    (RESET_STREAM), or this side refused a message above ``max_frame_size``
    (``MESSAGE_TOO_LARGE``). Undelivered data is discarded; the session carries
    on. (A stream refused for exceeding the peer's ``max_streams`` is reported to
    its opener as ``StreamStopped(STREAM_LIMIT_ERROR)``.)"""

    session_id: bytes
    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStopped(Event):
    """The peer asked this side to stop sending on the stream (STOP_SENDING):
    unsent data was discarded and further sends raise ``StreamClosedError``."""

    session_id: bytes
    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamWritable(Event):
    """A stream that refused a send (``SendBufferFullError``) has room again."""

    session_id: bytes
    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamClosed(Event):
    """Both sides of a stream are finished; the engine forgets it. Its id stays
    used: it never opens again in the session, and late frames for it are
    absorbed (``docs/protocol.md`` 7.5)."""

    session_id: bytes
    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtMessageReceived(Event):
    """A DHT frame arrived on a session (consumed by the DHT layer)."""

    session_id: bytes
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtQueryCompleted(Event):
    """A DHT operation started with a ``query_id`` ended (``stt_proto.dht.node``).

    ``result`` depends on ``kind``: ``find_node`` and ``find_providers`` give a
    list of ``(node_id, address)``; ``get`` a verified record or ``None``;
    ``put`` and ``provide`` a :class:`stt_proto.dht.queries.StoreReport`;
    ``bootstrap`` the number of contacts in the table; ``ping`` the round trip
    in seconds or ``None``.
    """

    query_id: int
    kind: str
    result: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class PubSubMessage(Event):
    """A message of a subscribed topic, verified, delivered once and in its
    publisher's order (``stt_proto.pubsub``). ``publisher`` is the author whose
    signature was checked, not the peer that forwarded it."""

    topic: bytes
    publisher: bytes
    epoch: int
    seq: int
    data: bytes
    message_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PubSubGap(Event):
    """Messages ``first`` to ``last`` of ``publisher``'s ``epoch`` on a subscribed
    topic were lost for good (nobody could repair them within the repair window);
    delivery goes on after them."""

    topic: bytes
    publisher: bytes
    epoch: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentProgress(Event):
    """A retrieval moved: ``done_bytes`` of ``total_bytes`` are verified and
    written (``total_bytes`` is 0 until the first chunk told the length), with
    ``providers`` in use. At most one per ``progress_interval`` per retrieval."""

    retrieval_id: int
    content_id: bytes
    done_bytes: int
    total_bytes: int
    providers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentProviderDropped(Event):
    """A retrieval stopped using ``provider``: ``reason`` is ``"bad_chunk"`` (a
    chunk that did not match the content id: it is never asked again),
    ``"refused"``, ``"stalled"`` or ``"unreachable"``."""

    retrieval_id: int
    content_id: bytes
    provider: bytes
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentRetrieved(Event):
    """Every chunk of the content is verified and stored."""

    retrieval_id: int
    content_id: bytes
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentRetrievalFailed(Event):
    """A retrieval gave up: ``reason`` is ``"no_providers"`` (none found, or
    none left that could serve it), ``"store_full"`` or ``"cancelled"``. The
    chunks verified so far stay in the store; retrieving again resumes."""

    retrieval_id: int
    content_id: bytes
    reason: str


#: Events whose data counts against flow control (see ``auto_credit``).
STREAM_DATA_EVENTS = (MessageReceived, StreamDataReceived, StreamEnded, MessagesSkipped)
