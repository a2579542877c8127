# C types for the compiled build of stt_proto/crypto.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes and signatures here in step with
# it (the differential test in tests/engine/test_build_differential.py catches drift).
# Packet numbers and the limits on them stay Python ints: the API takes any
# 64-bit number (and refuses larger ones itself); counters of one key are int64.

cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class ReplayWindow:
    cdef public object _size
    cdef public object _mask
    cdef public object _bitmap
    cdef public object _highest

    cpdef bint is_too_old(self, object pn)
    cpdef bint would_accept(self, object pn)
    cpdef accept(self, object pn)


@cython.final
cdef class PacketKeys:
    cdef public object _send
    cdef public object _encrypt
    cdef public object _decrypt
    cdef public object _send_nonce
    cdef public object _recv_nonce
    cdef public ReplayWindow _window
    cdef public int64_t local_index
    cdef public int64_t remote_index
    cdef public double created_at
    cdef public bint initiator
    cdef public object limits
    cdef public double _rekey_at
    cdef public double _reject_at
    cdef public object _reject_packets
    cdef public object _integrity_limit
    cdef public object _next_pn
    cdef public object _first_pn
    cdef public object _recv_base
    cdef public int64_t _received
    cdef public int64_t _auth_failures
    cdef public int64_t _replayed
    cdef public int64_t _too_old
    cdef public int64_t _wrong_index
    cdef public int64_t _rejected_expired
    cdef public int64_t _malformed

    cpdef bint can_send(self, double now)
    cpdef bint can_receive(self, double now)
    cpdef bint needs_rekey(self, double now)
    cpdef tuple seal(self, object payload, double now)
    @cython.locals(window=ReplayWindow)
    cpdef object open_untrusted(self, object datagram, double now)


@cython.final
cdef class KeyRing:
    cdef public object limits
    cdef public PacketKeys current
    cdef public PacketKeys previous
    cdef public PacketKeys next
    cdef public object _previous_expires_at
    cdef public dict _retired
    cdef public int64_t _unknown_index
    cdef public int64_t _grace_expired

    cpdef install(self, PacketKeys keys, double now, bint confirmed)
    cpdef tuple seal(self, object payload, double now)
    @cython.locals(current=PacketKeys, pending=PacketKeys, previous=PacketKeys)
    cpdef object open_untrusted(self, object datagram, object receiver_index, double now)
