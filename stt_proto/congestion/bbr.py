"""BBR v1 congestion control (draft-cardwell-iccrg-bbr-congestion-control-00).

Per-packet delivery-rate samples follow draft-cheng-iccrg-delivery-rate-
estimation. BBR models the path (bottleneck bandwidth, round-trip propagation
time) instead of reacting to loss, so random loss does not cut its sending
rate; the class docstring describes its states.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from ..recovery import RttEstimator, SentPacket
from .base import (
    K_MINIMUM_WINDOW_PACKETS,
    CongestionController,
    register_congestion_controller,
)

__all__ = [
    "BBR_HIGH_GAIN",
    "BBR_GAIN_CYCLE",
    "BBR_BTL_BW_FILTER_LEN",
    "BBR_RTPROP_FILTER_LEN",
    "BBR_PROBE_RTT_DURATION",
    "BBR_MIN_PIPE_CWND_PACKETS",
    "BBR_FULL_BW_THRESHOLD",
    "BBR_FULL_BW_COUNT",
    "BBR",
]

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
        self._probe_rtt_done_stamp = None  # float once ProbeRTT has reached its flight
        self._probe_rtt_round_done = False
        self._idle_restart = False
        self._prior_cwnd = 0
        self._packet_conservation = False
        self._conservation_start = 0.0
        self._lost_since_ack = 0
        self._enter_startup()

    def _options(self) -> dict[str, Any]:
        return {"seed": self._seed}

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
        self._on_sent(packet, bytes_in_flight, now)

    def _on_sent(self, packet: SentPacket, bytes_in_flight: int, now: float) -> None:
        # The interface's keyword-only method forwards here: in the compiled
        # build this one has C-typed arguments and locals (bbr.pxd).
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
        self._on_acked(packets, bytes_in_flight, rtt, now)

    def _on_acked(self, packets: Sequence[SentPacket], bytes_in_flight: int, rtt: RttEstimator,
                  now: float) -> None:
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


# A call, not a class decorator: in the compiled build BBR is an extension type
# (bbr.pxd), which a decorator could not return.
register_congestion_controller(BBR)
