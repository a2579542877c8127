"""Congestion control (NewReno, CUBIC, BBR) and pacing.

Theory of operation
-------------------
This package holds the *policies* of loss recovery; the *mechanism* lives in
the session. The session numbers packets, keeps the table of packets in flight
(:class:`~stt_proto.recovery.SentPacket`), decodes ACK frames, runs loss
detection (RFC 9002 section 6: the packet and time thresholds and the probe
timeout) and keeps ``bytes_in_flight``. It calls in here at four moments,
always passing its own ``now`` (seconds, opaque, non-decreasing; nothing here
reads a clock, draws randomness or does I/O):

1. **A packet leaves.** The session builds a :class:`~stt_proto.recovery.SentPacket`,
   and if the packet counts towards bytes in flight it adds its size to
   ``bytes_in_flight`` and then calls :meth:`CongestionController.on_packet_sent`
   (so the value passed *includes* this packet) and :meth:`Pacer.on_packet_sent`.
   Before sending it checks ``bytes_in_flight + size <= congestion_window`` and
   ``Pacer.next_send_time(now) <= now``; packets that only carry ACKs are not
   in flight and are neither window- nor pace-limited.
2. **An ACK arrives.** The session works out which packets are newly
   acknowledged. If the largest of them is newly acknowledged and
   ack-eliciting it first feeds :meth:`~stt_proto.recovery.RttEstimator.update`
   (RFC 9002 section 5.1). It removes the acknowledged packets from its table
   and from ``bytes_in_flight``, runs loss detection, removes the lost ones too,
   and then calls, in this order (the order of RFC 9002 appendix A.7):

   - :meth:`CongestionController.on_packets_lost` with the newly lost in-flight
     packets, if any;
   - :meth:`CongestionController.on_persistent_congestion` if those losses
     prove persistent congestion (RFC 9002 section 7.6; the session decides,
     :meth:`~stt_proto.recovery.RttEstimator.persistent_congestion_duration`
     gives the duration);
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
   peer's flow control, it calls :meth:`CongestionController.on_app_limited`.
   This matters: NewReno and CUBIC must not grow a window they are not using
   (RFC 9002 section 7.8), and BBR must not let the low delivery rates of an
   idle application pull its bandwidth estimate down. A session that never
   calls it is treated as always having data.

**Congestion controllers** share the :class:`CongestionController` base and a
name registry (:func:`register_congestion_controller`,
:func:`create_congestion_controller`), both in :mod:`.base`. The base class
also owns the *recovery period* of RFC 9002 section 7.3.2.

- :class:`NewReno` (``"newreno"``, :mod:`.newreno`) is RFC 9002 section 7 and
  appendix B, with the congestion-avoidance increase counted in bytes (one
  datagram per window acknowledged).
- :class:`Cubic` (``"cubic"``, :mod:`.cubic`) is RFC 9438. It shares NewReno's
  slow start, recovery and application-limited logic through
  :class:`LossBasedController` and only replaces the window reduction and the
  congestion-avoidance growth.
- :class:`BBR` (``"bbr"``, :mod:`.bbr`) is BBR v1 as in
  draft-cardwell-iccrg-bbr-congestion-control-00, with per-packet
  delivery-rate samples as in draft-cheng-iccrg-delivery-rate-estimation. It
  models the path (bottleneck bandwidth, round-trip propagation time) instead
  of reacting to loss, so random loss does not cut its sending rate.

Importing this package registers all three.

**Pacing.** :class:`Pacer` (:mod:`.pacer`) is a token bucket in bytes refilled
at the rate the controller asks for. It spreads a window over the round trip
instead of sending it in one burst that overflows router queues (RFC 9002
section 7.7), while still allowing a short burst after idle.

**Cost.** These methods run once per packet or ACK, so the hot ones allocate
nothing beyond BBR's one small tuple per packet sent, and every class has
``__slots__``.
"""

from __future__ import annotations

from .base import (
    CONGESTION_CONTROLLERS,
    K_MINIMUM_WINDOW_PACKETS,
    PACING_GAIN,
    CongestionController,
    LossBasedController,
    create_congestion_controller,
    initial_window,
    register_congestion_controller,
)
from .bbr import BBR
from .cubic import Cubic
from .newreno import K_LOSS_REDUCTION_FACTOR, NewReno
from .pacer import Pacer

__all__ = [
    "K_LOSS_REDUCTION_FACTOR",
    "K_MINIMUM_WINDOW_PACKETS",
    "PACING_GAIN",
    "initial_window",
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
