# C types for the compiled build of stt_proto/endpoint.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# The methods stay def (their keyword-only arguments are the engine's API); what
# the types buy is that the per-datagram paths read the endpoint's parts from C
# fields instead of an instance dict. The instance keeps a __dict__ all the
# same: an application or test may wrap a method on one endpoint (say, to watch
# what it receives), as it could on the pure build.

cimport cython
from libc.stdint cimport int64_t

from stt_proto.budget cimport NodeBudget
from stt_proto.sessions cimport Session, SessionTable


cdef class Endpoint:
    cdef dict __dict__
    cdef public object _config
    cdef public object _rng
    cdef public bytes _public
    cdef public object _indices
    cdef public list _outgoing
    cdef public object _events
    cdef public object _event_owners
    cdef public NodeBudget _budget
    cdef public Py_ssize_t _event_bytes
    cdef public list _timers
    cdef public object _timer_seq
    cdef public double _last_now
    cdef public int64_t _datagrams_received, _bytes_received
    cdef public int64_t _datagrams_sent, _bytes_sent
    cdef public dict _stats
    cdef public SessionTable _table
    cdef public dict _sessions
    cdef public object _initiator
    cdef public object _responder
    cdef public object _early_dht_handler
    cdef public object _mark
