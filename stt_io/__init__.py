"""STT adapters: drive the :mod:`stt_proto` engine with real sockets and timers.

The asyncio and trio adapters land here; both expose the same public API.
"""
