"""STT adapters: drive the :mod:`stt_proto` engine with real sockets and timers.

:mod:`stt_io.asyncio` holds the asyncio adapter (``Node``, ``Session``,
``Stream``; also importable as :mod:`stt`) and :mod:`stt_io.trio` the trio
adapter with the same API in trio's idioms; :mod:`stt_io._core` is what the
two share (everything but waiting), :mod:`stt_io._bytestream` the byte view of
a stream behind both adapters' ``as_byte_stream()``, :mod:`stt_io._arguments`
the checks of what users pass to ``Node`` and ``connect``, :mod:`stt_io._udp`
the batched UDP socket they both drive, and :mod:`stt_io.errors` the exception
hierarchy.
"""
