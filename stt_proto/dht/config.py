"""Settings of the DHT engine: every limit a peer can push against has a name here.

The defaults follow the Kademlia paper (k = 20, alpha = 3) and BEP 5 / libp2p's
kad-dht for the timings (records live 48 hours, their originators republish them
every 22 hours, buckets untouched for an hour are refreshed). Tests shorten the
timings; nothing in the engine assumes the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DhtConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtConfig:
    """Configuration of :class:`stt_proto.dht.node.DhtNode`. Validated on creation."""

    # -- Kademlia ----------------------------------------------------------------
    k: int = 20
    """Bucket size, replication factor and the size of a lookup's result."""
    alpha: int = 3
    """Requests a lookup keeps in flight (a sliding window, not rounds)."""
    disjoint_paths: int = 1
    """S/Kademlia: lookups run this many paths that never share a node, so one
    adversarial node can only mislead the paths it is on. 1 is plain Kademlia."""
    refresh_interval: float = 3600.0
    """A bucket no lookup touched for this long is refreshed by a lookup of a
    random id inside it."""

    # -- RPCs ----------------------------------------------------------------------
    rpc_attempts: int = 3
    """Transmissions of one request (DHT frames are unreliable) before the
    peer counts as failed for it."""
    min_rpc_timeout: float = 0.05
    """Floor of the retransmission timeout, whatever the measured RTT."""
    max_rpc_timeout: float = 10.0
    """Ceiling of the retransmission timeout, after backoff."""
    rpc_backoff: float = 1.5
    """Each retransmission waits this many times longer than the one before.
    Gentler than TCP's doubling: a DHT request is tiny and another node can
    usually answer instead, so waiting long on one peer only slows the lookup."""
    target_patience: float = 5.0
    """An exact lookup (``find_node(exact=True)``) asks its target again, with
    backoff, until this many seconds passed since its first request, even once
    ``rpc_attempts`` are spent: no other node can answer for the target, so a
    host that stalls for a moment (a loaded machine) must not fail the lookup."""
    first_contact_factor: float = 2.0
    """A peer never measured gets this many node-wide RTT estimates before its
    first timeout: its request also waits for the session's handshake."""
    initial_rtt: float = 0.5
    """RTT assumed before any was measured (the first contact also pays a handshake)."""
    max_pending_requests: int = 1_024
    """Requests of ours waiting for an answer; further ones wait in their lookup."""
    max_lookups: int = 64
    """Lookups the application may run at once; more raise :class:`DhtBusyError`."""
    max_internal_lookups: int = 16
    """Lookups the node runs for itself at once (refresh, republish); more wait."""

    # -- what peers may ask of us ----------------------------------------------------
    requests_per_second: float = 50.0
    """Requests one peer may send us per second (token bucket; burst twice that).
    Beyond it we answer ``Error(RATE_LIMITED)`` and count ``requests_rate_limited``."""
    max_rate_tracked_peers: int = 4_096
    """Peers whose request rate is tracked; the least recently active is forgotten."""

    # -- routing table -----------------------------------------------------------------
    replacement_cache_size: int = 20
    max_failures: int = 3
    """Consecutive unanswered requests before a contact may be evicted; one lost
    reply never evicts anybody."""
    max_per_ip_per_bucket: int = 2
    max_per_subnet: int = 10

    # -- records -----------------------------------------------------------------------
    max_value_bytes: int = 1_024
    """Largest value ``put`` accepts and a store keeps (at most the codec's 3,072;
    a value and its signature must fit in ``max_message_bytes``)."""
    max_message_bytes: int = 1_280
    """Largest DHT message sent: answers carry fewer contacts to stay below it.
    1,280 bytes fit in one packet at the endpoint's default ``max_datagram_size``
    (1,452); an endpoint configured smaller needs a smaller value here."""
    record_ttl: float = 48 * 3600.0
    """A stored value or provider record not republished for this long expires."""
    republish_interval: float = 22 * 3600.0
    """Originators store their values and provider records again this often."""
    max_records: int = 10_000
    max_record_bytes: int = 16 * 1024 * 1024
    max_records_per_publisher: int = 256
    max_provider_keys: int = 10_000
    max_providers_per_key: int = 20
    max_keys_per_provider: int = 1_000
    max_handoff_records: int = 64
    """Records pushed to one newly seen node that is closer to their keys than we are."""

    def __post_init__(self) -> None:
        ints = ("k", "alpha", "disjoint_paths", "rpc_attempts", "max_pending_requests",
                "max_lookups", "max_internal_lookups", "max_rate_tracked_peers",
                "replacement_cache_size", "max_failures", "max_per_ip_per_bucket",
                "max_per_subnet", "max_value_bytes", "max_records", "max_record_bytes",
                "max_records_per_publisher", "max_provider_keys", "max_providers_per_key",
                "max_keys_per_provider")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int")
        if self.max_handoff_records < 0:
            raise ValueError("max_handoff_records must not be negative")
        if self.k > 32:
            raise ValueError("k must be at most 32 (the codec's longest contact list)")
        if self.disjoint_paths > self.k:
            raise ValueError("disjoint_paths must not exceed k")
        from .messages import MAX_VALUE_BYTES
        if self.max_value_bytes > MAX_VALUE_BYTES:
            raise ValueError(f"max_value_bytes must be at most {MAX_VALUE_BYTES}")
        for name in ("refresh_interval", "min_rpc_timeout", "max_rpc_timeout", "initial_rtt",
                     "requests_per_second", "record_ttl", "republish_interval",
                     "first_contact_factor", "target_patience"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        from .messages import MAX_MESSAGE_BYTES
        if not 256 <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"max_message_bytes must be within 256..{MAX_MESSAGE_BYTES}")
        # A mutable value's fixed part: header, key, signature, salt, seq, lengths.
        if self.max_value_bytes + 200 > self.max_message_bytes:
            raise ValueError("max_value_bytes leaves no room for a record in max_message_bytes "
                             "(raise max_message_bytes, up to the packet size)")
        if not self.rpc_backoff >= 1:
            raise ValueError("rpc_backoff must be at least 1")
        if self.max_rpc_timeout < self.min_rpc_timeout:
            raise ValueError("max_rpc_timeout must be at least min_rpc_timeout")
        if self.republish_interval >= self.record_ttl:
            raise ValueError("republish_interval must be shorter than record_ttl")
