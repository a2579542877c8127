"""Pacing: a token bucket that spreads a congestion window over the round trip.

Sending a whole window in one burst overflows router queues (RFC 9002 section
7.7); :class:`Pacer` releases packets at the rate the congestion controller
asks for, while still allowing a short burst after idle.
"""

from __future__ import annotations

import math

__all__ = ["Pacer"]


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
