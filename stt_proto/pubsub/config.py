"""Settings of the pub/sub engine: every limit a peer can push against has a name here.

The mesh degrees follow gossipsub v1.1 (D = 6 between 4 and 12, a heartbeat
each second, a minute of backoff after a prune). The repair window is the
time a node keeps what it forwarded and how long a subscriber waits for a
missing message before it reports the gap: a subscriber that was cut off for
less than that loses nothing. Tests shorten the timings; nothing in the engine
assumes the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["PubSubConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PubSubConfig:
    """Configuration of :class:`stt_proto.pubsub.node.PubSubNode`. Validated on creation."""

    # -- the mesh ---------------------------------------------------------------------
    mesh_degree: int = 6
    """Mesh peers each subscriber aims for, per topic (gossipsub's D)."""
    mesh_low: int = 4
    """Below this many mesh peers the heartbeat grafts more."""
    mesh_high: int = 12
    """Above this many the heartbeat prunes back to ``mesh_degree``; a GRAFT that
    would pass it is answered with PRUNE and some other subscribers."""
    fanout: int = 6
    """Subscribers a publisher that is not subscribed sends each message to."""
    heartbeat: float = 1.0
    """Seconds between mesh maintenance and IHAVE summaries."""
    prune_backoff: float = 60.0
    """After a PRUNE, neither side grafts the other again for this long."""
    discovery_interval: float = 30.0
    """A topic with too few known subscribers asks the DHT for more at most this often."""

    # -- repair and order ------------------------------------------------------------
    repair_window: float = 30.0
    """Seconds a node keeps the messages it saw, to answer IWANT; also how long a
    subscriber waits for a missing message before it reports the gap."""
    clock_tolerance: float = 2.0
    """A subscriber is owed the messages published at or after it subscribed,
    less this many seconds: how far apart the publisher's and its clocks may be."""
    want_timeout: float = 1.0
    """An IWANT not answered in this long goes to another peer that has the message."""
    max_message_size: int = 1 << 20
    """Largest ``data`` of one message; a larger publish raises ``MessageTooLargeError``."""

    # -- limits (each counted when it bites) ----------------------------------------
    max_topics: int = 256
    """Topics the node subscribes to or publishes on at once."""
    max_known_subscribers: int = 1_000
    """Subscribers remembered per topic (mesh candidates); the oldest are forgotten."""
    max_peer_topics: int = 64
    """Topics one peer may announce to us; further SUBSCRIBEs are ignored."""
    max_publishers: int = 1_024
    """Publishers whose order is tracked per topic; the least recently heard is forgotten."""
    max_buffered_per_publisher: int = 1_024
    """Messages held per publisher while an earlier one is missing."""
    max_buffered_bytes: int = 64 << 20
    """Bytes held out of order over all topics; past it the newest are dropped and repaired."""
    max_history_bytes: int = 64 << 20
    """Bytes of messages kept for repair over all topics; the oldest go first."""
    max_queued_bytes_per_peer: int = 8 << 20
    """Bytes waiting to be written to one peer's pub/sub stream. Past it the
    peer is pruned from the meshes (it catches up by repair) and forwarding to it
    waits; publishing waits instead of dropping."""
    max_queued_messages_per_peer: int = 1_024
    """Messages waiting for one peer's stream, whatever their size: with small
    messages the byte limit alone would let seconds of backlog build up before
    ``publish`` waits."""
    max_stream_buffered: int = 1 << 20
    """Bytes written to a peer's pub/sub stream and not yet acknowledged before
    the host stops writing and the rest waits in the peer's queue (where a slow
    peer shows, and is pruned, instead of hiding in a transport buffer)."""
    max_messages_per_second: float = 2_000.0
    """PUBLISH messages one peer may send us per second (token bucket, burst twice
    that); beyond it they are dropped, counted and the peer scored down."""
    max_control_per_second: float = 200.0
    """Control messages (everything but PUBLISH) one peer may send us per second."""
    max_wants_in_flight: int = 64
    """IWANT ranges awaiting an answer per topic."""
    min_score: float = -100.0
    """A peer whose score falls to this is disconnected from pub/sub (its
    session's pub/sub stream is stopped) and ignored until the session ends."""
    idle_window: float = 10.0
    """A mesh peer that forwarded none of the messages we received over this
    window (while at least ``idle_minimum`` arrived) is pruned and scored down."""
    idle_minimum: int = 20
    """Messages that must arrive in ``idle_window`` before silence counts."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name} must be a number")
            if f.name != "min_score" and not value > 0:
                raise ValueError(f"{f.name} must be positive")
        if not self.mesh_low <= self.mesh_degree <= self.mesh_high:
            raise ValueError("need mesh_low <= mesh_degree <= mesh_high")
        if self.min_score >= 0:
            raise ValueError("min_score must be negative")
        if self.max_message_size > (16 << 20):
            raise ValueError("max_message_size is at most 16 MiB (the wire's limit)")
