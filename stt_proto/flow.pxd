# C types for the compiled build of stt_proto/flow.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# Credits are stream offsets summed over streams, below 2**62: int64_t.

cimport cython
from libc.stdint cimport int64_t

from stt_proto.budget cimport NodeBudget as _NodeBudget


@cython.final
cdef class SessionCredit:
    cdef public int64_t peer_max_data, sent, local_max_data, received, window, max_window
    cdef public int64_t consumed, blocked_at, skipped
    cdef public set reserving
    cdef public bint update_pending, blocked_pending
    cdef public double updated_at
    cdef public _NodeBudget budget

    cpdef on_received(self, int64_t grown)
    cpdef on_skipped(self, int64_t grown)
    cpdef on_consumed(self, int64_t delta)
    cpdef on_sent(self, int64_t new)
