# Cython declarations that turn stt_proto/_rangeset_py.py into the compiled module
# stt_proto._rangeset_c. The logic lives in the .py file only; this file adds C types.
# Keep every signature here in step with the .py (the differential test in
# tests/wire/test_rangeset.py catches any behavioural drift between the builds).
#
# Bounds are at most VARINT_MAX + 1 = 2**62, so sums and differences of two bounds
# fit a signed 64-bit ``int64_t``; _as_bound checks the range on the Python
# object before converting, so an oversized int is a ValueError in both builds.
# (int64_t rather than ``long long``: Cython 3.3 emits an invalid ``-1LLLL`` for
# the error value of a ``cpdef long long ... except -1`` method of a cdef class.)

cimport cython
from libc.stdint cimport int64_t

cdef object _RANGE_END
cdef Py_ssize_t _HEAD_SLACK

cdef int64_t _as_bound(object value) except -1
cdef Py_ssize_t _as_limit(object value, Py_ssize_t count) except -1


@cython.final
cdef class RangeSet:
    cdef list _bounds      # [start0, stop0, start1, stop1, ...] from _head on
    cdef Py_ssize_t _head
    cdef int64_t _covered

    cpdef list _pairs(self)
    @cython.locals(i=Py_ssize_t)
    cdef bint _has(self, object value) except -1
    cpdef int64_t covered(self)
    cpdef object lowest(self)
    @cython.locals(bounds=list, n=Py_ssize_t, stop=int64_t)
    cpdef object highest(self)
    @cython.locals(bounds=list, head=Py_ssize_t, i=Py_ssize_t)
    cpdef object contiguous_end(self, object start)
    @cython.locals(s=int64_t, e=int64_t, p=int64_t, a=int64_t,
                   bounds=list, head=Py_ssize_t, n=Py_ssize_t, i=Py_ssize_t,
                   result=list)
    cpdef list missing(self, object start, object stop)
    @cython.locals(bounds=list, n=Py_ssize_t, k=Py_ssize_t, i=Py_ssize_t,
                   last=int64_t, result=list)
    cpdef tuple ack_ranges(self, object limit)
    @cython.locals(other=RangeSet)
    cpdef RangeSet copy(self)
    @cython.locals(s=int64_t, e=int64_t, top=int64_t, x=int64_t,
                   y=int64_t, added=int64_t, bounds=list, head=Py_ssize_t,
                   n=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, lo=Py_ssize_t,
                   hi=Py_ssize_t, k=Py_ssize_t)
    cpdef int64_t add(self, object start, object stop) except -1
    @cython.locals(s=int64_t, e=int64_t, x=int64_t, y=int64_t,
                   removed=int64_t, bounds=list, head=Py_ssize_t, n=Py_ssize_t,
                   i=Py_ssize_t, j=Py_ssize_t, lo=Py_ssize_t, hi=Py_ssize_t,
                   k=Py_ssize_t, keep_left=bint, keep_right=bint)
    cpdef discard(self, object start, object stop)
    @cython.locals(bounds=list, head=Py_ssize_t, x=int64_t, y=int64_t)
    cpdef tuple shift(self)
    @cython.locals(bounds=list, head=Py_ssize_t, count=Py_ssize_t, drop=Py_ssize_t,
                   removed=int64_t, k=Py_ssize_t, end=Py_ssize_t,
                   x=int64_t, y=int64_t)
    cpdef Py_ssize_t trim_lowest(self, object max_ranges) except -1
    @cython.locals(bounds=list)
    cdef int _delete(self, Py_ssize_t lo, Py_ssize_t hi) except -1
    @cython.locals(bounds=list, head=Py_ssize_t)
    cdef int _advance(self, Py_ssize_t slots) except -1
