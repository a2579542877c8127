"""CUBIC congestion control (RFC 9438).

It shares NewReno's slow start, recovery and application-limited logic through
:class:`~stt_proto.congestion.base.LossBasedController` and only replaces the
window reduction and the congestion-avoidance growth.
"""

from __future__ import annotations

from ..recovery import RttEstimator
from .base import LossBasedController, register_congestion_controller

__all__ = ["CUBIC_BETA", "CUBIC_C", "CUBIC_ALPHA", "Cubic"]

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
