# C types for the compiled build of stt_proto/acks.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).

cimport cython

from stt_proto._rangeset_c cimport RangeSet as _RangeSet


@cython.final
cdef class AckTracker:
    cdef public _RangeSet received
    cdef public Py_ssize_t max_ranges
    cdef public double max_ack_delay
    cdef public object deadline          # float or None
    cdef public bint _now
    cdef public object _largest          # a packet number (Python int)
    cdef public double _largest_at
    cdef public Py_ssize_t _unacked_eliciting

    @cython.locals(received=_RangeSet, forgotten=Py_ssize_t, every=Py_ssize_t)
    cpdef Py_ssize_t on_packet(self, object pn, double now, bint eliciting,
                               Py_ssize_t packets_received) except -1
    cpdef on_timer(self, double now)
    cpdef bint owed(self, double now)
    @cython.locals(delay=Py_ssize_t)
    cpdef bint write(self, object w, double now, bint owed)
    cpdef on_sent(self)
