"""Loss recovery of a session: what it remembers about sent packets, RTT
estimation, loss detection and probe timeouts.

Theory of operation
-------------------
This module holds loss recovery (RFC 9002) and the bookkeeping it shares with
the congestion controllers; the controllers themselves and the pacer are in
:mod:`stt_proto.congestion`, whose docstring gives the order in which they are
called. Nothing here reads a clock, draws randomness or does I/O: every
time-dependent method takes the session's ``now``.

- :class:`PacketRecovery` is one session's loss recovery (the shape of
  aioquic's ``QuicPacketRecovery``). The session tells it about every packet
  it sends, every ACK frame and every timer that falls due; it answers with
  the *frames* of the packets that were acknowledged or lost, which the
  session then settles (frames are opaque here). It owns the sent-packet map,
  bytes in flight, the RTT estimator, the congestion controller and the pacer,
  and decides when packets are lost (packet and time thresholds, RFC 9002
  section 6.1), when the probe timeout fires (section 6.2) and when losses
  are persistent congestion (section 7.6).

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
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .errors import ProtocolError

if TYPE_CHECKING:  # the controllers import this module: no cycle at run time
    from .congestion import CongestionController, Pacer

__all__ = [
    "K_GRANULARITY",
    "K_INITIAL_RTT",
    "K_PACKET_THRESHOLD",
    "K_TIME_THRESHOLD",
    "K_PERSISTENT_CONGESTION_THRESHOLD",
    "SentPacket",
    "RttEstimator",
    "PacketRecovery",
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

    def reset(self) -> None:
        """Forget every sample: back to ``initial_rtt``, as before the first one.
        For a new path, whose delay nothing measured yet says anything about
        (RFC 9000 section 9.4)."""
        self.latest_rtt = 0.0
        self.smoothed_rtt = self.initial_rtt
        self.rttvar = self.initial_rtt / 2
        self.min_rtt = math.inf
        self.has_sample = False
        self.first_sample_time = None

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


# -- loss detection and probe timeouts ----------------------------------------------

#: Packets declared lost whose frames are kept in case an ACK of them still
#: comes (the oldest are forgotten first).
_MAX_LOST_RECORDS = 1024
_NOTHING: tuple = ()


class PacketRecovery:
    """Loss detection and probe timeouts of one session (RFC 9002 sections 6
    and 7), with the sent-packet bookkeeping they need.

    The session calls, in this order for each event:

    - :meth:`on_packet_sent` for every packet it sends (ACK-only ones too);
    - :meth:`on_ack` for every ACK frame it receives, which returns the frame
      lists of the packets it newly acknowledges and of those it now declares
      lost: the session settles the first (data delivered, resets done) and
      queues the second again (docs/protocol.md 7.1);
    - :meth:`on_timer` when :meth:`get_timer` falls due, which returns frame
      lists to send again (lost packets, or the oldest packet in flight so
      that the probes carry something useful).

    Frames are opaque here: whatever the session gave :meth:`on_packet_sent`.

    Args:
        cc: the session's congestion controller (:mod:`stt_proto.congestion`).
        pacer: the session's pacer.
        max_ack_delay: the ``max_ack_delay`` assumed of the peer, in seconds
            (docs/protocol.md 8.1: each side uses its own).

    Attributes:
        rtt: the :class:`RttEstimator` of the path.
        bytes_in_flight: bytes of ack-eliciting packets neither acknowledged
            nor declared lost.
        largest_sent: the highest packet number sent (-1 before any).
        probes: probe packets still allowed past the congestion window and
            the pacer (RFC 9002 section 6.2.4).
        stats: counters, merged into the session's statistics.
    """

    __slots__ = (
        "rtt", "cc", "pacer", "max_ack_delay", "bytes_in_flight", "largest_sent",
        "probes", "stats", "_sent", "_lost", "_largest_acked", "_last_eliciting_at",
        "_loss_time", "_pto_count", "_latest_acked_sent_at",
    )

    def __init__(self, *, cc: CongestionController, pacer: Pacer,
                 max_ack_delay: float) -> None:
        self.rtt = RttEstimator()
        self.cc = cc
        self.pacer = pacer
        self.max_ack_delay = max_ack_delay
        #: Ack-eliciting packets in flight, by packet number (ascending).
        self._sent: dict[int, SentPacket] = {}
        #: Frames of packets declared lost, by packet number (oldest first), so
        #: that a late acknowledgement of one still settles them (8.2).
        self._lost: OrderedDict[int, Any] = OrderedDict()
        self.bytes_in_flight = 0
        self.largest_sent = -1
        self._largest_acked = -1
        self._last_eliciting_at = 0.0
        #: When the earliest packet not yet lost becomes lost by time (6.1.2).
        self._loss_time: float | None = None
        self._pto_count = 0
        self.probes = 0
        self._latest_acked_sent_at = float("-inf")
        self.stats = dict.fromkeys((
            "packets_lost", "bytes_lost", "probe_timeouts", "persistent_congestion",
            "spurious_losses", "packets_abandoned", "path_estimates_reset"), 0)

    # -- the session's three calls ------------------------------------------------------

    def on_packet_sent(self, pn: int, now: float, size: int, frames: Any,
                       ack_eliciting: bool) -> None:
        """A packet left: ``size`` bytes on the wire, carrying ``frames``.

        Only ack-eliciting packets are remembered and count in flight (an
        ACK-only packet is never acknowledged, docs/protocol.md 8.1).
        """
        self.largest_sent = pn
        if not ack_eliciting:
            return
        packet = SentPacket(pn, now, size, True, True, frames)
        self._sent[pn] = packet
        self.bytes_in_flight += size
        self._last_eliciting_at = now
        # The congestion contract: bytes in flight include this packet.
        self.cc.on_packet_sent(packet, bytes_in_flight=self.bytes_in_flight, now=now)
        self.pacer.on_packet_sent(size, now)
        if self.probes:
            self.probes -= 1

    def on_ack(self, ranges: tuple, ack_delay: float, now: float) -> tuple:
        """Apply an ACK frame's ``ranges`` (highest first) and ``ack_delay``
        (seconds).

        Returns:
            ``(acknowledged, lost)``: two lists of frame lists, in packet
            order. ``acknowledged`` starts with packets declared lost earlier
            that this ACK covers after all (counted as ``spurious_losses``).

        Raises:
            ProtocolError: the ACK names a packet number never sent (8.1).
        """
        largest = ranges[0][1]
        if largest > self.largest_sent:
            raise ProtocolError("ACK of a packet number never sent")
        settled: list = []
        if self._lost:
            self._settle_late_acks(ranges, settled)
        sent = self._sent
        if not sent:
            return settled, _NOTHING
        acked: list[SentPacket] = []
        first = next(iter(sent))
        for lo, hi in reversed(ranges):
            if hi < first:
                continue
            if hi - lo < len(sent):
                pop = sent.pop
                for pn in range(max(lo, first), hi + 1):
                    packet = pop(pn, None)
                    if packet is not None:
                        acked.append(packet)
            else:
                hits = [pn for pn in sent if lo <= pn <= hi]
                for pn in hits:
                    acked.append(sent.pop(pn))
        if not acked:
            return settled, _NOTHING
        if largest > self._largest_acked:
            self._largest_acked = largest
        newest = acked[-1]
        if newest.pn == largest:
            # RFC 9002 section 5.1: a sample only when the largest
            # acknowledged packet is newly acknowledged.
            self.rtt.update(now - newest.time_sent, ack_delay,
                            max_ack_delay=self.max_ack_delay)
        if newest.time_sent > self._latest_acked_sent_at:
            self._latest_acked_sent_at = newest.time_sent
        in_flight = self.bytes_in_flight
        for packet in acked:
            in_flight -= packet.size
            if packet.frames:
                settled.append(packet.frames)
        self.bytes_in_flight = in_flight
        lost = self._detect_lost(now)
        requeue = self._on_lost(lost, now) if lost else _NOTHING
        self.cc.on_packets_acked(acked, bytes_in_flight=self.bytes_in_flight, rtt=self.rtt,
                                 now=now)
        # RFC 9002 section 6.2.1: an ACK that acknowledges something resets
        # the probe back-off.
        self._pto_count = 0
        self.pacer.set_rate(self.cc.pacing_rate(self.rtt), now)
        return settled, requeue

    def get_timer(self) -> float | None:
        """When :meth:`on_timer` has work: the loss timer, else the probe
        timeout while packets are in flight; ``None`` otherwise."""
        if self._loss_time is not None:
            return self._loss_time
        return self._pto_deadline()

    def on_timer(self, now: float) -> Any:
        """Fire the loss timer or the probe timeout if due.

        Returns:
            frame lists to send again (possibly empty).
        """
        if self._loss_time is not None:
            if now >= self._loss_time:
                lost = self._detect_lost(now)
                if lost:
                    return self._on_lost(lost, now)
        else:
            pto = self._pto_deadline()
            if pto is not None and now >= pto:
                return self._on_probe_timeout()
        return _NOTHING

    # -- inspection ---------------------------------------------------------------------

    @property
    def packets_in_flight(self) -> int:
        """Ack-eliciting packets neither acknowledged nor declared lost."""
        return len(self._sent)

    def abandon_in_flight(self) -> list:
        """What is in flight was sent where it did not arrive: to the old address
        of a peer that moved (docs/protocol.md 7.11), or into an outage (7.7).
        Every packet in flight is taken out of flight and its frames handed back
        to be sent again now, with no congestion response (a dead path, not a
        full queue, lost them); they stay recorded, so an ACK that comes after
        all settles them."""
        sent, records, requeue = self._sent, self._lost, []
        for packet in sent.values():
            if packet.frames:
                requeue.append(packet.frames)
                records[packet.pn] = packet.frames
        while len(records) > _MAX_LOST_RECORDS:
            records.popitem(last=False)
        self.stats["packets_abandoned"] += len(sent)
        sent.clear()
        self.bytes_in_flight = 0
        self._loss_time = None
        self._pto_count = 0
        self.probes = 0
        return requeue

    def new_path(self, now: float) -> list:
        """The peer moved to another host (docs/protocol.md 7.11): the new path's
        capacity and delay are unknown, so the congestion controller and the
        RTT estimator start again from their initial state, as RFC 9000
        section 9.4 requires (a new port of the same host, a NAT rebinding,
        keeps them: call :meth:`abandon_in_flight` alone for that).

        What is in flight is abandoned first (see :meth:`abandon_in_flight`,
        whose frame lists this returns): the new controller never sees packets
        of the old path, so its bytes in flight start at zero like ours, and
        an ACK of one of them later settles its frames without an RTT sample
        or a congestion response. Packet numbers go on: one number space per
        session, whatever the path.
        """
        requeue = self.abandon_in_flight()
        self.rtt.reset()
        self.cc = self.cc.restarted()
        self.pacer.set_rate(self.cc.pacing_rate(self.rtt), now)
        self.stats["path_estimates_reset"] += 1
        return requeue

    def frames_in_flight(self):
        """The frame lists of the packets in flight (a generator)."""
        return (packet.frames for packet in self._sent.values() if packet.frames)

    # -- RFC 9002 ------------------------------------------------------------------------

    def _settle_late_acks(self, ranges: tuple, settled: list) -> None:
        """Packets we declared lost that the peer received after all: their
        frames are settled as acknowledged (data and FINs not sent again,
        resets and stops done). Otherwise the peer would keep getting copies
        of what it has (docs/protocol.md 8.2)."""
        lost = self._lost
        lowest = ranges[-1][0]
        # Below the lowest range the peer no longer reports: never acknowledged.
        while lost:
            pn = next(iter(lost))
            if pn >= lowest:
                break
            del lost[pn]
        hits = []
        i = len(ranges) - 1   # ranges run from the highest down
        for pn in lost:
            while i >= 0 and ranges[i][1] < pn:
                i -= 1
            if i < 0:
                break
            if ranges[i][0] <= pn:
                hits.append(pn)
        if hits:
            self.stats["spurious_losses"] += len(hits)
            for pn in hits:
                settled.append(lost.pop(pn))

    def _detect_lost(self, now: float) -> list[SentPacket]:
        """RFC 9002 section 6.1: packet and time thresholds."""
        self._loss_time = None
        largest = self._largest_acked
        delay = self.rtt.loss_delay()
        lost = []
        for pn, packet in self._sent.items():
            if pn > largest:
                break
            # (time_sent + delay, not now - delay: the loss timer is set to exactly
            # this sum, and must find the packet lost when it fires.)
            if packet.time_sent + delay <= now or largest - pn >= K_PACKET_THRESHOLD:
                lost.append(packet)
            else:
                self._loss_time = packet.time_sent + delay
                break
        sent = self._sent
        for packet in lost:
            del sent[packet.pn]
        return lost

    def _on_lost(self, lost: list[SentPacket], now: float) -> list:
        """Take ``lost`` out of flight; returns their frame lists."""
        stats = self.stats
        in_flight = self.bytes_in_flight
        records = self._lost
        requeue = []
        for packet in lost:
            in_flight -= packet.size
            stats["packets_lost"] += 1
            stats["bytes_lost"] += packet.size
            if packet.frames:
                requeue.append(packet.frames)
                records[packet.pn] = packet.frames
                if len(records) > _MAX_LOST_RECORDS:
                    records.popitem(last=False)
        self.bytes_in_flight = in_flight
        cc = self.cc
        cc.on_packets_lost(lost, bytes_in_flight=in_flight, now=now)
        self.pacer.set_rate(cc.pacing_rate(self.rtt), now)
        # Persistent congestion (RFC 9002 section 7.6), judged conservatively: the
        # lost packets span the period and nothing sent after the first was acked.
        rtt = self.rtt
        if rtt.has_sample and len(lost) >= 2:
            period = (rtt.smoothed_rtt + max(4 * rtt.rttvar, K_GRANULARITY)
                      + self.max_ack_delay) * K_PERSISTENT_CONGESTION_THRESHOLD
            first, last = lost[0].time_sent, lost[-1].time_sent
            if last - first > period and self._latest_acked_sent_at < first:
                stats["persistent_congestion"] += 1
                cc.on_persistent_congestion(now=now)
        return requeue

    def _pto_deadline(self) -> float | None:
        """RFC 9002 section 6.2.1: the last ack-eliciting packet's send time
        plus the probe timeout, doubled per consecutive expiry."""
        if not self._sent:
            return None
        interval = self.rtt.pto_interval(self.max_ack_delay) * (1 << min(self._pto_count, 16))
        return self._last_eliciting_at + interval

    def _on_probe_timeout(self) -> list:
        """RFC 9002 section 6.2.4: allow two probes, and hand back the frames
        of the oldest packet that has any, so that the probes carry them (the
        packet itself stays in flight: an ACK for it still counts)."""
        self.stats["probe_timeouts"] += 1
        self._pto_count += 1
        self.probes = 2
        for packet in self._sent.values():
            if packet.frames:
                return [packet.frames]
        return []

    def __repr__(self) -> str:
        return (f"PacketRecovery({len(self._sent)} packets / {self.bytes_in_flight} bytes "
                f"in flight, pto_count={self._pto_count}, {self.rtt!r})")
