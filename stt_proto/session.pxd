# C types for the compiled build of stt_proto/session.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).

cimport cython
from libc.stdint cimport int64_t

from stt_proto.acks cimport AckTracker as _AckTracker
from stt_proto.budget cimport NodeBudget as _NodeBudget
from stt_proto.flow cimport SessionCredit as _SessionCredit
from stt_proto.recovery cimport PacketRecovery as _PacketRecovery
from stt_proto.recovery cimport RttEstimator as _RttEstimator
from stt_proto.stream cimport RecvStream as _RecvStream
from stt_proto.stream cimport SendStream as _SendStream


@cython.final
cdef class _Stream:
    cdef public int64_t stream_id
    cdef public _SendStream send
    cdef public _RecvStream recv
    cdef public bint remote
    cdef public int urgency
    cdef public bint incremental
    cdef public bint interactive


@cython.final
cdef class SessionCore:
    cdef public object _config
    cdef public bytes session_id
    cdef public bint initiator
    cdef public object _emit
    cdef public _NodeBudget _budget
    cdef public int64_t events_waiting
    cdef public Py_ssize_t max_datagram_size
    cdef public Py_ssize_t max_payload
    cdef public _PacketRecovery recovery
    cdef public _RttEstimator rtt
    cdef public _AckTracker acks
    cdef public bint _withhold_ack
    cdef public dict _streams
    cdef public object admission
    cdef public object _used
    cdef public int64_t _send_held
    cdef public dict _room_waiters
    cdef public dict _deadline_streams
    cdef public int64_t _fragments
    cdef public int64_t _fragment_bytes
    cdef public _SessionCredit credit
    cdef public int64_t _peer_stream_credit
    cdef public object peer_close
    cdef public list path_responses
    cdef public dict _stats
    cdef public object assembly

    @cython.locals(stats=dict, eliciting=bint)
    cpdef receive_packet(self, object pn, object payload, double now)
    @cython.locals(budget=_NodeBudget, stream=_Stream, recv=_RecvStream, more=int64_t,
                   credit=_SessionCredit, out=list, before=int64_t, held=Py_ssize_t,
                   held_bytes=int64_t, node_room=int64_t, room=int64_t, grown=int64_t, pieces=int64_t, end=int64_t)
    cpdef _on_stream_input(self, object frame, double now, bint skip)
    @cython.locals(sid=int64_t)
    cpdef _deliver(self, _Stream stream, list out, double now)
    cpdef _on_ack(self, object frame, double now)
    @cython.locals(stream=_Stream, send=_SendStream, recv=_RecvStream, held=int64_t,
                   finished=bint)
    cpdef _frames_acked(self, list frames, double now)
    @cython.locals(stream=_Stream, recv=_RecvStream, before=int64_t)
    cpdef stream_consumed(self, int64_t stream_id, int64_t nbytes, double now)
