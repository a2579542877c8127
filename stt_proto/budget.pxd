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
    cdef public int64_t recv_share, recv_open, fragment_share, fragment_open
    cdef public int64_t closed_id_share, closed_id_open, event_share, event_open

    cpdef int64_t recv_room(self, int64_t mine)
    cpdef int64_t fragment_room(self, int64_t mine)
    cpdef int64_t closed_id_room(self, int64_t mine)


cdef inline int64_t _share(int64_t limit, int64_t sessions)


@cython.locals(within=int64_t, beyond=int64_t)
cdef inline int64_t _room(int64_t limit, int64_t open_part, int64_t share, int64_t total,
                          int64_t mine)
