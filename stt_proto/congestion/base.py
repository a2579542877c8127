"""The congestion controller interface, its name registry, and the loss-based base.

:class:`CongestionController` is the ABC every controller implements (the
package docstring says who calls what and when). It also owns the *recovery
period* of RFC 9002 section 7.3.2: it starts at the time a loss is detected,
and a loss or acknowledgement of a packet sent before that time belongs to the
same congestion event; the period ends when a packet sent after it started is
acknowledged.

:func:`register_congestion_controller` and :func:`create_congestion_controller`
map names (the ``congestion_control`` configuration value) to classes.

:class:`LossBasedController` is what :class:`~stt_proto.congestion.NewReno` and
:class:`~stt_proto.congestion.Cubic` share: slow start, recovery periods,
application-limited handling and pacing at a multiple of the window per RTT.
"""

from __future__ import annotations

import abc
import math
import types
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from ..recovery import RttEstimator, SentPacket

__all__ = [
    "K_MINIMUM_WINDOW_PACKETS",
    "PACING_GAIN",
    "initial_window",
    "CongestionController",
    "LossBasedController",
    "CONGESTION_CONTROLLERS",
    "register_congestion_controller",
    "create_congestion_controller",
]

# -- RFC 9002 constants (appendix B.2) --------------------------------------------

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


# -- Congestion controller interface and registry -----------------------------------


class CongestionController:
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

    The interface methods are abstract: a class that does not define them all
    (or leaves an ``abc.abstractmethod`` of its own undefined) cannot be
    instantiated or registered (``TypeError``), as with :mod:`abc`. The check is
    done by hand rather than by ``abc.ABC`` because in the compiled build this
    base is an extension type (``base.pxd``), whose metaclass cannot be
    ``ABCMeta``: that is what lets BBR be a typed extension type too.
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
        missing = _abstract_methods(type(self))
        if missing:
            raise TypeError(f"Can't instantiate abstract class {type(self).__name__} with "
                            f"abstract methods {', '.join(missing)}")
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

    # -- the interface (abstract: see _abstract_methods) ---------------------

    def on_packet_sent(self, packet: SentPacket, *, bytes_in_flight: int, now: float) -> None:
        """An in-flight packet was sent; ``bytes_in_flight`` includes it.

        Not called for packets that do not count towards bytes in flight
        (pure ACKs).
        """
        raise NotImplementedError

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
        raise NotImplementedError

    def on_packets_lost(
        self, packets: Sequence[SentPacket], *, bytes_in_flight: int, now: float
    ) -> None:
        """In-flight packets were newly declared lost (ascending packet numbers);
        ``bytes_in_flight`` no longer counts them. Called before
        :meth:`on_packets_acked` when one ACK does both."""
        raise NotImplementedError

    def on_persistent_congestion(self, *, now: float) -> None:
        """The losses just reported span persistent congestion (RFC 9002 section
        7.6). Called right after the :meth:`on_packets_lost` that reported them."""
        raise NotImplementedError

    def on_app_limited(self, *, bytes_in_flight: int, now: float) -> None:
        """The sender ran out of data while the window (and pacer) allowed more.

        Call it each time the send loop stops for lack of data rather than for
        lack of window; it is cheap and idempotent.
        """
        raise NotImplementedError

    def pacing_rate(self, rtt: RttEstimator) -> float | None:
        """The rate to pace at, in bytes per second, or ``None`` for no pacing.

        Feed it to :meth:`Pacer.set_rate` after each ACK.
        """
        raise NotImplementedError

    @property
    def state(self) -> str:
        """Short name of the controller's current state, for statistics and logs."""
        raise NotImplementedError

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

    def restarted(self) -> CongestionController:
        """A controller of the same kind and options in its initial state, for
        a path whose capacity is unknown (RFC 9000 section 9.4). The loss and
        congestion-event counters carry over: they describe the session."""
        fresh = type(self)(max_datagram_size=self.max_datagram_size, **self._options())
        fresh._congestion_events = self._congestion_events
        fresh._persistent_congestion_events = self._persistent_congestion_events
        fresh._lost_packets = self._lost_packets
        fresh._lost_bytes = self._lost_bytes
        return fresh

    def _options(self) -> dict[str, Any]:
        """The constructor's keyword arguments beyond ``max_datagram_size``."""
        return {}

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


#: The methods and properties every controller defines (the interface).
_INTERFACE = ("on_packet_sent", "on_packets_acked", "on_packets_lost",
              "on_persistent_congestion", "on_app_limited", "pacing_rate", "state")
#: class -> the names it leaves abstract (classes are few; computed once each).
_ABSTRACT: dict[type, tuple[str, ...]] = {}


def _abstract_methods(cls: type) -> tuple[str, ...]:
    """What ``cls`` leaves abstract: interface methods only
    :class:`CongestionController` defines, and its own ``abc.abstractmethod``
    hooks (such as :class:`LossBasedController`'s) that nothing overrides."""
    names = _ABSTRACT.get(cls)
    if names is None:
        missing = {name for name in _INTERFACE
                   if next(k for k in cls.__mro__ if name in vars(k)) is CongestionController}
        missing.update(name for name in dir(cls)
                       if getattr(getattr(cls, name, None), "__isabstractmethod__", False))
        names = _ABSTRACT[cls] = tuple(sorted(missing))
    return names


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
    if _abstract_methods(cls):
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
