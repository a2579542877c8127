# C types for the compiled build of stt_proto/congestion/pacer.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).

cimport cython


@cython.final
cdef class Pacer:
    cdef public Py_ssize_t max_datagram_size
    cdef public Py_ssize_t capacity
    cdef public object rate           # bytes per second, or None: unpaced
    cdef public double _tokens
    cdef public double _last

    @cython.locals(elapsed=double, tokens=double)
    cpdef double _tokens_at(self, double now)
    cpdef set_rate(self, object rate, double now)
    @cython.locals(deficit=double)
    cpdef double next_send_time(self, double now)
    @cython.locals(tokens=double)
    cpdef on_packet_sent(self, Py_ssize_t size, double now)
