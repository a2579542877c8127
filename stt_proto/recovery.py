"""What the session remembers about sent packets, and RTT estimation.

Theory of operation
-------------------
This module holds the bookkeeping that loss recovery (RFC 9002) and the
congestion controllers share; the controllers themselves and the pacer are in
:mod:`stt_proto.congestion`, whose docstring gives the order in which the
session calls into them. Nothing here reads a clock, draws randomness or does
I/O: every time-dependent method takes the session's ``now``.

- :class:`SentPacket` is the record the session keeps for each packet in
  flight (RFC 9002 appendix A.1.1); controllers may attach per-packet state to
  its ``cc`` slot.
- :class:`RttEstimator` is RFC 9002 section 5 to the letter: the first sample
  seeds everything, later ones are smoothed with gains 1/8 and 1/4, the peer's
  ACK delay is subtracted only when that cannot take the sample below
  ``min_rtt``, and ``min_rtt`` itself never sees the ACK delay. It also gives
  the loss-detection delay, the probe timeout and the persistent-congestion
  duration derived from those estimates (RFC 9002 sections 6.1.2, 6.2.1, 7.6).

**Cost.** These methods run once per packet or ACK, so they allocate nothing
and both classes have ``__slots__``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "K_GRANULARITY",
    "K_INITIAL_RTT",
    "K_PACKET_THRESHOLD",
    "K_TIME_THRESHOLD",
    "K_PERSISTENT_CONGESTION_THRESHOLD",
    "SentPacket",
    "RttEstimator",
]

# -- RFC 9002 constants (appendix A.2) --------------------------------------------

#: Timer granularity assumed of the host, in seconds (RFC 9002 section 6.1.2).
K_GRANULARITY = 0.001
#: RTT assumed before the first sample, in seconds (RFC 9002 section 6.2.2).
K_INITIAL_RTT = 0.333
#: A packet is lost once a packet this many numbers later is acknowledged.
K_PACKET_THRESHOLD = 3
#: A packet is lost once it is this many RTTs older than an acknowledged one.
K_TIME_THRESHOLD = 9 / 8
#: Losses spanning this many PTOs (without an ACK in between) are persistent congestion.
K_PERSISTENT_CONGESTION_THRESHOLD = 3


class SentPacket:
    """What the session remembers about a packet it sent (RFC 9002 appendix A.1.1).

    Args:
        pn: the packet number.
        time_sent: ``now`` when the packet left.
        size: bytes on the wire (the whole datagram), counted in bytes in flight.
        ack_eliciting: the packet carries a frame other than ACK or PADDING.
        in_flight: the packet counts towards bytes in flight (ack-eliciting or
            padding); only such packets are shown to the congestion controller.
        frames: opaque to this module; the session keeps what it must
            retransmit or release when the packet is acknowledged or lost.

    ``cc`` starts as ``None`` and belongs to the congestion controller, which
    may store per-packet state there in ``on_packet_sent`` (BBR keeps its
    delivery-rate snapshot). The session must not touch it.
    """

    __slots__ = ("pn", "time_sent", "size", "ack_eliciting", "in_flight", "frames", "cc")

    def __init__(
        self,
        pn: int,
        time_sent: float,
        size: int,
        ack_eliciting: bool,
        in_flight: bool,
        frames: list[Any] | None = None,
    ) -> None:
        self.pn = pn
        self.time_sent = time_sent
        self.size = size
        self.ack_eliciting = ack_eliciting
        self.in_flight = in_flight
        self.frames = frames
        self.cc: Any = None

    def __repr__(self) -> str:
        return (
            f"SentPacket(pn={self.pn}, time_sent={self.time_sent!r}, size={self.size}, "
            f"ack_eliciting={self.ack_eliciting}, in_flight={self.in_flight})"
        )


# -- RTT estimation --------------------------------------------------------------


class RttEstimator:
    """Round-trip time estimate of one path, per RFC 9002 section 5.

    Attributes:
        latest_rtt: the most recent sample, unadjusted (0.0 before any).
        smoothed_rtt: exponentially weighted average of adjusted samples;
            ``initial_rtt`` before the first sample.
        rttvar: mean deviation of the samples; ``initial_rtt / 2`` before the
            first sample.
        min_rtt: smallest sample seen, never adjusted for ACK delay;
            ``math.inf`` before the first sample.
        has_sample: whether :meth:`update` was ever called.
        first_sample_time: the ``now`` given with the first sample, if one was
            given; RFC 9002 section 7.6.2 only counts packets sent after it
            towards persistent congestion.
    """

    __slots__ = (
        "initial_rtt",
        "latest_rtt",
        "smoothed_rtt",
        "rttvar",
        "min_rtt",
        "has_sample",
        "first_sample_time",
    )

    def __init__(self, initial_rtt: float = K_INITIAL_RTT) -> None:
        if not (0.0 < initial_rtt < math.inf):
            raise ValueError(
                f"initial_rtt must be a positive number of seconds, not {initial_rtt!r}"
            )
        self.initial_rtt = initial_rtt
        self.latest_rtt = 0.0
        self.smoothed_rtt = initial_rtt
        self.rttvar = initial_rtt / 2
        self.min_rtt = math.inf
        self.has_sample = False
        self.first_sample_time: float | None = None

    def update(
        self,
        latest_rtt: float,
        ack_delay: float,
        *,
        max_ack_delay: float,
        handshake_confirmed: bool = True,
        now: float | None = None,
    ) -> None:
        """Take one RTT sample (RFC 9002 section 5.3).

        Call it when an ACK newly acknowledges its largest packet number and
        that packet was ack-eliciting (section 5.1), *before* passing the ACK
        to the congestion controller.

        Args:
            latest_rtt: ``now - time_sent`` of the largest acknowledged packet.
            ack_delay: the peer's reported ACK delay in seconds (already scaled).
                It comes from the wire, so it is clamped rather than trusted.
            max_ack_delay: the peer's announced maximum ACK delay, in seconds.
            handshake_confirmed: once true, ``ack_delay`` is capped at
                ``max_ack_delay`` (section 5.3).
            now: optional; recorded as :attr:`first_sample_time` on the first
                sample.

        Raises:
            ValueError: ``latest_rtt`` is negative or not a number (a local bug:
                ``now`` went backwards).
        """
        if not latest_rtt >= 0.0:
            raise ValueError(f"an RTT sample must be >= 0, not {latest_rtt!r}")
        self.latest_rtt = latest_rtt
        if not self.has_sample:
            # Section 5.3: the first sample seeds the estimator; its ACK delay is
            # ignored because min_rtt is not known yet.
            self.has_sample = True
            self.first_sample_time = now
            self.min_rtt = latest_rtt
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            return
        # min_rtt ignores ACK delay: it is the path's floor, and the delay is
        # the peer's claim, which could only make it look lower than it is.
        if latest_rtt < self.min_rtt:
            self.min_rtt = latest_rtt
        if ack_delay < 0.0:
            ack_delay = 0.0
        if handshake_confirmed and ack_delay > max_ack_delay:
            ack_delay = max_ack_delay
        # Subtract the ACK delay only if the result would not fall below
        # min_rtt; otherwise the peer's delay claim is implausible.
        adjusted = latest_rtt
        if latest_rtt >= self.min_rtt + ack_delay:
            adjusted = latest_rtt - ack_delay
        # RFC 9002 appendix A.7 updates rttvar with the *previous* smoothed_rtt.
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted)
        self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * adjusted

    def loss_delay(self) -> float:
        """How much older than an acknowledged packet a packet must be to be
        declared lost (RFC 9002 section 6.1.2): ``9/8 * max(latest, smoothed)``,
        at least :data:`K_GRANULARITY`."""
        rtt = self.latest_rtt if self.latest_rtt > self.smoothed_rtt else self.smoothed_rtt
        delay = K_TIME_THRESHOLD * rtt
        return delay if delay > K_GRANULARITY else K_GRANULARITY

    def pto_interval(self, max_ack_delay: float) -> float:
        """The probe timeout period before back-off (RFC 9002 section 6.2.1).

        ``smoothed_rtt + max(4 * rttvar, K_GRANULARITY) + max_ack_delay``. The
        session multiplies it by ``2 ** pto_count`` and passes
        ``max_ack_delay=0`` until the handshake is confirmed.
        """
        return self.smoothed_rtt + max(4 * self.rttvar, K_GRANULARITY) + max_ack_delay

    def persistent_congestion_duration(self, max_ack_delay: float) -> float:
        """Length a span of losses must exceed to be persistent congestion
        (RFC 9002 section 7.6.1): three PTO periods, without back-off."""
        return self.pto_interval(max_ack_delay) * K_PERSISTENT_CONGESTION_THRESHOLD

    def __repr__(self) -> str:
        return (
            f"RttEstimator(latest={self.latest_rtt:.6f}, smoothed={self.smoothed_rtt:.6f}, "
            f"rttvar={self.rttvar:.6f}, min={self.min_rtt:.6f})"
        )
