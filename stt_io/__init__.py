"""STT adapters: drive the :mod:`stt_proto` engine with real sockets and timers.

:mod:`stt_io.asyncio` holds the asyncio adapter (``Node``, ``Session``,
``Stream``; also importable as :mod:`stt`); :mod:`stt_io.errors` the exception
hierarchy; :mod:`stt_io._udp` the batched UDP socket both adapters share.
"""
