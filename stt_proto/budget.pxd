# C types for the compiled build of stt_proto/budget.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# Every figure is a count of bytes, pieces, ids or events below 2**62: int64_t.

cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class NodeBudget:
    cdef public int64_t recv_limit, recv_used, fragment_limit, fragments
    cdef public int64_t closed_id_limit, closed_ids, event_limit, events
    cdef public int64_t recv_refused, fragments_refused, closed_ids_refused
    cdef public int64_t closed_ids_forgotten, events_refused, credit_capped, sessions
    cdef public int64_t recv_share, recv_half, fragment_share, fragment_half
    cdef public int64_t closed_id_share, closed_id_half, event_share, event_half
