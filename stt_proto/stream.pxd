# C types for the compiled build of stt_proto/stream.py (see stt_proto/_build.py).
# The logic lives in the .py only; keep the attributes here in step with its __slots__
# (the differential test in tests/engine/test_build_differential.py catches drift).
# Stream offsets never exceed 2**62, so they fit an int64_t; what may be None stays
# an object.

cimport cython
from libc.stdint cimport int64_t

from stt_proto._rangeset_c cimport RangeSet as _RangeSet


@cython.final
cdef class SendStream:
    cdef public int64_t stream_id
    cdef public object state
    cdef public object mode
    cdef public int64_t max_frame_size
    cdef public int64_t max_buffer
    cdef public bytearray _buf
    cdef public int64_t _base
    cdef public int64_t write_end
    cdef public int64_t sent_end
    cdef public int64_t acked_end
    cdef public _RangeSet _acked
    cdef public _RangeSet lost
    cdef public bint fin
    cdef public bint fin_pending
    cdef public bint fin_acked
    cdef public int64_t max_data
    cdef public int64_t blocked_at
    cdef public object reset_code
    cdef public bint reset_pending
    cdef public int64_t final_size
    cdef public bint buffer_was_full
    cdef public int64_t messages
    cdef public object deadlines


@cython.final
cdef class RecvStream:
    cdef public int64_t stream_id
    cdef public object state
    cdef public object mode
    cdef public int64_t max_frame_size
    cdef public int64_t window
    cdef public int64_t max_window
    cdef public int64_t max_data
    cdef public int64_t highest
    cdef public object final_size
    cdef public int64_t read_end
    cdef public _RangeSet _ranges
    cdef public dict _pending
    cdef public bytearray _buf
    cdef public int64_t _buf_base
    cdef public Py_ssize_t _pos
    cdef public object _msg_len
    cdef public int64_t _msg_end
    cdef public int64_t delivered
    cdef public int64_t consumed
    cdef public double last_update
    cdef public object reset_code
    cdef public bint aborted
    cdef public bint stop_pending
    cdef public int64_t stop_code
    cdef public int64_t reserved
    cdef public bint stop_unacked
    cdef public bint limits_moved
    cdef public int64_t messages
    cdef public dict _skips
    cdef public int64_t _skip_span
