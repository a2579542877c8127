# Cython declarations that turn stt_proto/_wire_py.py into the compiled module
# stt_proto._wire_c. The logic lives in the .py file only; this file adds C types.
# Keep every signature here in step with the .py (the differential tests in
# tests/test_wire_differential.py catch any behavioural drift between the builds).

cimport cython

cdef unsigned long long _VARINT_MAX
cdef unsigned long long _MAX_ACK_RANGES
cdef unsigned long long _MAX_REASON
cdef Py_ssize_t _PATH_DATA
cdef int _KIND_DATA
cdef int _FT_PADDING
cdef int _FT_PING
cdef int _FT_ACK
cdef int _FT_RESET_STREAM
cdef int _FT_STOP_SENDING
cdef int _FT_STREAM
cdef int _FT_STREAM_FIN
cdef int _FT_MAX_DATA
cdef int _FT_MAX_STREAM_DATA
cdef int _FT_DATA_BLOCKED
cdef int _FT_STREAM_DATA_BLOCKED
cdef int _FT_STREAM_SKIP
cdef int _FT_PATH_CHALLENGE
cdef int _FT_PATH_RESPONSE
cdef int _FT_CLOSE
cdef int _FT_DATAGRAM
cdef int _FT_DHT


cdef unsigned long long _as_varint(object value) except? 0xFFFFFFFFFFFFFFFF
cdef Py_ssize_t _varint_len(unsigned long long value) noexcept
cpdef Py_ssize_t varint_size(object value) except -1


@cython.final
cdef class Writer:
    cdef bytearray _buf
    cdef Py_ssize_t _capacity

    cpdef Py_ssize_t tell(self)
    cpdef Py_ssize_t remaining(self)
    cpdef bytes getvalue(self)
    cdef int _reserve(self, Py_ssize_t n) except -1
    @cython.locals(buf=bytearray)
    cdef int _push_varint_raw(self, unsigned long long value) except -1
    cpdef push_uint8(self, object value)
    cpdef push_uint32(self, object value)
    cpdef push_uint64(self, object value)
    cpdef push_varint(self, object value)
    cpdef push_bytes(self, object data)
    cpdef push_zeros(self, Py_ssize_t n)


@cython.final
cdef class Reader:
    cdef bytes _data
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end

    cpdef Py_ssize_t tell(self)
    cpdef Py_ssize_t remaining(self)
    cpdef bint eof(self)
    cpdef expect_end(self)
    cdef int _need(self, Py_ssize_t n) except -1
    cpdef int peek_uint8(self) except -1
    cpdef skip(self, Py_ssize_t n)
    cpdef int pull_uint8(self) except -1
    @cython.locals(p=Py_ssize_t, high="unsigned long")
    cpdef unsigned long pull_uint32(self) except? 0xFFFFFFFF
    @cython.locals(p=Py_ssize_t)
    cpdef object pull_uint64(self)
    @cython.locals(p=Py_ssize_t, first=int, prefix=int)
    cpdef unsigned long long pull_varint(self) except? 0xFFFFFFFFFFFFFFFF
    @cython.locals(p=Py_ssize_t)
    cpdef bytes pull_bytes(self, Py_ssize_t n)


cpdef push_data_header(Writer w, object receiver_index, object packet_number)
cpdef tuple pull_data_header_untrusted(object data)


cdef class Frame:
    cpdef push(self, Writer w)


@cython.final
cdef class PaddingFrame(Frame):
    cdef readonly object length


@cython.final
cdef class PingFrame(Frame):
    pass


@cython.final
cdef class AckFrame(Frame):
    cdef readonly tuple ranges
    cdef readonly object delay


@cython.locals(count=Py_ssize_t, i=Py_ssize_t, lo="unsigned long long",
               hi="unsigned long long", largest="unsigned long long",
               smallest="unsigned long long", size=Py_ssize_t, fields=list)
cpdef push_ack_frame(Writer w, tuple ranges, object delay)


@cython.final
cdef class ResetStreamFrame(Frame):
    cdef readonly object stream_id
    cdef readonly object error_code
    cdef readonly object final_size


@cython.final
cdef class StopSendingFrame(Frame):
    cdef readonly object stream_id
    cdef readonly object error_code


@cython.final
cdef class StreamFrame(Frame):
    cdef readonly object stream_id
    cdef readonly object offset
    cdef readonly object data
    cdef readonly bint fin


@cython.locals(sid="unsigned long long", off="unsigned long long",
               length="unsigned long long")
cpdef push_stream_frame(Writer w, object stream_id, object offset, object data, bint fin)


@cython.locals(size=Py_ssize_t)
cdef int _push_varints(Writer w, int frame_type, int count, object a, object b,
                       object c) except -1


@cython.final
cdef class MaxDataFrame(Frame):
    cdef readonly object maximum


@cython.final
cdef class MaxStreamDataFrame(Frame):
    cdef readonly object stream_id
    cdef readonly object maximum


@cython.final
cdef class DataBlockedFrame(Frame):
    cdef readonly object limit


@cython.final
cdef class StreamDataBlockedFrame(Frame):
    cdef readonly object stream_id
    cdef readonly object limit


@cython.final
cdef class StreamSkipFrame(Frame):
    cdef readonly object stream_id
    cdef readonly object offset
    cdef readonly object length
    cdef readonly object index


cdef int _push_path(Writer w, int frame_type, object data) except -1


@cython.final
cdef class PathChallengeFrame(Frame):
    cdef readonly object data


@cython.final
cdef class PathResponseFrame(Frame):
    cdef readonly object data


@cython.locals(length=Py_ssize_t)
cdef int _push_blob(Writer w, int frame_type, object data) except -1
cdef int _push_blob_tail(Writer w, object data) except -1


@cython.final
cdef class CloseFrame(Frame):
    cdef readonly object error_code
    cdef readonly object reason


@cython.final
cdef class DatagramFrame(Frame):
    cdef readonly object data


@cython.final
cdef class DhtFrame(Frame):
    cdef readonly object data


@cython.locals(largest="unsigned long long", delay="unsigned long long",
               extra="unsigned long long", first_range="unsigned long long",
               smallest="unsigned long long", gap="unsigned long long",
               length="unsigned long long", hi="unsigned long long")
cdef AckFrame _pull_ack(Reader r)

@cython.locals(stream_id="unsigned long long", offset="unsigned long long",
               length="unsigned long long")
cdef StreamFrame _pull_stream(Reader r, bint fin)

@cython.locals(offset="unsigned long long", length="unsigned long long")
cdef StreamSkipFrame _pull_skip(Reader r)

@cython.locals(length="unsigned long long")
cdef CloseFrame _pull_close(Reader r)

@cython.locals(r=Reader, frames=list, frame_type=int, length=Py_ssize_t)
cpdef list decode_frames_untrusted(object payload)
