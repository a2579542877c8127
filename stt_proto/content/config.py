"""Settings of the content engine: every limit a peer can push against has a name here.

Serving limits bound what one requester can make a provider hold: requests
queued, bytes written and not yet acknowledged, and requests per second. A
requester over them is refused (REFUSE ``BUSY`` with a time to wait), and one
that keeps asking after refusals is banned for a while. Retrieval settings
size the per-provider pipelines; the timings are the defaults of a real
network, and tests shorten them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ContentConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentConfig:
    """Configuration of :class:`stt_proto.content.node.ContentNode`. Validated on creation."""

    # -- serving -------------------------------------------------------------------------
    max_requests_per_peer: int = 64
    """Requests one peer may have queued at this provider; beyond it REFUSE BUSY."""
    max_requests_per_second: float = 4_000.0
    """Requests one peer may make per second on average (bursts of one second's
    worth); faster ones are refused BUSY (``requests_refused_rate``)."""
    max_refusals: int = 256
    """Refused requests a peer may make within ``ban_time`` before it is banned:
    its content stream is stopped and its requests are ignored until then."""
    max_queued_refusals: int = 16
    """Refusals waiting to be sent to one peer; a peer that asks again while
    this many wait unread (it asks without reading its stream) is banned
    (``peers_banned_unread``)."""
    ban_time: float = 60.0
    """How long a banned peer stays banned, and the window ``max_refusals`` counts in."""
    max_serving_peers: int = 1_024
    """Peers this provider keeps request state for (queue, rate, refusals); when
    full, an idle one is forgotten to make room, and if none is idle a new peer
    is refused BUSY."""
    max_stream_buffered: int = 4 << 20
    """Bytes written to a peer's content stream and not yet acknowledged before
    the host stops writing (the rest waits, unread, in the request queue): with
    the request bound, this is the provider's memory per peer."""
    retry_after: float = 0.5
    """The wait a BUSY refusal asks for."""

    # -- retrieving ----------------------------------------------------------------------
    max_retrievals: int = 64
    """Retrievals running at once on this node."""
    max_providers: int = 8
    """Providers one retrieval fetches from at once."""
    initial_depth: int = 4
    """Chunks requested ahead from a provider before its throughput is measured."""
    max_depth: int = 64
    """Most chunks requested ahead from one provider (16 MiB of 256 KiB chunks)."""
    endgame_copies: int = 2
    """At the end, a chunk still outstanding is asked from up to this many providers."""
    endgame_patience: float = 0.5
    """How long a chunk is outstanding before another provider may be asked for
    a copy, while its provider's request-to-chunk time is not measured yet
    (then: twice that time)."""
    stall_timeout: float = 10.0
    """A provider that sends nothing for this long while it owes chunks is
    dropped (``stalled``) and its chunks go to the others. At least eight of its
    measured request-to-chunk times."""
    provider_lookups: int = 3
    """Times one retrieval asks the DHT for providers before giving up
    (``no_providers``)."""
    lookup_backoff: float = 1.0
    """Seconds before the second lookup; doubles each time."""
    max_busy_wait: float = 30.0
    """Longest rest a provider's BUSY refusal is granted; a provider asking for
    more is dropped (``refused``): the time is better spent on the other
    providers or a fresh lookup, and a retrieval never sleeps on one peer's word."""
    max_busy_rests: int = 8
    """BUSY rests in a row, with no chunk between, after which a provider is
    dropped (``refused``): one that refuses every request cannot hold a
    retrieval forever."""
    progress_interval: float = 0.25
    """Least time between two ``ContentProgress`` events of a retrieval."""
    max_unsolicited: int = 16
    """Chunks a peer may send that nobody asked it for (a late answer to a
    cancelled request counts, hence not zero) before it is banned."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name} must be a number")
            if not value > 0:
                raise ValueError(f"{f.name} must be positive")
        if self.initial_depth > self.max_depth:
            raise ValueError("need initial_depth <= max_depth")
