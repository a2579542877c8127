# C types for the compiled build of stt_proto/congestion/base.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# The base is an extension type so that BBR can be one; controllers written in
# Python subclass it as they would any class (the interface methods stay def,
# with their keyword-only arguments). Windows and byte counts fit Py_ssize_t.

cimport cython


cdef class CongestionController:
    cdef public Py_ssize_t max_datagram_size
    cdef public Py_ssize_t congestion_window
    cdef public double _recovery_start_time
    cdef public bint _in_recovery
    cdef public Py_ssize_t _congestion_events
    cdef public Py_ssize_t _persistent_congestion_events
    cdef public Py_ssize_t _lost_packets
    cdef public Py_ssize_t _lost_bytes

    @cython.locals(lost=Py_ssize_t)
    cpdef bint _start_congestion_event(self, object packets, double now)
