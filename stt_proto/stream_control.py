"""Changes to a session's streams that are not data: the application's commands
that end one side of a stream, and the peer's control frames.

The session core (:class:`~stt_proto.session.SessionCore`) handles the frames
that carry data and acknowledgements itself, on its per-packet path. Here:

- the commands :func:`end_stream` (FIN), :func:`reset_stream` (RESET_STREAM)
  and :func:`stop_stream` (STOP_SENDING), which the endpoint runs for the
  application;
- the rarer frames from the peer -- RESET_STREAM, STOP_SENDING, MAX_DATA,
  MAX_STREAM_DATA, DATA_BLOCKED, STREAM_DATA_BLOCKED, PING, DATAGRAM, DHT,
  PATH_CHALLENGE and PATH_RESPONSE (docs/protocol.md section 7) -- one function
  each, ``handler(core, frame, now)``. :data:`HANDLERS` maps a frame's type to
  its function; the core looks a frame up there and raises ``ProtocolError``
  for a type it does not find.

Each function acts on the core through its parts (streams, credit, assembly,
admission) and its helpers, as a method would; they live in a module of their
own to keep the core's class to its per-packet work.
"""

from __future__ import annotations

from typing import Any

from . import _wire as wire
from .constants import ErrorCode
from .events import DatagramReceived, DhtMessageReceived, StreamReset, StreamStopped

__all__ = ["HANDLERS", "end_stream", "reset_stream", "stop_stream"]


def _reset_sending(core: Any, stream: Any, error_code: int) -> bool:
    """Abandon the sending side of ``stream`` (our RESET_STREAM, or the peer's
    STOP_SENDING): its unsent data leaves the queues and a RESET_STREAM is
    queued. False if it was reset or finished already."""
    held = stream.send.held
    if not stream.send.reset(error_code):
        return False
    core._release_held(held)
    sid = stream.stream_id
    core.assembly.resets[sid] = stream
    core.assembly.send_queue.pop(sid, None)
    core.assembly.credit_waiters.pop(sid, None)
    return True


# -- the application's commands ------------------------------------------------------


def end_stream(core: Any, stream_id: int) -> None:
    """End this side of the stream (FIN after what is queued). Nothing happens
    on a stream that already closed."""
    if core._gone(stream_id):
        return
    stream = core._local_stream(stream_id)
    stream.send.end()
    if stream.send.reset_code is None:  # ending again after a reset changes nothing
        core.assembly.want_send(stream)


def reset_stream(core: Any, stream_id: int, error_code: int, now: float) -> None:
    """Abandon this side's unsent data and tell the peer (RESET_STREAM).
    Nothing happens on a stream that already closed."""
    if core._gone(stream_id):
        return
    stream = core._local_stream(stream_id)
    _reset_sending(core, stream, error_code)
    core._check_closed(stream, now)


def stop_stream(core: Any, stream_id: int, error_code: int, now: float) -> None:
    """Stop reading the stream: discard what arrives and ask the peer to stop
    sending (STOP_SENDING). Nothing happens on a stream that already closed."""
    if core._gone(stream_id):
        return
    stream = core._local_stream(stream_id)
    recv = stream.recv
    before = recv.consumed
    held, held_bytes = recv.fragments, recv.out_of_order_bytes
    if recv.stop(error_code):
        core._fragments -= held
        core._budget.fragments -= held
        core._fragment_bytes -= held_bytes
        core.credit.on_consumed(recv.consumed - before)
        if recv.stop_pending:
            core.assembly.stops[stream_id] = stream
        core._session_credit(now)
    core._check_closed(stream, now)


# -- the peer's control frames ------------------------------------------------------


def on_reset_stream(core: Any, frame: Any, now: float) -> None:
    stream = core._incoming_stream(frame.stream_id, now)
    if stream is None:
        if core.admission.refused:
            core._absorb_refused(frame.stream_id, frame.final_size, now)
        return
    recv = stream.recv
    before = recv.consumed
    held, held_bytes = recv.fragments, recv.out_of_order_bytes
    report, grown = recv.on_reset(frame.error_code, frame.final_size)
    core._fragments += recv.fragments - held
    core._budget.fragments += recv.fragments - held
    core._fragment_bytes += recv.out_of_order_bytes - held_bytes
    if grown:
        core.credit.on_received(grown)
    core.credit.on_consumed(recv.consumed - before)
    core.assembly.stops.pop(stream.stream_id, None)
    core.assembly.updates.pop(stream.stream_id, None)
    if report:
        core._emit(StreamReset(session_id=core.session_id, stream_id=stream.stream_id,
                               error_code=frame.error_code))
        recv.reported()
    core._session_credit(now)
    core._check_closed(stream, now)


def on_stop_sending(core: Any, frame: Any, now: float) -> None:
    stream = core._streams.get(frame.stream_id)
    if stream is None:
        core._stats["spurious_frames_absorbed"] += 1
        return
    if _reset_sending(core, stream, frame.error_code):
        core._emit(StreamStopped(session_id=core.session_id, stream_id=stream.stream_id,
                                 error_code=frame.error_code))
    elif (frame.error_code == ErrorCode.STREAM_LIMIT_ERROR and stream.send.reset_code is None
          and not stream.recv.finished):
        # Refused after everything was acknowledged: the acknowledgements
        # said "received", not "delivered"; the application must hear it.
        core._emit(StreamStopped(session_id=core.session_id, stream_id=stream.stream_id,
                                 error_code=frame.error_code))
    if frame.error_code == ErrorCode.STREAM_LIMIT_ERROR and not stream.recv.finished:
        # A refusal: the peer has no such stream, so nothing will come back
        # on it either. Close our receiving side too.
        recv = stream.recv
        before = recv.consumed
        recv.refused()
        core.credit.on_consumed(recv.consumed - before)
    core._check_closed(stream, now)


def on_max_data(core: Any, frame: Any, now: float) -> None:
    if core.credit.on_max_data(frame.maximum):
        waiters = core.assembly.credit_waiters
        if waiters:
            core.assembly.send_queue.update(waiters)
            waiters.clear()


def on_max_stream_data(core: Any, frame: Any, now: float) -> None:
    stream = core._streams.get(frame.stream_id)
    if stream is None:
        # A stream that is gone, or not opened yet: this frame never
        # opens one (7.2).
        core._stats["spurious_frames_absorbed"] += 1
        return
    if stream.send.on_max_data(frame.maximum) and stream.send.wants_to_send(1):
        core.assembly.want_send(stream)


def on_data_blocked(core: Any, frame: Any, now: float) -> None:
    # The peer says it is blocked at ``limit``: if we granted more already the
    # update is in flight; if not, re-announce what we have (it may be lost).
    if frame.limit >= core.credit.local_max_data:
        core._session_credit(now, force=True)


def on_stream_data_blocked(core: Any, frame: Any, now: float) -> None:
    stream = core._streams.get(frame.stream_id)
    if stream is None:
        core._stats["spurious_frames_absorbed"] += 1
    elif frame.limit >= stream.recv.max_data:
        core._stream_credit(stream, now, force=True)


def on_ping(core: Any, frame: Any, now: float) -> None:
    pass  # ack-eliciting is all it is for


def on_datagram(core: Any, frame: Any, now: float) -> None:
    core._emit(DatagramReceived(session_id=core.session_id, data=frame.data))


def on_dht(core: Any, frame: Any, now: float) -> None:
    if len(frame.data) > core._config.max_dht_message_size:
        core._stats["dht_messages_dropped"] += 1
        return
    core._emit(DhtMessageReceived(session_id=core.session_id, data=frame.data))


def on_path_challenge(core: Any, frame: Any, now: float) -> None:
    core.assembly.queue_path_response(frame.data)


def on_path_response(core: Any, frame: Any, now: float) -> None:
    # Kept for the session table, which knows the challenges (stt_proto.path);
    # more than a probe's challenges can never all be answers.
    if len(core.path_responses) < 4:
        core.path_responses.append(frame.data)


#: frame type -> ``handler(core, frame, now)``
HANDLERS = {
    wire.ResetStreamFrame: on_reset_stream,
    wire.StopSendingFrame: on_stop_sending,
    wire.MaxDataFrame: on_max_data,
    wire.MaxStreamDataFrame: on_max_stream_data,
    wire.DataBlockedFrame: on_data_blocked,
    wire.StreamDataBlockedFrame: on_stream_data_blocked,
    wire.PingFrame: on_ping,
    wire.DatagramFrame: on_datagram,
    wire.DhtFrame: on_dht,
    wire.PathChallengeFrame: on_path_challenge,
    wire.PathResponseFrame: on_path_response,
}
