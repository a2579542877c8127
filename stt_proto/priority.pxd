# C types for the compiled build of stt_proto/priority.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# Streams are whatever the session queues (duck-typed: tests use stand-ins), and
# the charges stay Python ints: they only grow.

cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class _Level:
    cdef public dict bulk
    cdef public dict lane
    cdef public bint lane_went
    cdef public object charge


@cython.final
cdef class StreamScheduler:
    cdef public dict _members
    cdef public list _levels
    cdef public int _active
    cdef public object _vtime
    cdef public object _turn
    cdef public int64_t _interactive_bytes

    @cython.locals(urgency=int, level=_Level, bit=int)
    cpdef push(self, object stream)
    @cython.locals(urgency=int, level=_Level)
    cpdef object pop(self, object stream_id, object default=*)
    @cython.locals(interactive=bint)
    cpdef wrote(self, object stream)
    @cython.locals(active=int, level=_Level, candidate=_Level, urgency=int, bits=int,
                   low=int, lane=bint, levels=list, table=dict)
    cpdef object head(self)
    @cython.locals(level=_Level, lane=bint, urgency=int, table=dict)
    cpdef served(self, object stream, int64_t nbytes, bint more)
