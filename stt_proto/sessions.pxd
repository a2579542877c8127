# C types for the compiled build of stt_proto/sessions.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# What may be None (a time not set, a probe, the core before the handshake ends)
# stays an object.

cimport cython
from libc.stdint cimport int64_t

from stt_proto.budget cimport NodeBudget as _NodeBudget
from stt_proto.crypto cimport KeyRing
from stt_proto.session cimport SessionCore as _SessionCore


@cython.final
cdef class Session:
    cdef public bytes session_id
    cdef public bytes peer_id
    cdef public object address
    cdef public bint initiator
    cdef public KeyRing keys
    cdef public object peer_params
    cdef public object state
    cdef public object rekey_state
    cdef public object closed_from
    cdef public double created_at
    cdef public double last_received
    cdef public double last_sent
    cdef public object closed_at
    cdef public object timer_at
    cdef public set routes
    cdef public _SessionCore core
    cdef public object closing
    cdef public object close_next
    cdef public double close_interval
    cdef public int close_sends
    cdef public tuple close_frame
    cdef public object probe
    cdef public int64_t largest_pn
    cdef public object suspended_at
    cdef public double ping_at
    cdef public double ping_gap


@cython.final
cdef class SessionTable:
    cdef public object _config
    cdef public _NodeBudget _budget
    cdef public object _indices
    cdef public dict _stats
    cdef public object _queue
    cdef public object _push_event
    cdef public object _arm
    cdef public object _new_session_id
    cdef public object _start_rekey
    cdef public object _cancel_rekey
    cdef public dict sessions
    cdef public dict _per_host
    cdef public Py_ssize_t half_open
    cdef public dict dirty

    cpdef mark(self, Session session)
    @cython.locals(dirty=dict, session=Session)
    cpdef transmit_dirty(self, double now)
    @cython.locals(core=_SessionCore, current=object, opened=object, silent_since=double,
                   newest=bint)
    cpdef receive(self, Session session, object data, object receiver_index, object address,
                  double now)
    @cython.locals(core=_SessionCore, datagrams=list)
    cpdef _transmit(self, Session session, double now)
    cpdef _schedule(self, Session session)
    @cython.locals(core=_SessionCore, at=double, t=object, end=double)
    cpdef object _deadline_of(self, Session session)
