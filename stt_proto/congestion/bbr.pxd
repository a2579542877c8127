# C types for the compiled build of stt_proto/congestion/bbr.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# The interface methods stay def (keyword-only, as for every controller) and
# forward to the typed _on_sent and _on_acked; times and rates are doubles,
# byte counts Py_ssize_t.

cimport cython

from stt_proto.congestion.base cimport CongestionController
from stt_proto.recovery cimport RttEstimator, SentPacket


@cython.final
cdef class _WindowedMaxFilter:
    cdef public double window
    cdef public double _v0, _t0, _v1, _t1, _v2, _t2

    cpdef reset(self, double value, double t)
    @cython.locals(window=double, age=double)
    cpdef double update(self, double value, double t)


cdef class BBR(CongestionController):
    cdef public double btl_bw, rtprop, pacing_gain, cwnd_gain
    cdef public str _state
    cdef public object _seed
    cdef public Py_ssize_t _initial_cwnd, _min_pipe_cwnd
    cdef public _WindowedMaxFilter _bw_filter
    cdef public double _rtprop_stamp, _pacing_rate
    cdef public Py_ssize_t _send_quantum
    cdef public Py_ssize_t _delivered
    cdef public double _delivered_time, _first_sent_time
    cdef public Py_ssize_t _app_limited_until
    cdef public Py_ssize_t _round_count, _next_round_delivered
    cdef public bint _filled_pipe
    cdef public double _full_bw
    cdef public Py_ssize_t _full_bw_count
    cdef public Py_ssize_t _cycle_index
    cdef public double _cycle_stamp
    cdef public Py_ssize_t _probe_bw_entries
    cdef public object _probe_rtt_done_stamp
    cdef public bint _probe_rtt_round_done, _idle_restart
    cdef public Py_ssize_t _prior_cwnd
    cdef public bint _packet_conservation
    cdef public double _conservation_start
    cdef public Py_ssize_t _lost_since_ack

    cpdef _enter_startup(self)
    cpdef _enter_drain(self)
    cpdef _enter_probe_bw(self, double now)
    cpdef _enter_probe_rtt(self)
    cpdef _advance_cycle_phase(self, double now)
    cpdef Py_ssize_t _inflight(self, double gain)
    cpdef Py_ssize_t _save_cwnd(self)
    cpdef _restore_cwnd(self)
    @cython.locals(rate=double)
    cpdef _set_pacing_rate_with_gain(self, double gain)
    cpdef _on_sent(self, SentPacket packet, Py_ssize_t bytes_in_flight, double now)
    @cython.locals(acked=Py_ssize_t, newest=SentPacket, newest_delivered=Py_ssize_t,
                   packet=SentPacket, snapshot=tuple, p_delivered=Py_ssize_t,
                   p_delivered_time=double, p_first_sent_time=double, p_app_limited=bint,
                   send_elapsed=double, ack_elapsed=double, interval=double, min_rtt=double,
                   rate=double, round_start=bint, lost=Py_ssize_t, prior_inflight=Py_ssize_t,
                   rtt_sample=double, rtprop_expired=bint)
    cpdef _on_acked(self, object packets, Py_ssize_t bytes_in_flight, RttEstimator rtt,
                    double now)
    @cython.locals(is_full_length=bint, gain=double)
    cpdef bint _is_next_cycle_phase(self, double now, Py_ssize_t lost,
                                    Py_ssize_t prior_inflight)
    cpdef _check_full_pipe(self, bint round_start, bint app_limited)
    cpdef _check_drain(self, Py_ssize_t bytes_in_flight, double now)
    cpdef _check_probe_rtt(self, double now, Py_ssize_t bytes_in_flight, bint round_start,
                           bint rtprop_expired)
    @cython.locals(rate=double, mds=Py_ssize_t)
    cpdef _set_send_quantum(self)
    @cython.locals(target=Py_ssize_t, cwnd=Py_ssize_t)
    cpdef _set_cwnd(self, Py_ssize_t acked, Py_ssize_t bytes_in_flight)
    @cython.locals(srtt=double)
    cpdef double _initial_pacing_rate(self, RttEstimator rtt)
