# C types for the compiled build of stt_proto/assembly.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).

cimport cython
from libc.stdint cimport int64_t

from stt_proto._wire_c cimport Writer as _Writer
from stt_proto.acks cimport AckTracker as _AckTracker
from stt_proto.congestion.pacer cimport Pacer as _Pacer
from stt_proto.flow cimport SessionCredit as _SessionCredit
from stt_proto.priority cimport StreamScheduler as _StreamScheduler
from stt_proto.recovery cimport PacketRecovery as _PacketRecovery
from stt_proto.stream cimport SendStream as _SendStream


@cython.final
cdef class PacketAssembler:
    cdef public Py_ssize_t max_payload
    cdef public _PacketRecovery _recovery
    cdef public _AckTracker _acks
    cdef public _SessionCredit _credit
    cdef public object _admission
    cdef public dict _stats
    cdef public Py_ssize_t _max_queued_datagrams
    cdef public dict _streams
    cdef public _StreamScheduler send_queue
    cdef public dict credit_waiters
    cdef public dict updates
    cdef public dict resets
    cdef public dict stops
    cdef public dict stream_blocked
    cdef public object _path_responses
    cdef public bint ping_pending
    cdef public object _datagrams
    cdef public object pacing_at
    cdef public dict skips

    @cython.locals(credit=_SessionCredit)
    cpdef bint has_eliciting_work(self) except -1
    @cython.locals(out=list, recovery=_PacketRecovery, pacer=_Pacer, acks=_AckTracker,
                   stats=dict, max_payload=Py_ssize_t, ping_only=bint, in_flight=Py_ssize_t,
                   can_elicit=bint, at=double, want_ack=bint, w=_Writer, records=list,
                   with_ack=bint, eliciting=bint, size=Py_ssize_t)
    cpdef list transmit(self, double now, object seal)
    @cython.locals(start=Py_ssize_t, credit=_SessionCredit)
    cpdef bint _write_frames(self, _Writer w, list records) except -1
    @cython.locals(queue=_StreamScheduler, session_credit=_SessionCredit, credit=int64_t,
                   stats=dict, send=_SendStream, sent=int64_t, end=int64_t, new=int64_t,
                   more=bint, offset=int64_t, fin=bint)
    cpdef _write_streams(self, _Writer w, list records)
