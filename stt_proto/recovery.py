"""RTT estimation, congestion control (NewReno, CUBIC, BBR) and pacing.

Theory of operation
-------------------
This module holds the *policies* of loss recovery; the *mechanism* lives in the
session. The session numbers packets, keeps the table of packets in flight,
decodes ACK frames, runs loss detection (RFC 9002 section 6: the packet and
time thresholds and the probe timeout) and keeps ``bytes_in_flight``. It calls
in here at four moments, always passing its own ``now`` (seconds, opaque,
non-decreasing; nothing here reads a clock, draws randomness or does I/O):

1. **A packet leaves.** The session builds a :class:`SentPacket`, and if the
   packet counts towards bytes in flight it adds its size to ``bytes_in_flight``
   and then calls :meth:`CongestionController.on_packet_sent` (so the value
   passed *includes* this packet) and :meth:`Pacer.on_packet_sent`. Before
   sending it checks ``bytes_in_flight + size <= congestion_window`` and
   ``Pacer.next_send_time(now) <= now``; packets that only carry ACKs are not
   in flight and are neither window- nor pace-limited.
2. **An ACK arrives.** The session works out which packets are newly
   acknowledged. If the largest of them is newly acknowledged and
   ack-eliciting it first feeds :meth:`RttEstimator.update` (RFC 9002 section
   5.1). It removes the acknowledged packets from its table and from
   ``bytes_in_flight``, runs loss detection, removes the lost ones too, and then
   calls, in this order (the order of RFC 9002 appendix A.7):

   - :meth:`CongestionController.on_packets_lost` with the newly lost in-flight
     packets, if any;
   - :meth:`CongestionController.on_persistent_congestion` if those losses
     prove persistent congestion (RFC 9002 section 7.6; the session decides,
     :meth:`RttEstimator.persistent_congestion_duration` gives the duration);
   - :meth:`CongestionController.on_packets_acked` with the newly acknowledged
     in-flight packets.

   Both lists are in ascending packet-number order and ``bytes_in_flight`` is
   the value *after* removing every packet this ACK acknowledged or declared
   lost. Afterwards it refreshes the pacer:
   ``pacer.set_rate(cc.pacing_rate(rtt), now)``.
3. **A loss timer fires** (time-threshold loss or PTO). Packets declared lost
   there go to ``on_packets_lost`` the same way, followed by the same pacer
   refresh.
4. **The application runs dry.** When the session could have sent (window and
   pacer both allow it) but has nothing to send, or is blocked only by the
   peer's flow control, it calls
   :meth:`CongestionController.on_app_limited`. This matters: NewReno and
   CUBIC must not grow a window they are not using (RFC 9002 section 7.8), and
   BBR must not let the low delivery rates of an idle application pull its
   bandwidth estimate down. A session that never calls it is treated as always
   having data.

**RTT.** :class:`RttEstimator` is RFC 9002 section 5 to the letter: the first
sample seeds everything, later ones are smoothed with gains 1/8 and 1/4, the
peer's ACK delay is subtracted only when that cannot take the sample below
``min_rtt``, and ``min_rtt`` itself never sees the ACK delay.

**Congestion controllers** share the :class:`CongestionController` ABC and a
name registry (:func:`register_congestion_controller`,
:func:`create_congestion_controller`). The base class also owns the *recovery
period* of RFC 9002 section 7.3.2: it starts at the time a loss is detected, and
a loss or acknowledgement of a packet sent before that time belongs to the same
congestion event. The period ends when a packet sent after it started is
acknowledged.

- :class:`NewReno` (``"newreno"``) is RFC 9002 section 7 and appendix B, with
  the congestion-avoidance increase counted in bytes (one datagram per window
  acknowledged).
- :class:`Cubic` (``"cubic"``) is RFC 9438. It shares NewReno's slow start,
  recovery and application-limited logic through :class:`LossBasedController`
  and only replaces the window reduction and the congestion-avoidance growth.
- :class:`BBR` (``"bbr"``) is BBR v1 as in draft-cardwell-iccrg-bbr-congestion-
  control-00, with per-packet delivery-rate samples as in
  draft-cheng-iccrg-delivery-rate-estimation. It models the path (bottleneck
  bandwidth, round-trip propagation time) instead of reacting to loss, so
  random loss does not cut its sending rate.

**Pacing.** :class:`Pacer` is a token bucket in bytes refilled at the rate the
controller asks for. It spreads a window over the round trip instead of sending
it in one burst that overflows router queues (RFC 9002 section 7.7), while
still allowing a short burst after idle.

**Cost.** These methods run once per packet or ACK, so the hot ones allocate
nothing beyond BBR's one small tuple per packet sent, and every class has
``__slots__``.
"""

from __future__ import annotations

import abc
import math
import types
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

__all__ = [
    "K_GRANULARITY",
    "K_INITIAL_RTT",
    "K_PACKET_THRESHOLD",
    "K_TIME_THRESHOLD",
    "K_PERSISTENT_CONGESTION_THRESHOLD",
    "K_LOSS_REDUCTION_FACTOR",
    "K_MINIMUM_WINDOW_PACKETS",
    "PACING_GAIN",
    "initial_window",
    "SentPacket",
    "RttEstimator",
    "CongestionController",
    "LossBasedController",
    "NewReno",
    "Cubic",
    "BBR",
    "CONGESTION_CONTROLLERS",
    "register_congestion_controller",
    "create_congestion_controller",
    "Pacer",
]

# -- RFC 9002 constants (appendix A.2 and B.2) ------------------------------------

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
#: NewReno multiplies its window by this on a congestion event.
K_LOSS_REDUCTION_FACTOR = 0.5
#: The window never goes below this many datagrams (RFC 9002 section 7.2).
K_MINIMUM_WINDOW_PACKETS = 2
#: NewReno and CUBIC pace at this multiple of ``cwnd / smoothed_rtt`` (RFC 9002 section 7.7).
PACING_GAIN = 1.25
#: Smoothed RTTs below this (a coarse clock can measure 0) are taken as this
#: when computing a pacing rate.
_MIN_PACING_RTT = 1e-6


def initial_window(max_datagram_size: int) -> int:
    """The initial congestion window of RFC 9002 section 7.2, in bytes.

    Ten datagrams, but no more than 14720 bytes unless that is less than two
    datagrams.
    """
    return min(10 * max_datagram_size, max(14720, 2 * max_datagram_size))


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


# -- Congestion controller interface and registry -----------------------------------


class CongestionController(abc.ABC):
    """Interface every congestion controller implements.

    The module docstring says who calls what and when. Every event method
    takes ``now`` and its other arguments after the packets keyword-only; none
    raises on any input the session can legitimately produce.

    Attributes:
        name: registry name (class attribute).
        max_datagram_size: the largest datagram the session sends, in bytes.
        congestion_window: bytes the session may have in flight.

    The base class holds the *recovery period* of RFC 9002 section 7.3.2 for
    its subclasses: :meth:`_start_congestion_event` counts losses and reports
    whether they start a new congestion event; a subclass ends the period
    (``_in_recovery = False``) when a packet sent after
    ``_recovery_start_time`` is acknowledged.
    """

    __slots__ = (
        "max_datagram_size",
        "congestion_window",
        "_recovery_start_time",
        "_in_recovery",
        "_congestion_events",
        "_persistent_congestion_events",
        "_lost_packets",
        "_lost_bytes",
    )

    name: ClassVar[str] = ""

    def __init__(self, *, max_datagram_size: int) -> None:
        if not isinstance(max_datagram_size, int) or max_datagram_size <= 0:
            raise ValueError(f"max_datagram_size must be a positive int, not {max_datagram_size!r}")
        self.max_datagram_size = max_datagram_size
        self.congestion_window = initial_window(max_datagram_size)
        #: Losses of packets sent at or before this time belong to the current
        #: congestion event; -inf means "no recovery period yet".
        self._recovery_start_time = -math.inf
        self._in_recovery = False
        self._congestion_events = 0
        self._persistent_congestion_events = 0
        self._lost_packets = 0
        self._lost_bytes = 0

    # -- the interface -------------------------------------------------------

    @abc.abstractmethod
    def on_packet_sent(self, packet: SentPacket, *, bytes_in_flight: int, now: float) -> None:
        """An in-flight packet was sent; ``bytes_in_flight`` includes it.

        Not called for packets that do not count towards bytes in flight
        (pure ACKs).
        """

    @abc.abstractmethod
    def on_packets_acked(
        self,
        packets: Sequence[SentPacket],
        *,
        bytes_in_flight: int,
        rtt: RttEstimator,
        now: float,
    ) -> None:
        """In-flight packets were newly acknowledged by one ACK frame.

        Args:
            packets: ascending packet numbers, each acknowledged for the first time.
            bytes_in_flight: after removing every packet this ACK acknowledged
                or declared lost.
            rtt: already updated with this ACK's sample, if it gave one.
        """

    @abc.abstractmethod
    def on_packets_lost(
        self, packets: Sequence[SentPacket], *, bytes_in_flight: int, now: float
    ) -> None:
        """In-flight packets were newly declared lost (ascending packet numbers);
        ``bytes_in_flight`` no longer counts them. Called before
        :meth:`on_packets_acked` when one ACK does both."""

    @abc.abstractmethod
    def on_persistent_congestion(self, *, now: float) -> None:
        """The losses just reported span persistent congestion (RFC 9002 section
        7.6). Called right after the :meth:`on_packets_lost` that reported them."""

    @abc.abstractmethod
    def on_app_limited(self, *, bytes_in_flight: int, now: float) -> None:
        """The sender ran out of data while the window (and pacer) allowed more.

        Call it each time the send loop stops for lack of data rather than for
        lack of window; it is cheap and idempotent.
        """

    @abc.abstractmethod
    def pacing_rate(self, rtt: RttEstimator) -> float | None:
        """The rate to pace at, in bytes per second, or ``None`` for no pacing.

        Feed it to :meth:`Pacer.set_rate` after each ACK.
        """

    @property
    @abc.abstractmethod
    def state(self) -> str:
        """Short name of the controller's current state, for statistics and logs."""

    @property
    def in_recovery(self) -> bool:
        """Whether a recovery period (RFC 9002 section 7.3.2) is under way."""
        return self._in_recovery

    def statistics(self) -> dict[str, float | int | str]:
        """Counters and current estimates; subclasses add their own keys."""
        return {
            "name": self.name,
            "state": self.state,
            "congestion_window": self.congestion_window,
            "in_recovery": int(self._in_recovery),
            "congestion_events": self._congestion_events,
            "persistent_congestion_events": self._persistent_congestion_events,
            "lost_packets": self._lost_packets,
            "lost_bytes": self._lost_bytes,
        }

    # -- shared recovery-period logic ----------------------------------------

    def _start_congestion_event(self, packets: Sequence[SentPacket], now: float) -> bool:
        """Count the losses; return whether they begin a new congestion event.

        RFC 9002 section 7.3.2: a loss of a packet sent before the current
        recovery period started is part of the event that started it, so it
        must not reduce the window again. Packet numbers grow with send time,
        so the last packet is the most recently sent.
        """
        lost = 0
        for packet in packets:
            lost += packet.size
        self._lost_packets += len(packets)
        self._lost_bytes += lost
        if not packets or packets[-1].time_sent <= self._recovery_start_time:
            return False
        # The period starts when the loss is *detected*, so that packets sent
        # while the sender still used the old window are covered too.
        self._recovery_start_time = now
        self._in_recovery = True
        self._congestion_events += 1
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} state={self.state} cwnd={self.congestion_window}>"


_REGISTRY: dict[str, type[CongestionController]] = {}

#: Read-only view: registry name -> congestion controller class.
CONGESTION_CONTROLLERS: Mapping[str, type[CongestionController]] = types.MappingProxyType(_REGISTRY)

_C = TypeVar("_C", bound=type[CongestionController])


def register_congestion_controller(cls: _C) -> _C:
    """Class decorator adding a :class:`CongestionController` to the registry
    under its ``name``.

    Raises:
        TypeError: ``cls`` is not a concrete congestion controller.
        ValueError: the name is empty or already taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, CongestionController)):
        raise TypeError(f"{cls!r} is not a CongestionController subclass")
    if getattr(cls, "__abstractmethods__", None):
        raise TypeError(f"{cls.__name__} is abstract")
    name = cls.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"congestion controller {name!r} is already registered ({existing.__name__})"
        )
    _REGISTRY[name] = cls
    return cls


def create_congestion_controller(
    name: str, *, max_datagram_size: int, **options: Any
) -> CongestionController:
    """Instantiate the registered controller called ``name``.

    Args:
        name: a key of :data:`CONGESTION_CONTROLLERS`, e.g. ``"cubic"``.
        max_datagram_size: passed to the constructor.
        options: extra keyword arguments for that controller (e.g. BBR's ``seed``).

    Raises:
        ValueError: no controller has that name; the message lists the known ones.
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown congestion controller {name!r}; known: {known}")
    return cls(max_datagram_size=max_datagram_size, **options)


# -- Loss-based controllers: NewReno and CUBIC ----------------------------------------


class LossBasedController(CongestionController):
    """Slow start, recovery periods and application-limited handling shared by
    :class:`NewReno` and :class:`Cubic` (RFC 9002 section 7, appendix B).

    Subclasses implement the two places where they differ:
    :meth:`_reduce_window` (what a congestion event does to ``ssthresh`` and the
    window) and :meth:`_congestion_avoidance` (how the window grows once it is
    at or above ``ssthresh``).

    **Application-limited.** RFC 9002 section 7.8 forbids growing a window that
    is not being used. The session reports running out of data through
    :meth:`on_app_limited`; if the window was then *well* under-used (less than
    half full in slow start, where the window legitimately runs ahead of the
    flight by up to 2x; more than three datagrams free in congestion avoidance)
    the controller stops growing until a send fills the window that far again.
    """

    __slots__ = ("ssthresh", "_app_limited", "_app_limited_since")

    def __init__(self, *, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self.ssthresh: float = math.inf
        self._app_limited = False
        self._app_limited_since = 0.0

    @property
    def minimum_window(self) -> int:
        """Smallest window, two datagrams (RFC 9002 section 7.2)."""
        return K_MINIMUM_WINDOW_PACKETS * self.max_datagram_size

    @property
    def state(self) -> str:
        if self._in_recovery:
            return "recovery"
        if self.congestion_window < self.ssthresh:
            return "slow_start"
        return "congestion_avoidance"

    @property
    def app_limited(self) -> bool:
        """Whether growth is suspended because the window is not being used."""
        return self._app_limited

    def _window_underused(self, bytes_in_flight: int) -> bool:
        cwnd = self.congestion_window
        if cwnd < self.ssthresh:
            return 2 * bytes_in_flight < cwnd
        return bytes_in_flight + 3 * self.max_datagram_size < cwnd

    def on_packet_sent(self, packet: SentPacket, *, bytes_in_flight: int, now: float) -> None:
        if self._app_limited and not self._window_underused(bytes_in_flight):
            self._app_limited = False
            self._app_limited_ended(now - self._app_limited_since)

    def on_app_limited(self, *, bytes_in_flight: int, now: float) -> None:
        if not self._app_limited and self._window_underused(bytes_in_flight):
            self._app_limited = True
            self._app_limited_since = now

    def on_packets_acked(
        self,
        packets: Sequence[SentPacket],
        *,
        bytes_in_flight: int,
        rtt: RttEstimator,
        now: float,
    ) -> None:
        # RFC 9002 appendix B.5: packets sent before the recovery period began
        # do not grow the window; the first one sent after it ends the period.
        start = self._recovery_start_time
        acked = 0
        for packet in packets:
            if packet.time_sent > start:
                acked += packet.size
        if not acked:
            return
        self._in_recovery = False
        if self._app_limited:
            return  # RFC 9002 section 7.8: don't grow an unused window.
        if self.congestion_window < self.ssthresh:
            # Slow start: grow by every byte acknowledged, doubling per RTT.
            self.congestion_window += acked
        else:
            self._congestion_avoidance(acked, rtt, now)

    def on_packets_lost(
        self, packets: Sequence[SentPacket], *, bytes_in_flight: int, now: float
    ) -> None:
        if self._start_congestion_event(packets, now):
            self._reduce_window(now)

    def on_persistent_congestion(self, *, now: float) -> None:
        # RFC 9002 section 7.6.2 / appendix B.8: collapse to the minimum window
        # and forget the recovery period, so the next loss is a new event.
        # ssthresh keeps the value the preceding loss event gave it.
        self._persistent_congestion_events += 1
        self.congestion_window = self.minimum_window
        self._recovery_start_time = -math.inf
        self._in_recovery = False

    def pacing_rate(self, rtt: RttEstimator) -> float | None:
        # RFC 9002 section 7.7: N * cwnd / smoothed_rtt with N = 1.25, so that
        # pacing never becomes the bottleneck. smoothed_rtt is the initial RTT
        # until a sample exists; it can be 0 with a coarse clock on a LAN, in
        # which case pacing is pointless and the floor just avoids dividing by 0.
        srtt = rtt.smoothed_rtt
        if srtt < _MIN_PACING_RTT:
            srtt = _MIN_PACING_RTT
        return PACING_GAIN * self.congestion_window / srtt

    def statistics(self) -> dict[str, float | int | str]:
        stats = super().statistics()
        stats["ssthresh"] = self.ssthresh
        stats["app_limited"] = int(self._app_limited)
        return stats

    # -- hooks ---------------------------------------------------------------

    @abc.abstractmethod
    def _reduce_window(self, now: float) -> None:
        """A new congestion event began at ``now``: set ``ssthresh`` and shrink
        the window (to no less than :attr:`minimum_window`)."""

    @abc.abstractmethod
    def _congestion_avoidance(self, acked: int, rtt: RttEstimator, now: float) -> None:
        """``acked`` bytes (sent after the last recovery period began) were
        acknowledged while ``congestion_window >= ssthresh``."""

    def _app_limited_ended(self, duration: float) -> None:
        """The window is in use again after ``duration`` seconds of disuse."""


@register_congestion_controller
class NewReno(LossBasedController):
    """NewReno congestion control as specified for QUIC (RFC 9002 section 7).

    Slow start grows the window by the bytes acknowledged; a congestion event
    halves it (``K_LOSS_REDUCTION_FACTOR``) and sets ``ssthresh``; congestion
    avoidance then adds one datagram per window of bytes acknowledged. The
    increase is counted in bytes (appropriate byte counting, RFC 3465), which
    is what RFC 9002's ``max_datagram_size * acked / cwnd`` approximates
    without losing the fractions to integer rounding.
    """

    __slots__ = ("_bytes_acked",)

    name = "newreno"

    def __init__(self, *, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._bytes_acked = 0

    def _reduce_window(self, now: float) -> None:
        # RFC 9002 appendix B.6 OnCongestionEvent.
        self.ssthresh = round(self.congestion_window * K_LOSS_REDUCTION_FACTOR)
        self.congestion_window = max(self.ssthresh, self.minimum_window)
        self._bytes_acked = 0

    def _congestion_avoidance(self, acked: int, rtt: RttEstimator, now: float) -> None:
        self._bytes_acked += acked
        cwnd = self.congestion_window
        # A loop only in case one ACK covers more than a window.
        while self._bytes_acked >= cwnd:
            self._bytes_acked -= cwnd
            cwnd += self.max_datagram_size
        self.congestion_window = cwnd

    def on_persistent_congestion(self, *, now: float) -> None:
        super().on_persistent_congestion(now=now)
        self._bytes_acked = 0


#: CUBIC's multiplicative decrease factor, beta_cubic (RFC 9438 section 4.6).
CUBIC_BETA = 0.7
#: CUBIC's aggressiveness constant C, in datagrams per second cubed (RFC 9438 section 4.2).
CUBIC_C = 0.4
#: AIMD increase that gives Reno's average rate with CUBIC's beta (section 4.3).
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)


@register_congestion_controller
class Cubic(LossBasedController):
    """CUBIC congestion control, RFC 9438.

    After a congestion event the window follows
    ``W_cubic(t) = C * (t - K) ** 3 + W_max`` (in datagrams, ``t`` in seconds
    since congestion avoidance began): concave up to ``W_max``, the window
    where the loss happened, flat around it, then convex to probe beyond. It
    also tracks ``W_est``, the window an AIMD flow with the same beta would
    have (the Reno-friendly estimate), and follows it whenever ``W_cubic``
    falls below it, so CUBIC is never slower than Reno on short-RTT paths.

    Slow start (the standard one, which RFC 9438 section 4.10 allows), recovery
    periods and application-limited handling are those of
    :class:`LossBasedController`. Fast convergence (section 4.7) is on: a flow
    that loses below its previous ``W_max`` releases bandwidth to newcomers by
    lowering ``W_max``.
    """

    __slots__ = ("_w_max", "_k", "_epoch_start", "_w_est", "_cwnd_prior", "_fraction")

    name = "cubic"

    def __init__(self, *, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._w_max = 0.0  # bytes; 0 = no congestion event yet (K = 0 on the next epoch)
        self._k = 0.0  # seconds
        self._epoch_start: float | None = None
        self._w_est = 0.0  # bytes
        self._cwnd_prior = 0.0  # bytes: window just before the last reduction
        self._fraction = 0.0  # sub-byte growth carried between ACKs

    @property
    def epoch_start(self) -> float | None:
        """``now`` at which the current congestion-avoidance epoch began (the
        origin of ``t`` in ``W_cubic(t)``), or ``None`` outside one."""
        return self._epoch_start

    def _w_cubic(self, t: float) -> float:
        """Equation 1 of RFC 9438, in bytes."""
        d = t - self._k
        return CUBIC_C * d * d * d * self.max_datagram_size + self._w_max

    def _reduce_window(self, now: float) -> None:
        cwnd = self.congestion_window
        # Section 4.7 fast convergence: losing below the last W_max means a
        # new flow is competing, so aim lower to leave it room.
        if cwnd < self._w_max:
            self._w_max = cwnd * (1 + CUBIC_BETA) / 2
        else:
            self._w_max = float(cwnd)
        # Section 4.6: multiplicative decrease by beta. RFC 9438 allows cwnd
        # instead of the flight size here because growth stops while the
        # window is under-used (see LossBasedController).
        self._cwnd_prior = float(cwnd)
        self.ssthresh = round(cwnd * CUBIC_BETA)
        self.congestion_window = max(self.ssthresh, self.minimum_window)
        self._epoch_start = None  # the next congestion avoidance ACK starts an epoch

    def on_persistent_congestion(self, *, now: float) -> None:
        super().on_persistent_congestion(now=now)
        # Section 4.8: after a timeout the next epoch starts with K = 0 and
        # W_max = the window at the start of congestion avoidance.
        self._w_max = 0.0
        self._epoch_start = None

    def _app_limited_ended(self, duration: float) -> None:
        # Section 5.8: time spent application-limited must not count in t,
        # or the window would jump ahead when the flow resumes.
        if self._epoch_start is not None:
            self._epoch_start += duration

    def _congestion_avoidance(self, acked: int, rtt: RttEstimator, now: float) -> None:
        mds = self.max_datagram_size
        cwnd = self.congestion_window
        if self._epoch_start is None:
            # Section 4.2: a new epoch starts with the first congestion
            # avoidance ACK; K is the time W_cubic takes to climb back to W_max.
            self._epoch_start = now
            if self._w_max <= cwnd:
                self._k = 0.0
                self._w_max = float(cwnd)
            else:
                self._k = ((self._w_max - cwnd) / (CUBIC_C * mds)) ** (1 / 3)
            self._w_est = float(cwnd)
            self._fraction = 0.0
        t = now - self._epoch_start

        # Section 4.3: the Reno-friendly estimate grows by alpha datagrams per
        # window acknowledged, and like Reno (alpha = 1) once it has regained
        # the window of the last congestion event.
        alpha = 1.0 if self._w_est >= self._cwnd_prior else CUBIC_ALPHA
        self._w_est += alpha * mds * acked / cwnd

        if self._w_cubic(t) < self._w_est:
            # Reno-friendly region: behave like the AIMD flow.
            exact = self._w_est
        else:
            # Concave / convex regions (sections 4.4, 4.5): close the gap to
            # W_cubic one RTT ahead, by (target - cwnd) / cwnd per datagram
            # acknowledged, with the target clamped to [cwnd, 1.5 cwnd].
            target = self._w_cubic(t + rtt.smoothed_rtt)
            if target < cwnd:
                target = cwnd
            elif target > 1.5 * cwnd:
                target = 1.5 * cwnd
            exact = cwnd + self._fraction + (target - cwnd) * acked / cwnd
        whole = int(exact)
        if whole > cwnd:
            self.congestion_window = whole
            self._fraction = exact - whole
        else:
            self._fraction = exact - cwnd if exact > cwnd else 0.0

    def statistics(self) -> dict[str, float | int | str]:
        stats = super().statistics()
        stats["w_max"] = self._w_max
        stats["k"] = self._k
        stats["w_est"] = self._w_est
        return stats


# -- BBR ---------------------------------------------------------------------------

#: Startup gain, the smallest that doubles the delivery rate every round (draft-00, Startup).
BBR_HIGH_GAIN = 2 / math.log(2)
#: ProbeBW pacing gains: probe, drain the probe's queue, then cruise for six rounds.
BBR_GAIN_CYCLE = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
#: Length of the bottleneck-bandwidth max filter, in round trips.
BBR_BTL_BW_FILTER_LEN = 10
#: Lifetime of the RTprop estimate, in seconds, before ProbeRTT re-measures it.
BBR_RTPROP_FILTER_LEN = 10.0
#: Time ProbeRTT holds the flight at BBR_MIN_PIPE_CWND_PACKETS.
BBR_PROBE_RTT_DURATION = 0.2
#: Smallest window BBR uses outside loss recovery, in datagrams.
BBR_MIN_PIPE_CWND_PACKETS = 4
#: Bandwidth must grow by this factor per round to count as still growing.
BBR_FULL_BW_THRESHOLD = 1.25
#: Rounds without such growth before Startup concludes the pipe is full.
BBR_FULL_BW_COUNT = 3

_STARTUP = "startup"
_DRAIN = "drain"
_PROBE_BW = "probe_bw"
_PROBE_RTT = "probe_rtt"


class _WindowedMaxFilter:
    """Running maximum over a sliding window (Kathleen Nichols' algorithm).

    Keeps the best, second-best and third-best samples from successively later
    parts of the window, so that when the best one ages out a good successor
    is already known. O(1) per update, no allocation.
    """

    __slots__ = ("window", "_v0", "_t0", "_v1", "_t1", "_v2", "_t2")

    def __init__(self, window: float) -> None:
        self.window = window
        self._v0 = self._v1 = self._v2 = 0.0
        self._t0 = self._t1 = self._t2 = 0.0

    @property
    def best(self) -> float:
        return self._v0

    def reset(self, value: float, t: float) -> None:
        self._v0 = self._v1 = self._v2 = value
        self._t0 = self._t1 = self._t2 = t

    def update(self, value: float, t: float) -> float:
        """Add a sample taken at time ``t`` (non-decreasing); return the maximum."""
        window = self.window
        if value >= self._v0 or t - self._t2 > window:
            # A new maximum, or even the youngest candidate expired: start over.
            self.reset(value, t)
            return value
        if value >= self._v1:
            self._v1 = self._v2 = value
            self._t1 = self._t2 = t
        elif value >= self._v2:
            self._v2 = value
            self._t2 = t
        age = t - self._t0
        if age > window:
            # The best sample expired: promote the runners-up (at most twice,
            # since the third one is known to be inside the window).
            self._v0, self._t0 = self._v1, self._t1
            self._v1, self._t1 = self._v2, self._t2
            self._v2, self._t2 = value, t
            if t - self._t0 > window:
                self._v0, self._t0 = self._v1, self._t1
                self._v1, self._t1 = self._v2, self._t2
        elif self._t1 == self._t0 and age > window / 4:
            # A quarter of the window passed with one candidate only: take the
            # second from the second quarter.
            self._v1 = self._v2 = value
            self._t1 = self._t2 = t
        elif self._t2 == self._t1 and age > window / 2:
            # Likewise for the third candidate in the second half.
            self._v2 = value
            self._t2 = t
        return self._v0


@register_congestion_controller
class BBR(CongestionController):
    """BBR v1 (draft-cardwell-iccrg-bbr-congestion-control-00).

    BBR models the path by two numbers: the bottleneck bandwidth ``btl_bw``
    (the maximum delivery rate over the last 10 round trips) and the
    round-trip propagation time ``rtprop`` (the minimum RTT over the last 10
    seconds). It paces at ``pacing_gain * btl_bw`` and caps the flight at
    ``cwnd_gain * btl_bw * rtprop`` (the bandwidth-delay product, BDP), so it
    sends at the bottleneck rate without building a standing queue. Loss is not
    a signal of congestion: a random loss does not change either estimate.

    States:

    - ``startup``: pacing and window gain ``2/ln 2`` double the rate each
      round, until three rounds in a row fail to raise ``btl_bw`` by 25 %.
    - ``drain``: pace at ``ln 2 / 2`` until the flight is down to one BDP,
      emptying the queue Startup built.
    - ``probe_bw``: cycle through eight phases of one ``rtprop`` each with
      pacing gains 1.25 (probe for more bandwidth), 0.75 (drain what the probe
      queued) and six times 1. Window gain 2.
    - ``probe_rtt``: if ``rtprop`` was not refreshed for 10 s, hold the window
      at four datagrams for 200 ms and a round trip to let the queue empty and
      measure the propagation time again.

    Delivery-rate samples follow draft-cheng-iccrg-delivery-rate-estimation:
    every packet sent records in ``packet.cc`` how much had been delivered and
    when; its acknowledgement turns that into
    ``delivered bytes / max(send interval, ACK interval)``. Samples taken while
    the application had nothing to send are flagged and only allowed to raise
    the estimate, which is why the session must call :meth:`on_app_limited`.

    Loss recovery is the draft's: when a loss starts a recovery period the
    window drops to the flight plus one datagram and is held to "one out per
    one delivered" (packet conservation) for one round trip; later losses in
    the period take their bytes out of the window; when the period ends the
    window is restored. The pacing rate is never reduced on loss.

    Args:
        max_datagram_size: as for every controller.
        seed: chooses the ProbeBW phase BBR starts in (the draft draws it at
            random so that competing flows do not probe in lockstep; here it
            is deterministic, varied by ``seed`` and by each entry).
    """

    __slots__ = (
        "btl_bw",
        "rtprop",
        "pacing_gain",
        "cwnd_gain",
        "_state",
        "_seed",
        "_initial_cwnd",
        "_min_pipe_cwnd",
        "_bw_filter",
        "_rtprop_stamp",
        "_pacing_rate",
        "_send_quantum",
        # delivery-rate estimation (draft-cheng)
        "_delivered",
        "_delivered_time",
        "_first_sent_time",
        "_app_limited_until",
        # round counting
        "_round_count",
        "_next_round_delivered",
        # startup / full pipe
        "_filled_pipe",
        "_full_bw",
        "_full_bw_count",
        # probe_bw
        "_cycle_index",
        "_cycle_stamp",
        "_probe_bw_entries",
        # probe_rtt
        "_probe_rtt_done_stamp",
        "_probe_rtt_round_done",
        "_idle_restart",
        # loss recovery
        "_prior_cwnd",
        "_packet_conservation",
        "_conservation_start",
        "_lost_since_ack",
    )

    name = "bbr"

    def __init__(self, *, max_datagram_size: int, seed: int = 0) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an int, not {seed!r}")
        self._seed = seed
        self._initial_cwnd = self.congestion_window
        self._min_pipe_cwnd = BBR_MIN_PIPE_CWND_PACKETS * max_datagram_size
        self.btl_bw = 0.0
        self.rtprop = math.inf
        self._bw_filter = _WindowedMaxFilter(BBR_BTL_BW_FILTER_LEN)
        self._rtprop_stamp = 0.0
        self._pacing_rate = 0.0  # 0 = not initialised yet (no RTT sample)
        self._send_quantum = max_datagram_size
        self._delivered = 0
        self._delivered_time = 0.0
        self._first_sent_time = 0.0
        self._app_limited_until = 0  # 0 = not app-limited; else C.app_limited of draft-cheng
        self._round_count = 0
        self._next_round_delivered = 0
        self._filled_pipe = False
        self._full_bw = 0.0
        self._full_bw_count = 0
        self._cycle_index = 0
        self._cycle_stamp = 0.0
        self._probe_bw_entries = 0
        self._probe_rtt_done_stamp: float | None = None
        self._probe_rtt_round_done = False
        self._idle_restart = False
        self._prior_cwnd = 0
        self._packet_conservation = False
        self._conservation_start = 0.0
        self._lost_since_ack = 0
        self._enter_startup()

    # -- state machine (draft-00 BBREnter* functions) ---------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def filled_pipe(self) -> bool:
        """Whether Startup has concluded that the bottleneck is saturated."""
        return self._filled_pipe

    def _enter_startup(self) -> None:
        self._state = _STARTUP
        self.pacing_gain = BBR_HIGH_GAIN
        self.cwnd_gain = BBR_HIGH_GAIN

    def _enter_drain(self) -> None:
        self._state = _DRAIN
        self.pacing_gain = 1 / BBR_HIGH_GAIN
        self.cwnd_gain = BBR_HIGH_GAIN

    def _enter_probe_bw(self, now: float) -> None:
        self._state = _PROBE_BW
        self.pacing_gain = 1.0
        self.cwnd_gain = 2.0
        # The draft starts at a random phase other than the 0.75 one; here the
        # choice is a deterministic function of the seed and the entry count.
        offset = (self._seed + self._probe_bw_entries) % (len(BBR_GAIN_CYCLE) - 1)
        self._probe_bw_entries += 1
        self._cycle_index = len(BBR_GAIN_CYCLE) - 1 - offset
        self._advance_cycle_phase(now)

    def _enter_probe_rtt(self) -> None:
        self._state = _PROBE_RTT
        self.pacing_gain = 1.0
        self.cwnd_gain = 1.0

    def _advance_cycle_phase(self, now: float) -> None:
        self._cycle_stamp = now
        self._cycle_index = (self._cycle_index + 1) % len(BBR_GAIN_CYCLE)
        self.pacing_gain = BBR_GAIN_CYCLE[self._cycle_index]

    # -- model helpers --------------------------------------------------------

    def _inflight(self, gain: float) -> int:
        """``gain`` BDPs plus three send quanta (for delayed and aggregated
        ACKs), or the initial window before any RTT is known."""
        if self.rtprop == math.inf:
            return self._initial_cwnd
        return int(gain * self.btl_bw * self.rtprop) + 3 * self._send_quantum

    def _save_cwnd(self) -> int:
        if not self._in_recovery and self._state != _PROBE_RTT:
            return self.congestion_window
        return max(self._prior_cwnd, self.congestion_window)

    def _restore_cwnd(self) -> None:
        if self._prior_cwnd > self.congestion_window:
            self.congestion_window = self._prior_cwnd

    def _set_pacing_rate_with_gain(self, gain: float) -> None:
        rate = gain * self.btl_bw
        # Until the pipe is full, only raise the rate: early samples are low.
        if rate > 0.0 and (self._filled_pipe or rate > self._pacing_rate):
            self._pacing_rate = rate

    # -- the interface ----------------------------------------------------------

    def on_packet_sent(self, packet: SentPacket, *, bytes_in_flight: int, now: float) -> None:
        if bytes_in_flight <= packet.size:
            # Nothing else in flight: restart the send and ACK clocks so the
            # idle gap does not count as delivery time (draft-cheng OnPacketSent).
            self._first_sent_time = now
            self._delivered_time = now
            if self._app_limited_until:
                # Restarting after idle (draft-00 BBRHandleRestartFromIdle):
                # don't probe for RTT right away, nor pace above the estimate.
                self._idle_restart = True
                if self._state == _PROBE_BW:
                    self._set_pacing_rate_with_gain(1.0)
        packet.cc = (
            self._delivered,
            self._delivered_time,
            self._first_sent_time,
            self._app_limited_until != 0,
        )

    def on_app_limited(self, *, bytes_in_flight: int, now: float) -> None:
        # draft-cheng: samples are app-limited until everything sent up to
        # now has been delivered ("or 1" keeps the mark non-zero).
        self._app_limited_until = (self._delivered + bytes_in_flight) or 1

    def on_packets_lost(
        self, packets: Sequence[SentPacket], *, bytes_in_flight: int, now: float
    ) -> None:
        lost = 0
        for packet in packets:
            lost += packet.size
            packet.cc = None
        self._lost_since_ack += lost
        mds = self.max_datagram_size
        was_in_recovery = self._in_recovery
        saved = self._save_cwnd()  # before the recovery flag changes
        if self._start_congestion_event(packets, now) and not was_in_recovery:
            # draft-00 BBROnEnterFastRecovery: remember the window and fall
            # back to packet conservation (what is in flight plus one) for the
            # first round trip of the recovery period. A new congestion event
            # during the period extends it but does not restart conservation,
            # or steady random loss would pin the window to the flight.
            self._prior_cwnd = saved
            self.congestion_window = bytes_in_flight + mds
            self._packet_conservation = True
            self._conservation_start = now
        else:
            # Further losses shrink the window by what they took out
            # (draft-00 BBRModulateCwndForRecovery).
            cwnd = self.congestion_window - lost
            self.congestion_window = cwnd if cwnd > mds else mds

    def on_persistent_congestion(self, *, now: float) -> None:
        # The QUIC counterpart of a TCP retransmission timeout, which draft-00
        # handles by saving the window, dropping to the minimum until the
        # recovery period ends, then restoring it.
        self._persistent_congestion_events += 1
        self._prior_cwnd = self._save_cwnd()
        self.congestion_window = K_MINIMUM_WINDOW_PACKETS * self.max_datagram_size
        self._recovery_start_time = now
        self._in_recovery = True

    def on_packets_acked(
        self,
        packets: Sequence[SentPacket],
        *,
        bytes_in_flight: int,
        rtt: RttEstimator,
        now: float,
    ) -> None:
        # -- delivery-rate sample (draft-cheng UpdateRateSample, GenerateRateSample) --
        acked = 0
        newest: SentPacket | None = None
        newest_delivered = -1
        for packet in packets:
            snapshot = packet.cc
            if snapshot is None:
                continue  # sent before this controller took over
            acked += packet.size
            # The sample is taken from the most recently sent packet, i.e.
            # the one with the largest delivered count at send time.
            if snapshot[0] >= newest_delivered:
                newest_delivered = snapshot[0]
                newest = packet
        if newest is None:
            return
        p_delivered, p_delivered_time, p_first_sent_time, p_app_limited = newest.cc
        self._delivered += acked
        self._delivered_time = now
        self._first_sent_time = newest.time_sent
        if self._app_limited_until and self._delivered > self._app_limited_until:
            self._app_limited_until = 0  # the app-limited bubble has been delivered
        send_elapsed = newest.time_sent - p_first_sent_time
        ack_elapsed = now - p_delivered_time
        interval = send_elapsed if send_elapsed > ack_elapsed else ack_elapsed
        min_rtt = rtt.min_rtt if rtt.has_sample else 0.0
        # An interval shorter than min_rtt cannot be trusted: it would
        # overestimate the rate (ACK compression).
        rate = -1.0
        if interval > 0.0 and interval >= min_rtt:
            rate = (self._delivered - p_delivered) / interval

        # -- round counting (draft-00 BBRUpdateRound) --
        round_start = False
        if p_delivered >= self._next_round_delivered:
            self._next_round_delivered = self._delivered
            self._round_count += 1
            round_start = True

        # -- bottleneck bandwidth (BBRUpdateBtlBw): app-limited samples only
        # count if they raise the estimate --
        if rate >= 0.0 and (rate >= self.btl_bw or not p_app_limited):
            self.btl_bw = self._bw_filter.update(rate, self._round_count)

        lost = self._lost_since_ack
        self._lost_since_ack = 0
        prior_inflight = bytes_in_flight + acked + lost

        if self._state == _PROBE_BW and self._is_next_cycle_phase(now, lost, prior_inflight):
            self._advance_cycle_phase(now)
        # A round without a usable sample (an interval of 0, as on a zero-delay
        # path or with a coarse clock) says nothing about whether the
        # bandwidth stopped growing: counting it would end Startup at the first,
        # tiny estimate, and pacing would then hold the rate there.
        self._check_full_pipe(round_start, p_app_limited or rate < 0.0)
        self._check_drain(bytes_in_flight, now)

        # -- RTprop (BBRUpdateRTprop). A sample merely equal to the estimate
        # does not refresh its timestamp (as in Linux; the draft uses <=), so
        # a flow whose RTT never drops still re-probes every 10 s.
        rtt_sample = now - newest.time_sent
        rtprop_expired = (
            self.rtprop != math.inf and now > self._rtprop_stamp + BBR_RTPROP_FILTER_LEN
        )
        if rtt_sample < self.rtprop or rtprop_expired:
            self.rtprop = rtt_sample
            self._rtprop_stamp = now

        self._check_probe_rtt(now, bytes_in_flight, round_start, rtprop_expired)

        # -- control parameters (BBRUpdateControlParameters) --
        if not self._pacing_rate and rtt.has_sample:
            self._pacing_rate = self._initial_pacing_rate(rtt)
        if self._pacing_rate:
            # Not before the initial rate: an ACK without an RTT sample would
            # otherwise set the rate from a first estimate alone, and Startup
            # (which only raises it) would begin from there, not from the
            # initial window per RTT.
            self._set_pacing_rate_with_gain(self.pacing_gain)
        self._set_send_quantum()

        if self._packet_conservation and newest.time_sent > self._conservation_start:
            self._packet_conservation = False  # one round trip has passed
        if self._in_recovery and newest.time_sent > self._recovery_start_time:
            # A packet sent after recovery began arrived: the period is over.
            self._in_recovery = False
            self._packet_conservation = False
            self._restore_cwnd()
        self._set_cwnd(acked, bytes_in_flight)

    def _is_next_cycle_phase(self, now: float, lost: int, prior_inflight: int) -> bool:
        """draft-00 BBRIsNextCyclePhase: each phase lasts one rtprop; probing continues
        until it has put gain x BDP in flight or caused a loss, and draining
        ends early once the flight is back to one BDP."""
        is_full_length = now - self._cycle_stamp > self.rtprop
        gain = self.pacing_gain
        if gain == 1.0:
            return is_full_length
        if gain > 1.0:
            return is_full_length and (lost > 0 or prior_inflight >= self._inflight(gain))
        return is_full_length or prior_inflight <= self._inflight(1.0)

    def _check_full_pipe(self, round_start: bool, app_limited: bool) -> None:
        """draft-00 BBRCheckFullPipe: the pipe is full once three rounds in a row fail to
        raise btl_bw by 25 %; checked once per round, on non-app-limited samples."""
        if self._filled_pipe or not round_start or app_limited:
            return
        if self.btl_bw >= self._full_bw * BBR_FULL_BW_THRESHOLD:
            self._full_bw = self.btl_bw
            self._full_bw_count = 0
            return
        self._full_bw_count += 1
        if self._full_bw_count >= BBR_FULL_BW_COUNT:
            self._filled_pipe = True

    def _check_drain(self, bytes_in_flight: int, now: float) -> None:
        """draft-00 BBRCheckDrain: Startup -> Drain once the pipe is full; Drain ->
        ProbeBW once the queue Startup built has drained (flight <= one BDP)."""
        if self._state == _STARTUP and self._filled_pipe:
            self._enter_drain()
        if self._state == _DRAIN and bytes_in_flight <= self._inflight(1.0):
            self._enter_probe_bw(now)

    def _check_probe_rtt(
        self, now: float, bytes_in_flight: int, round_start: bool, rtprop_expired: bool
    ) -> None:
        """draft-00 BBRCheckProbeRTT: enter ProbeRTT when rtprop expired; leave it after
        200 ms and at least one round at the minimum flight."""
        if self._state != _PROBE_RTT and rtprop_expired and not self._idle_restart:
            self._prior_cwnd = self._save_cwnd()
            self._enter_probe_rtt()
            self._probe_rtt_done_stamp = None
        if self._state == _PROBE_RTT:
            # Samples taken at the reduced flight say nothing about bandwidth.
            self._app_limited_until = (self._delivered + bytes_in_flight) or 1
            if self._probe_rtt_done_stamp is None:
                if bytes_in_flight <= self._min_pipe_cwnd:
                    self._probe_rtt_done_stamp = now + BBR_PROBE_RTT_DURATION
                    self._probe_rtt_round_done = False
                    self._next_round_delivered = self._delivered
            else:
                if round_start:
                    self._probe_rtt_round_done = True
                if self._probe_rtt_round_done and now > self._probe_rtt_done_stamp:
                    self._rtprop_stamp = now
                    self._restore_cwnd()
                    if self._filled_pipe:
                        self._enter_probe_bw(now)
                    else:
                        self._enter_startup()
        self._idle_restart = False

    def _set_send_quantum(self) -> None:
        """draft-00 BBRSetSendQuantum: one datagram below 1.2 Mbit/s, two below 24 Mbit/s,
        else 1 ms of data up to 64 KB."""
        rate = self._pacing_rate
        mds = self.max_datagram_size
        if rate < 150_000.0:
            self._send_quantum = mds
        elif rate < 3_000_000.0:
            self._send_quantum = 2 * mds
        else:
            self._send_quantum = max(min(int(rate * 0.001), 65536), 2 * mds)

    def _set_cwnd(self, acked: int, bytes_in_flight: int) -> None:
        """draft-00 BBRSetCwnd: grow towards cwnd_gain x BDP, by no more than what
        was delivered; hold conservation in recovery; clamp in ProbeRTT."""
        target = self._inflight(self.cwnd_gain)
        cwnd = self.congestion_window
        if self._packet_conservation:
            if cwnd < bytes_in_flight + acked:
                cwnd = bytes_in_flight + acked
        else:
            if self._filled_pipe:
                cwnd += acked
                if cwnd > target:
                    cwnd = target
            elif cwnd < target or self._delivered < self._initial_cwnd:
                cwnd += acked
            if cwnd < self._min_pipe_cwnd:
                cwnd = self._min_pipe_cwnd
        if self._state == _PROBE_RTT and cwnd > self._min_pipe_cwnd:
            cwnd = self._min_pipe_cwnd
        self.congestion_window = cwnd

    def pacing_rate(self, rtt: RttEstimator) -> float | None:
        """``pacing_gain * btl_bw``; before the first ACK, the initial window
        per smoothed RTT times the Startup gain; ``None`` before any RTT sample."""
        if self._pacing_rate:
            return self._pacing_rate
        if rtt.has_sample:
            return self._initial_pacing_rate(rtt)
        return None

    def _initial_pacing_rate(self, rtt: RttEstimator) -> float:
        # draft-00 BBRInitPacingRate: the initial window per smoothed RTT (1 ms if the RTT
        # measured 0), times the Startup gain.
        srtt = rtt.smoothed_rtt
        return BBR_HIGH_GAIN * self._initial_cwnd / (srtt if srtt > 0.0 else 0.001)

    def statistics(self) -> dict[str, float | int | str]:
        stats = super().statistics()
        stats["btl_bw"] = self.btl_bw
        stats["min_rtt"] = self.rtprop
        stats["pacing_gain"] = self.pacing_gain
        stats["cwnd_gain"] = self.cwnd_gain
        stats["pacing_rate"] = self._pacing_rate
        stats["round_count"] = self._round_count
        stats["delivered"] = self._delivered
        stats["filled_pipe"] = int(self._filled_pipe)
        stats["app_limited"] = int(self._app_limited_until != 0)
        return stats


# -- Pacer ---------------------------------------------------------------------------


class Pacer:
    """Token-bucket pacer, in bytes.

    Tokens accrue at :attr:`rate` bytes per second up to ``burst_packets``
    full datagrams; a packet may leave when a full datagram's worth is
    available, and sending spends its size. A new pacer, and one that has been
    idle long enough, starts with a full bucket, so the first
    ``burst_packets`` datagrams go out at once. With no rate (``None``) the
    pacer never delays anything.

    Usage by the session::

        pacer.set_rate(cc.pacing_rate(rtt), now)      # after each ACK
        if pacer.next_send_time(now) <= now: send(); pacer.on_packet_sent(size, now)
        else: arm a timer for pacer.next_send_time(now)

    Args:
        max_datagram_size: size of a full packet, in bytes.
        burst_packets: bucket depth in full packets (>= 1).
    """

    __slots__ = ("max_datagram_size", "capacity", "rate", "_tokens", "_last")

    #: Shortfall, in bytes, below which a packet may leave: absorbs rounding so
    #: that next_send_time(t) <= t when t was itself the answer.
    _EPSILON_BYTES = 1e-6

    def __init__(self, *, max_datagram_size: int, burst_packets: int = 10) -> None:
        if not isinstance(max_datagram_size, int) or max_datagram_size <= 0:
            raise ValueError(f"max_datagram_size must be a positive int, not {max_datagram_size!r}")
        if not isinstance(burst_packets, int) or burst_packets < 1:
            raise ValueError(f"burst_packets must be an int >= 1, not {burst_packets!r}")
        self.max_datagram_size = max_datagram_size
        #: Bucket depth in bytes.
        self.capacity = burst_packets * max_datagram_size
        #: Current rate in bytes per second, or ``None`` when unpaced.
        self.rate: float | None = None
        self._tokens = float(self.capacity)
        self._last = 0.0

    def _tokens_at(self, now: float) -> float:
        elapsed = now - self._last
        tokens = self._tokens
        if elapsed > 0.0:
            tokens += elapsed * self.rate  # type: ignore[operator]
            if tokens > self.capacity:
                tokens = float(self.capacity)
        return tokens

    def set_rate(self, rate: float | None, now: float) -> None:
        """Change the rate; tokens earned so far at the old rate are kept.

        Args:
            rate: bytes per second; ``None`` (or infinity) disables pacing.

        Raises:
            ValueError: ``rate`` is zero, negative or NaN.
        """
        if rate is None or rate == math.inf:
            self.rate = None
            self._tokens = float(self.capacity)
            return
        if not rate > 0.0:
            raise ValueError(f"pacing rate must be > 0 bytes/s or None, not {rate!r}")
        if self.rate is not None:
            self._tokens = self._tokens_at(now)
        self._last = now
        self.rate = rate

    def next_send_time(self, now: float) -> float:
        """Earliest time a full-size packet may leave; ``now`` (or earlier) means now."""
        rate = self.rate
        if rate is None:
            return now
        deficit = self.max_datagram_size - self._tokens_at(now)
        if deficit <= self._EPSILON_BYTES:
            return now
        return now + deficit / rate

    def on_packet_sent(self, size: int, now: float) -> None:
        """Spend ``size`` bytes of tokens (for every packet sent, paced or not).

        The balance may go negative (a packet larger than the tokens, or one
        sent without asking), but no lower than one bucket, so a misbehaving
        caller delays later packets by at most one burst's worth of time.
        """
        if self.rate is None:
            return
        tokens = self._tokens_at(now) - size
        if tokens < -self.capacity:
            tokens = -float(self.capacity)
        self._tokens = tokens
        if now > self._last:
            self._last = now

    def __repr__(self) -> str:
        return f"<Pacer rate={self.rate!r} capacity={self.capacity}>"
