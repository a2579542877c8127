# C types for the compiled build of stt_proto/recovery.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# Packet numbers stay Python ints (up to 2**62); times are doubles.

cimport cython

from stt_proto.congestion.pacer cimport Pacer as _Pacer


@cython.final
cdef class SentPacket:
    cdef public object pn
    cdef public double time_sent
    cdef public Py_ssize_t size
    cdef public bint ack_eliciting
    cdef public bint in_flight
    cdef public object frames
    cdef public object cc


@cython.final
cdef class RttEstimator:
    cdef public double initial_rtt
    cdef public double latest_rtt
    cdef public double smoothed_rtt
    cdef public double rttvar
    cdef public double min_rtt
    cdef public bint has_sample
    cdef public object first_sample_time

    @cython.locals(rtt=double, delay=double)
    cpdef double loss_delay(self)
    cpdef double pto_interval(self, double max_ack_delay)


@cython.final
cdef class PacketRecovery:
    cdef public RttEstimator rtt
    cdef public object cc
    cdef public _Pacer pacer
    cdef public double max_ack_delay
    cdef public Py_ssize_t bytes_in_flight
    cdef public object largest_sent
    cdef public int probes
    cdef public dict stats
    cdef public dict _sent
    cdef public object _lost
    cdef public object _largest_acked
    cdef public double _last_eliciting_at
    cdef public object _loss_time
    cdef public int _pto_count
    cdef public double _latest_acked_sent_at

    @cython.locals(packet=SentPacket)
    cpdef on_packet_sent(self, object pn, double now, Py_ssize_t size, object frames,
                         bint ack_eliciting)
    @cython.locals(sent=dict, acked=list, settled=list, newest=SentPacket, packet=SentPacket,
                   in_flight=Py_ssize_t)
    cpdef tuple on_ack(self, tuple ranges, double ack_delay, double now)
    @cython.locals(largest=object, delay=double, lost=list, packet=SentPacket, sent=dict)
    cpdef list _detect_lost(self, double now)
    @cython.locals(packet=SentPacket, in_flight=Py_ssize_t, requeue=list, rtt=RttEstimator)
    cpdef list _on_lost(self, list lost, double now)
