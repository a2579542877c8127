"""Configuration of the engine: one dataclass per object, validated on creation."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .constants import MAX_ACK_RANGES
from .crypto import KeyLimits
from .handshake import SUITE_BY_CIPHER
from .identity import Identity, validate_seed

__all__ = ["EndpointConfig", "DEFAULT_CIPHER"]

#: AES-256-GCM: measured 1.4-1.8x faster per packet than ChaCha20-Poly1305 on
#: CPUs with AES instructions (bench/bench_aead.py; docs/protocol.md section 6.5).
DEFAULT_CIPHER = "AESGCM"


def _no_log(message: str, *args: object) -> None:
    """Default logger: discard."""


@dataclass(kw_only=True)
class EndpointConfig:
    """Settings of one :class:`~stt_proto.endpoint.Endpoint` (one UDP socket)."""

    identity: Identity
    """This node's long-term key pair; its public key is the node id."""
    shared_seed: bytes = field(repr=False)
    """The network's secret seed (at least 16 bytes). Never shown in a repr."""
    cipher: str = DEFAULT_CIPHER
    """AEAD for sessions this node initiates: ``"AESGCM"`` or ``"ChaChaPoly"``."""
    accepted_ciphers: frozenset[str] = frozenset(SUITE_BY_CIPHER)
    """AEADs accepted from initiators."""

    connect_timeout: float = 10.0
    """Default deadline of :meth:`Endpoint.connect`, in seconds."""
    handshake_retry_initial: float = 1.0
    """First retransmission of an INITIATION after this long without answer."""
    handshake_retry_max: float = 8.0
    """Retransmission intervals double up to this."""
    half_open_timeout: float = 10.0
    """A responder forgets a handshake the initiator never confirmed after this."""
    idle_timeout: float = 30.0
    """A session that hears no authenticated packet for this long closes with
    reason ``timeout``."""
    keep_alive_interval: float = 10.0
    """A PING is sent after this long without sending anything."""
    suspend_after: float | None = None
    """``None`` (the default): a silent session closes at ``idle_timeout``.
    Else a session that hears no authenticated packet for this long is
    *suspended* instead (``SessionSuspended``): its streams, buffers and keys
    are kept, it sends PINGs with backoff, and it resumes the moment an
    authenticated packet comes from any address (``SessionResumed``); it closes
    with reason ``timeout`` only after ``max_outage`` of silence
    (``docs/protocol.md`` 7.7)."""
    max_outage: float = 60.0
    """With ``suspend_after``: the longest silence a suspended session waits out."""
    close_linger: float = 3.0
    """How long a closed session's indices keep absorbing late packets."""

    max_sessions: int = 10_000
    """Established plus half-open sessions, all peers together."""
    max_sessions_per_address: int = 256
    """Sessions per peer IP address."""
    max_half_open: int = 1_024
    """Responder handshakes awaiting the initiator's confirmation."""
    max_pending_connects: int = 1_024
    """Outgoing connects not finished yet."""
    handshakes_per_second_before_cookies: float = 500.0
    """Above this rate of INITIATIONs (that passed ``mac1``), the responder is
    *under load* and demands a cookie (``mac2``) before any DH work."""
    cookie_secret_lifetime: float = 120.0
    """The secret behind cookies rotates this often; a cookie lives as long."""
    replay_cache_size: int = 8_192
    """How many recent INITIATION ephemeral keys are remembered to drop replays."""
    max_events: int = 65_536
    """Events waiting for ``next_event``, all sessions together (a node-wide
    budget, :mod:`stt_proto.budget`). Beyond it new unreliable ones
    (``DatagramReceived``, ``DhtMessageReceived``) are dropped and counted as
    ``events_dropped``. Stream and session events are never dropped: a
    session whose waiting events exceed half of what is left free has its
    STREAM frames discarded unacknowledged, to be sent again (counted as
    ``budget_events_refused``); so the queue exceeds this by at most the
    events of one frame."""
    max_event_bytes: int = 16 * 1024 * 1024
    """Bytes of unreliable data (datagrams, DHT messages) the waiting events
    may hold; beyond it new ones are dropped the same way."""
    max_datagram_size: int = 1452
    """Largest UDP payload this endpoint sends or accepts."""
    path_max_datagram_size: Callable[[Any], int | None] | None = None
    """``f(address)``: the largest UDP payload the path to ``address`` carries,
    when the adapter knows better than ``max_datagram_size`` (a loopback path
    carries 65,507 bytes, as TCP's loopback MSS reflects). Per session it sets
    both what this side announces and what it sends; ``None`` from ``f`` means
    ``max_datagram_size``. Results are clamped to 1200..65527."""
    key_limits: KeyLimits = field(default_factory=KeyLimits)
    """When keys are replaced and when they are refused."""

    # -- streams and flow control (docs/protocol.md section 7) ------------------------
    max_frame_size: int = 16 * 1024 * 1024
    """Default largest message a stream sends or accepts (``open_stream`` may set
    another per stream). A larger incoming message resets the stream with
    ``MESSAGE_TOO_LARGE``; the session survives."""
    stream_window: int = 256 * 1024
    """Initial per-stream credit granted to the peer (bytes ahead of what the
    application consumed)."""
    max_stream_window: int = 16 * 1024 * 1024
    """Per-stream credit grows towards the bandwidth-delay product up to this."""
    session_window: int = 1024 * 1024
    """Initial session-wide credit."""
    max_session_window: int = 64 * 1024 * 1024
    """Session-wide credit grows up to this."""
    max_send_buffer: int = 4 * 1024 * 1024
    """Bytes a stream holds unacknowledged before sends are refused
    (``SendBufferFullError``; wait for ``StreamWritable``)."""
    max_session_send_buffer: int = 64 * 1024 * 1024
    """Bytes all the streams of a session hold unacknowledged together before
    sends on any of them are refused the same way (counted as
    ``sends_refused_session_buffer``). A peer that withholds credit or
    acknowledgements on many streams at once pins at most this much."""
    max_streams: int = 4096
    """Streams the peer may have open at once on a session; beyond it a new
    stream is refused with ``STREAM_LIMIT_ERROR`` (the session survives)."""
    max_refused_streams: int = 65_536
    """Ids of streams refused for ``max_streams`` or ``max_stream_open_rate``
    remembered per session, to count their bytes against session credit and to
    refuse them again (oldest forgotten first, counted as
    ``refused_streams_forgotten``; docs/protocol.md 7.2)."""
    max_used_stream_ranges: int = 1_024
    """Ranges of stream ids remembered as used in a session: an id is never
    opened twice in a session (docs/protocol.md 7.5). Ids allocated by the
    engine take one range per side; only ids chosen out of order take more. A
    local open that needs a range beyond this raises ``LocalProtocolError``; a
    peer that opens one closes the session with ``STREAM_LIMIT_ERROR``."""
    max_stream_open_rate: float = 2_000.0
    """Streams the peer may open per second on a session, on average; bursts of
    one second's worth (or ``max_streams`` if more) are allowed. A stream
    opened faster is refused like one
    beyond ``max_streams`` (``STREAM_LIMIT_ERROR``; counted as
    ``streams_refused_rate``)."""
    max_stream_fragments: int = 1_024
    """Out-of-order pieces a stream holds (data that arrived above a gap), or
    one per 512 bytes held if that is more. A STREAM frame that would add more
    is discarded and its packet left unacknowledged, so an honest sender
    retransmits it once the gap has filled (counted as ``fragments_refused``).
    Bytes held are bounded by flow control; this bounds the bookkeeping per
    piece, which tiny frames would inflate (docs/security.md)."""
    max_session_fragments: int = 8_192
    """Out-of-order pieces all the streams of a session hold together (or one
    per 512 bytes they hold, if more); beyond it frames are refused as for
    ``max_stream_fragments``."""
    max_node_receive_buffer: int = 256 * 1024 * 1024
    """Bytes of stream data all sessions together hold received and not yet
    consumed by the application (in order or not; gaps count, as for flow
    control). A session may hold at most half of what is left free: a
    STREAM frame that would take it further is discarded and its packet left
    unacknowledged (counted as ``budget_recv_refused``; the sender resends
    it), and its credit updates never grant more than that (counted as
    ``budget_credit_capped``). Held now: ``node_recv_buffered``. A lone
    session may hold a third of it, so the default leaves room for
    ``max_session_window``."""
    max_node_fragments: int = 262_144
    """Out-of-order pieces all sessions together hold; the same rule, frames
    refused as for ``max_session_fragments`` (counted as
    ``budget_fragments_refused``; held now: ``node_fragments``)."""
    max_node_closed_ids: int = 262_144
    """Records of stream ids all sessions together keep to recognise late
    frames: ranges of used ids (``max_used_stream_ranges`` per session) and
    refused ids (``max_refused_streams``). The same rule: a peer's new stream
    that needs another range is refused unacknowledged
    (``budget_closed_ids_refused``), and a session's oldest refused id is
    forgotten early (``budget_closed_ids_forgotten``; held now:
    ``node_closed_ids``)."""
    max_ack_ranges: int = MAX_ACK_RANGES
    """Ranges of received packet numbers tracked for acknowledgements (at most
    ``MAX_ACK_RANGES``, 256); beyond it the lowest are forgotten (counted as
    ``ack_ranges_forgotten``)."""
    max_dht_message_size: int = 4_096
    """Largest DHT frame accepted; a larger one is discarded (its packet is
    still acknowledged: DHT frames are unreliable) and counted as
    ``dht_messages_dropped``."""
    auto_credit: bool = True
    """Return flow-control credit when a stream event is pulled with
    ``next_event``. Adapters that queue data for the application set this to
    ``False`` and call ``Endpoint.stream_consumed`` when it reads."""
    max_ack_delay: float = 0.025
    """Longest a receiver waits before acknowledging (RFC 9000 ``max_ack_delay``)."""
    congestion_control: str = "bbr"
    """Congestion controller: ``"bbr"``, ``"cubic"`` or ``"newreno"``
    (``stt_proto.congestion``)."""
    max_queued_datagrams: int = 1024
    """Unreliable datagrams waiting for congestion window; older ones are dropped."""
    close_flush_timeout: float = 10.0
    """A graceful ``close`` first delivers queued stream data for at most this long."""

    rng: Callable[[int], bytes] = os.urandom
    """Source of randomness (indices, ephemeral keys, cookies). Must be a CSPRNG
    outside tests."""
    log: Callable[..., None] = _no_log
    """``log(message, *args)`` for debugging; never given secrets."""

    def __post_init__(self) -> None:
        if not isinstance(self.identity, Identity):
            raise TypeError("identity must be a stt_proto.identity.Identity")
        validate_seed(self.shared_seed)
        if self.cipher not in SUITE_BY_CIPHER:
            raise ValueError(f"cipher must be one of {sorted(SUITE_BY_CIPHER)}")
        self.accepted_ciphers = frozenset(self.accepted_ciphers)
        if not self.accepted_ciphers or not self.accepted_ciphers <= set(SUITE_BY_CIPHER):
            raise ValueError(f"accepted_ciphers must be a non-empty subset of {sorted(SUITE_BY_CIPHER)}")
        for name in ("connect_timeout", "handshake_retry_initial", "handshake_retry_max",
                     "half_open_timeout", "idle_timeout", "keep_alive_interval",
                     "cookie_secret_lifetime", "handshakes_per_second_before_cookies"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.close_linger < 0:
            raise ValueError("close_linger must not be negative")
        if self.keep_alive_interval >= self.idle_timeout:
            raise ValueError("keep_alive_interval must be shorter than idle_timeout")
        if self.suspend_after is not None:
            if not self.keep_alive_interval < self.suspend_after < self.max_outage:
                raise ValueError("need keep_alive_interval < suspend_after < max_outage")
        for name in ("max_sessions", "max_sessions_per_address", "max_half_open",
                     "max_pending_connects", "replay_cache_size", "max_events",
                     "max_event_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 1200 <= self.max_datagram_size <= 65527:
            raise ValueError("max_datagram_size must be within 1200..65527")
        for name in ("max_frame_size", "stream_window", "max_stream_window", "session_window",
                     "max_session_window", "max_send_buffer", "max_session_send_buffer",
                     "max_streams", "max_refused_streams", "max_used_stream_ranges",
                     "max_queued_datagrams",
                     "max_stream_fragments", "max_session_fragments", "max_ack_ranges",
                     "max_node_receive_buffer", "max_node_fragments", "max_node_closed_ids",
                     "max_dht_message_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int")
        if self.max_ack_ranges > MAX_ACK_RANGES:
            raise ValueError(f"max_ack_ranges must be at most {MAX_ACK_RANGES}")
        if not self.max_stream_open_rate > 0:
            raise ValueError("max_stream_open_rate must be positive")
        if self.stream_window < 1024 or self.session_window < 1024:
            raise ValueError("stream_window and session_window must be at least 1024 bytes")
        if self.max_stream_window < self.stream_window:
            raise ValueError("max_stream_window must be at least stream_window")
        if self.max_session_window < self.session_window:
            raise ValueError("max_session_window must be at least session_window")
        if self.max_frame_size >= 1 << 62:
            raise ValueError("max_frame_size must be below 2**62")
        for name in ("max_ack_delay", "close_flush_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        from .congestion import CONGESTION_CONTROLLERS
        if self.congestion_control not in CONGESTION_CONTROLLERS:
            raise ValueError(f"congestion_control must be one of {sorted(CONGESTION_CONTROLLERS)}")
