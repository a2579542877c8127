"""NewReno congestion control, as specified for QUIC (RFC 9002 section 7, appendix B)."""

from __future__ import annotations

from ..recovery import RttEstimator
from .base import LossBasedController, register_congestion_controller

__all__ = ["K_LOSS_REDUCTION_FACTOR", "NewReno"]

#: NewReno multiplies its window by this on a congestion event.
K_LOSS_REDUCTION_FACTOR = 0.5


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
