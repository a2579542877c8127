"""A stream seen as bytes: the part of the byte views both adapters share.

``Stream.as_byte_stream()`` turns a message stream into the byte stream each
event loop's ecosystem expects: a ``trio.abc.HalfCloseableStream`` on trio
(:class:`stt_io.trio.ByteStream`), a ``StreamReader``/``StreamWriter`` look-alike
on asyncio (:class:`stt_io.asyncio.ByteStream`). Both are thin facades over
:class:`ByteStreamBase`, which holds everything else:

* **Receiving.** What arrives is kept as a queue of chunks (a message from a
  peer that sends messages is one chunk, a ``StreamDataReceived`` from a peer
  that sends bytes another), handed out in slices without copying the rest.
  A chunk leaves the stream (and returns its flow-control credit) only when
  the view asks for more bytes than it holds, so a reader that stops reading
  still slows the sender down. At most one task receives at a time.
* **Sending.** Bytes go out in byte mode (``send_stream_data``: the peer's
  ``receive`` gets chunks of any size). The awaitable path (trio's
  ``send_all``) waits for room in the stream's send buffer. The synchronous
  path (asyncio's ``write``) hands the engine what it accepts now and holds the
  rest in :attr:`ByteStreamBase._unsent`, which the stream's room callback
  keeps feeding to the engine as acknowledgements free space, with or without
  ``drain`` (an asyncio transport does the same); ``drain`` waits until the
  view holds nothing. That queue is bounded by the caller, as asyncio's write
  buffer is: it grows only by ``write`` calls that do not ``drain``, and
  :meth:`ByteStreamBase._held_size` counts it.
* **Ending.** ``send_eof``/``write_eof`` ends this side once the unsent bytes
  are out; ``close`` does the same and also stops reading (the peer is asked to
  stop sending), and wakes a receive or send blocked in another task, which
  then fails as "closed".

Errors are the facade's: each subclass names the exception types it raises
for use after close, a broken stream (reset or stopped by the peer, session
closed, node stopped; chained from the STT error), concurrent use, and sending
after the end. The view talks to its stream only through the stream's methods
(:meth:`stt_io._core.Stream._receive_next` and its neighbours), never through
the state of the stream, its session or its node.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .errors import NodeStoppedError, SessionClosedError, StreamClosedError

__all__ = ["ByteStreamBase"]

#: What a broken stream raises inside STT (StreamResetError is a StreamClosedError).
_BROKEN = (StreamClosedError, SessionClosedError, NodeStoppedError)


class ByteStreamBase:
    """The backend-free byte view of one :class:`~stt_io._core.Stream`.

    Subclasses set the four error types and expose the methods of their
    ecosystem; the ``_``-prefixed methods here are what they build on.
    """

    #: Raised by any use after ``close``.
    _closed_error: type[Exception] = RuntimeError
    #: Raised when the stream broke (chained from the STT error saying why).
    _broken_error: type[Exception] = ConnectionResetError
    #: Raised when a second task receives (or sends) while one already does.
    _busy_error: type[Exception] = RuntimeError
    #: Raised by a send after this side was ended.
    _eof_sent_error: type[Exception] = RuntimeError

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        """The underlying :class:`~stt_io._core.Stream`."""
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._eof = False  # the peer's end was seen
        self._closed = False  # close() was called
        self._eof_sent = False  # this side is to end (send_eof, write_eof, close)
        self._fin_queued = False  # ... and the engine was told
        self._sending = False
        self._receiving = False
        self._unsent: deque[bytes] = deque()
        self._unsent_bytes = 0
        self._write_error: BaseException | None = None
        stream._set_room_callback(self._push)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} of {self.stream!r} {state}>"

    # ------------------------------------------------------------------ errors

    def _is_closed(self) -> bool:
        return self._closed

    def _check_closed(self) -> None:
        if self._closed:
            raise self._closed_error("this byte stream was closed")

    def _translate(self, exc: BaseException) -> Exception:
        """The facade's error for an STT error met while receiving or sending
        (raise it ``from exc``)."""
        if self._closed:
            return self._closed_error("this byte stream was closed")
        return self._broken_error(str(exc))

    # ------------------------------------------------------------------ receiving

    def _begin_receive(self) -> None:
        if self._receiving:
            raise self._busy_error("another task is receiving on this stream")
        self._check_closed()
        self._receiving = True

    def _end_receive(self) -> None:
        self._receiving = False

    async def _fill(self) -> bool:
        """Wait for the next chunk from the stream and keep it; ``False`` at
        the peer's end (and from then on).

        Raises:
            the closed error if ``close`` was called meanwhile, the broken
            error if the stream was reset or its session closed.
        """
        if self._eof:
            return False
        try:
            data = await self.stream._receive_next(self._is_closed)
        except _BROKEN as exc:
            raise self._translate(exc) from exc
        self._check_closed()
        if data is None:
            self._eof = True
            return False
        if data:
            self._chunks.append(memoryview(data))
            self._buffered += len(data)
        return True

    def _take(self, size: int | None) -> bytes:
        """Up to ``size`` buffered bytes (``None``: the first chunk whole)."""
        chunks = self._chunks
        if not chunks:
            return b""
        first = chunks[0]
        if size is None or size == len(first):
            chunks.popleft()
            self._buffered -= len(first)
            return bytes(first)
        if size < len(first):
            chunks[0] = first[size:]
            self._buffered -= size
            return bytes(first[:size])
        parts = []
        want = min(size, self._buffered)
        self._buffered -= want
        while want:
            chunk = chunks[0]
            if len(chunk) <= want:
                parts.append(chunks.popleft())
                want -= len(chunk)
            else:
                parts.append(chunk[:want])
                chunks[0] = chunk[want:]
                want = 0
        return b"".join(parts)

    def _find(self, separator: bytes, start: int, window: int) -> int:
        """Where ``separator`` ends in the buffered bytes (searching from
        ``start`` and within the first ``window`` bytes), or -1."""
        head = bytearray()
        for chunk in self._chunks:
            head += chunk[:window - len(head)]
            if len(head) >= window:
                break
        found = head.find(separator, start)
        return -1 if found < 0 else found + len(separator)

    def _input_at_eof(self) -> bool:
        return not self._buffered and (self._eof or self.stream._input_ended())

    # ------------------------------------------------------------------ sending

    def _begin_send(self) -> None:
        if self._sending:
            raise self._busy_error("another task is sending on this stream")
        self._check_closed()
        if self._eof_sent:
            raise self._eof_sent_error("this side of the stream was ended (send_eof)")
        self._sending = True

    def _end_send(self) -> None:
        self._sending = False

    async def _send_all(self, data: bytes) -> None:
        """Send ``data``, waiting for room in the send buffer."""
        try:
            await self.stream._send(data, True)
        except _BROKEN as exc:
            raise self._translate(exc) from exc

    async def _wait_send_room(self) -> None:
        """Return once a send would not wait (or could never succeed)."""
        await self.stream._wait_writable(self._is_closed)
        self._check_closed()

    def _write(self, data: bytes) -> None:
        """Queue ``data`` without waiting: what the stream refuses now is held
        and sent as room frees up."""
        self._raise_write_error()
        self._check_closed()
        if self._eof_sent:
            raise self._eof_sent_error("cannot write after write_eof()")
        if data:
            self._unsent.append(data)
            self._unsent_bytes += len(data)
            self._push()
            self._raise_write_error()

    def _push(self) -> None:
        """Hand the held bytes to the engine, then the end of this side if it
        is due. Runs from ``write``, ``drain`` and the stream's room callback;
        an error is kept for the next ``write``/``drain`` to raise."""
        if self._write_error is not None:
            return
        stream = self.stream
        try:
            while self._unsent:
                chunk = self._unsent[0]
                if not stream._offer_bytes(chunk):
                    return
                self._unsent.popleft()
                self._unsent_bytes -= len(chunk)
        except _BROKEN as exc:
            self._write_error = exc
            self._unsent.clear()
            self._unsent_bytes = 0
            return
        if self._eof_sent and not self._fin_queued:
            self._fin_queued = True
            stream._end_now()

    def _raise_write_error(self) -> None:
        error = self._write_error
        if error is not None:
            raise self._translate(error) from error

    async def _drain(self) -> None:
        """Wait until every held byte was handed to the engine (and the end
        of this side, once it is due)."""
        while True:
            self._push()
            self._raise_write_error()
            if not self._unsent:
                return
            await self.stream._wait_room()

    def _held_size(self) -> int:
        """Bytes written but not yet accepted by the stream's send buffer."""
        return self._unsent_bytes

    # ------------------------------------------------------------------ ending

    def _send_eof(self) -> None:
        """End this side once the held bytes are out (at once if none are)."""
        if not self._eof_sent:
            self._eof_sent = True
            self._push()

    def _close(self) -> None:
        """End this side (after the held bytes) and stop reading; a receive or
        send blocked in another task then fails as closed. Closing twice does
        nothing."""
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        self._buffered = 0
        self._eof_sent = True
        self._push()
        self.stream._stop_reading()
